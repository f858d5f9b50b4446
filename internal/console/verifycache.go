package console

import (
	"crypto/sha256"
	"sync"
	"time"
)

// Verifying a receipt reads and hashes the run's whole trace. The console
// answers anyone who may read the run, so verifications are bounded: a
// few at a time (Config.VerifyConcurrency; more are answered 429 with
// Retry-After), and a result is kept for VerifyCacheTTL per (run, event
// count, index head and tree, posted receipt), so that asking again costs
// no read.
const (
	// DefaultVerifyConcurrency is how many verifications run at once when
	// Config.VerifyConcurrency is zero.
	DefaultVerifyConcurrency = 2
	// VerifyCacheTTL is how long a verification is answered from the
	// cache. A record changed in the database in place, behind the
	// runtime's back, is seen once the entry expires (or as soon as an
	// event is appended).
	VerifyCacheTTL = time.Minute
	// VerifyCacheEntries bounds the cache; the oldest entry goes first.
	VerifyCacheEntries = 256
	// verifyRetryAfter is the Retry-After of a 429, in seconds.
	verifyRetryAfter = "1"
)

// verifyKey names one verification: the run as its index row describes
// it, and the receipt posted (its digest; zero for a derived one).
type verifyKey struct {
	run     string
	events  uint64
	head    string
	tree    string
	receipt [sha256.Size]byte
}

type verifyEntry struct {
	v  verification
	at time.Time
}

// verifyCache holds recent verifications.
type verifyCache struct {
	mu    sync.Mutex
	m     map[verifyKey]verifyEntry
	order []verifyKey // insertion order, for eviction
	max   int
	ttl   time.Duration
}

func newVerifyCache(max int, ttl time.Duration) *verifyCache {
	return &verifyCache{m: map[verifyKey]verifyEntry{}, max: max, ttl: ttl}
}

// get returns the verification under k if it is younger than the TTL.
func (c *verifyCache) get(k verifyKey, now time.Time) (verification, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || now.Sub(e.at) >= c.ttl {
		return verification{}, false
	}
	return e.v, true
}

// put stores v under k, evicting the oldest entries past the bound.
func (c *verifyCache) put(k verifyKey, v verification, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok {
		c.order = append(c.order, k)
	}
	c.m[k] = verifyEntry{v: v, at: now}
	for len(c.order) > c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
}
