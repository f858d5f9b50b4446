package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// beatenStore lets another instance append first, before each of the next
// n appends through it: every one of them then conflicts, as a loser's
// does when the other losers record their rejections first.
type beatenStore struct {
	tracestore.Store
	mu     sync.Mutex
	n      int
	before func(i int)
}

func (s *beatenStore) Append(ctx context.Context, runID string, recs []tracestore.Record, info tracestore.RunInfo) error {
	s.mu.Lock()
	i, f := s.n, s.before
	if s.n > 0 {
		s.n--
	}
	s.mu.Unlock()
	if i > 0 {
		f(i)
	}
	return s.Store.Append(ctx, runID, recs, info)
}

// TestLosingSubmissionKeepsRetryingWhileOthersAppend: b's submission
// loses a race, then loses its own rejection's append to other losers,
// again and again, more often than any fixed retry bound. Every conflict
// follows another append, so b keeps applying its input to the run as it
// now stands, and is answered stale_seq with the current task, recorded
// in the trace, never an internal error.
func TestLosingSubmissionKeepsRetryingWhileOthersAppend(t *testing.T) {
	ctx := context.Background()
	const beaten = 8
	for _, be := range sharedBackends {
		t.Run(be.name, func(t *testing.T) {
			connect := be.open(t)
			var bStore *beatenStore
			connections := 0
			a, b, _, _ := twoInstances(t, func() tracestore.Store {
				if connections++; connections == 1 { // a's
					return connect()
				}
				bStore = &beatenStore{Store: connect()}
				return bStore
			})
			started, err := a.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := b.Get(ctx, started.RunID); err != nil { // b holds the run at its first task
				t.Fatal(err)
			}
			won, err := a.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, `{"score": 1}`)})
			if err != nil {
				t.Fatal(err)
			}
			bStore.mu.Lock()
			bStore.n = beaten
			bStore.before = func(i int) {
				// Another loser of the same race records its rejection.
				_, err := a.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, fmt.Sprintf(`{"score": %d}`, 100+i))})
				if code(err) != runtime.CodeStaleSeq {
					t.Errorf("the other loser got %v, want stale_seq", err)
				}
			}
			bStore.mu.Unlock()
			got, err := b.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, `{"score": 2}`)})
			if code(err) != runtime.CodeStaleSeq {
				t.Fatalf("b got %v, want stale_seq", err)
			}
			if got.Task == nil || got.Seq != won.Seq {
				t.Fatalf("b's answer carries task %+v at seq %d, want the open task at seq %d", got.Task, got.Seq, won.Seq)
			}
			events, err := a.Events(ctx, started.RunID)
			if err != nil {
				t.Fatal(err)
			}
			rejected := 0
			for _, e := range events {
				if e.Type == runtime.EventSubmissionRejected && e.Rejection.Code == runtime.CodeStaleSeq {
					rejected++
				}
			}
			if rejected != beaten+1 {
				t.Fatalf("%d stale_seq rejections recorded, want %d (the other losers' and b's)", rejected, beaten+1)
			}
		})
	}
}

// spuriousStore reports a conflict on every append, with nothing
// appended: a store fault, not a race.
type spuriousStore struct{ tracestore.Store }

func (spuriousStore) Append(_ context.Context, runID string, _ []tracestore.Record, _ tracestore.RunInfo) error {
	return fmt.Errorf("%w: run %s: spurious", tracestore.ErrConflict, runID)
}

// TestConflictWithoutProgressIsBounded: a conflict whose reload finds the
// trace no longer than before is retried only a few times, then reported:
// retrying without bound is only right while others make progress.
func TestConflictWithoutProgressIsBounded(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	a, _, _ := newTestService(t, store)
	started, err := a.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	// The run holds no personal data: b needs none of a's keys.
	b, _, _ := newTestService(t, spuriousStore{store})
	_, err = b.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, `{"score": 1}`)})
	if !errors.Is(err, tracestore.ErrConflict) {
		t.Fatalf("got %v, want the conflict reported", err)
	}
}
