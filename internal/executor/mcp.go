package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// The mcp executor: nano-vm-mcp as an MCP client of a downstream server,
// over stdio (a process it spawns) or Streamable HTTP, with mcp-go's client.
//
// Lifecycle. newMCP connects when the registry loads (initialize, then
// tools/list), so that an unreachable server, a missing binary or a server
// that does not list the tool is an error of the registry load, not of the
// first call; it also takes or checks the tool's pin (pin.go). One session
// then serves every call, concurrently. A session that dies (the stdio
// process exits, the HTTP server cannot be reached) fails the calls in
// flight with class transport and is replaced on the next call: a new
// process, a new initialize, a new tools/list and pin check. Check
// repeats the load-time checks on demand. docs/tools.md is the
// operator's account.

// IdempotencyKeyMeta is the member of a tools/call request's _meta that
// carries the call's idempotency key.
const IdempotencyKeyMeta = "nano-vm/idempotency-key"

// DefaultMCPTimeout bounds a call whose registry entry sets no timeout.
const DefaultMCPTimeout = 30 * time.Second

// mcpConnectTimeout bounds connecting when the registry loads (and for
// Pin): spawning the server, initialize and tools/list.
const mcpConnectTimeout = 30 * time.Second

// Downstream is what the executor of an mcp tool offers beyond Executor.
type Downstream interface {
	Executor
	// Check connects if need be, lists the downstream server's tools
	// again and compares the tool with its pin. It fails when the server
	// cannot be reached or no longer lists the tool, and returns a
	// *Failure of class drifted when the tool no longer matches its pin.
	Check(ctx context.Context) error
	// InputSchema is the downstream tool's input schema as last listed.
	InputSchema() any
}

// errToolNotListed marks a server that does not list the registry's tool.
var errToolNotListed = errors.New("the downstream server does not list the tool")

