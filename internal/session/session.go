// Package session keeps the MCP sessions the HTTP transports issue to
// legacy-era clients (protocol revisions up to 2025-11-25): who owns each
// one, and when it was last used.
//
// A session id is valid only for the principal it was issued to, until it
// is deleted, idle for longer than the idle timeout, or pushed out by the
// same principal's newer sessions beyond the per-principal limit. Any other
// id is unknown, and the transports answer it with HTTP 404, as the legacy
// revisions require: the client then initializes a new session. Run state
// never lives in a session, so nothing but the connection is lost.
//
// Requests of revision 2026-07-28 carry no session: mcp-go ignores their
// Mcp-Session-Id header, and so does this package.
//
// A Registry is the Streamable HTTP server's SessionIdManagerResolver (the
// principal comes from the request's context), and the legacy SSE server's
// session id generator. Sessions it drops are handed to Options.Drop, which
// frees the transport's own state for them.
package session

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

// Defaults for Options.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxPerOwner = 1000
)

// ErrUnknown is the answer to a session id that was never issued, was
// deleted or expired, or belongs to another principal: one error for all,
// so that an id's existence is not disclosed to another principal.
var ErrUnknown = errors.New("unknown session: initialize a new one")

// Options configure a Registry. Zero values pick the defaults.
type Options struct {
	IdleTimeout time.Duration // default DefaultIdleTimeout
	MaxPerOwner int           // sessions one principal may hold; default DefaultMaxPerOwner
	Clock       func() time.Time
	NewID       func() string
	// Drop frees the transport's state for a session the registry dropped
	// (expired or pushed out). It is called without the registry's lock.
	Drop func(id string)
}

// Registry is the set of live sessions. It is safe for concurrent use.
type Registry struct {
	o Options

	mu     sync.Mutex
	byID   map[string]*entry
	owners map[string]*list.List // of ids, most recently used first
}

type entry struct {
	owner string
	last  time.Time
	elem  *list.Element // nil for a pinned session
}

// New returns an empty Registry.
func New(o Options) *Registry {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxPerOwner <= 0 {
		o.MaxPerOwner = DefaultMaxPerOwner
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.NewID == nil {
		o.NewID = randomID
	}
	if o.Drop == nil {
		o.Drop = func(string) {}
	}
	return &Registry{o: o, byID: map[string]*entry{}, owners: map[string]*list.List{}}
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("session: no randomness: " + err.Error())
	}
	return "mcp-session-" + hex.EncodeToString(b[:])
}

// owner names a request's principal; "" when the guard put none (it always
// does on the HTTP paths).
func owner(ctx context.Context) string {
	p, _ := access.FromContext(ctx)
	return p.ID
}

// Issue makes a session for owner, pushing out that owner's least recently
// used sessions beyond the limit.
func (g *Registry) Issue(owner string) string {
	id := g.o.NewID()
	g.mu.Lock()
	l := g.owners[owner]
	if l == nil {
		l = list.New()
		g.owners[owner] = l
	}
	g.byID[id] = &entry{owner: owner, last: g.o.Clock(), elem: l.PushFront(id)}
	var dropped []string
	for l.Len() > g.o.MaxPerOwner {
		old := l.Back().Value.(string)
		g.removeLocked(old)
		dropped = append(dropped, old)
	}
	g.mu.Unlock()
	g.drop(dropped)
	return id
}

// Pin issues a session that neither expires nor counts toward the limit,
// for a transport that ends it itself (legacy SSE: with its stream).
func (g *Registry) Pin(owner string) string {
	id := g.o.NewID()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.byID[id] = &entry{owner: owner}
	return id
}

// Use reports whether id is a live session of owner, and marks it used.
// An expired session found here is dropped.
func (g *Registry) Use(id, owner string) bool {
	now := g.o.Clock()
	g.mu.Lock()
	e := g.byID[id]
	switch {
	case e == nil || e.owner != owner:
		g.mu.Unlock()
		return false
	case e.elem != nil && g.expired(e, now):
		g.removeLocked(id)
		g.mu.Unlock()
		g.drop([]string{id})
		return false
	}
	if e.elem != nil {
		e.last = now
		g.owners[owner].MoveToFront(e.elem)
	}
	g.mu.Unlock()
	return true
}

// End removes a session, if it is there.
func (g *Registry) End(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.removeLocked(id)
}

// Len is the number of live sessions.
func (g *Registry) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byID)
}

// Expire drops every session idle for longer than the idle timeout.
func (g *Registry) Expire() {
	now := g.o.Clock()
	var dropped []string
	g.mu.Lock()
	for id, e := range g.byID {
		if e.elem != nil && g.expired(e, now) {
			g.removeLocked(id)
			dropped = append(dropped, id)
		}
	}
	g.mu.Unlock()
	g.drop(dropped)
}

// Sweep calls Expire on every tick until ctx ends.
func (g *Registry) Sweep(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			g.Expire()
		}
	}
}

