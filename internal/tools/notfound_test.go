package tools

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const (
	legacyRead     = `{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"nano-vm://runs/run_x/receipt"}}`
	modernRead     = `{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"nano-vm://runs/run_x/receipt","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	notFoundAnswer = `{"jsonrpc":"2.0","id":4,"error":{"code":-32603,"message":"nano-vm://runs/run_x/receipt: resource not found"}}`
)

// Only the internal error a notFound became is rewritten, to the code of
// the request's era; the rest of the answer stays byte for byte.
func TestFixNotFound(t *testing.T) {
	other := `{"jsonrpc":"2.0","id":4,"error":{"code":-32603,"message":"database is locked"}}`
	withData := `{"jsonrpc":"2.0","id":4,"error":{"code":-32603,"message":"x: resource not found","data":{"code":-32603}}}`
	result := `{"jsonrpc":"2.0","id":4,"result":{"contents":[{"uri":"x","text":"\"code\":-32603 resource not found"}]}}`
	for _, tc := range []struct{ name, req, resp, want string }{
		{"legacy", legacyRead, notFoundAnswer, strings.Replace(notFoundAnswer, "-32603", "-32002", 1)},
		{"2026-07-28", modernRead, notFoundAnswer, strings.Replace(notFoundAnswer, "-32603", "-32602", 1)},
		{"another internal error", legacyRead, other, other},
		{"an error with data", legacyRead, withData, withData},
		{"a result", legacyRead, result, result},
		{"not JSON", "nope", "nope", "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(FixNotFound([]byte(tc.req), []byte(tc.resp))); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// Over HTTP the answer is fixed whether it is a JSON body or an SSE
// stream written in pieces, and the handler reads the POST body intact.
func TestNotFoundCodesOverHTTP(t *testing.T) {
	sseNote := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n"
	for _, tc := range []struct {
		name, req, body, want string
	}{
		{"json legacy", legacyRead, notFoundAnswer + "\n", strings.Replace(notFoundAnswer, "-32603", "-32002", 1) + "\n"},
		{"sse 2026-07-28", modernRead, sseNote + "event: message\ndata: " + notFoundAnswer + "\n\n",
			sseNote + "event: message\ndata: " + strings.Replace(notFoundAnswer, "-32603", "-32602", 1) + "\n\n"},
		{"json without a newline", modernRead, notFoundAnswer, strings.Replace(notFoundAnswer, "-32603", "-32602", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NotFoundCodes(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, _ := io.ReadAll(r.Body)
				if string(got) != tc.req {
					t.Errorf("the handler read %q", got)
				}
				// Each event in two writes that split a line, then a
				// flush, as a stream goes.
				for _, ev := range strings.SplitAfter(tc.body, "\n\n") {
					io.WriteString(w, ev[:len(ev)/2])
					io.WriteString(w, ev[len(ev)/2:])
					w.(http.Flusher).Flush()
				}
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(tc.req)))
			if rec.Body.String() != tc.want {
				t.Fatalf("got  %q\nwant %q", rec.Body.String(), tc.want)
			}
		})
	}
}
