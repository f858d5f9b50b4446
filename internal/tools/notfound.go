package tools

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// A resource that is not found, or that the caller may not read, is a
// JSON-RPC error with the protocol's code: -32002 up to revision 2025-11-25,
// -32602 from 2026-07-28. mcp-go 1.2.1 answers every error a resource
// handler returns with -32603 (internal error), so the handlers return
// notFound, and the transports put the code of the request's era into the
// answer: internal/stdio through FixNotFound, HTTP through NotFoundCodes.

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
func FixNotFound(req, resp []byte) []byte {
	return fixNotFound(resp, modernRequest(req))
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

func fixNotFound(resp []byte, modern bool) []byte {
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
	if modern {
		code = mcp.INVALID_PARAMS
	}
	// Without data, the error's code is the only "code" member outside a
	// string (quotes inside strings are escaped): the rest stays byte for
	// byte as mcp-go wrote it.
	return bytes.Replace(resp, internalCode, fmt.Appendf(nil, `"code":%d`, code), 1)
}

// NotFoundCodes wraps an MCP HTTP handler, Streamable HTTP or legacy SSE,
// so that its not-found answers carry the protocol's code (FixNotFound).
// The answer to a POST, JSON or an SSE stream, takes the era of the
// POST's body. Answers on a GET stream (the legacy SSE transport, which
// only legacy clients use) take the legacy code.
func NotFoundCodes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		modern := false
		if r.Method == http.MethodPost && r.Body != nil {
			body, err := io.ReadAll(r.Body)
			modern = modernRequest(body)
			// The handler reads the same bytes, and the same error (a body
			// over the limit) after them.
			rest := io.Reader(bytes.NewReader(body))
			if err != nil {
				rest = io.MultiReader(rest, errReader{err})
			}
			r.Body = io.NopCloser(rest)
		}
		lw := &lineWriter{ResponseWriter: w, modern: modern}
		next.ServeHTTP(lw, r)
		lw.flushLine()
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// lineWriter passes a response through line by line, fixing each JSON-RPC
// message it carries: a JSON body, or an SSE "data:" line. mcp-go writes
// every message as whole lines.
type lineWriter struct {
	http.ResponseWriter
	modern bool
	line   []byte // the start of a line not yet complete
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.line = append(l.line, p...)
	for {
		i := bytes.IndexByte(l.line, '\n')
		if i < 0 {
			return len(p), nil
		}
		if _, err := l.ResponseWriter.Write(l.fix(l.line[:i+1])); err != nil {
			return 0, err
		}
		l.line = l.line[i+1:]
	}
}

// Flush sends an incomplete line too: a stream must not stall on it.
func (l *lineWriter) Flush() {
	l.flushLine()
	if f, ok := l.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (l *lineWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

func (l *lineWriter) flushLine() {
	if len(l.line) > 0 {
		l.ResponseWriter.Write(l.fix(l.line)) //nolint:errcheck // the handler has returned or flushes; a broken connection shows on its next write
		l.line = nil
	}
}

func (l *lineWriter) fix(line []byte) []byte {
	j := bytes.IndexByte(line, '{')
	if j < 0 || (j > 0 && !bytes.HasPrefix(line, []byte("data:"))) {
		return line
	}
	end := len(bytes.TrimRight(line, "\r\n"))
	if end < j {
		return line
	}
	fixed := fixNotFound(line[j:end], l.modern)
	return append(append(append([]byte{}, line[:j]...), fixed...), line[end:]...)
}
