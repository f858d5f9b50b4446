package jsonrpc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// throughMCPGo hands msg to a real mcp-go server, as the transports do,
// and returns its answer as the transports write it.
func throughMCPGo(t testing.TB, s *server.MCPServer, msg []byte) []byte {
	t.Helper()
	resp := s.HandleMessage(context.Background(), msg)
	if resp == nil {
		t.Fatalf("no answer to %s", msg)
	}
	b, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func answerID(t testing.TB, answer []byte) string {
	t.Helper()
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(answer, &env); err != nil {
		t.Fatalf("%s: %v", answer, err)
	}
	return string(env.ID)
}

// Every id a client may send comes back in mcp-go's answer exactly as
// written, through Parse and Restore; without them mcp-go rounds numbers
// through float64.
func TestIDsAreAnsweredAsGiven(t *testing.T) {
	s := server.NewMCPServer("t", "1")
	for _, id := range []string{
		`1`, `0`, `-5`, `"s"`, `""`, `"9007199254740993"`, `1.5`,
		`9007199254740993`, `9007199254740992`, `-9007199254740993`, `18446744073709551617`,
		`1.0`, `1e2`, `1E400`, `-0.0`, `123456789012345678901234567890`,
		`"nano-vm-mcp/id:7"`, `"nano-vm-mcp/id:{}"`, `"nano-vm-mcp\/id:9"`, `"\u0041<&>"`, `"é\n"`,
	} {
		t.Run(id, func(t *testing.T) {
			m, err := Parse([]byte(`{"jsonrpc":"2.0","id":` + id + `,"method":"ping"}`))
			if err != nil {
				t.Fatal(err)
			}
			if string(m.ID) != id || m.Method != "ping" || m.Response {
				t.Fatalf("parsed %+v", m)
			}
			if got := answerID(t, Restore(throughMCPGo(t, s, m.Body))); got != id {
				t.Fatalf("answered with id %s, want %s", got, id)
			}
		})
	}
}

// The ids mcp-go keeps reach it unchanged, byte for byte: only the ids it
// would change are replaced.
func TestOnlyChangedIDsGetAStandIn(t *testing.T) {
	for _, tc := range []struct {
		id      string
		standIn bool
	}{
		{`1`, false}, {`-5`, false}, {`"s"`, false}, {`1.5`, false}, {`9007199254740992`, false},
		{`9007199254740993`, true}, {`1.0`, true}, {`1e400`, true}, {`"nano-vm-mcp/id:1"`, true}, {`"\u0041"`, true},
	} {
		msg := `{"jsonrpc":"2.0", "id" : ` + tc.id + ` ,"method":"ping","params":{"id":2}}`
		m, err := Parse([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if changed := string(m.Body) != msg; changed != tc.standIn {
			t.Errorf("%s: body %s", tc.id, m.Body)
		}
		if tc.standIn && !bytes.Contains(m.Body, []byte(`"params":{"id":2}`)) {
			t.Errorf("%s: the rest changed: %s", tc.id, m.Body)
		}
	}
}

// JSON-RPC 2.0: an id is a string, a number or null. Anything else is an
// Invalid Request, answered with a null id; mcp-go itself would echo it.
func TestForbiddenIDsAreInvalidRequests(t *testing.T) {
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`,
		`{"jsonrpc":"2.0","id":[1],"method":"ping"}`,
		`{"jsonrpc":"2.0","id":[],"method":"tools/call"}`,
		`{"jsonrpc":"2.0","id":true,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":false,"method":"ping"}`,
		`{"jsonrpc":"2.0","ID":{},"method":"ping"}`,        // mcp-go matches member names without case
		`{"jsonrpc":"2.0","id":1,"id":{},"method":"ping"}`, // and takes the last
		`{"jsonrpc":"2.0","id":{},"result":{}}`,
	} {
		_, err := Parse([]byte(msg))
		var e *Error
		if !errors.As(err, &e) || e.Code != mcp.INVALID_REQUEST || IsParseError(err) {
			t.Errorf("%s: %v", msg, err)
			continue
		}
		var a map[string]any
		if err := json.Unmarshal(e.Answer(), &a); err != nil || a["id"] != nil || a["jsonrpc"] != "2.0" ||
			a["error"].(map[string]any)["code"] != float64(mcp.INVALID_REQUEST) {
			t.Errorf("answer %s", e.Answer())
		}
		if _, has := a["id"]; !has {
			t.Errorf("answer %s has no id member", e.Answer())
		}
	}
	for _, msg := range []string{`nope`, `{"jsonrpc":"2.0","id":1,"method":5}`, `[1]`, `{"id":1e400`} {
		if _, err := Parse([]byte(msg)); !IsParseError(err) {
			t.Errorf("%s: %v, want a parse error", msg, err)
		}
	}
}

func TestParseTellsResponsesAndNotifications(t *testing.T) {
	for _, tc := range []struct {
		msg      string
		id       string
		response bool
	}{
		{`{"jsonrpc":"2.0","id":3,"result":{}}`, `3`, true},
		{`{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"x"}}`, `3`, true},
		{`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`, ``, true},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, ``, false},
		{`{"jsonrpc":"2.0","id":null,"method":"notifications/initialized"}`, ``, false},
		{`{"jsonrpc":"2.0","id":3}`, `3`, false},
	} {
		m, err := Parse([]byte(tc.msg))
		if err != nil || string(m.ID) != tc.id || m.Response != tc.response {
			t.Errorf("%s: %+v %v", tc.msg, m, err)
		}
	}
}

// A cancellation names the call by its id: the call mcp-go runs under a
// stand-in is cancelled by the same stand-in.
func TestCancellationFindsAStandInCall(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{`9007199254740993`, standIn + base64.RawURLEncoding.EncodeToString([]byte(`9007199254740993`))},
		{`7`, ``},
	} {
		m, err := Parse([]byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + tc.id + `,"reason":"x"}}`))
		if err != nil {
			t.Fatal(err)
		}
		var n mcp.JSONRPCNotification
		if err := json.Unmarshal(m.Body, &n); err != nil {
			t.Fatal(err)
		}
		got := n.Params.AdditionalFields["requestId"]
		want := any(tc.want)
		if tc.want == "" {
			want = float64(7)
		}
		if got != want || n.Params.AdditionalFields["reason"] != "x" {
			t.Errorf("%s: requestId %#v, want %#v (%s)", tc.id, got, want, m.Body)
		}
	}
}

// Restore leaves alone what is not mcp-go's answer to a stand-in.
func TestRestoreLeavesOtherMessages(t *testing.T) {
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"text":"nano-vm-mcp/id:5"}}`,
		`{"jsonrpc":"2.0","id":"nano-vm-mcp/id:{}","result":{}}`,
		`{"jsonrpc":"2.0","id":"nano-vm-mcp/id:e30","result":{}}`, // {}
		`{"jsonrpc":"2.0","id":"nano-vm-mcp/id:","result":{}}`,
		`{"jsonrpc":"2.0","id":1,"method":"x","params":{"id":"nano-vm-mcp/id:5"}}`,
		`not json nano-vm-mcp/id:5`,
	} {
		if got := string(Restore([]byte(msg))); got != msg {
			t.Errorf("%s became %s", msg, got)
		}
	}
	s := standIn + base64.RawURLEncoding.EncodeToString([]byte("12"))
	in := fmt.Sprintf(`{"jsonrpc":"2.0","id":%q,"result":{"id":%q}}`, s, s)
	want := fmt.Sprintf(`{"jsonrpc":"2.0","id":12,"result":{"id":%q}}`, s)
	if got := string(Restore([]byte(in))); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
