package service

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service/servicetest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// leaseStore counts the runner's lease writes and, when slow is set,
// moves the service's clock on by slow after each append that records a
// call's intent, as an append that took that long would.
type leaseStore struct {
	tracestore.Store
	clock *fixedClock
	slow  time.Duration
	takes atomic.Int32
	rows  atomic.Int32 // reads of the run's index row
}

func (s *leaseStore) Run(ctx context.Context, runID string) (tracestore.RunInfo, error) {
	s.rows.Add(1)
	return s.Store.Run(ctx, runID)
}

func (s *leaseStore) Append(ctx context.Context, runID string, recs []tracestore.Record, info tracestore.RunInfo) error {
	err := s.Store.Append(ctx, runID, recs, info)
	for _, r := range recs {
		if err == nil && s.slow > 0 && r.Type == string(runtime.EventToolCallStarted) {
			s.clock.Add(s.slow)
		}
	}
	return err
}

func (s *leaseStore) TakeLease(ctx context.Context, runID, callID, holder string, now, until time.Time) (bool, error) {
	s.takes.Add(1)
	return s.Store.TakeLease(ctx, runID, callID, holder, now, until)
}

// The lease the intent's append wrote moments ago is not renewed before
// the invocation; one with less than half its life left is, once. Either
// way the tool runs once and its outcome is recorded, conditional on the
// lease, with no lease write after the invocation.
func TestTheRunnerRenewsItsLeaseBeforeInvokingOnlyPastHalfItsLife(t *testing.T) {
	// rows[i] is case i's reads of the run's row: the runner knows the
	// lease its own append wrote, and reads the row only to renew it.
	var rows []int32
	defer func() {
		if len(rows) == 3 && !(rows[0] == rows[1] && rows[2] == rows[0]+1) {
			t.Errorf("reads of the run's row %v: want none by the runner while its own lease is fresh, one to renew it", rows)
		}
	}()
	for _, c := range []struct {
		name  string
		slow  time.Duration
		takes int32
	}{
		{"written moments ago: no lease write", 0, 0},
		{"half its life left: no lease write", DefaultLeaseTTL / 2, 0},
		{"less than half its life left: renewed once", DefaultLeaseTTL/2 + time.Second, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := servicetest.NewEndpoint(t)
			store := &leaseStore{Store: tracestore.NewMemory(), slow: c.slow}
			f := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), toolProgram("charge", "manual"), Options{})
			store.clock = f.clock
			a, err := f.startAndPlan(t)
			if err != nil {
				t.Fatal(err)
			}
			if a.State != "confirm" || hops(a) != "plan>refund refund>confirm" {
				t.Fatalf("answer in %s (hops %q), want confirm after the call", a.State, hops(a))
			}
			if keys, _ := e.Calls(); len(keys) != 1 {
				t.Fatalf("the tool was called %d times, want once", len(keys))
			}
			if got := store.takes.Load(); got != c.takes {
				t.Errorf("%d lease writes, want %d", got, c.takes)
			}
			rows = append(rows, store.rows.Load())
		})
	}
}

// Another instance that took the call over while the tool ran (this one
// stalled past the lease's expiry) owns it: the runner's outcome append,
// conditional on its lease, is refused and records nothing; the trace
// still ends with the intent, and the lease is the other instance's.
func TestAnOutcomeIsNotRecordedOnceAnotherInstanceTookTheLease(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	e := servicetest.NewEndpoint(t)
	e.Hold()
	f := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), toolProgram("charge", "manual"), Options{StepWait: time.Millisecond, Instance: "first"})
	a, err := f.startAndPlan(t)
	if err != nil {
		t.Fatal(err)
	}
	<-e.Entered
	before, err := store.Run(ctx, a.RunID)
	if err != nil || before.LeaseHolder != "first" {
		t.Fatalf("row %+v, %v; want the call leased to first", before, err)
	}
	now := t0.Add(DefaultLeaseTTL + time.Second)
	if ok, err := store.TakeLease(ctx, a.RunID, before.Call, "next", now, now.Add(DefaultLeaseTTL)); err != nil || !ok {
		t.Fatalf("the other instance's takeover: %v, %v", ok, err)
	}
	e.Release()
	f.idle()
	after, err := store.Run(ctx, a.RunID)
	if err != nil || after.Events != before.Events || after.Call != before.Call || after.LeaseHolder != "next" {
		t.Fatalf("row %+v, %v; want %d events and the call leased to next", after, err, before.Events)
	}
	recs, err := store.Load(ctx, a.RunID)
	if err != nil || recs[len(recs)-1].Type != string(runtime.EventToolCallStarted) {
		t.Fatalf("the trace ends with %s, %v; want the intent", recs[len(recs)-1].Type, err)
	}
}

// renewals reports each lease write the runner makes.
type renewals struct {
	tracestore.Store
	took chan string // the holder of each successful write
}

func (s *renewals) TakeLease(ctx context.Context, runID, callID, holder string, now, until time.Time) (bool, error) {
	held, err := s.Store.TakeLease(ctx, runID, callID, holder, now, until)
	if held && err == nil {
		s.took <- holder
	}
	return held, err
}

// While the tool runs, the runner renews its lease every third of the
// lease's life, again and again; the outcome is recorded once the tool
// answers. The next run's call, which a runner goroutine left idle by the
// first takes up, is renewed the same way.
func TestTheLeaseIsRenewedWhileTheToolRuns(t *testing.T) {
	store := &renewals{Store: tracestore.NewMemory(), took: make(chan string, 1000)}
	e := servicetest.NewEndpoint(t)
	f := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), toolProgram("charge", "manual"),
		Options{StepWait: time.Millisecond, LeaseTTL: 3 * time.Millisecond, Instance: "first"})
	for run := range 2 {
		e.Hold()
		a, err := f.startAndPlan(t)
		if err != nil {
			t.Fatal(err)
		}
		<-e.Entered
		for range 3 {
			if holder := <-store.took; holder != "first" {
				t.Fatalf("run %d: a lease write by %s, want the runner's", run, holder)
			}
		}
		e.Release()
		f.idle()
		r, _, err := f.svc.Get(context.Background(), a.RunID)
		if err != nil || r.State != "confirm" {
			t.Fatalf("run %d: %v, %v; want the outcome recorded and the run in confirm", run, r, err)
		}
	}
}