// newMCP builds the executor of a tool on a downstream MCP server and
// connects to it (see the comment at the top of this file).
func newMCP(t *Tool, o Options) (Executor, error) {
	d, err := newDialer(t, o)
	if err != nil {
		return nil, err
	}
	m := &mcpExec{d: d, now: o.Now}
	if o.Pins != "" {
		m.pins = o.mcpPath(o.Pins)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mcpConnectTimeout)
	defer cancel()
	if _, err := m.session(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// mcpPath resolves a registry path against the registry's directory.
func (o Options) mcpPath(p string) string {
	if p == "" || filepath.IsAbs(p) || o.RegistryDir == "" {
		return p
	}
	return filepath.Join(o.RegistryDir, p)
}

// dialer is what connecting to one tool's downstream server takes,
// resolved and checked when the registry loads.
type dialer struct {
	tool     string // the registry's name
	remote   string // the tool's name on the server
	identity string // the server's identity in the pins file
	argv     []string
	env      []string // NAME=value, the allowlisted names only
	url      string
	token    string // never logged, recorded or put in an error
	http     *http.Client
	timeout  time.Duration
	log      *zap.Logger
}

func newDialer(t *Tool, o Options) (*dialer, error) {
	spec := t.MCP
	if spec == nil {
		return nil, fmt.Errorf("tool %s is not an mcp tool", t.Name)
	}
	if spec.Tool == "" {
		return nil, errors.New("mcp: tool (the downstream tool's name) is required")
	}
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	d := &dialer{
		tool:    t.Name,
		remote:  spec.Tool,
		timeout: t.Timeout,
		log:     log.With(zap.String("tool", t.Name)),
	}
	if d.timeout <= 0 {
		d.timeout = DefaultMCPTimeout
	}
	switch {
	case len(spec.Command) > 0 && spec.URL != "":
		return nil, errors.New("mcp: give command (stdio) or url (Streamable HTTP), not both")
	case len(spec.Command) > 0:
		return d, d.stdio(spec, o)
	case spec.URL != "":
		return d, d.streamable(spec, o)
	}
	return nil, errors.New("mcp: command (stdio) or url (Streamable HTTP) is required")
}

// stdio resolves the command and the environment of a stdio server.
func (d *dialer) stdio(spec *MCPSpec, o Options) error {
	if spec.TokenFile != "" {
		return errors.New("mcp: token_file is for a url server; pass a stdio server its secrets through env")
	}
	name := spec.Command[0]
	if strings.ContainsRune(name, filepath.Separator) {
		name = o.mcpPath(name)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("mcp: command %q: %v", spec.Command[0], err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return fmt.Errorf("mcp: command %q: %v", spec.Command[0], err)
	}
	d.argv = append([]string{path}, spec.Command[1:]...)
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	for _, n := range spec.Env {
		if v := getenv(n); v != "" {
			d.env = append(d.env, n+"="+v)
		}
	}
	id, err := json.Marshal(spec.Command)
	if err != nil {
		return err
	}
	d.identity = "stdio:" + string(id)
	return nil
}

// streamable checks the URL of a Streamable HTTP server and reads its
// token.
func (d *dialer) streamable(spec *MCPSpec, o Options) error {
	if len(spec.Env) > 0 {
		return errors.New("mcp: env is for a stdio server")
	}
	u, err := url.Parse(spec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("mcp: url %q is not an http or https URL", spec.URL)
	}
	if u.User != nil {
		return errors.New("mcp: url carries credentials; put the bearer token in token_file")
	}
	if spec.TokenFile != "" {
		b, err := os.ReadFile(o.mcpPath(spec.TokenFile))
		if err != nil {
			return fmt.Errorf("mcp: token_file: %v", err)
		}
		if d.token = strings.TrimSpace(string(b)); d.token == "" {
			return fmt.Errorf("mcp: token_file %s is empty", spec.TokenFile)
		}
	}
	d.url = spec.URL
	d.identity = spec.URL
	d.http = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	return nil
}

// connectTimeout bounds a connection made outside a call.
func (d *dialer) connectTimeout() time.Duration { return mcpConnectTimeout }

// session is one connection to a downstream server.
type session struct {
	c      *client.Client
	proc   *stdioProc // nil over HTTP
	cancel context.CancelFunc
	dead   atomic.Bool
	stale  atomic.Bool // the server announced notifications/tools/list_changed
	listen func()      // stops the subscriptions/listen stream; nil without one
	once   sync.Once
}

// dial connects: a new process or HTTP client, initialize (mcp-go probes
// with server/discover and falls back to the initialize handshake), and on
// a 2026-07-28 connection a subscriptions/listen stream for
// notifications/tools/list_changed, which older connections get without
// asking. onListChanged, if set, is called on each such notification.
func (d *dialer) dial(ctx context.Context, onListChanged func()) (*session, error) {
	s := &session{}
	life, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	var tr transport.Interface
	if d.argv != nil {
		proc, t, err := startStdio(d.argv, d.env, d.log, func() { s.dead.Store(true) })
		if err != nil {
			cancel()
			return nil, fmt.Errorf("cannot start the downstream server: %w", err)
		}
		s.proc, tr = proc, t
	} else {
		opts := []transport.StreamableHTTPCOption{
			transport.WithHTTPBasicClient(d.http),
			transport.WithHTTPLogger(slog.New(zapslog.NewHandler(d.log.Core()))),
		}
		if d.token != "" {
			opts = append(opts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + d.token}))
		}
		t, err := transport.NewStreamableHTTP(d.url, opts...)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("cannot reach the downstream server: %w", err)
		}
		tr = t
	}
	s.c = client.NewClient(tapped(tr), client.WithMaxInputRoundTrips(1))
	acked := make(chan struct{})
	var ackOnce sync.Once
	s.c.OnNotification(func(n mcp.JSONRPCNotification) {
		switch n.Method {
		case mcp.MethodNotificationToolsListChanged:
			s.stale.Store(true)
			if onListChanged != nil {
				onListChanged()
			}
		case mcp.MethodNotificationSubscriptionsAcknowledged:
			ackOnce.Do(func() { close(acked) })
		}
	})
	fail := func(format string, err error) (*session, error) {
		s.close()
		if why := s.procEnded(); why != "" {
			return nil, fmt.Errorf(format+" (%s)", err, why)
		}
		return nil, fmt.Errorf(format, err)
	}
	if err := s.c.Start(life); err != nil {
		return fail("cannot reach the downstream server: %w", err)
	}
	init, err := s.c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ClientInfo: mcp.Implementation{Name: "nano-vm-mcp", Version: clientVersion()},
	}})
	if err != nil {
		return fail("cannot reach the downstream server: initialize: %w", err)
	}
	if tools := init.Capabilities.Tools; tools != nil && tools.ListChanged && mcp.IsModernProtocol(s.c.ProtocolVersion()) {
		failed := make(chan error, 1)
		var watching atomic.Bool
		stop, err := s.c.ListenAsync(life, mcp.SubscriptionFilter{ToolsListChanged: true}, func(err error) {
			if watching.Load() {
				// The stream broke (the server restarted, say): a change
				// could now go unannounced, so the next call reconnects,
				// lists the tool again and subscribes anew.
				s.dead.Store(true)
				return
			}
			select {
			case failed <- err:
			default:
			}
		})
		if err != nil {
			return fail("cannot reach the downstream server: subscriptions/listen: %w", err)
		}
		s.listen = stop
		// Wait for the server to confirm, so that no change made after
		// the pin check goes unannounced.
		select {
		case <-acked:
			watching.Store(true)
		case err := <-failed:
			d.log.Debug("downstream server refused subscriptions/listen; tools/list_changed is not watched", zap.Error(err))
		case <-ctx.Done():
			return fail("cannot reach the downstream server: subscriptions/listen: %w", ctx.Err())
		}
	}
	d.log.Debug("downstream MCP server connected", zap.String("server", d.identity), zap.String("protocol", s.c.ProtocolVersion()))
	return s, nil
}

