package service

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/pgtest"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// interleavingStore runs between once, right after the first read that
// follows arm: between the two reads of a load (index row and trace,
// whichever comes first), which is where another instance's append falls
// when two processes share a store.
type interleavingStore struct {
	tracestore.Store
	mu      sync.Mutex
	between func()
}

func (s *interleavingStore) arm(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.between = f
}

func (s *interleavingStore) fire() {
	s.mu.Lock()
	f := s.between
	s.between = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
}

func (s *interleavingStore) Load(ctx context.Context, runID string) ([]tracestore.Record, error) {
	recs, err := s.Store.Load(ctx, runID)
	s.fire()
	return recs, err
}

func (s *interleavingStore) LoadPrefix(ctx context.Context, runID string, n uint64) ([]tracestore.Record, error) {
	recs, err := s.Store.LoadPrefix(ctx, runID, n)
	s.fire()
	return recs, err
}

func (s *interleavingStore) Run(ctx context.Context, runID string) (tracestore.RunInfo, error) {
	info, err := s.Store.Run(ctx, runID)
	s.fire()
	return info, err
}

// sharedBackends open one store twice, as two processes would: each
// returns a function that connects to the same store again.
var sharedBackends = []struct {
	name string
	open func(t *testing.T) func() tracestore.Store
}{
	{"memory", func(t *testing.T) func() tracestore.Store {
		s := tracestore.NewMemory()
		return func() tracestore.Store { return s }
	}},
	{"sqlite", func(t *testing.T) func() tracestore.Store {
		path := filepath.Join(t.TempDir(), "traces.db")
		return func() tracestore.Store {
			s, err := tracestore.OpenSQLite(path, tracestore.SQLiteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}},
	{"postgres", func(t *testing.T) func() tracestore.Store {
		dsn, _ := pgtest.Schema(t, "runtime_test_")
		return func() tracestore.Store {
			s, err := tracestore.OpenPostgres(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}},
}

// twoInstances are two Services over one store, as two processes sharing
// a data directory: b's connection interleaves another's appends.
func twoInstances(t *testing.T, connect func() tracestore.Store) (a, b *Service, bStore *interleavingStore, p *program.Program) {
	t.Helper()
	aStore := connect()
	a, p, _ = newTestService(t, aStore)
	// The KEKs every process reads from the data directory's subject.kek.
	keks, _ := memoryKEKs.Load(aStore)
	bStore = &interleavingStore{Store: connect()}
	b = New(Options{Store: bStore, Clock: func() time.Time { return t0 }, KEKs: keks.(*keyring.KEKs)})
	return a, b, bStore, p
}

// TestLoadWhileAnotherInstanceAppends: another instance appends between
// the two reads of a load, on its first load of the run and on the reload
// after a lost append. The load sees the run as the index row has it, and
// the loser's submission meets the run as it really is: a recorded
// stale_seq, never an internal error.
func TestLoadWhileAnotherInstanceAppends(t *testing.T) {
	ctx := context.Background()
	for _, be := range sharedBackends {
		t.Run(be.name, func(t *testing.T) {
			for _, cached := range []bool{false, true} {
				t.Run(fmt.Sprintf("cached %v", cached), func(t *testing.T) {
					a, b, store, p := twoInstances(t, be.open(t))
					started, err := a.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
					if err != nil {
						t.Fatal(err)
					}
					draft := started
					if cached {
						// b holds the run; a moves it on, so that b's append
						// conflicts and b reloads.
						if _, _, err := b.Get(ctx, started.RunID); err != nil {
							t.Fatal(err)
						}
						if draft, err = a.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, `{"score": 1}`)}); err != nil {
							t.Fatal(err)
						}
					}
					moved := false
					store.arm(func() {
						// A first draft when the run is at draft; at check,
						// the linter's refusal, which rolls back to a new
						// draft task. Either way the run moves on between
						// b's two reads, and stays open.
						in := runtime.Submit{Seq: draft.Seq, Output: js(t, `{"score": 1}`)}
						if cached {
							in = runtime.Submit{Seq: draft.Seq, Tool: "linter", Output: js(t, `{"ok": false}`)}
						}
						_, err := a.Submit(ctx, started.RunID, in)
						moved = err == nil
						if err != nil {
							t.Errorf("the other instance's submission: %v", err)
						}
					})
					_, err = b.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, `{"score": 2}`)})
					if !moved {
						t.Fatalf("the other instance did not append between the two reads (b: %v)", err)
					}
					if code(err) != runtime.CodeStaleSeq {
						t.Fatalf("the loser got %v, want stale_seq", err)
					}
					events, err := a.Events(ctx, started.RunID)
					if err != nil {
						t.Fatal(err)
					}
					if last := events[len(events)-1]; last.Type != runtime.EventSubmissionRejected || last.Rejection.Code != runtime.CodeStaleSeq {
						t.Fatalf("the lost race is not recorded last: %+v", last)
					}
					// b holds the run as stored, its own rejection included.
					stored, err := runtime.Fold(p, events)
					if err != nil {
						t.Fatal(err)
					}
					rb, _, err := b.Get(ctx, started.RunID)
					if err != nil || rb.Seq != stored.Seq || rb.State != stored.State || rb.NextIndex != stored.NextIndex {
						t.Fatalf("b holds %+v (%v), the store %+v", rb, err, stored)
					}
				})
			}
		})
	}
}

// TestTwoInstancesRaceOnOneStore: two Services over one store, as two
// processes (two SQLite connections to one file; two PostgreSQL pools),
// answer each new run's first task at the same moment. b meets each run
// first by loading it while a may be appending, and the loser reloads
// after its append conflicts. Every round has one winner, and the loser
// is told stale_seq, never an internal error.
func TestTwoInstancesRaceOnOneStore(t *testing.T) {
	ctx := context.Background()
	const rounds = 12
	for _, be := range sharedBackends {
		t.Run(be.name, func(t *testing.T) {
			a, b, _, _ := twoInstances(t, be.open(t))
			for round := range rounds {
				started, err := a.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
				if err != nil {
					t.Fatal(err)
				}
				var (
					wg    sync.WaitGroup
					ready = make(chan struct{})
					errs  [2]error
				)
				for i, svc := range []*Service{a, b} {
					wg.Go(func() {
						<-ready
						_, errs[i] = svc.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, fmt.Sprintf(`{"score": %d}`, i))})
					})
				}
				close(ready)
				wg.Wait()
				if (errs[0] == nil) == (errs[1] == nil) {
					t.Fatalf("round %d: a %v, b %v: want one winner", round, errs[0], errs[1])
				}
				for i, err := range errs {
					if err != nil && code(err) != runtime.CodeStaleSeq {
						t.Fatalf("round %d: the loser (%s) got %v, want stale_seq", round, []string{"a", "b"}[i], err)
					}
				}
			}
		})
	}
}
