package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/server"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/catalog"
	"github.com/nano-vm/nano-vm-mcp/internal/console"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonrpc"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/session"
	"github.com/nano-vm/nano-vm-mcp/internal/stdio"
	"github.com/nano-vm/nano-vm-mcp/internal/tools"
)

// Environment variables that hold the HTTP secrets. Secrets are never flag
// values: a flag shows in the process list and the shell history.
const (
	envAccessToken   = "NANO_VM_ACCESS_TOKEN"
	envOperatorToken = "NANO_VM_OPERATOR_TOKEN"
)

// shutdownGrace bounds how long in-flight requests may finish after SIGINT
// or SIGTERM.
const shutdownGrace = 10 * time.Second

type serveFlags struct {
	transport, addr, programsDir, profile string
	allowedHosts, allowedOrigins          []string
	accessTokenFile, operatorTokenFile    string
	approversFile, approvalChannel        string
	tokensFile                            string
	tokenIssuer, resourceURL              string
	maxBodyBytes                          int64
	runCacheSize, maxSessions             int
	sessionIdle                           time.Duration
	consolePublic                         bool
	consoleVerifyConcurrency              int
	toolLease, toolRecovery               time.Duration
	store                                 storeFlags
	tools                                 toolFlags
}

func newServeCmd(logLevel *string) *cobra.Command {
	var f serveFlags
	c := &cobra.Command{
		Use:   "serve [--transport stdio|http|sse]",
		Short: "Serve the runtime to MCP clients over stdio, Streamable HTTP or legacy SSE",
		Long: `Serve exposes the runtime as MCP tools, resources and a prompt. It speaks
every protocol revision from 2024-11-05 to 2026-07-28, with or without the
initialize handshake. Run state lives in the store, never in the transport
session: a run survives a restart and can be continued from any connection.

Transports:
  stdio  (default) JSON-RPC on stdin/stdout; logs go to stderr only.
  http   Streamable HTTP at http://ADDR/mcp, and the web console at
         http://ADDR/ui. Whenever any token (or a token issuer) is
         configured, the console asks for one: the operator signs in with
         the operator token, an approver at /ui/approvals with their own
         token (their inbox and the runs waiting for their role only);
         agents' tokens are refused there. Without any token, or with
         --console-public, a visitor without one reads it as the auditor
         (read-only, personal data redacted): docs/console.md.
  sse    the deprecated HTTP+SSE transport (GET /sse, POST /message), for
         old clients.

Profiles: the agent profile (the default) is what a model may reach: the
run tools, the drive_run prompt, program resources that show only the name,
description and input schema, and receipts. The operator profile adds the
program sources with their guards, traces, and the approve,
list_approvals, analyze and erase_subject tools. A caller holding an
approver's token has the approver profile: it reads and decides the runs
waiting for its role (list_approvals, get_run, get_receipt, verify_receipt,
list_programs, approve) and drives no run; nobody approves a run they
started or answered in (separation of duties). Over stdio --profile
chooses; over HTTP the operator token unlocks the operator profile, an
approver's token the approver profile, and every other caller is an agent.

HTTP security: the server binds to loopback by default and refuses foreign
Host and Origin headers on every path (DNS rebinding). Beyond loopback it
requires an access token (` + envAccessToken + ` or --access-token-file), an
agent tokens file (--tokens) or a --token-issuer, and --allowed-hosts. The
operator token comes from ` + envOperatorToken + ` or --operator-token-file.
Approvers (--approvers FILE) have their own tokens. Every holder of the
access token is the one principal "agent"; agents listed in --tokens FILE
have tokens of their own, and each is a principal with runs of its own.
Both files are checked every ` + access.DefaultReloadInterval.String() + ` and a changed file is put in force; an
invalid one is logged and the previous contents stay in force.
With --token-issuer, JWT access tokens from that OAuth authorization server
are accepted too (audience: this server; scope nano-vm:agent or
nano-vm:operator), and callers are told where to get one (RFC 9728).

Legacy-era sessions over HTTP belong to the principal that opened them:
an id never issued, deleted, expired (--session-idle-timeout) or another
principal's gets 404, and the client initializes again; 2026-07-28 requests
have no session. Memory stays bounded: at most --max-sessions-per-principal
sessions per principal, and --run-cache-size folded runs (--store memory
keeps every trace in memory by nature).

` + toolsUsage + `
A call that never ended (the server stopped while it ran) is taken over once
its lease (--tool-lease) has expired, checked at start and every
--tool-recovery: an idempotent tool is called again with the same
idempotency key; any other makes the run wait for an operator's
resolve_tool_call (status waiting_operator).

Every 10 seconds the server checks whether another process sharing the store
(nano-vm-mcp erase, another instance) erased a data subject, and if so stops
showing that subject's data.

At start, serve prints one line on stderr saying where clients reach it.

Over stdio, when stdin closes, every call already read is answered before
the server exits. SIGINT and SIGTERM stop the server after in-flight calls
finish, for up to 10 seconds (over stdio a call read after the signal is
refused); every step is appended atomically, so none is half-written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(*logLevel, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // stderr
			// mcp-go logs through slog and the log package: both go to zap,
			// hence to stderr at the chosen level, never to stdout.
			slog.SetDefault(slog.New(zapslog.NewHandler(log.Core())))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, f, log, cmd.ErrOrStderr())
		},
	}
	fs := c.Flags()
	fs.StringVar(&f.transport, "transport", "stdio", "stdio, http (Streamable HTTP at /mcp, the console at /ui) or sse (legacy HTTP+SSE)")
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "HTTP listen address (http, sse)")
	fs.StringVar(&f.programsDir, "programs", "", "directory whose program files (*.yaml, *.yml, *.json) are served beside the embedded examples; an invalid one stops the start")
	fs.StringVar(&f.profile, "profile", "agent", "stdio: agent (run tools only) or operator (also sources, traces, approve, list_approvals, analyze, erase_subject)")
	fs.StringSliceVar(&f.allowedHosts, "allowed-hosts", nil, "Host header values accepted beyond loopback names (comma-separated, host or host:port); required beyond loopback")
	fs.StringSliceVar(&f.allowedOrigins, "allowed-origins", nil, "browser origins (scheme://host[:port]) trusted for cross-origin requests")
	fs.StringVar(&f.accessTokenFile, "access-token-file", "", "file holding the bearer token every HTTP client must present (else "+envAccessToken+"); required beyond loopback")
	fs.StringVar(&f.operatorTokenFile, "operator-token-file", "", "file holding the bearer token that unlocks the operator profile over HTTP (else "+envOperatorToken+")")
	fs.StringVar(&f.approversFile, "approvers", "", "YAML file of approvers: id, role and the SHA-256 of their token")
	fs.StringVar(&f.tokensFile, "tokens", "", "http, sse: YAML file of agent principals: id and the SHA-256 of their token (each its own runs)")
	fs.StringVar(&f.approvalChannel, "approval-channel", "approvers", "approvers: only configured approvers decide (approve); elicitation: also the human at the client, through await_approval")
	fs.StringVar(&f.tokenIssuer, "token-issuer", "", "OAuth authorization server URL: serve protected-resource metadata (RFC 9728) and accept its JWT access tokens for this server (scopes nano-vm:agent, nano-vm:operator)")
	fs.StringVar(&f.resourceURL, "resource-url", "", "this server's public /mcp URL for the metadata (default: from each request)")
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", access.DefaultMaxBodyBytes, "largest HTTP request body accepted")
	fs.IntVar(&f.runCacheSize, "run-cache-size", service.DefaultMaxCachedRuns, "folded runs kept in memory between calls; the least recently used are dropped and refold from the store when next used")
	fs.DurationVar(&f.sessionIdle, "session-idle-timeout", session.DefaultIdleTimeout, "http: a legacy-era MCP session unused this long expires (its id then gets 404 and the client initializes again)")
	fs.IntVar(&f.maxSessions, "max-sessions-per-principal", session.DefaultMaxPerOwner, "http: legacy-era MCP sessions one principal may hold; a new one ends that principal's least recently used")
	fs.BoolVar(&f.consolePublic, "console-public", false, "let console visitors without a credential read it as the auditor (read-only, personal data redacted) even when tokens are configured")
	fs.IntVar(&f.consoleVerifyConcurrency, "console-verify-concurrency", console.DefaultVerifyConcurrency, "receipt verifications the console runs at once; more are answered 429 with Retry-After")
	fs.DurationVar(&f.toolLease, "tool-lease", service.DefaultLeaseTTL, "how long the lease on a runtime tool call lasts unless its holder renews it (every third of it); after a crash the call is taken over only once it has expired")
	fs.DurationVar(&f.toolRecovery, "tool-recovery", defaultToolRecovery, "how often the server looks for runtime tool calls whose lease has expired, to take them over")
	f.store.register(fs)
	f.tools.register(fs)
	return c
}

func serve(ctx context.Context, f serveFlags, log *zap.Logger, stderr io.Writer) error {
	if f.transport != "stdio" && f.transport != "http" && f.transport != "sse" {
		return &exitErr{exitUsage, fmt.Errorf("--transport must be stdio, http or sse, not %q", f.transport)}
	}
	profile, err := access.ParseProfile(f.profile)
	if err != nil {
		return &exitErr{exitUsage, fmt.Errorf("--profile: %w", err)}
	}
	if f.transport != "stdio" && profile == access.ProfileOperator {
		return &exitErr{exitUsage, errors.New("--profile operator applies to stdio; over HTTP the operator token (" + envOperatorToken + " or --operator-token-file) unlocks the operator profile")}
	}
	if f.runCacheSize < 1 || f.maxSessions < 1 || f.sessionIdle <= 0 {
		return &exitErr{exitUsage, errors.New("--run-cache-size and --max-sessions-per-principal must be at least 1, and --session-idle-timeout positive")}
	}
	if f.approvalChannel != "approvers" && f.approvalChannel != "elicitation" {
		return &exitErr{exitUsage, fmt.Errorf("--approval-channel must be approvers or elicitation, not %q", f.approvalChannel)}
	}
	if f.toolLease <= 0 || f.toolRecovery <= 0 {
		return &exitErr{exitUsage, fmt.Errorf("--tool-lease and --tool-recovery must be positive, not %s and %s", f.toolLease, f.toolRecovery)}
	}
	if f.consoleVerifyConcurrency < 1 {
		return &exitErr{exitUsage, fmt.Errorf("--console-verify-concurrency must be at least 1, not %d", f.consoleVerifyConcurrency)}
	}
	progs, err := loadServedPrograms(f.programsDir)
	if err != nil {
		return err
	}
	if f.tokensFile != "" && f.transport == "stdio" {
		return &exitErr{exitUsage, errors.New("--tokens applies to http and sse, where callers present bearer tokens; over stdio the caller is the principal local")}
	}
	// The credentials files are read now, where an invalid one stops the
	// start, and re-read while serving (credentials.Run below).
	credentials := access.NewReloader(log, nil)
	var approvers *access.Approvers
	if f.approversFile != "" {
		if approvers, err = credentials.Approvers(f.approversFile); err != nil {
			return &exitErr{exitUsage, err}
		}
	}
	var agents *access.Tokens
	if f.tokensFile != "" {
		if agents, err = credentials.Tokens(f.tokensFile); err != nil {
			return &exitErr{exitUsage, err}
		}
	}
	// An unsafe HTTP configuration is refused before anything is created
	// or connected to.
	var hc access.HTTPConfig
	if f.transport != "stdio" {
		if hc, err = httpConfig(f, approvers, agents); err != nil {
			return err
		}
		credentials.Reserve("the access token", hc.AccessToken)
		credentials.Reserve("the operator token", hc.OperatorToken)
	}
	warnClosedApprovalPaths(log, progs, approvers, f.approvalChannel == "elicitation")

	reg, o, err := f.tools.open(log, &f.store)
	if err != nil {
		return err
	}
	if reg != nil {
		defer reg.Close()
	}
	o.MaxCachedRuns = f.runCacheSize
	o.LeaseTTL = f.toolLease
	svc, st, keys, err := f.store.openService(ctx, log, o)
	if err != nil {
		return err
	}
	defer st.Close()
	defer svc.Close() // before the store closes: stops the tool calls in flight
	for _, p := range progs {
		if err := addPrograms(ctx, svc, p.Program, p.Source); err != nil {
			return err
		}
	}
	cfg := tools.Config{
		Service: svc, Store: st, Keys: keys, Profile: profile, Approvers: approvers,
		ElicitApprovals: f.approvalChannel == "elicitation", Version: runtime.Version, Log: log,
	}
	log.Info("serving", zap.String("transport", f.transport), zap.String("store", f.store.kind),
		zap.Int("programs", len(progs)), zap.String("profile", string(profile)))
	if _, err := svc.Recover(ctx); err != nil {
		log.Warn("tool call recovery", zap.Error(err))
	}
	// The background loops end, and are waited for, before the service and
	// the store close (defers run last first): over stdio, serve returns at
	// the end of input without ctx being cancelled.
	bg, stopBackground := context.WithCancel(ctx)
	var background sync.WaitGroup
	defer func() { stopBackground(); background.Wait() }()
	for _, loop := range []func(){
		func() { svc.SweepEvery(bg, time.Tick(deadlineSweep)) },
		func() { svc.RecoverEvery(bg, time.Tick(f.toolRecovery)) },
		func() { refreshKeys(bg, svc, log, time.Tick(keyRefresh)) },
		func() { credentials.Run(bg, time.Tick(access.DefaultReloadInterval)) },
	} {
		background.Add(1)
		go func() { defer background.Done(); loop() }()
	}

	if f.transport == "stdio" {
		// Not a log line: it shows at every level, and stdout stays JSON-RPC.
		fmt.Fprintln(stderr, "nano-vm-mcp: serving MCP on stdin/stdout (JSON-RPC, one message a line); logs go to stderr")
		err := stdio.Serve(ctx, tools.NewServer(cfg), os.Stdin, os.Stdout, stdio.Options{Grace: shutdownGrace, Rewrite: tools.FixNotFound, Log: log})
		if err != nil {
			return &exitErr{exitError, err}
		}
		return nil
	}
	hc.Log = log
	return serveHTTP(ctx, f, cfg, hc, log, stderr)
}

// httpConfig reads the HTTP secrets and checks the listener's safety.
func httpConfig(f serveFlags, approvers *access.Approvers, agents *access.Tokens) (access.HTTPConfig, error) {
	accessToken, err := access.ReadSecret(f.accessTokenFile, envAccessToken)
	if err != nil {
		return access.HTTPConfig{}, &exitErr{exitUsage, err}
	}
	operatorToken, err := access.ReadSecret(f.operatorTokenFile, envOperatorToken)
	if err != nil {
		return access.HTTPConfig{}, &exitErr{exitUsage, err}
	}
	hc := access.HTTPConfig{
		AllowedHosts: f.allowedHosts, AllowedOrigins: f.allowedOrigins,
		AccessToken: accessToken, OperatorToken: operatorToken, Approvers: approvers, Tokens: agents,
		MaxBodyBytes: f.maxBodyBytes, TokenIssuer: f.tokenIssuer, ResourceURL: f.resourceURL,
		ConsolePublic: f.consolePublic,
	}
	if err := hc.Validate(f.addr); err != nil {
		return access.HTTPConfig{}, &exitErr{exitUsage, err}
	}
	return hc, nil
}

// deadlineSweep is how often the service looks for tasks past their
// deadline (Service.Sweep, on its own clock): a KYC approval left for 72
// hours escalates on its own, also for runs started before a restart.
const deadlineSweep = 30 * time.Second

// defaultToolRecovery is how often the server looks for runtime tool
// calls whose holder stopped renewing their lease (Service.Recover):
// another instance of a shared store, or this one before a restart.
const defaultToolRecovery = 5 * time.Second

// keyRefresh is how often the server checks whether another process
// sharing the store (nano-vm-mcp erase, another instance) erased a subject.
const keyRefresh = 10 * time.Second

// refreshKeys drops the cached subject keys and opened runs on every tick
// at which the store's key epoch has moved: data erased elsewhere stops
// being readable here within one tick. Errors are logged; the next tick
// tries again.
func refreshKeys(ctx context.Context, svc *service.Service, log *zap.Logger, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		if err := svc.RefreshKeys(ctx); err != nil && ctx.Err() == nil {
			log.Error("key refresh: an erasure by another process may not be seen yet", zap.Error(err))
		}
	}
}

// serveHTTP serves the agent and the operator profile on one listener,
// behind the access guard; the caller's credentials choose the profile.
func serveHTTP(ctx context.Context, f serveFlags, cfg tools.Config, hc access.HTTPConfig, log *zap.Logger, stderr io.Writer) error {
	agentCfg, operatorCfg := cfg, cfg
	agentCfg.Profile, operatorCfg.Profile = access.ProfileAgent, access.ProfileOperator
	agent, operator := tools.NewServer(agentCfg), tools.NewServer(operatorCfg)
	// Around both transports: ids answered exactly as given, forbidden ids
	// refused, not-found codes per era, unsolicited responses logged once
	// at debug.
	unsolicited := jsonrpc.NewUnsolicited(log)
	mcpLog := slog.New(jsonrpc.QuietUnsolicited(zapslog.NewHandler(log.Core()), unsolicited))
	wrap := func(h http.Handler, sse bool) http.Handler {
		return jsonrpc.Handler(h, jsonrpc.Options{Rewrite: tools.FixNotFound, NoServerRequests: sse, Unsolicited: unsolicited})
	}

	// Open SSE streams would hold a graceful shutdown for its whole grace
	// period: closing the sessions when it begins ends them.
	var closeSessions []func()
	mux := http.NewServeMux()
	switch f.transport {
	case "http":
		a, o := streamable(ctx, agent, f, mcpLog), streamable(ctx, operator, f, mcpLog)
		closeSessions = append(closeSessions, func() { a.CloseSessions(context.Background()) }, func() { o.CloseSessions(context.Background()) })
		mux.Handle(access.MCPPath, wrap(byProfile(a, o), false))
		// The web console, on the same listener behind the same guard.
		ui, err := console.New(console.Config{Service: cfg.Service, Store: cfg.Store, Keys: cfg.Keys, Version: cfg.Version, Log: log,
			VerifyConcurrency: f.consoleVerifyConcurrency, Public: f.consolePublic})
		if err != nil {
			return &exitErr{exitError, err}
		}
		mux.Handle(access.ConsolePath, ui)
		mux.Handle(access.ConsolePath+"/", ui)
		mux.Handle(access.FaviconPath, ui)
	case "sse":
		// One registry for both profiles: an id is its principal's alone.
		sessions := session.New(session.Options{})
		a, o := legacySSE(agent, sessions), legacySSE(operator, sessions)
		closeSessions = append(closeSessions, a.CloseSessions, o.CloseSessions)
		h := wrap(sessions.SSE(byProfile(a, o)), true)
		mux.Handle("/sse", h)
		mux.Handle("/message", h)
	}
	srv := access.NewHTTPServer(f.addr, access.Guard(hc, mux))
	for _, c := range closeSessions {
		srv.RegisterOnShutdown(c)
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return &exitErr{exitError, err}
	}
	log.Info("listening", zap.String("addr", ln.Addr().String()), zap.String("transport", f.transport))
	fmt.Fprintln(stderr, listeningLine(f.transport, ln.Addr().String()))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return &exitErr{exitError, err}
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Streams still open after the grace period are cut; steps are
		// appended atomically, so none is half-written.
		_ = srv.Close()
	}
	return nil
}

// listeningLine is what serve prints on stderr once it listens, at every
// log level: where a client connects.
func listeningLine(transport, addr string) string {
	if transport == "sse" {
		return fmt.Sprintf("nano-vm-mcp: listening on http://%s (MCP legacy SSE: GET /sse, POST /message)", addr)
	}
	return fmt.Sprintf("nano-vm-mcp: listening on http://%s (MCP %s, console %s)", addr, access.MCPPath, access.ConsolePath)
}

// streamable serves one profile's MCP server over Streamable HTTP. The
// guard has already checked Host and Origin for the whole listener, so
// mcp-go's own loopback-only Host check is off: it would refuse the hosts
// --allowed-hosts admits. Legacy-era sessions are kept by a registry that
// binds each to its principal and expires it (internal/session); until ctx
// ends, expired sessions are swept and their state freed.
func streamable(ctx context.Context, s *server.MCPServer, f serveFlags, log *slog.Logger) closingHandler {
	var h *server.StreamableHTTPServer
	sessions := session.New(session.Options{
		IdleTimeout: f.sessionIdle, MaxPerOwner: f.maxSessions,
		Drop: func(id string) { session.DropVia(h, access.MCPPath)(id) },
	})
	h = server.NewStreamableHTTPServer(s,
		server.WithEndpointPath(access.MCPPath),
		server.WithDisableLocalhostProtection(true),
		server.WithHTTPContextFunc(principalFromRequest),
		server.WithStreamableHTTPLogger(log),
		server.WithSessionIdManagerResolver(sessions),
	)
	go sessions.Sweep(ctx, time.Tick(session.SweepInterval(f.sessionIdle)))
	return closingHandler{sessions.Middleware(h), h}
}

// closingHandler is a Streamable HTTP handler that can close its sessions
// at shutdown.
type closingHandler struct {
	http.Handler
	s *server.StreamableHTTPServer
}

func (c closingHandler) CloseSessions(ctx context.Context) { c.s.CloseSessions(ctx) }

// legacySSE serves one profile's MCP server over legacy SSE; sessions
// issues the stream's session ids, bound to its principal.
func legacySSE(s *server.MCPServer, sessions *session.Registry) *server.SSEServer {
	return server.NewSSEServer(s,
		server.WithSSEEndpoint("/sse"), server.WithMessageEndpoint("/message"),
		server.WithSSEContextFunc(principalFromRequest),
		server.WithSessionIDGenerator(sessions.SSEIDs),
	)
}

// principalFromRequest carries the guard's principal into the MCP
// handler's context.
func principalFromRequest(ctx context.Context, r *http.Request) context.Context {
	if p, ok := access.FromContext(r.Context()); ok {
		return access.WithPrincipal(ctx, p)
	}
	return ctx
}

// byProfile routes a request to the operator server when the guard
// authenticated an operator, else to the agent server.
func byProfile(agent, operator http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := access.FromContext(r.Context()); ok && p.Profile == access.ProfileOperator {
			operator.ServeHTTP(w, r)
			return
		}
		agent.ServeHTTP(w, r)
	})
}

// loadServedPrograms is catalog.All with serve's exit codes: a --programs
// directory or file that cannot be read is a bad argument.
func loadServedPrograms(dir string) ([]catalog.Entry, error) {
	progs, err := catalog.All(dir)
	var pe *program.Error
	var de *catalog.DirError
	switch {
	case err == nil || errors.As(err, &pe):
		return progs, err
	case errors.As(err, &de):
		return nil, &exitErr{exitUsage, fmt.Errorf("--programs: %w", de.Err)}
	}
	return nil, &exitErr{exitUsage, err}
}