// clientVersion is the version nano-vm-mcp gives in its clientInfo.
func clientVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// procEnded says why a stdio session's process ended, or "".
func (s *session) procEnded() string {
	if s.proc == nil {
		return ""
	}
	return s.proc.why()
}

// list lists the server's tools and reads the named one from the raw
// results (see tap).
func (s *session) list(ctx context.Context, name string) (*listedTool, error) {
	ctx, raw := withRaw(ctx, string(mcp.MethodToolsList))
	if _, err := s.c.ListTools(ctx, mcp.ListToolsRequest{}); err != nil {
		return nil, fmt.Errorf("tools/list: %w", err)
	}
	t, err := findTool(raw.results(), name)
	if err != nil && strings.Contains(err.Error(), "does not list") {
		return nil, fmt.Errorf("%w: %v", errToolNotListed, err)
	}
	return t, err
}

// close ends the session: the listen stream, the client (which closes a
// stdio server's stdin), then the process (killed if it lingers).
func (s *session) close() {
	s.once.Do(func() {
		s.dead.Store(true)
		if s.listen != nil {
			s.listen()
		}
		s.c.Close() //nolint:errcheck // the session is gone either way
		if s.proc != nil {
			s.proc.stop()
		}
		s.cancel()
	})
}

// mcpExec is the mcp executor.
type mcpExec struct {
	d    *dialer
	pins string // the pins file; "": pins in memory
	now  func() time.Time
	// onListChanged, when set, is called on each
	// notifications/tools/list_changed (tests wait on it).
	onListChanged atomic.Pointer[func()]

	mu       sync.Mutex
	sess     *session
	dialing  *dialing
	closed   bool
	expected string // the pin calls must match
	actual   string // the tool's pin as last listed
	schema   any    // the tool's input schema as last listed
}

// dialing is a connection under way, which other callers wait for.
type dialing struct {
	done chan struct{}
	err  error
}

var errClosed = errors.New("the executor is closed")

