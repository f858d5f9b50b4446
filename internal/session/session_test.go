package session

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

// clock is a hand-moved clock; the registry tests run on one goroutine.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time      { return c.now }
func (c *clock) Add(d time.Duration) { c.now = c.now.Add(d) }

// newRegistry returns a registry on a hand-moved clock with numbered ids,
// and the ids it dropped.
func newRegistry(idle time.Duration, max int) (*Registry, *clock, *[]string) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var dropped []string
	n := 0
	g := New(Options{IdleTimeout: idle, MaxPerOwner: max, Clock: c.Now,
		NewID: func() string { n++; return fmt.Sprintf("s%d", n) },
		Drop:  func(id string) { dropped = append(dropped, id) },
	})
	return g, c, &dropped
}

func TestSessionIsItsPrincipalsAlone(t *testing.T) {
	g, _, _ := newRegistry(time.Minute, 10)
	id := g.Issue("alice")
	for _, tc := range []struct {
		id, owner string
		want      bool
	}{
		{id, "alice", true},
		{id, "bob", false},
		{id, "", false},
		{"never-issued", "alice", false},
		{"", "alice", false},
	} {
		if got := g.Use(tc.id, tc.owner); got != tc.want {
			t.Errorf("Use(%q, %q) = %v, want %v", tc.id, tc.owner, got, tc.want)
		}
	}
	g.End(id)
	if g.Use(id, "alice") {
		t.Fatal("an ended session is still accepted")
	}
}

func TestSessionExpiresWhenIdleAndUseKeepsItAlive(t *testing.T) {
	g, c, dropped := newRegistry(time.Minute, 10)
	kept, idle := g.Issue("a"), g.Issue("a")
	pinned := g.Pin("a")
	for i := 0; i < 3; i++ {
		c.Add(40 * time.Second)
		if !g.Use(kept, "a") {
			t.Fatalf("a session used every 40 s expired after %d uses", i)
		}
	}
	if g.Use(idle, "a") {
		t.Fatal("a session idle for 2 minutes is accepted, timeout 1 minute")
	}
	c.Add(2 * time.Minute)
	g.Expire()
	if g.Len() != 1 || !g.Use(pinned, "a") {
		t.Fatalf("after expiry %d sessions are left, want the pinned one", g.Len())
	}
	if want := []string{idle, kept}; !slices.Equal(*dropped, want) {
		t.Fatalf("dropped %v, want %v", *dropped, want)
	}
}

func TestSessionLimitPushesOutTheOwnersLeastRecentlyUsed(t *testing.T) {
	g, _, dropped := newRegistry(time.Hour, 3)
	a1, a2, a3 := g.Issue("a"), g.Issue("a"), g.Issue("a")
	b1 := g.Issue("b")
	g.Use(a1, "a") // a2 is now the least recently used of a's
	a4 := g.Issue("a")
	if !slices.Equal(*dropped, []string{a2}) {
		t.Fatalf("dropped %v, want [%s]", *dropped, a2)
	}
	for _, id := range []string{a1, a3, a4} {
		if !g.Use(id, "a") {
			t.Errorf("%s was dropped", id)
		}
	}
	if !g.Use(b1, "b") || g.Len() != 4 {
		t.Fatalf("another principal's session was touched: %d left", g.Len())
	}
}

// The HTTP checks mcp-go does not make: a legacy GET or DELETE naming a
// session that is not the caller's gets 404; revision 2026-07-28 requests
// are passed on, their session header ignored.
func TestMiddlewareAnswers404ToSessionsNotTheCallers(t *testing.T) {
	g, _, _ := newRegistry(time.Hour, 10)
	alices := g.Issue("alice")
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := g.Middleware(next)
	for _, tc := range []struct {
		name, method, id, version, who string
		want                           int
	}{
		{"own GET", http.MethodGet, alices, "2025-06-18", "alice", http.StatusTeapot},
		{"GET without a session", http.MethodGet, "", "2025-06-18", "alice", http.StatusTeapot},
		{"other principal's GET", http.MethodGet, alices, "2025-06-18", "bob", http.StatusNotFound},
		{"never issued GET", http.MethodGet, "mcp-session-x", "", "alice", http.StatusNotFound},
		{"other principal's DELETE", http.MethodDelete, alices, "2025-06-18", "bob", http.StatusNotFound},
		{"DELETE without a session", http.MethodDelete, "", "2025-03-26", "alice", http.StatusNotFound},
		{"own DELETE", http.MethodDelete, alices, "2025-06-18", "alice", http.StatusTeapot},
		{"modern DELETE", http.MethodDelete, "whatever", "2026-07-28", "bob", http.StatusTeapot},
		{"POST is mcp-go's to check", http.MethodPost, "whatever", "2025-06-18", "bob", http.StatusTeapot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/mcp", nil)
			r = r.WithContext(access.WithPrincipal(r.Context(), access.Principal{ID: tc.who, Profile: access.ProfileAgent}))
			if tc.id != "" {
				r.Header.Set("Mcp-Session-Id", tc.id)
			}
			if tc.version != "" {
				r.Header.Set("Mcp-Protocol-Version", tc.version)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.want, w.Body)
			}
		})
	}
}

func TestManagerValidatesOnlyTheRequestsPrincipal(t *testing.T) {
	g, _, _ := newRegistry(time.Hour, 10)
	req := func(who string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		return r.WithContext(access.WithPrincipal(r.Context(), access.Principal{ID: who}))
	}
	id := g.ResolveSessionIdManager(req("alice")).Generate()
	if _, err := g.ResolveSessionIdManager(req("alice")).Validate(id); err != nil {
		t.Fatalf("own session refused: %v", err)
	}
	if _, err := g.ResolveSessionIdManager(req("bob")).Validate(id); err == nil {
		t.Fatal("another principal's session accepted")
	}
	if notAllowed, _ := g.ResolveSessionIdManager(req("bob")).Terminate(id); !notAllowed || g.Len() != 1 {
		t.Fatal("another principal ended the session")
	}
	// mcp-go's housekeeping (shutdown) and the drop call end any session.
	drop := httptest.NewRequest(http.MethodDelete, "/mcp", nil)
	drop = drop.WithContext(DroppingContext(context.Background()))
	if _, err := g.ResolveSessionIdManager(drop).Terminate(id); err != nil || g.Len() != 0 {
		t.Fatalf("drop: %v, %d left", err, g.Len())
	}
}

// Many principals issuing and using sessions at once stay within the
// limit, each on its own (run with -race).
func TestRegistryConcurrentUseStaysWithinTheLimit(t *testing.T) {
	var n atomic.Int64
	g := New(Options{IdleTimeout: time.Hour, MaxPerOwner: 5, NewID: func() string { return fmt.Sprint(n.Add(1)) }})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprint("p", w%4)
			for range 200 {
				id := g.Issue(owner)
				g.Use(id, owner)
				g.Expire()
			}
		}()
	}
	wg.Wait()
	if g.Len() != 4*5 {
		t.Fatalf("%d sessions left, want 4 principals × 5", g.Len())
	}
}
