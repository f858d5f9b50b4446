package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Parse reads whatever a client sends, and Restore what the server answers.
// Neither panics; what it hands on is
// JSON that mcp-go reads with the same method; the answer mcp-go makes of
// it, through Restore, carries the client's id byte for byte; and a refusal
// is a well-formed JSON-RPC error with a null id.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":"nano-vm-mcp/id:1","method":"ping"}`,
		`{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`,
		`{"jsonrpc":"2.0","ID":1e400,"Method":"ping","id":1.0}`,
		`{"jsonrpc":"2.0","id":"\u0041","method":"tools/list"}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9007199254740993}}`,
		`{"jsonrpc":"2.0","id":5,"result":{}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
	} {
		f.Add([]byte(seed))
	}
	s := server.NewMCPServer("t", "1")
	f.Fuzz(func(t *testing.T, msg []byte) {
		// Restore reads the server's answers; without a stand-in in them it
		// changes nothing.
		if r := Restore(msg); !bytes.Contains(msg, []byte(standIn)) && !bytes.Equal(r, msg) {
			t.Fatalf("Restore changed %q into %q", msg, r)
		}
		m, err := Parse(msg)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T %v", err, err)
			}
			var a mcp.JSONRPCError
			if json.Unmarshal(e.Answer(), &a) != nil || !a.ID.IsNil() || a.Error.Code != e.Code {
				t.Fatalf("answer %s", e.Answer())
			}
			return
		}
		var seen struct {
			Method string `json:"method"`
		}
		if err := json.Unmarshal(m.Body, &seen); err != nil || seen.Method != m.Method {
			t.Fatalf("handed on %q (%v), method %q, want %q", m.Body, err, seen.Method, m.Method)
		}
		if m.ID == nil || m.Method == "" || m.Method == string(mcp.MethodNotificationCancelled) {
			return
		}
		resp := s.HandleMessage(t.Context(), m.Body)
		if resp == nil {
			return
		}
		b, err := json.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			ID json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(Restore(b), &env); err != nil {
			t.Fatalf("restored %s: %v", Restore(b), err)
		}
		if !bytes.Equal(env.ID, m.ID) && string(env.ID) != "null" {
			t.Fatalf("id %s answered as %s", m.ID, env.ID)
		}
	})
}
