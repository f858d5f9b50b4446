package service

import (
	"context"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service/servicetest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// recordsRead counts the trace records the service reads through it, by
// any of the store's reads.
type recordsRead struct {
	tracestore.Store

	mu sync.Mutex
	n  int
}

func (s *recordsRead) add(recs []tracestore.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += len(recs)
}

func (s *recordsRead) take() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.n
	s.n = 0
	return n
}

func (s *recordsRead) Load(ctx context.Context, runID string) ([]tracestore.Record, error) {
	recs, err := s.Store.Load(ctx, runID)
	s.add(recs)
	return recs, err
}

func (s *recordsRead) LoadPrefix(ctx context.Context, runID string, n uint64) ([]tracestore.Record, error) {
	recs, err := s.Store.LoadPrefix(ctx, runID, n)
	s.add(recs)
	return recs, err
}

func (s *recordsRead) LoadRange(ctx context.Context, runID string, from, to uint64) ([]tracestore.Record, error) {
	recs, err := tracestore.Range(ctx, s.Store, runID, from, to)
	s.add(recs)
	return recs, err
}

// The answer to a step that ran a runtime tool call reads nothing back
// from the store: the chain's events are the ones this process appended
// (the run's tail), whatever the trace's length. (Read back, as another
// instance would, it reads only the chain's events:
// TestAnAnswerFromTheTailEqualsOneReadBack.)
func TestAnswerAfterAToolCallReadsNothingBack(t *testing.T) {
	ctx := context.Background()
	store := &recordsRead{Store: tracestore.NewMemory()}
	f := newToolService(t, store, servicetest.Registry(t, servicetest.NewEndpoint(t), 1, "0s"), callLoopProgram("refund"), Options{})
	a, err := f.svc.StartRun(ctx, StartOptions{Program: "callloop", Input: js(t, `{"order": "o-1"}`), Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		store.take()
		if a, err = f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Principal: "alice", Output: js(t, `{}`)}); err != nil {
			t.Fatal(err)
		}
		if a.State != "ask" || hops(a) != "ask>work work>ask" {
			t.Fatalf("step %d: answer %+v (hops %q), want the next ask task", i, a, hops(a))
		}
		if read := store.take(); read != 0 {
			t.Fatalf("step %d read %d records back, want none", i, read)
		}
	}
}
