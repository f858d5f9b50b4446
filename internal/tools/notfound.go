package tools

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// A resource that is not found, or that the caller may not read, is a
// JSON-RPC error with the protocol's code: -32002 up to revision 2025-11-25,
// -32602 from 2026-07-28. mcp-go 1.2.1 answers every error a resource
// handler returns with -32603 (internal error), so the handlers return
// notFound, and the transports put the code of the request's era into the
// answer through FixNotFound: internal/stdio, and jsonrpc.Handler over HTTP.

// notFoundSuffix ends the message of every notFound answer, and of no
// other -32603 answer: it is how the transports tell them apart.
var notFoundSuffix = ": " + mcp.ErrResourceNotFound.Error()

// notFound is the error of a read whose resource does not exist or is not
// the caller's; the two answers are the same, so ids cannot be probed.
func notFound(uri string) error {
	return fmt.Errorf("%s: %w", uri, mcp.ErrResourceNotFound)
}

// FixNotFound returns resp, the answer to the JSON-RPC request req, with the
// resource-not-found code of req's protocol era if resp is the internal
// error mcp-go made of a notFound; any other answer is returned unchanged.
// The transports call it on every answer: req is read only for an answer
// that is a notFound, never on the way of any other.
func FixNotFound(req, resp []byte) []byte {
	if !bytes.Contains(resp, internalCode) {
		return resp
	}
	var m struct {
		Error *struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if json.Unmarshal(resp, &m) != nil || m.Error == nil || m.Error.Code != mcp.INTERNAL_ERROR ||
		m.Error.Data != nil || !strings.HasSuffix(m.Error.Message, notFoundSuffix) {
		return resp
	}
	code := mcp.RESOURCE_NOT_FOUND
	if modernRequest(req) {
		code = mcp.INVALID_PARAMS
	}
	// Without data, the error's code is the only "code" member outside a
	// string (quotes inside strings are escaped): the rest stays byte for
	// byte as mcp-go wrote it.
	return bytes.Replace(resp, internalCode, fmt.Appendf(nil, `"code":%d`, code), 1)
}

// modernRequest reports whether a request is of the 2026-07-28 era, the
// way mcp-go decides it: by the protocol version in its _meta.
func modernRequest(req []byte) bool {
	var m struct {
		Params struct {
			Meta *mcp.Meta `json:"_meta"`
		} `json:"params"`
	}
	if json.Unmarshal(req, &m) != nil {
		return false
	}
	return mcp.IsModernProtocol(m.Params.Meta.ProtocolVersion())
}

var internalCode = []byte(fmt.Sprintf(`"code":%d`, mcp.INTERNAL_ERROR))
