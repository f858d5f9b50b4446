package service

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// cached reports how many runs the service keeps, checking that the map
// and the LRU order agree.
func cached(t *testing.T, s *Service) int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.runs) != s.lru.Len() {
		t.Fatalf("the cache holds %d runs but orders %d", len(s.runs), s.lru.Len())
	}
	return len(s.runs)
}

func TestRunCacheStaysWithinItsBoundAndRefoldsEvictedRuns(t *testing.T) {
	ctx := context.Background()
	for _, max := range []int{1, 4, 16} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			svc, _, _ := newTestServiceWith(t, Options{Store: tracestore.NewMemory(), MaxCachedRuns: max})
			var runs []Answer
			for i := 0; i < 40; i++ {
				a, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
				if err != nil {
					t.Fatal(err)
				}
				runs = append(runs, a)
				if n := cached(t, svc); n > max {
					t.Fatalf("after %d starts the cache holds %d runs, bound %d", i+1, n, max)
				}
			}
			// Every run, evicted or not, goes on from where it was.
			for _, a := range runs {
				next, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: js(t, `{"score": 1}`)})
				if err != nil || next.State != "check" {
					t.Fatalf("run %s after eviction: %+v %v", a.RunID, next, err)
				}
				if n := cached(t, svc); n > max {
					t.Fatalf("the cache holds %d runs, bound %d", n, max)
				}
			}
			for _, a := range runs {
				r, _, err := svc.Get(ctx, a.RunID)
				if err != nil || r.State != "check" || r.Seq != a.Seq+1 {
					t.Fatalf("run %s refolded: %+v %v", a.RunID, r, err)
				}
			}
		})
	}
}

func TestRunCacheNeverEvictsAHeldRun(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newTestServiceWith(t, Options{Store: tracestore.NewMemory(), MaxCachedRuns: 1})
	a, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	held := svc.claim(a.RunID)
	for i := 0; i < 10; i++ {
		if _, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t"); err != nil {
			t.Fatal(err)
		}
	}
	svc.mu.Lock()
	still := svc.runs[a.RunID] == held
	svc.mu.Unlock()
	if !still {
		t.Fatal("a run whose lock is held was evicted: a second caller would lock another entry")
	}
	svc.release(held)
	if n := cached(t, svc); n != 1 {
		t.Fatalf("after release the cache holds %d runs, want 1", n)
	}
}

// Racers on several runs, with a cache of one run, so that every call
// evicts another run: exactly one submission per (run, seq) wins, and
// every loser is stale_seq.
func TestRunCacheExactlyOneWinnerAcrossEviction(t *testing.T) {
	ctx := context.Background()
	stores := map[string]tracestore.Store{"memory": tracestore.NewMemory()}
	sq, err := tracestore.OpenSQLite(t.TempDir()+"/trace.db", tracestore.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	stores["sqlite"] = sq
	for name, st := range stores {
		t.Run(name, func(t *testing.T) {
			svc, _, _ := newTestServiceWith(t, Options{Store: st, MaxCachedRuns: 1})
			const runs, racers = 6, 8
			var starts []Answer
			for i := 0; i < runs; i++ {
				a, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
				if err != nil {
					t.Fatal(err)
				}
				starts = append(starts, a)
			}
			var wg sync.WaitGroup
			errs := make([][]error, runs)
			for r := range starts {
				errs[r] = make([]error, racers)
				for i := 0; i < racers; i++ {
					wg.Add(1)
					go func(r, i int) {
						defer wg.Done()
						a := starts[r]
						_, errs[r][i] = svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: js(t, fmt.Sprintf(`{"score": %d}`, i))})
					}(r, i)
				}
			}
			wg.Wait()
			for r, a := range starts {
				wins := 0
				for _, err := range errs[r] {
					switch code(err) {
					case "":
						wins++
					case runtime.CodeStaleSeq:
					default:
						t.Fatalf("run %s: unexpected %v", a.RunID, err)
					}
				}
				if wins != 1 {
					t.Fatalf("run %s: %d submissions won, want 1", a.RunID, wins)
				}
				run, _, err := svc.Get(ctx, a.RunID)
				if err != nil || run.Rejections != racers-1 {
					t.Fatalf("run %s: %v, rejections %d, want %d", a.RunID, err, run.Rejections, racers-1)
				}
			}
			if n := cached(t, svc); n != 1 {
				t.Fatalf("the cache holds %d runs once idle, want 1", n)
			}
		})
	}
}
