package tools

import (
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
