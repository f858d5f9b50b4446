package jsonrpc

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Over HTTP each answer is fixed whether it is a JSON body or an SSE
// stream written in pieces, with the POST it answers, and the handler
// reads the POST body intact.
func TestHandlerRewritesEveryAnswer(t *testing.T) {
	const req = `{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{}}`
	note := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n"
	answer := `{"jsonrpc":"2.0","id":4,"result":{}}`
	mark := func(req, resp []byte) []byte {
		if string(req) != `{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{}}` {
			return resp
		}
		return bytes.Replace(resp, []byte(`"result":{}`), []byte(`"result":{"fixed":true}`), 1)
	}
	fixed := `{"jsonrpc":"2.0","id":4,"result":{"fixed":true}}`
	for _, tc := range []struct{ name, body, want string }{
		{"json", answer + "\n", fixed + "\n"},
		{"sse", note + "event: message\ndata: " + answer + "\n\n", note + "event: message\ndata: " + fixed + "\n\n"},
		{"json without a newline", answer, fixed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got, _ := io.ReadAll(r.Body)
				if string(got) != req {
					t.Errorf("the handler read %q", got)
				}
				// Each event in two writes that split a line, then a
				// flush, as a stream goes.
				for _, ev := range strings.SplitAfter(tc.body, "\n\n") {
					io.WriteString(w, ev[:len(ev)/2])
					io.WriteString(w, ev[len(ev)/2:])
					w.(http.Flusher).Flush()
				}
			}), Options{Rewrite: mark})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(req)))
			if rec.Body.String() != tc.want {
				t.Fatalf("got  %q\nwant %q", rec.Body.String(), tc.want)
			}
		})
	}
}

// echo answers each POST with mcp-go's answer to its body, and records
// what it was given.
func echo(t *testing.T, got *[]byte) http.Handler {
	s := server.NewMCPServer("t", "1")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		*got = body
		if m := s.HandleMessage(r.Context(), body); m != nil {
			json.NewEncoder(w).Encode(m)
		}
	})
}

func TestHandlerIDs(t *testing.T) {
	for _, tc := range []struct {
		name, id, want string
		status         int
		reached        bool
	}{
		{"above 2^53", `9007199254740993`, `9007199254740993`, 200, true},
		{"negative", `-9007199254740993`, `-9007199254740993`, 200, true},
		{"small", `3`, `3`, 200, true},
		{"string", `"a"`, `"a"`, 200, true},
		{"object", `{"a":1}`, `null`, 400, false},
		{"array", `[1]`, `null`, 400, false},
		{"boolean", `true`, `null`, 400, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []byte
			rec := httptest.NewRecorder()
			Handler(echo(t, &got), Options{}).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mcp",
				strings.NewReader(`{"jsonrpc":"2.0","id":`+tc.id+`,"method":"ping"}`)))
			if rec.Code != tc.status || answerID(t, rec.Body.Bytes()) != tc.want || (got != nil) != tc.reached {
				t.Fatalf("%d %s (the handler read %q)", rec.Code, rec.Body, got)
			}
			if !tc.reached {
				var a mcp.JSONRPCError
				if json.Unmarshal(rec.Body.Bytes(), &a) != nil || a.Error.Code != mcp.INVALID_REQUEST {
					t.Fatalf("answer %s", rec.Body)
				}
			}
		})
	}
}

// Where the server sends no requests (legacy SSE), a posted response is
// logged as unsolicited and the handler gets one it ignores; elsewhere the
// response reaches the handler as it is.
func TestHandlerResponses(t *testing.T) {
	const resp = `{"jsonrpc":"2.0","id":78,"error":{"code":1,"message":"x"}}`
	for _, sse := range []bool{true, false} {
		core, logs := observer.New(zapcore.DebugLevel)
		var got []byte
		rec := httptest.NewRecorder()
		h := Handler(echo(t, &got), Options{NoServerRequests: sse, Unsolicited: NewUnsolicited(zap.New(core))})
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/message", strings.NewReader(resp)))
		if sse {
			if string(got) != string(neutral) || rec.Body.Len() != 0 || logs.Len() != 1 || logs.All()[0].ContextMap()["id"] != "78" {
				t.Errorf("sse: read %q, answered %q, %d lines", got, rec.Body, logs.Len())
			}
		} else if string(got) != resp || logs.Len() != 0 {
			t.Errorf("read %q, %d lines", got, logs.Len())
		}
	}
}