// session returns the live session, connecting if there is none: one
// caller connects, the others wait for it.
func (m *mcpExec) session(ctx context.Context) (*session, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errClosed
	}
	if s := m.sess; s != nil && !s.dead.Load() {
		m.mu.Unlock()
		return s, nil
	}
	if dl := m.dialing; dl != nil {
		m.mu.Unlock()
		select {
		case <-dl.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if dl.err != nil {
			return nil, dl.err
		}
		return m.session(ctx)
	}
	old := m.sess
	m.sess = nil
	dl := &dialing{done: make(chan struct{})}
	m.dialing = dl
	m.mu.Unlock()
	if old != nil {
		// Reap the dead session's process off the caller's path.
		go old.close()
		m.d.log.Info("reconnecting to the downstream server", zap.String("server", m.d.identity))
	}

	s, err := m.connect(ctx)
	m.mu.Lock()
	m.dialing = nil
	if err == nil && m.closed {
		err = errClosed
	} else if err == nil {
		m.sess = s
	}
	m.mu.Unlock()
	if err != nil && s != nil {
		s.close()
	}
	dl.err = err
	close(dl.done)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// connect dials, lists the tool and settles its pin.
func (m *mcpExec) connect(ctx context.Context) (*session, error) {
	s, err := m.d.dial(ctx, m.listChanged)
	if err != nil {
		return nil, err
	}
	if err := m.relist(ctx, s); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// listChanged records a notifications/tools/list_changed.
func (m *mcpExec) listChanged() {
	if f := m.onListChanged.Load(); f != nil {
		(*f)()
	}
}

// relist lists the tool again and settles its pin: the pins file's entry
// when it is for this server and tool, otherwise (first load, or the
// registry now names another server) a new pin, written to the file.
func (m *mcpExec) relist(ctx context.Context, s *session) error {
	lt, err := s.list(ctx, m.d.remote)
	if err != nil {
		return err
	}
	actual, err := lt.pin()
	if err != nil {
		return err
	}
	expected, err := m.expectedPin(actual)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.actual, m.expected, m.schema = actual, expected, lt.InputSchema
	m.mu.Unlock()
	if expected != actual {
		m.d.log.Warn("downstream tool no longer matches its pin; its calls are refused until it is re-pinned",
			zap.String("server", m.d.identity), zap.String("pinned", pinPrefix(expected)), zap.String("listed", pinPrefix(actual)))
	}
	return nil
}

// expectedPin is the pin the tool must match, taking it from actual when
// there is none yet.
func (m *mcpExec) expectedPin(actual string) (string, error) {
	if m.pins == "" {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.expected == "" {
			return actual, nil
		}
		return m.expected, nil
	}
	pins, err := readPins(m.pins)
	if err != nil {
		return "", err
	}
	if e, ok := pins[m.d.tool]; ok {
		if e.Server == m.d.identity && e.DownstreamTool == m.d.remote {
			return e.Pin, nil
		}
		m.d.log.Warn("the pin was taken for another server or downstream tool; pinning anew",
			zap.String("pinned_server", e.Server), zap.String("server", m.d.identity))
	}
	e := PinEntry{Tool: m.d.tool, Server: m.d.identity, DownstreamTool: m.d.remote, Pin: actual, PinnedAt: stamp(m.now)}
	if err := writePins(m.pins, e); err != nil {
		return "", err
	}
	m.d.log.Info("downstream tool pinned", zap.String("server", m.d.identity), zap.String("pin", pinPrefix(actual)))
	return actual, nil
}

// drifted returns the drifted failure when the tool as last listed does
// not match its pin. The pins file is read again first: the operator may
// have re-pinned since.
func (m *mcpExec) drifted() *Failure {
	m.mu.Lock()
	expected, actual := m.expected, m.actual
	m.mu.Unlock()
	if expected == actual {
		return nil
	}
	if m.pins != "" {
		if pins, err := readPins(m.pins); err == nil {
			if e, ok := pins[m.d.tool]; ok && e.Server == m.d.identity && e.DownstreamTool == m.d.remote {
				expected = e.Pin
				m.mu.Lock()
				m.expected = expected
				m.mu.Unlock()
			}
		}
		if expected == actual {
			return nil
		}
	}
	return Fail(ClassDrifted, "downstream tool %q no longer matches its pin (pinned %s…, listed now %s…): review the change, then re-pin with nano-vm-mcp tools pin",
		m.d.remote, pinPrefix(expected), pinPrefix(actual))
}

// Invoke calls the downstream tool with the call's arguments and its
// idempotency key in _meta, within the tool's timeout.
func (m *mcpExec) Invoke(ctx context.Context, c Call) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, m.d.timeout)
	defer cancel()
	s, err := m.session(ctx)
	if err != nil {
		return nil, m.failure(ctx, nil, err)
	}
	if s.stale.Swap(false) {
		if err := m.relist(ctx, s); err != nil {
			s.stale.Store(true)
			return nil, m.failure(ctx, s, err)
		}
	}
	if f := m.drifted(); f != nil {
		return nil, f
	}
	args := c.Arguments
	if args == nil {
		args = map[string]any{}
	}
	req := mcp.CallToolRequest{Params: mcp.CallToolParams{Name: m.d.remote, Arguments: args}}
	if c.IdempotencyKey != "" {
		req.Params.Meta = &mcp.Meta{AdditionalFields: map[string]any{IdempotencyKeyMeta: c.IdempotencyKey}}
	}
	ctx, raw := withRaw(ctx, string(mcp.MethodToolsCall))
	_, err = s.c.CallTool(ctx, req)
	// The result's text, when there is one, is decoded here whatever
	// mcp-go made of it (see tap).
	if pages := raw.results(); len(pages) > 0 {
		return decodeCallResult(pages[len(pages)-1])
	}
	if err == nil {
		err = errors.New("no result")
	}
	return nil, m.failure(ctx, s, err)
}

