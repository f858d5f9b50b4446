// Package service is the imperative shell around the pure core
// (internal/runtime): the program registry, starts and their idempotency,
// load → Apply → append → answer with the run cache and per-run locks,
// the client's answers, sealing of personal data, erasure of data
// subjects, the approvers' inbox, the deadline sweeper, who may see
// and decide which run, and the runtime-executed tool calls (the runner,
// its lease, crash recovery, the caller's wait). It owns the clock, id
// generation, randomness, storage and the tool registry, all injected
// through Options, so tests fix every one of them.
package service

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/subjectkeys"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Service is the imperative shell around the core: it loads a run, calls
// Apply, appends the events atomically and only then answers. It owns the
// clock, id generation and storage, all injected through Options.
type Service struct {
	store  tracestore.Store
	sealer *sealer
	clock  func() time.Time
	newID  func() string
	log    *zap.Logger

	mu       sync.Mutex
	programs map[string]*program.Program // by definition hash
	latest   map[string]*program.Program // by name: the program start_run uses
	sources  map[string][]byte           // by definition hash
	// executors are, by definition hash, the tool states runs of the
	// program execute in the runtime (runtime.Start.Executors).
	executors map[string]map[string]string
	// runs caches folded runs, and holds the lock of every run in use. It
	// is bounded: past maxRuns, the least recently used runs nobody holds
	// are dropped, and fold again from the store when next used.
	runs    map[string]*liveRun
	lru     *list.List // of run ids, most recently used first
	maxRuns int

	sweep sweeper    // the deadline sweeper's memory (Sweep)
	calls callRunner // runtime-executed tool calls (toolcalls.go)
}

// liveRun serialises the inputs of one run within this process; the store's
// append check settles races between processes.
type liveRun struct {
	mu    sync.Mutex
	run   *runtime.Run // nil until loaded
	p     *program.Program
	chain *chain // the stored trace's head, tree and subjects
	// tail is the latest events this process appended, while a chain of
	// runtime tool calls may need them (tail.go); none after a load.
	tail []runtime.Event

	// Guarded by Service.mu. refs counts the callers that hold mu or wait
	// for it: an entry is evicted only at zero, so two callers of one run
	// never hold two different entries (and two locks) at once.
	refs int
	elem *list.Element // in Service.lru while in Service.runs
}

// DefaultMaxCachedRuns is how many folded runs a Service keeps by default
// (Options.MaxCachedRuns): at a few tens of KB each, some tens of MB.
const DefaultMaxCachedRuns = 1000

// Options configure a Service. Zero values pick production defaults.
type Options struct {
	Store tracestore.Store // default: a new in-memory store
	Clock func() time.Time // default: time.Now
	NewID func() string    // default: 128 random bits, hex
	Log   *zap.Logger      // default: no logging
	// Secret keys the hashes that name data subjects and the run ids of
	// idempotent starts (32 bytes). Default: random, so subject keys and
	// idempotent runs are not found again after a restart; the server
	// passes the secret it keeps in its data directory.
	Secret []byte
	// Rand supplies subject keys and nonces. Default: crypto/rand. Tests
	// pass a seeded generator, so traces are byte-for-byte reproducible.
	Rand io.Reader
	// KEKs wrap the subject keys the store keeps (internal/subjectkeys).
	// Default: a set in memory that every Service of this process over the
	// same Store shares, which suits only a store that does not outlive
	// the process; the server passes its data directory's.
	KEKs *keyring.KEKs
	// MaxCachedRuns bounds how many folded runs stay in memory between
	// calls (default DefaultMaxCachedRuns). A run dropped from the cache
	// is folded again from the store when next used; runs in use are
	// never dropped, so the cache may exceed the bound by the number of
	// runs being called at that moment.
	MaxCachedRuns int

	// Tools is the operator's tool registry: the tool states whose tool
	// it has are executed by the service itself (docs/tools.md). nil: no
	// runtime tools; every tool state is the caller's. The Service does
	// not close it.
	Tools *executor.Registry
	// StepWait bounds how long a start, step, decision or resolution
	// waits for a chain of runtime-executed tool states to settle before
	// it answers "running", waiting for a tool (default DefaultStepWait).
	StepWait time.Duration
	// Sleep waits d or until ctx ends (the backoff between a tool's
	// attempts). Default: a timer. Tests pass one that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// Instance names this service instance in the leases of the calls it
	// executes (default: 64 random bits, hex). Two instances sharing a
	// store must differ.
	Instance string
	// LeaseTTL is how long a call's lease lasts without renewal (default
	// DefaultLeaseTTL); the holder renews it every third of that while
	// the call runs, and another instance takes the call over only once
	// it has expired.
	LeaseTTL time.Duration
}

// Defaults of the runtime tool calls' options.
const (
	DefaultStepWait = 20 * time.Second
	DefaultLeaseTTL = 15 * time.Second
)

// memoryKEKs are the default KEK sets, by store.
var memoryKEKs sync.Map // tracestore.Store → *keyring.KEKs

// New returns a Service.
func New(o Options) *Service {
	if o.Store == nil {
		o.Store = tracestore.NewMemory()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.NewID == nil {
		o.NewID = randomID
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Secret == nil {
		o.Secret = make([]byte, trace.KeySize)
		if _, err := io.ReadFull(rand.Reader, o.Secret); err != nil {
			panic("runtime: no randomness: " + err.Error())
		}
	}
	if o.KEKs == nil {
		k, _ := memoryKEKs.LoadOrStore(o.Store, keyring.MemoryKEKs())
		o.KEKs = k.(*keyring.KEKs)
	}
	if o.MaxCachedRuns <= 0 {
		o.MaxCachedRuns = DefaultMaxCachedRuns
	}
	if o.StepWait <= 0 {
		o.StepWait = DefaultStepWait
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.Instance == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic("runtime: no randomness: " + err.Error())
		}
		o.Instance = "i_" + hex.EncodeToString(b[:])
	}
	sl := &sealer{secret: o.Secret, rand: o.Rand}
	sl.keys = subjectkeys.New(o.Store, o.KEKs, sl.read)
	s := shell(o.Store, sl, o.Clock, o.NewID, o.Log, o.MaxCachedRuns)
	s.calls.init(o)
	return s
}

// shell is a service over these parts with no program registered, no run
// cached and its tool call machinery not yet initialised (calls.init).
func shell(store tracestore.Store, sl *sealer, clock func() time.Time, newID func() string, log *zap.Logger, maxRuns int) *Service {
	return &Service{
		store: store, clock: clock, newID: newID, log: log,
		sealer:    sl,
		programs:  map[string]*program.Program{},
		latest:    map[string]*program.Program{},
		sources:   map[string][]byte{},
		executors: map[string]map[string]string{},
		runs:      map[string]*liveRun{},
		lru:       list.New(),
		maxRuns:   maxRuns,
	}
}

// Close stops the runtime tool calls this service is executing and waits
// for them to return. A call stopped in flight stays open in the store,
// its outcome unrecorded, for recovery (Recover) to settle. Close is safe
// to call more than once; the Service must not be used after it.
func (s *Service) Close() {
	s.calls.stop()
}

// jsonSize is the size of v as canonical JSON (RFC 8785), which is what
// max_document_bytes measures: the bytes as received would let escapes
// and white space decide whether a document fits.
func jsonSize(v any) int {
	c, err := jsonvalue.Canonical(v)
	if err != nil {
		return 0
	}
	return len(c)
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("runtime: no randomness: " + err.Error())
	}
	return "run_" + hex.EncodeToString(b[:])
}
