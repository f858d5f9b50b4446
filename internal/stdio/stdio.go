// Package stdio serves an MCP server over newline-delimited JSON-RPC on a
// reader and a writer: the stdio transport.
//
// It replaces mcp-go's StdioServer.Listen, which cancels every call in
// flight and can leave queued calls unanswered when its input ends or its
// context is cancelled. Here every call read is answered before Serve
// returns: at the end of input without a time limit; after a signal (ctx
// cancelled) within a grace period, during which input is still read for
// the client's answers to the calls in flight, and new calls are refused.
// The client's answers to the server's own requests (elicitation/create
// for legacy clients) go to the call waiting for them, and any other
// response from the client is dropped (internal/jsonrpc logs it); server
// notifications are written as they come. Ids are answered exactly as the
// client wrote them, and ids JSON-RPC forbids are refused (jsonrpc.Parse).
package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonrpc"
)

// Options tune Serve.
type Options struct {
	// Grace bounds how long calls in flight may finish once ctx is
	// cancelled; then their context is cancelled and Serve returns.
	Grace time.Duration
	// Rewrite, when set, may change the bytes of each answer before it
	// is written; req is the request it answers.
	Rewrite func(req, resp []byte) []byte
	// Log receives what cannot be told to the client (write failures,
	// recovered panics). Nil logs nothing.
	Log *zap.Logger
	// Unsolicited logs the client's responses that answer no request of
	// the server's; nil: a jsonrpc.Unsolicited of Log's.
	Unsolicited *jsonrpc.Unsolicited
}

// ErrInputEnded is the error of a server-to-client request that cannot be
// answered because the client's input has ended.
var ErrInputEnded = errors.New("the client's input has ended: no answer can arrive")

// Serve reads JSON-RPC messages, one a line, from in and writes the answers
// to out. It returns once in has ended and every call is answered (nil, or
// the read error), or once ctx is cancelled and every call in flight is
// answered or the grace period is over (nil). Calls run concurrently;
// initialize and notifications are handled in the order they are read, so
// a call piped right after initialize sees the client's capabilities.
func Serve(ctx context.Context, s *server.MCPServer, in io.Reader, out io.Writer, opt Options) error {
	if opt.Log == nil {
		opt.Log = zap.NewNop()
	}
	if opt.Unsolicited == nil {
		opt.Unsolicited = jsonrpc.NewUnsolicited(opt.Log)
	}
	c := &conn{srv: s, opt: opt, out: out}
	c.sess = &session{c: c, notes: make(chan mcp.JSONRPCNotification, 100), pending: map[int64]chan reply{}}
	if err := s.RegisterSession(ctx, c.sess); err != nil {
		return fmt.Errorf("stdio session: %w", err)
	}
	defer s.UnregisterSession(context.WithoutCancel(ctx), c.sess.SessionID())

	// Calls get a context of their own: a signal stops new calls, and only
	// the end of the grace period cancels the calls still running.
	calls, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()
	calls = s.WithContext(calls, c.sess)

	stopNotes, notesDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(notesDone)
		for {
			select {
			case n := <-c.sess.notes:
				c.writeMessage(n)
			case <-stopNotes:
				return
			}
		}
	}()

	lines, stopRead := make(chan []byte), make(chan struct{})
	defer close(stopRead)
	readErr := make(chan error, 1)
	go func() { readErr <- readLines(in, lines, stopRead) }()

	var (
		err      error
		signal   = ctx.Done()
		stopping bool             // after a signal: no new call is run
		grace    <-chan time.Time // after a signal: the end of the drain
		drained  chan struct{}    // closed once every call read is answered
	)
	drain := func() {
		if drained == nil {
			drained = make(chan struct{})
			go func() { c.inflight.Wait(); close(drained) }()
		}
	}
