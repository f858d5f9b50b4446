// Package service is the imperative shell around the pure core
// (internal/runtime): the program registry, starts and their idempotency,
// load → Apply → append → answer with the run cache and per-run locks,
// the client's answers, sealing of personal data, erasure of data
// subjects, the approvers' inbox, the deadline sweeper, and who may see
// and decide which run. It owns the clock, id generation, randomness and
// storage, all injected through Options, so tests fix every one of them.
package service

import (
	"bytes"
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"io"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
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
	// runs caches folded runs, and holds the lock of every run in use. It
	// is bounded: past maxRuns, the least recently used runs nobody holds
	// are dropped, and fold again from the store when next used.
	runs    map[string]*liveRun
	lru     *list.List // of run ids, most recently used first
	maxRuns int
}

// liveRun serialises the inputs of one run within this process; the store's
// append check settles races between processes.
type liveRun struct {
	mu    sync.Mutex
	run   *runtime.Run // nil until loaded
	p     *program.Program
	chain *chain // the stored trace's head, tree and subjects

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
}

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
	sl := &sealer{secret: o.Secret, rand: o.Rand}
	sl.keys = subjectkeys.New(o.Store, o.KEKs, sl.read)
	return &Service{
		store: o.Store, clock: o.Clock, newID: o.NewID, log: o.Log,
		sealer:   sl,
		programs: map[string]*program.Program{},
		latest:   map[string]*program.Program{},
		sources:  map[string][]byte{},
		runs:     map[string]*liveRun{},
		lru:      list.New(),
		maxRuns:  o.MaxCachedRuns,
	}
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

