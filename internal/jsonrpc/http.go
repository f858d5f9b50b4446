package jsonrpc

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

// Options tune Handler.
type Options struct {
	// Rewrite, when set, may change the bytes of each answer; req is the
	// POST body it answers, nil for an answer on a GET stream.
	Rewrite func(req, resp []byte) []byte
	// NoServerRequests says that the transport never sends the client a
	// request (mcp-go's legacy SSE transport), so every response a client
	// posts is unsolicited: it is logged through Unsolicited and not
	// handled as a request.
	NoServerRequests bool
	// Unsolicited logs the unsolicited responses seen here.
	Unsolicited *Unsolicited
}

// neutral is what the handler reads in place of an unsolicited response,
// when NoServerRequests: a response mcp-go ignores, so that it still
// checks the session and answers 202 or its refusal, but sends nothing.
var neutral = []byte(`{"jsonrpc":"2.0","id":0,"result":{}}`)

// Handler wraps an MCP HTTP handler, Streamable HTTP or legacy SSE. A POST
// whose message has an id JSON-RPC forbids is answered here: 400 with
// -32600 and a null id. Any other message reaches next with its id
// replaced by a stand-in where mcp-go would not keep it (Parse), and every
// answer, in a JSON body or an SSE stream, gets its id back (Restore) and
// then passes through opt.Rewrite. A message that is not JSON is next's
// to refuse, as before.
func Handler(next http.Handler, opt Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req []byte
		if r.Method == http.MethodPost && r.Body != nil {
			body, err := io.ReadAll(r.Body)
			req = body
			m, perr := Parse(body)
			var refused *Error
			switch {
			case err != nil:
			case errors.As(perr, &refused) && !IsParseError(perr):
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				w.Write(append(refused.Answer(), '\n')) //nolint:errcheck // the client is gone
				return
			case perr != nil:
			case m.Response && opt.NoServerRequests:
				opt.Unsolicited.Note("sse", m.ID, "the legacy SSE transport sends the client no requests")
				body = neutral
			default:
				body = m.Body
			}
			// next reads the message, and the same error (a body over the
			// limit) after it.
			rest := io.Reader(bytes.NewReader(body))
			if err != nil {
				rest = io.MultiReader(rest, errReader{err})
			} else {
				r.ContentLength = int64(len(body))
			}
			r.Body = io.NopCloser(rest)
		}
		lw := &lineWriter{ResponseWriter: w, fix: func(msg []byte) []byte {
			msg = Restore(msg)
			if opt.Rewrite != nil {
				msg = opt.Rewrite(req, msg)
			}
			return msg
		}}
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
	fix  func([]byte) []byte
	line []byte // the start of a line not yet complete
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.line = append(l.line, p...)
	for {
		i := bytes.IndexByte(l.line, '\n')
		if i < 0 {
			return len(p), nil
		}
		if _, err := l.ResponseWriter.Write(l.fixLine(l.line[:i+1])); err != nil {
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
		l.ResponseWriter.Write(l.fixLine(l.line)) //nolint:errcheck // the handler has returned or flushes; a broken connection shows on its next write
		l.line = nil
	}
}

func (l *lineWriter) fixLine(line []byte) []byte {
	j := bytes.IndexByte(line, '{')
	if j < 0 || (j > 0 && !bytes.HasPrefix(line, []byte("data:"))) {
		return line
	}
	end := len(bytes.TrimRight(line, "\r\n"))
	if end < j {
		return line
	}
	fixed := l.fix(line[j:end])
	return append(append(append([]byte{}, line[:j]...), fixed...), line[end:]...)
}