loop:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if err = <-readErr; errors.Is(err, io.EOF) {
					err = nil
				}
				// No answer to a request of ours can arrive any more: the
				// calls waiting for one get an error and answer.
				lines = nil
				c.sess.end()
				drain()
				continue
			}
			c.dispatch(calls, line, stopping)
		case <-signal:
			// Input is still read, for the client's answers to calls in
			// flight (an elicitation form being filled in).
			signal, stopping = nil, true
			opt.Log.Info("stdio: stopping; the calls in flight finish first, new calls are refused", zap.Duration("grace", opt.Grace))
			t := time.NewTimer(opt.Grace)
			defer t.Stop()
			grace = t.C
			drain()
		case <-drained:
			break loop
		case <-grace:
			opt.Log.Warn("stdio: calls still running at the end of the grace period are cancelled", zap.Duration("grace", opt.Grace))
			cancelCalls()
			break loop
		}
	}
	close(stopNotes)
	<-notesDone
	for {
		select {
		case n := <-c.sess.notes:
			c.writeMessage(n)
		default:
			return err
		}
	}
}

// readLines sends each non-blank line of in until in ends or stop is
// closed, then returns the error that ended it (nil for stop).
func readLines(in io.Reader, lines chan<- []byte, stop <-chan struct{}) error {
	defer close(lines)
	r := bufio.NewReader(in)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			select {
			case lines <- line:
			case <-stop:
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

type conn struct {
	srv      *server.MCPServer
	opt      Options
	sess     *session
	inflight sync.WaitGroup
	mu       sync.Mutex // one message a line: writes never interleave
	out      io.Writer
}

// dispatch routes one message: one that is not JSON-RPC, or has an id
// JSON-RPC forbids, is refused; the client's answer to a request of ours
// goes to the call waiting for it; notifications and initialize are
// handled in order; other requests run concurrently, or, once the server
// is stopping, are refused.
func (c *conn) dispatch(ctx context.Context, line []byte, stopping bool) {
	m, err := jsonrpc.Parse(bytes.TrimSpace(line))
	var refused *jsonrpc.Error
	if errors.As(err, &refused) {
		c.write(refused.Answer())
		return
	}
	switch {
	case m.Response:
		c.sess.answer(m)
	case m.ID == nil || m.Method == string(mcp.MethodInitialize):
		c.handle(ctx, m.ID, m.Body)
	case stopping:
		c.writeMessage(errorAnswer(m.ID, mcp.INTERNAL_ERROR, "the server is stopping (SIGINT or SIGTERM) and did not run this call; send it again once it is back"))
	default:
		c.inflight.Add(1)
		go func() {
			defer c.inflight.Done()
			c.handle(ctx, m.ID, m.Body)
		}()
	}
}

// handle runs one message through the server and writes its answer, if
// it has one, with the id as the client wrote it. A panicking handler
// answers an internal error instead of ending the process.
func (c *conn) handle(ctx context.Context, id json.RawMessage, msg []byte) {
	resp := func() (resp mcp.JSONRPCMessage) {
		defer func() {
			if r := recover(); r != nil {
				c.opt.Log.Error("stdio: panic in a handler", zap.Any("panic", r))
				if id != nil {
					resp = errorAnswer(id, mcp.INTERNAL_ERROR, fmt.Sprintf("internal error: %v", r))
				}
			}
		}()
		return c.srv.HandleMessage(ctx, msg)
	}()
	if resp == nil {
		return
	}
	b, err := json.Marshal(resp)
	if err != nil {
		c.opt.Log.Error("stdio: encode an answer", zap.Error(err))
		return
	}
	b = jsonrpc.Restore(b)
	if c.opt.Rewrite != nil {
		b = c.opt.Rewrite(msg, b)
	}
	c.write(b)
}

// errorAnswer answers the request of id (as the client wrote it) with an
// error.
func errorAnswer(id json.RawMessage, code int, msg string) mcp.JSONRPCMessage {
	return mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(id), Error: mcp.NewJSONRPCErrorDetails(code, msg, nil)}
}

func (c *conn) writeMessage(m any) error {
	b, err := json.Marshal(m)
	if err != nil {
		c.opt.Log.Error("stdio: encode a message", zap.Error(err))
		return err
	}
	return c.write(b)
}

func (c *conn) write(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.out.Write(append(b, '\n'))
	if err != nil {
		c.opt.Log.Warn("stdio: write to stdout", zap.Error(err))
	}
	return err
}

// session is the one client of a stdio connection, as mcp-go sees it:
// its capabilities and protocol version, its log level, its notification
// channel, and the server-to-client requests waiting for an answer.
type session struct {
	c     *conn
	notes chan mcp.JSONRPCNotification

	mu      sync.Mutex
	ready   bool
	level   mcp.LoggingLevel
	info    mcp.Implementation
	caps    mcp.ClientCapabilities
	version string
	lastID  int64
	pending map[int64]chan reply
	ended   bool
}

type reply struct {
	result json.RawMessage
	err    error
}

var (
	_ server.SessionWithLogging         = (*session)(nil)
	_ server.SessionWithClientInfo      = (*session)(nil)
	_ server.SessionWithProtocolVersion = (*session)(nil)
	_ server.SessionWithElicitation     = (*session)(nil)
)

func (s *session) SessionID() string { return "stdio" }

func (s *session) NotificationChannel() chan<- mcp.JSONRPCNotification { return s.notes }

// locked runs f under the session's lock.
func (s *session) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *session) Initialize() { s.locked(func() { s.ready, s.level = true, mcp.LoggingLevelError }) }