// AddProgram registers a loaded program and its source. Runs started
// afterwards by name use it; runs pinned to an earlier definition keep
// theirs.
func (s *Service) AddProgram(ctx context.Context, p *program.Program, source []byte) error {
	if err := s.store.PutProgram(ctx, p.Hash, source); err != nil {
		return fmt.Errorf("store program %s: %w", p.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.programs[p.Hash] = p
	s.latest[p.Name] = p
	s.sources[p.Hash] = bytes.Clone(source)
	return nil
}

// Programs lists the registered programs by name.
func (s *Service) Programs() []*program.Program {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*program.Program, 0, len(s.latest))
	for _, p := range s.latest {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// programByHash finds a pinned program, loading its stored source if this
// process has not seen it (a run started before the program file changed).
func (s *Service) programByHash(ctx context.Context, hash string) (*program.Program, error) {
	s.mu.Lock()
	p := s.programs[hash]
	s.mu.Unlock()
	if p != nil {
		return p, nil
	}
	src, err := s.store.Program(ctx, hash)
	if err != nil {
		return nil, fmt.Errorf("program %s: %w", hash, err)
	}
	p, err = program.Load("stored:"+hash, src)
	if err != nil {
		return nil, err
	}
	if p.Hash != hash {
		return nil, fmt.Errorf("stored program %s hashes to %s", hash, p.Hash)
	}
	s.mu.Lock()
	s.programs[hash] = p
	s.mu.Unlock()
	return p, nil
}

// Hop is one transition as clients see it.
type Hop struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Cause    string `json:"cause"`
	Rollback bool   `json:"rollback,omitempty"`
}

// Answer is what an input produced, in the shape tools and the CLI report.
type Answer struct {
	RunID       string           `json:"run_id"`
	Status      runtime.Status   `json:"status"`
	State       string           `json:"state"`
	Seq         uint64           `json:"seq"`
	Transition  *Hop             `json:"transition,omitempty"` // the first hop taken
	Transitions []Hop            `json:"transitions,omitempty"`
	Task        *projection.Task `json:"task,omitempty"`
	Outcome     string           `json:"outcome,omitempty"`
	Reason      string           `json:"reason,omitempty"`
	Duplicate   bool             `json:"duplicate,omitempty"`
	// While an approval task whose decision needs several distinct
	// approvers is open: how many it needs, and how many have submitted
	// the pending decision so far.
	ApprovalsNeeded int `json:"approvals_needed,omitempty"`
	ApprovalsGiven  int `json:"approvals_given,omitempty"`
}

// StartOptions describe a run to start.
type StartOptions struct {
	Program   string // the program's name: runs use its latest definition
	Input     any    // decoded JSON
	Principal string // who starts the run, as the caller identified itself
	Lab       bool   // a laboratory run (see Started.Lab)
	// IdempotencyKey, when set, makes the start idempotent: the run id is
	// derived from the service secret, the principal, the program name and
	// the key, so that one (principal, program, key) starts one run, even
	// across restarts and processes sharing the store and the secret.
	// Repeating the start with the same input answers with that run
	// (Duplicate); another input is refused with idempotency_conflict.
	// 1 to 128 characters of [A-Za-z0-9._:-].
	IdempotencyKey string
}

// Start begins a run of the named program.
func (s *Service) Start(ctx context.Context, programName string, input any, principal string) (Answer, error) {
	return s.StartRun(ctx, StartOptions{Program: programName, Input: input, Principal: principal})
}

// StartRun begins a run as o describes, or, for an idempotency key that
// already started one, answers with that run as it stands now.
func (s *Service) StartRun(ctx context.Context, o StartOptions) (Answer, error) {
	s.mu.Lock()
	p := s.latest[o.Program]
	s.mu.Unlock()
	if p == nil {
		return Answer{}, runtime.Reject(runtime.CodeNoSuchProgram, "no program named %q", o.Program)
	}
	if o.IdempotencyKey == "" {
		return s.startNew(ctx, p, s.newID(), o)
	}
	if !validIdempotencyKey(o.IdempotencyKey) {
		return Answer{}, runtime.Reject(runtime.CodeInvalidInput, "the idempotency key must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'", maxIdempotencyKey)
	}
	return s.startOnce(ctx, p, s.idempotentID(o), o)
}

// maxIdempotencyKey bounds an idempotency key's length.
const maxIdempotencyKey = 128

func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// idempotentID derives the run id of an idempotent start:
// "run_" + hex(first 16 bytes of HMAC-SHA256(secret, "idempotency" 0x00
// principal 0x00 program 0x00 key)). Without the secret it can be neither
// guessed nor confirmed. Program names and keys hold no 0x00, so the
// message splits one way only.
func (s *Service) idempotentID(o StartOptions) string {
	mac := hmac.New(sha256.New, s.sealer.secret)
	mac.Write([]byte("idempotency\x00" + o.Principal + "\x00" + o.Program + "\x00" + o.IdempotencyKey))
	return "run_" + hex.EncodeToString(mac.Sum(nil)[:16])
}

func (s *Service) startInput(id string, o StartOptions) runtime.Start {
	return runtime.Start{RunID: id, Principal: o.Principal, Input: o.Input, Size: jsonSize(o.Input), Lab: o.Lab, At: s.clock()}
}

// startNew starts a run under a fresh id.
func (s *Service) startNew(ctx context.Context, p *program.Program, id string, o StartOptions) (Answer, error) {
	res, err := runtime.Apply(p, nil, s.startInput(id, o))
	if err != nil {
		return Answer{}, err
	}
	lr := &liveRun{p: p, chain: &chain{tree: trace.NewTree()}}
	lr.mu.Lock()
	s.mu.Lock()
	if _, dup := s.runs[id]; dup {
		s.mu.Unlock()
		lr.mu.Unlock()
		return Answer{}, runtime.Reject(runtime.CodeRunExists, "run id %s is taken", id)
	}
	s.insertLocked(id, lr)
	s.mu.Unlock()
	defer s.release(lr)
	if err := s.append(ctx, lr, res.Run, res.Events); err != nil {
		s.mu.Lock()
		s.dropLocked(id, lr)
		s.mu.Unlock()
		return Answer{}, err
	}
	lr.run = res.Run
	s.log.Info("run started", zap.String("run_id", id), zap.String("program", p.Name), zap.String("definition_hash", p.Hash), zap.Bool("lab", o.Lab))
	return answerFrom(res.Run, res.Events), nil
}

// startOnce starts the run of an idempotent start under its derived id,
// unless it exists (in this process or in the store): then it answers with
// it, when the start repeats it. Within the process, the run's lock
// serialises concurrent starts; across processes, the store refuses the
// second trace, and its writer answers with the first.
func (s *Service) startOnce(ctx context.Context, p *program.Program, id string, o StartOptions) (Answer, error) {
	lr := s.claim(id)
	defer s.release(lr)
	if lr.run == nil {
		err := s.load(ctx, lr, id)
		if rej := (*runtime.Rejection)(nil); errors.As(err, &rej) && rej.Code == runtime.CodeNoSuchRun {
			var res runtime.Result
			if res, err = runtime.Apply(p, nil, s.startInput(id, o)); err != nil {
				s.forget(id, lr)
				return Answer{}, err
			}
			lr.p, lr.chain = p, &chain{tree: trace.NewTree()}
			if err = s.append(ctx, lr, res.Run, res.Events); err == nil {
				lr.run = res.Run
				s.log.Info("run started", zap.String("run_id", id), zap.String("program", p.Name), zap.String("definition_hash", p.Hash), zap.Bool("lab", o.Lab), zap.Bool("idempotent", true))
				return answerFrom(res.Run, res.Events), nil
			}
			if errors.Is(err, tracestore.ErrConflict) {
				// Another process stored the run first: answer with it.
				err = s.load(ctx, lr, id)
			}
		}
		if err != nil {
			lr.p, lr.chain = nil, nil
			s.forget(id, lr)
			return Answer{}, err
		}
	}
	return s.repeatedStart(ctx, lr, o)
}

// repeatedStart answers an idempotent start whose run exists: with the run
// as it stands, if the start repeats the one that began it.
func (s *Service) repeatedStart(ctx context.Context, lr *liveRun, o StartOptions) (Answer, error) {
	r := lr.run
	started, err := s.startedEvent(ctx, r.ID)
	if err != nil {
		return Answer{}, err
	}
	if r.Program.Name != o.Program || r.Principal != o.Principal || r.Lab != o.Lab || !runtime.SameJSON(started.Input, o.Input) {
		return Answer{}, runtime.Reject(runtime.CodeIdempotencyConflict, "the idempotency key %q was already used to start a run with a different input; repeat the original input to get that run, or use a new key for a new run", o.IdempotencyKey)
	}
	a := answerFrom(r, nil)
	a.Duplicate = true
	return a, nil
}

// startedEvent reads a run's run_started payload from the store, opened.
// (A run input whose subject was erased no longer compares equal to any.)
func (s *Service) startedEvent(ctx context.Context, runID string) (*runtime.Started, error) {
	recs, err := s.store.LoadPrefix(ctx, runID, 1)
	if err != nil {
		return nil, err
	}
	events, err := s.opened(ctx, recs)
	if err != nil {
		return nil, err
	}
	if events[0].Started == nil {
		return nil, fmt.Errorf("run %s: trace does not begin with run_started", runID)
	}
	return events[0].Started, nil
}

// Submit answers a run's open llm or tool task. The service sets the time
// and measures the output (Size).
func (s *Service) Submit(ctx context.Context, runID string, in runtime.Submit) (Answer, error) {
	in.At, in.Size = s.clock(), jsonSize(in.Output)
	return s.apply(ctx, runID, in)
}

// Decide answers a run's open approval task. The service sets the time
// and measures the decision (Size).
func (s *Service) Decide(ctx context.Context, runID string, in runtime.Decide) (Answer, error) {
	in.At, in.Size = s.clock(), jsonSize(in.Decision)
	return s.apply(ctx, runID, in)
}

// Cancel ends a run.
func (s *Service) Cancel(ctx context.Context, runID, principal, reason string) (Answer, error) {
	return s.apply(ctx, runID, runtime.Cancel{Principal: principal, Reason: reason, At: s.clock()})
}

// Tick times out the run's open task if its deadline has passed.
func (s *Service) Tick(ctx context.Context, runID string) (Answer, error) {
	return s.apply(ctx, runID, runtime.Tick{At: s.clock()})
}

// RecordFault appends a fault_injected event to the run: the failure
// laboratory's record of an attack it made through the other entry points
// and of the runtime's answer. It changes nothing else in the run, and is
// recorded on a finished run too.
func (s *Service) RecordFault(ctx context.Context, runID string, rec runtime.FaultRecord) (Answer, error) {
	return s.apply(ctx, runID, runtime.Fault{Record: rec, At: s.clock()})
}

// Get returns a snapshot of the run.
func (s *Service) Get(ctx context.Context, runID string) (*runtime.Run, *program.Program, error) {
	lr, err := s.live(ctx, runID)
	if err != nil {
		return nil, nil, err
	}
	defer s.release(lr)
	return lr.run.Clone(), lr.p, nil
}

// Events returns the run's trace, decoded.
func (s *Service) Events(ctx context.Context, runID string) ([]runtime.Event, error) {
	recs, err := s.store.Load(ctx, runID)
	if err != nil {
		return nil, noSuchRun(err, runID)
	}
	return s.opened(ctx, recs)
}

// noSuchRun turns the store's ErrNotFound for a run into the domain error.
func noSuchRun(err error, runID string) error {
	if errors.Is(err, tracestore.ErrNotFound) {
		return runtime.Reject(runtime.CodeNoSuchRun, "no run %s", runID)
	}
	return err
}

// opened decodes stored records and opens their sealed personal data.
func (s *Service) opened(ctx context.Context, recs []tracestore.Record) ([]runtime.Event, error) {
	events, err := DecodeEvents(recs)
	if err != nil {
		return nil, err
	}
	if err := s.sealer.open(ctx, events); err != nil {
		return nil, err
	}
	return events, nil
}

// stalledRetries bounds how often an input is re-applied after an append
// conflict that the reload does not explain: the trace is no longer than
// before. A store reports that only while the transaction that beat this
// one is still committing (PostgreSQL's deadlock and serialization
// failures), so a few retries see it land.
const stalledRetries = 3

func (s *Service) apply(ctx context.Context, runID string, in runtime.Input) (Answer, error) {
	lr, err := s.live(ctx, runID)
	if err != nil {
		return Answer{}, err
	}
	defer s.release(lr)
	return s.applyLocked(ctx, lr, runID, in)
}

// applyLocked applies in to a loaded run whose lock the caller holds.
//
// An append conflict means another process appended to the run first. The
// run is refolded and the input applied again, as often as it takes while
// each conflict shows that progress: the input then meets the run as it
// really is, and a lost race is answered, and recorded, like any other
// rejection, never as a failure. Each retry follows another append to the
// run, so only a run that others keep moving delays it, and each of those
// appends is someone's answered input.
func (s *Service) applyLocked(ctx context.Context, lr *liveRun, runID string, in runtime.Input) (Answer, error) {
	for stalled := 0; ; {
		res, applyErr := runtime.Apply(lr.p, lr.run, in)
		if res.PendingApproval {
			// The open task stands; the answer is the run as it is.
			a := answerFrom(lr.run, nil)
			a.Duplicate = true
			return a, nil
		}
		if res.Duplicate {
			return s.originalAnswer(ctx, lr.p, lr.run)
		}
		if len(res.Events) > 0 {
			err := s.append(ctx, lr, res.Run, res.Events)
			if errors.Is(err, tracestore.ErrConflict) && stalled < stalledRetries {
				before := lr.run.NextIndex
				if err := s.load(ctx, lr, runID); err != nil {
					return Answer{}, err
				}
				if lr.run.NextIndex <= before {
					stalled++
				}
				s.log.Debug("append conflict: applying the input again", zap.String("run_id", runID),
					zap.Uint64("events_before", before), zap.Uint64("events_now", lr.run.NextIndex))
				continue
			}
			if err != nil {
				return Answer{}, err
			}
			lr.run = res.Run
		}
		if applyErr != nil {
			// A refusal the trace does not record (throttled past the cap)
			// logs at debug: the log must not grow where the trace may not.
			logAt := s.log.Info
			if len(res.Events) == 0 {
				logAt = s.log.Debug
			}
			logAt("input rejected", zap.String("run_id", runID), zap.Error(applyErr))
		}
		return answerFrom(lr.run, res.Events), applyErr
	}
}

// live returns the run's in-process state, locked, loading it from the
// store by folding its trace if needed.
func (s *Service) live(ctx context.Context, runID string) (*liveRun, error) {
	lr := s.claim(runID)
	if lr.run != nil {
		return lr, nil
	}
	if err := s.load(ctx, lr, runID); err != nil {
		// Forget the placeholder, so that unknown ids cost nothing.
		s.forget(runID, lr)
		s.release(lr)
		return nil, err
	}
	return lr, nil
}

// claim returns the run's in-process entry, locked, creating an empty
// placeholder if there is none; the caller gives it back with release. The
// entry returned is the one registered under id: a placeholder forgotten
// while this waited for its lock is passed over.
func (s *Service) claim(id string) *liveRun {
	for {
		s.mu.Lock()
		lr := s.runs[id]
		if lr == nil {
			lr = &liveRun{}
			s.insertLocked(id, lr)
		} else {
			s.lru.MoveToFront(lr.elem)
			lr.refs++
		}
		s.mu.Unlock()
		lr.mu.Lock()
		s.mu.Lock()
		current := s.runs[id] == lr
		s.mu.Unlock()
		if current {
			return lr
		}
		s.release(lr)
	}
}

// release unlocks a claimed entry and, once nobody holds it, lets it be
// evicted if the cache is over its bound.
func (s *Service) release(lr *liveRun) {
	lr.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	lr.refs--
	s.trimLocked()
}

// insertLocked registers a new entry, with one reference: the caller's.
// The caller holds s.mu.
func (s *Service) insertLocked(id string, lr *liveRun) {
	s.runs[id] = lr
	lr.elem = s.lru.PushFront(id)
	lr.refs = 1
	s.trimLocked()
}

// dropLocked removes lr from the cache if it is still the entry for id.
// The caller holds s.mu.
func (s *Service) dropLocked(id string, lr *liveRun) {
	if s.runs[id] == lr {
		delete(s.runs, id)
		s.lru.Remove(lr.elem)
	}
}

// trimLocked evicts the least recently used entries nobody holds until
// the cache is within its bound, or only held entries are left over it.
// The caller holds s.mu.
func (s *Service) trimLocked() {
	for e := s.lru.Back(); e != nil && len(s.runs) > s.maxRuns; {
		prev := e.Prev()
		id := e.Value.(string)
		if lr := s.runs[id]; lr.refs == 0 {
			s.dropLocked(id, lr)
		}
		e = prev
	}
}

// forget drops a placeholder that holds no run; the caller holds its lock,
// so that nobody takes it up in between.
func (s *Service) forget(id string, lr *liveRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lr.run == nil {
		s.dropLocked(id, lr)
	}
}

// load folds the run's stored trace into lr, whose lock the caller holds.
// It reads the index row first, then the trace up to the row's length.
// Another process may append in between (this is the reload after a lost
// append, when one surely is): the trace is append-only, so its first
// row.Events records are the trace the row describes, and the rest belongs
// to a later row. Read the other way round, the row could be newer than the
// trace.
func (s *Service) load(ctx context.Context, lr *liveRun, runID string) error {
	info, err := s.store.Run(ctx, runID)
	if err != nil {
		return noSuchRun(err, runID)
	}
	recs, err := s.store.LoadPrefix(ctx, runID, info.Events)
	if err != nil {
		return noSuchRun(err, runID)
	}
	if uint64(len(recs)) != info.Events {
		return fmt.Errorf("run %s: the index row counts %d events, the trace has %d", runID, info.Events, len(recs))
	}
	events, err := s.opened(ctx, recs)
	if err != nil {
		return err
	}
	if len(events) == 0 || events[0].Started == nil {
		return fmt.Errorf("run %s: trace does not begin with run_started", runID)
	}
	p, err := s.programByHash(ctx, events[0].Started.Program.DefinitionHash)
	if err != nil {
		return err
	}
	run, err := runtime.Fold(p, events)
	if err != nil {
		return err
	}
	tree, err := trace.UnmarshalTree(info.Tree)
	if err != nil {
		return fmt.Errorf("run %s: %w", runID, err)
	}
	if tree.Size() != info.Events {
		return fmt.Errorf("run %s: the index row's tree has %d leaves, the row counts %d events", runID, tree.Size(), info.Events)
	}
	lr.p, lr.run = p, run
	lr.chain = &chain{head: info.Head, tree: tree, subjects: events[0].Started.Subjects, erased: erasedIn(nil, events)}
	return nil
}

// originalAnswer rebuilds the answer to the last accepted submission from
// the trace: from its submission_accepted event to the next task or finish.
func (s *Service) originalAnswer(ctx context.Context, p *program.Program, r *runtime.Run) (Answer, error) {
	events, err := s.Events(ctx, r.ID)
	if err != nil {
		return Answer{}, err
	}
	var span []runtime.Event
	for _, e := range events[r.Last.Index:] {
		span = append(span, e)
		if e.Type == runtime.EventTaskIssued || e.Type == runtime.EventRunFinished {
			break
		}
	}
	// The state the answer reports is the one right after the original
	// answer, not wherever the run is now.
	a := Answer{RunID: r.ID, Duplicate: true, Status: runtime.StatusRunning}
	fillFromEvents(&a, span)
	if a.Task != nil {
		// The task was new then: no approvals yet.
		if st := p.States[a.Task.State]; st != nil && st.Kind == program.KindApproval && st.Approvals > 1 {
			a.ApprovalsNeeded = st.Approvals
		}
	}
	return a, nil
}

func answerFrom(r *runtime.Run, events []runtime.Event) Answer {
	a := Answer{RunID: r.ID, Status: r.Status, State: r.State, Seq: r.Seq, Task: r.Task, Outcome: r.Outcome, Reason: r.Reason,
		ApprovalsNeeded: r.ApprovalsNeeded, ApprovalsGiven: r.ApprovalsGiven}
	if r.Status == runtime.StatusRunning {
		a.Outcome = ""
	}
	fillFromEvents(&a, events)
	return a
}

// fillFromEvents sets the hops (and, for a span of an older answer, the
// task and outcome) that events record.
func fillFromEvents(a *Answer, events []runtime.Event) {
	for _, e := range events {
		switch e.Type {
		case runtime.EventTransitioned:
			t := e.Transition
			a.Transitions = append(a.Transitions, Hop{From: t.From, To: t.To, Cause: t.Cause, Rollback: t.Rollback})
			a.State = t.To
		case runtime.EventTaskIssued:
			if a.Duplicate {
				a.Task, a.Seq, a.State = e.Task, e.Seq, e.State
			}
		case runtime.EventRunFinished:
			if a.Duplicate {
				a.Status, a.Outcome, a.Reason = e.Finished.Status, e.Finished.Outcome, e.Finished.Reason
			}
		}
	}
	if len(a.Transitions) > 0 {
		a.Transition = &a.Transitions[0]
	}
}

// append seals and stores the events that took a run to the state after,
// with the run's index row, and moves lr's chain on once they are stored.
func (s *Service) append(ctx context.Context, lr *liveRun, after *runtime.Run, events []runtime.Event) error {
	recs, next, err := s.sealer.seal(ctx, lr.p, lr.chain, events)
	if err != nil {
		return err
	}
	info := indexRow(after)
	info.Head = next.head
	if lr.chain.head == nil {
		// The run's first append: the store keeps its subjects from this
		// one only (RunInfo), so later steps need not list them.
		info.Subjects = slices.Sorted(maps.Values(next.subjects))
	}
	if info.Tree, err = next.tree.MarshalBinary(); err != nil {
		return err
	}
	if err := s.store.Append(ctx, after.ID, recs, info); err != nil {
		return err
	}
	lr.chain = next
	return nil
}

// indexRow is what the store's run index keeps of a run.
func indexRow(r *runtime.Run) tracestore.RunInfo {
	started, _ := time.Parse(time.RFC3339Nano, r.StartedAt)
	updated, _ := time.Parse(time.RFC3339Nano, r.UpdatedAt)
	info := tracestore.RunInfo{
		RunID: r.ID, Program: r.Program.Name, DefinitionHash: r.Program.DefinitionHash,
		Status: string(r.Status), Outcome: r.Outcome, StartedAt: started, UpdatedAt: updated,
		Events: r.NextIndex, Principal: r.Principal, Lab: r.Lab,
	}
	if role := r.AwaitedRole(); role != "" {
		info.AwaitingRole, info.AwaitingDeadline = role, r.Deadline
	}
	return info
}