// SweepInterval is how often a server should call Expire for an idle
// timeout: a session is dropped at most this long after it expired (it is
// refused from the moment it expires).
func SweepInterval(idle time.Duration) time.Duration {
	return min(max(idle/4, time.Second), time.Minute)
}

func (g *Registry) expired(e *entry, now time.Time) bool {
	return now.Sub(e.last) > g.o.IdleTimeout
}

func (g *Registry) removeLocked(id string) {
	e := g.byID[id]
	if e == nil {
		return
	}
	delete(g.byID, id)
	if e.elem == nil {
		return
	}
	l := g.owners[e.owner]
	l.Remove(e.elem)
	if l.Len() == 0 {
		delete(g.owners, e.owner)
	}
}

func (g *Registry) drop(ids []string) {
	for _, id := range ids {
		g.o.Drop(id)
	}
}

// dropping marks the context of the transport call that frees a dropped
// session's state: the registry no longer holds it, and must not refuse it.
type dropping struct{}

// DroppingContext returns ctx marked for the call, made from Options.Drop,
// that asks the transport to free a session's state.
func DroppingContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, dropping{}, true)
}

// ResolveSessionIdManager implements server.SessionIdManagerResolver: the
// manager it returns issues and accepts the sessions of the request's
// principal. mcp-go passes a nil request from its own housekeeping.
func (g *Registry) ResolveSessionIdManager(r *http.Request) server.SessionIdManager {
	if r == nil || r.Context().Value(dropping{}) != nil {
		return housekeeping{g}
	}
	return manager{g, owner(r.Context())}
}

// manager is the registry as one principal's request sees it.
type manager struct {
	g     *Registry
	owner string
}

func (m manager) Generate() string { return m.g.Issue(m.owner) }

// Validate refuses any id but a live session of the principal; mcp-go
// answers the refusal with 404.
func (m manager) Validate(id string) (bool, error) {
	if !m.g.Use(id, m.owner) {
		return false, ErrUnknown
	}
	return false, nil
}

// Terminate ends the principal's own session; Middleware has already
// answered 404 to any other id.
func (m manager) Terminate(id string) (bool, error) {
	if !m.g.Use(id, m.owner) {
		return true, nil
	}
	m.g.End(id)
	return false, nil
}

// housekeeping is the registry as mcp-go's shutdown and the Drop calls see
// it: it ends any session.
type housekeeping struct{ g *Registry }

func (h housekeeping) Generate() string                 { return h.g.Issue("") }
func (h housekeeping) Validate(id string) (bool, error) { return false, nil }
func (h housekeeping) Terminate(id string) (bool, error) {
	h.g.End(id)
	return false, nil
}

// Middleware answers 404 to a legacy-era GET or DELETE on the Streamable
// HTTP endpoint whose Mcp-Session-Id is not a live session of the caller
// (a DELETE without one too): mcp-go checks the id of a POST only, would
// attach a GET to whatever session the id names, and answers a DELETE it
// cannot match with 5xx.
func (g *Registry) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodDelete {
			id := r.Header.Get(server.HeaderKeySessionID)
			legacy := !mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion))
			if legacy && (id != "" || r.Method == http.MethodDelete) && !g.Use(id, owner(r.Context())) {
				notFound(w)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// SSE wraps the legacy SSE transport's handler (GET /sse and POST
// /message): a message to a session that is not the caller's is answered
// 404, and a session ends with its stream. g.SSEIDs must be the SSE server's
// session id generator (WithSessionIDGenerator).
func (g *Registry) SSE(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if !g.Use(r.URL.Query().Get("sessionId"), owner(r.Context())) {
				notFound(w)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		var issued string
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), issuedKey{}, &issued)))
		if issued != "" {
			g.End(issued)
		}
	})
}

type issuedKey struct{}

// SSEIDs is the legacy SSE server's session id generator: a pinned session
// of the stream's principal, which SSE ends when the stream closes.
func (g *Registry) SSEIDs(ctx context.Context, r *http.Request) (string, error) {
	id := g.Pin(owner(r.Context()))
	if p, ok := r.Context().Value(issuedKey{}).(*string); ok {
		*p = id
	}
	return id, nil
}

func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"error":"unknown_session","message":"this session id was not issued to you, was deleted or expired: send initialize without it to start a new session"}` + "\n"))
}

// DropVia returns an Options.Drop that frees a session's state in the
// Streamable HTTP server h, by the DELETE a client would send to path:
// mcp-go frees a session's state only on DELETE, its own idle sweep (which
// would judge idleness by its own clock) or shutdown.
func DropVia(h http.Handler, path string) func(id string) {
	return func(id string) {
		r, err := http.NewRequestWithContext(DroppingContext(context.Background()), http.MethodDelete, path, nil)
		if err != nil {
			return
		}
		r.Header.Set(server.HeaderKeySessionID, id)
		h.ServeHTTP(discard{}, r)
	}
}

// discard is a ResponseWriter for DropVia's internal DELETE.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
