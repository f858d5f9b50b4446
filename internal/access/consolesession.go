package access

import (
	"crypto/rand"
	"encoding/base64"
	"net"
	"net/http"
	"sync"
	"time"
)

// Console sessions live in a table on the server, not in the cookie
// alone: signing out deletes the session, so a copied cookie is worth
// nothing afterwards. The table ends with the process, as the sessions
// signed with a per-process key did before it.
const (
	// MaxConsoleSessions bounds the session table. Only a valid token
	// opens a session, so the bound is reached by sign-ins of real
	// holders; past it the session that would expire first is dropped.
	MaxConsoleSessions = 10000
	// SignInFreeFailures is how many failed sign-ins a client address may
	// make before it must wait.
	SignInFreeFailures = 5
	// SignInBackoff is the first wait after the free failures; each
	// further failure doubles it, up to SignInMaxBackoff.
	SignInBackoff    = time.Second
	SignInMaxBackoff = 15 * time.Minute
	// MaxSignInAddresses bounds the table of failing client addresses.
	MaxSignInAddresses = 4096
)

// session is one signed-in console visitor: the operator, or an approver.
type session struct {
	approver string // the approver's id; "" for the operator
	exp      time.Time
}

// sessions is the console's session table.
type sessions struct {
	mu   sync.Mutex
	byID map[string]session
	max  int
}

func newSessions(max int) *sessions {
	return &sessions{byID: map[string]session{}, max: max}
}

// open stores a new session and returns its id, the cookie's value: 32
// random bytes, so that it cannot be guessed.
func (s *sessions) open(now time.Time, approver string, ttl time.Duration) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("access: no randomness: " + err.Error())
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.max {
		s.prune(now)
	}
	s.byID[id] = session{approver: approver, exp: now.Add(ttl)}
	return id
}

// prune drops expired sessions and, if the table is still full, the one
// that would expire first.
func (s *sessions) prune(now time.Time) {
	prune(s.byID, s.max, func(e session) bool { return !now.Before(e.exp) },
		func(a, b session) bool { return a.exp.Before(b.exp) })
}

// get returns the live session with the id.
func (s *sessions) get(id string, now time.Time) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[id]
	if ok && !now.Before(e.exp) {
		delete(s.byID, id)
		return session{}, false
	}
	return e, ok
}

// close ends the session with the id, if there is one.
func (s *sessions) close(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// throttle limits sign-in attempts per client address. Every attempt
// counts as a failure until it succeeds, so that parallel guesses are
// counted before any of them is checked.
type throttle struct {
	mu  sync.Mutex
	by  map[string]*attempts
	max int
}

type attempts struct {
	n     int       // failures since the last success
	until time.Time // no attempt before this
	last  time.Time
}

func newThrottle(max int) *throttle {
	return &throttle{by: map[string]*attempts{}, max: max}
}

// attempt records a sign-in attempt from addr and reports how long the
// client must still wait: zero when it may try now.
func (t *throttle) attempt(addr string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.by[addr]
	if a == nil {
		if len(t.by) >= t.max {
			t.prune(now)
		}
		a = &attempts{}
		t.by[addr] = a
	}
	if now.Before(a.until) {
		return a.until.Sub(now)
	}
	a.n++
	a.last = now
	if a.n > SignInFreeFailures {
		a.until = now.Add(backoff(a.n - SignInFreeFailures))
	}
	return 0
}

// succeeded forgets addr's failures.
func (t *throttle) succeeded(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.by, addr)
}

// prune drops the addresses whose wait ended more than SignInMaxBackoff
// ago and, if the table is still full, the one seen least recently: the
// table stays bounded whatever the number of addresses.
func (t *throttle) prune(now time.Time) {
	prune(t.by, t.max, func(a *attempts) bool {
		return now.Sub(a.until) > SignInMaxBackoff && now.Sub(a.last) > SignInMaxBackoff
	}, func(a, b *attempts) bool { return a.last.Before(b.last) })
}

// prune deletes m's stale entries and, if m still holds max or more, the
// first in the order before gives.
func prune[V any](m map[string]V, max int, stale func(V) bool, before func(a, b V) bool) {
	var first string
	for k, v := range m {
		if stale(v) {
			delete(m, k)
			continue
		}
		if first == "" || before(v, m[first]) {
			first = k
		}
	}
	if len(m) >= max && first != "" {
		delete(m, first)
	}
}

// backoff is the wait after the k-th failure beyond the free ones.
func backoff(k int) time.Duration {
	d := SignInBackoff
	for i := 1; i < k && d < SignInMaxBackoff; i++ {
		d *= 2
	}
	return min(d, SignInMaxBackoff)
}

// clientKey is the throttle's key for a request: the peer's IP address,
// and for IPv6 its /64, which one client usually holds whole.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return host
	case ip.To4() != nil:
		return ip.To4().String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