// failure classifies an error of connecting or calling.
func (m *mcpExec) failure(ctx context.Context, s *session, err error) *Failure {
	var f *Failure
	switch {
	case errors.As(err, &f):
		return f
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Fail(ClassTimeout, "no answer from the downstream server within the tool's timeout (%s)", m.d.timeout)
	case ctx.Err() != nil:
		return Fail(ClassTransport, "the call was cancelled before the downstream server answered")
	case errors.Is(err, errClosed):
		return Fail(ClassTransport, "the executor is closed")
	case errors.Is(err, errToolNotListed):
		return Fail(ClassDrifted, "%s", bounded(err.Error()))
	case s == nil:
		return Fail(ClassTransport, "%s", bounded(err.Error()))
	}
	var te *transport.Error
	if errors.As(err, &te) || s.dead.Load() {
		s.dead.Store(true)
		if why := s.procEnded(); why != "" {
			return Fail(ClassTransport, "the downstream server's process ended during the call: %s", why)
		}
		return Fail(ClassTransport, "the downstream server could not be reached: %s", bounded(err.Error()))
	}
	// A JSON-RPC error: the server refused the call (unknown tool,
	// arguments its schema rejects, an internal error).
	return Fail(ClassToolError, "the downstream server refused the call: %s", bounded(err.Error()))
}

// Check implements Downstream.
func (m *mcpExec) Check(ctx context.Context) error {
	s, err := m.session(ctx)
	if err != nil {
		return err
	}
	if err := m.relist(ctx, s); err != nil {
		return err
	}
	if f := m.drifted(); f != nil {
		return f
	}
	return nil
}

// InputSchema implements Downstream.
func (m *mcpExec) InputSchema() any {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.schema
}

// Close ends the session; later calls fail with class transport.
func (m *mcpExec) Close() error {
	m.mu.Lock()
	m.closed = true
	s := m.sess
	m.sess = nil
	m.mu.Unlock()
	if s != nil {
		s.close()
	}
	if m.d.http != nil {
		m.d.http.CloseIdleConnections()
	}
	return nil
}
