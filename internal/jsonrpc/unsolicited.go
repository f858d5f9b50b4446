package jsonrpc

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A client may send any number of responses that answer nothing: each is
// worth one debug line at most, never an error with a stack trace, and a
// flood of them must not fill the log.
const (
	// UnsolicitedLines is how many lines unsolicited responses may take
	// in one UnsolicitedWindow; the rest are counted, and the count is
	// logged with the next line.
	UnsolicitedLines  = 10
	UnsolicitedWindow = time.Minute
	// idShown bounds how much of a client's id a line shows.
	idShown = 64
)

// Unsolicited logs the responses a client sends that answer no request
// of the server's: at debug, without a stack trace, at most
// UnsolicitedLines a UnsolicitedWindow for the whole process. A nil
// *Unsolicited logs nothing.
type Unsolicited struct {
	log *zap.Logger
	now func() time.Time

	mu      sync.Mutex
	since   time.Time // the start of the current window
	logged  int       // lines in the current window
	dropped int       // responses not logged since the last line
}

// NewUnsolicited logs to log.
func NewUnsolicited(log *zap.Logger) *Unsolicited {
	return &Unsolicited{log: log, now: time.Now}
}

// Note records one unsolicited response: the transport it came by, its
// id as the client wrote it (nil if none), and why nobody waits for it.
func (u *Unsolicited) Note(transport string, id json.RawMessage, why string) {
	if u == nil || !u.log.Core().Enabled(zapcore.DebugLevel) {
		return
	}
	u.mu.Lock()
	if now := u.now(); now.Sub(u.since) >= UnsolicitedWindow {
		u.since, u.logged = now, 0
	}
	if u.logged >= UnsolicitedLines {
		u.dropped++
		u.mu.Unlock()
		return
	}
	u.logged++
	dropped := u.dropped
	u.dropped = 0
	u.mu.Unlock()
	fields := []zap.Field{zap.String("transport", transport), zap.String("reason", why), zap.Int("not_logged_before", dropped)}
	if id != nil {
		shown := string(id)
		if len(shown) > idShown {
			shown = shown[:idShown] + "…"
		}
		fields = append(fields, zap.String("id", shown))
	}
	u.log.Debug("dropped a JSON-RPC response from the client that answers no request of the server's", fields...)
}

// mcpUnsolicited is the message of mcp-go 1.2.1's Streamable HTTP transport
// when a response posted by a client answers no pending request of the
// server's (server/streamable_http.go); it logs it at error level.
const mcpUnsolicited = "Failed to handle sampling response"

// QuietUnsolicited wraps the slog handler given to mcp-go's Streamable HTTP
// transport: its error line for an unsolicited response becomes u's debug
// line; every other record passes through unchanged.
func QuietUnsolicited(h slog.Handler, u *Unsolicited) slog.Handler {
	return &quiet{Handler: h, u: u}
}

type quiet struct {
	slog.Handler
	u *Unsolicited
}

func (q *quiet) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != mcpUnsolicited {
		return q.Handler.Handle(ctx, r)
	}
	why := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			why = a.Value.String()
		}
		return true
	})
	q.u.Note("http", nil, why)
	return nil
}

func (q *quiet) WithAttrs(as []slog.Attr) slog.Handler {
	return &quiet{Handler: q.Handler.WithAttrs(as), u: q.u}
}

func (q *quiet) WithGroup(name string) slog.Handler {
	return &quiet{Handler: q.Handler.WithGroup(name), u: q.u}
}
