// Package jsonrpc keeps the JSON-RPC 2.0 envelope of MCP messages true at
// the transports, around mcp-go: an id JSON-RPC forbids (an object, an
// array, a boolean) is refused with Invalid Request; every other id is
// answered exactly as the client wrote it, byte for byte, even where
// mcp-go, which reads ids into interface{} (numbers as float64), would
// round or rewrite it (above 2^53, 1.0, 1e400, "\u0041"); and a response
// from the client that answers no request of the server's is dropped with
// one rate-limited debug line.
//
// internal/stdio calls Parse and Restore per message; Handler does the same
// around the HTTP transports.
package jsonrpc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// standIn prefixes the string id handed to mcp-go in place of an id it
// would not keep exactly; the rest of the string is the id as the client
// wrote it, in base64 (URL alphabet, no padding: nothing JSON escapes, and
// invalid UTF-8 survives), so an answer carries all that Restore needs, on
// any transport, without a table to keep or clean up.
const standIn = "nano-vm-mcp/id:"

// Message is what Parse read of a client's message.
type Message struct {
	// ID is the id as the client wrote it; nil when absent or null.
	ID json.RawMessage
	// Method is empty for a response.
	Method string
	// Response: no method, and a result or an error member. It answers a
	// request of the server's, or nothing (then it is unsolicited).
	Response bool
	// Body is the message to hand to mcp-go: the message itself, or, when
	// mcp-go would not keep its id (or a notifications/cancelled's
	// requestId) exactly, the message with that id replaced by a stand-in.
	Body []byte
}

// Error is a message Parse refuses: not JSON-RPC (-32700), or an id that
// JSON-RPC 2.0 forbids (-32600).
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Answer is the JSON-RPC error answer to the refused message. Its id is
// null, as JSON-RPC 2.0 requires when the request's id cannot be read.
func (e *Error) Answer() []byte {
	b, _ := json.Marshal(mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(nil), Error: mcp.NewJSONRPCErrorDetails(e.Code, e.Message, nil)})
	return b
}

var (
	errParse     = &Error{Code: mcp.PARSE_ERROR, Message: "Parse error"}
	errInvalidID = &Error{Code: mcp.INVALID_REQUEST, Message: "Invalid Request: a JSON-RPC id must be a string, a number or null; send the request again with one"}
)

// envelope reads a message the way mcp-go does (encoding/json: member
// names matched without regard to case, the last of duplicates wins), so
// that Parse sees the id and method mcp-go will see.
type envelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// Parse reads one client message. It refuses a message that is not a
// JSON-RPC object (-32700, as mcp-go does) and one whose id is an object,
// an array or a boolean (-32600); a *Error says which.
func Parse(msg []byte) (Message, error) {
	var env envelope
	if err := json.Unmarshal(msg, &env); err != nil {
		return Message{}, errParse
	}
	m := Message{ID: env.ID, Method: env.Method, Body: msg}
	if len(m.ID) == 0 || string(m.ID) == "null" {
		m.ID = nil
	} else if c := m.ID[0]; c == '{' || c == '[' || c == 't' || c == 'f' {
		return Message{}, errInvalidID
	}
	if m.Method == "" {
		m.Response = env.Result != nil || env.Error != nil
		return m, nil
	}
	if needsStandIn(m.ID) {
		m.Body = replaceMember(m.Body, func(k string) bool { return strings.EqualFold(k, "id") }, standInFor(m.ID))
	}
	if m.Method == string(mcp.MethodNotificationCancelled) {
		// mcp-go finds the call to cancel by the id it was given: a
		// stand-in for a stand-in.
		m.Body = replaceNested(m.Body, "params", "requestId")
	}
	return m, nil
}

// needsStandIn reports whether mcp-go would answer with other bytes than
// id: a number that does not survive float64 and back, a string written
// otherwise than encoding/json writes it ("\u0041", "<"), or a string that
// looks like a stand-in (so that no client id is ever taken for one).
func needsStandIn(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	if id[0] == '"' {
		var s string
		if json.Unmarshal(id, &s) != nil || strings.HasPrefix(s, standIn) {
			return true
		}
		back, err := json.Marshal(s)
		return err != nil || !bytes.Equal(back, id)
	}
	f, err := strconv.ParseFloat(string(id), 64)
	if err != nil {
		return true
	}
	back, err := json.Marshal(f)
	return err != nil || !bytes.Equal(back, id)
}

func standInFor(id json.RawMessage) []byte {
	return []byte(`"` + standIn + base64.RawURLEncoding.EncodeToString(id) + `"`)
}

// replaceNested replaces, inside the member outer (name matched as
// encoding/json does) of msg, the member inner (exact name, as mcp-go's
// params map has it) by its stand-in, if it needs one.
func replaceNested(msg []byte, outer, inner string) []byte {
	fold := func(k string) bool { return strings.EqualFold(k, outer) }
	start, end, ok := memberSpan(msg, fold)
	if !ok {
		return msg
	}
	exact := func(k string) bool { return k == inner }
	params := msg[start:end]
	s, e, ok := memberSpan(params, exact)
	if !ok || !needsStandIn(params[s:e]) {
		return msg
	}
	return replaceMember(msg, fold, replaceMember(params, exact, standInFor(params[s:e])))
}

// replaceMember returns msg with the value of its last top-level member
// whose name match accepts replaced by value; the rest stays byte for byte.
func replaceMember(msg []byte, match func(string) bool, value []byte) []byte {
	start, end, ok := memberSpan(msg, match)
	if !ok {
		return msg
	}
	out := make([]byte, 0, len(msg)-(end-start)+len(value))
	return append(append(append(out, msg[:start]...), value...), msg[end:]...)
}

// memberSpan finds the value of the last top-level member of the JSON
// object msg whose name match accepts: msg[start:end].
func memberSpan(msg []byte, match func(string) bool) (start, end int, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(msg))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, 0, false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return 0, 0, false
		}
		key, _ := t.(string)
		// The value starts after the name, blanks and the colon.
		from := int(dec.InputOffset())
		for from < len(msg) && strings.IndexByte(" \t\r\n:", msg[from]) >= 0 {
			from++
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, 0, false
		}
		if match(key) {
			start, end, ok = from, int(dec.InputOffset()), true
		}
	}
	return start, end, ok
}

// Restore puts back into an answer the id its request had, if mcp-go
// answered with a stand-in; any other answer is returned unchanged.
func Restore(answer []byte) []byte {
	if !bytes.Contains(answer, []byte(standIn)) {
		return answer
	}
	var env envelope
	var s string
	if json.Unmarshal(answer, &env) != nil || env.Method != "" || json.Unmarshal(env.ID, &s) != nil || !strings.HasPrefix(s, standIn) {
		return answer
	}
	id, err := base64.RawURLEncoding.DecodeString(s[len(standIn):])
	if err != nil || !json.Valid(id) || strings.IndexByte(`{[tfn`, id[0]) >= 0 {
		return answer
	}
	return replaceMember(answer, func(k string) bool { return k == "id" }, id)
}

// IsParseError reports whether err is Parse's refusal of a message that
// is not JSON-RPC at all.
func IsParseError(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == mcp.PARSE_ERROR
}