func (s *session) Initialized() (ok bool) { s.locked(func() { ok = s.ready }); return ok }

func (s *session) SetLogLevel(l mcp.LoggingLevel) { s.locked(func() { s.level = l }) }

func (s *session) GetLogLevel() (l mcp.LoggingLevel) {
	s.locked(func() { l = s.level })
	if l == "" {
		return mcp.LoggingLevelError
	}
	return l
}

func (s *session) GetClientInfo() (i mcp.Implementation) { s.locked(func() { i = s.info }); return i }

func (s *session) SetClientInfo(i mcp.Implementation) { s.locked(func() { s.info = i }) }

func (s *session) GetClientCapabilities() (c mcp.ClientCapabilities) {
	s.locked(func() { c = s.caps })
	return c
}

func (s *session) SetClientCapabilities(c mcp.ClientCapabilities) { s.locked(func() { s.caps = c }) }

func (s *session) ProtocolVersion() (v string) { s.locked(func() { v = s.version }); return v }

// SetProtocolVersion records the version initialize negotiated.
func (s *session) SetProtocolVersion(v string) { s.locked(func() { s.version = v }) }

// RequestElicitation asks the client for a form (legacy clients; mcp-go
// turns a multi round-trip request into this for them).
func (s *session) RequestElicitation(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	var res mcp.ElicitationResult
	if err := s.request(ctx, mcp.MethodElicitationCreate, req.Params, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// request sends a request to the client and waits for its answer.
func (s *session) request(ctx context.Context, method mcp.MCPMethod, params, result any) error {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return ErrInputEnded
	}
	s.lastID++
	id, ch := s.lastID, make(chan reply, 1)
	s.pending[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	err := s.c.writeMessage(struct {
		JSONRPC string `json:"jsonrpc"`
		ID      int64  `json:"id"`
		Method  string `json:"method"`
		Params  any    `json:"params"`
	}{mcp.JSONRPC_VERSION, id, string(method), params})
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		return json.Unmarshal(r.result, result)
	}
}

// answer hands the client's answer to the request waiting for it; an
// answer nobody waits for is dropped, with a rate-limited debug line.
func (s *session) answer(m jsonrpc.Message) {
	var n int64
	var ch chan reply
	if m.ID != nil && json.Unmarshal(m.ID, &n) == nil {
		s.mu.Lock()
		ch = s.pending[n]
		s.mu.Unlock()
	}
	if ch == nil {
		s.c.opt.Unsolicited.Note("stdio", m.ID, "no request of the server's waits for this id")
		return
	}
	var a struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	json.Unmarshal(m.Body, &a) //nolint:errcheck // Parse has read it
	r := reply{result: a.Result}
	if a.Error != nil {
		r.err = fmt.Errorf("the client answered with error %d: %s", a.Error.Code, a.Error.Message)
	}
	select {
	case ch <- r:
	default:
	}
}

// end fails the requests waiting for an answer, and every later one.
func (s *session) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	for _, ch := range s.pending {
		select {
		case ch <- reply{err: ErrInputEnded}:
		default:
		}
	}
}
