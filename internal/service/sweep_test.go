package service

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// readCounting is a store that counts the reads of each run's row and
// trace.
type readCounting struct {
	tracestore.Store
	mu    sync.Mutex
	reads map[string]int
}

func (s *readCounting) count(runID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads[runID]++
}

func (s *readCounting) readsOf(runID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[runID]
}

func (s *readCounting) Load(ctx context.Context, runID string) ([]tracestore.Record, error) {
	s.count(runID)
	return s.Store.Load(ctx, runID)
}

func (s *readCounting) LoadPrefix(ctx context.Context, runID string, n uint64) ([]tracestore.Record, error) {
	s.count(runID)
	return s.Store.LoadPrefix(ctx, runID, n)
}

func (s *readCounting) Run(ctx context.Context, runID string) (tracestore.RunInfo, error) {
	s.count(runID)
	return s.Store.Run(ctx, runID)
}

// toReview drives a run of the review program to its approval, whose
// deadline is an hour after the clock's time then.
func toReview(t *testing.T, svc *Service) Answer {
	t.Helper()
	ctx := context.Background()
	a, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	b, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: js(t, `{"score": 9}`)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: b.Seq, Tool: "linter", Output: js(t, `{"ok": true}`)})
	if err != nil || c.State != "review" {
		t.Fatalf("at %s, %v; want review", c.State, err)
	}
	return c
}

func traceLen(t *testing.T, store tracestore.Store, runID string) int {
	t.Helper()
	recs, err := store.Load(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// A due task times out through the sweeper, on the service's clock; a run
// whose task is not due is neither touched nor even read; a read before
// the sweep shows the timeout but appends nothing.
func TestSweepTimesOutOnlyDueRunsWithoutReadingTheOthers(t *testing.T) {
	ctx := context.Background()
	store := &readCounting{Store: tracestore.NewMemory(), reads: map[string]int{}}
	svc, _, clock := newTestService(t, store)
	due := toReview(t, svc) // deadline t0+1h
	clock.Add(30 * time.Minute)
	later := toReview(t, svc) // deadline t0+1h30m

	// A fresh service, as after a restart: nothing cached.
	fresh, _, freshClock := newTestServiceWith(t, Options{Store: store})
	freshClock.Add(time.Hour)
	if n, err := fresh.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("first sweep timed out %d runs, %v; want 1", n, err)
	}
	run, _, err := fresh.Get(ctx, due.RunID)
	if err != nil || run.Outcome != "EXPIRED" {
		t.Fatalf("due run: %+v %v; want EXPIRED", run, err)
	}
	events, err := fresh.Events(ctx, due.RunID)
	if err != nil || lastOf(events, runtime.EventTaskExpired) == nil {
		t.Fatalf("due run's trace has no task_expired: %v", err)
	}

	before := traceLen(t, store, later.RunID)
	readsBefore := store.readsOf(later.RunID)
	freshClock.Add(29 * time.Minute) // t0+1h29m: the later run is not due yet
	if n, err := fresh.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("second sweep timed out %d runs, %v; want none", n, err)
	}
	if got := store.readsOf(later.RunID) - readsBefore; got != 0 {
		t.Fatalf("the sweep read the run that is not due %d times", got)
	}
	if n := traceLen(t, store, later.RunID); n != before {
		t.Fatalf("the run that is not due grew from %d to %d events", before, n)
	}

	freshClock.Add(time.Minute) // t0+1h30m: now it is due
	shown, _, err := fresh.Read(ctx, later.RunID, Caller{ID: "t"})
	if err != nil || shown.Outcome != "EXPIRED" || shown.Status == runtime.StatusRunning {
		t.Fatalf("read of a due run shows %+v, %v; want it expired", shown, err)
	}
	if n := traceLen(t, store, later.RunID); n != before {
		t.Fatalf("a read appended: %d events, want %d", n, before)
	}
	if n, err := fresh.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("third sweep timed out %d runs, %v; want 1", n, err)
	}
	if n := traceLen(t, store, later.RunID); n <= before {
		t.Fatal("the sweep did not record the timeout")
	}
	if n, err := fresh.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("a sweep with nothing due timed out %d runs, %v", n, err)
	}
}

// A write that answers past the timeout a read showed records the timeout
// first, as the sweeper would have; a late answer to the expired task
// itself is still the core's deadline_exceeded.
func TestNextWriteRecordsTheTimeoutAReadShowed(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		seq  func(open uint64) uint64
		want runtime.Code
	}{
		{"answer to the expired task", func(open uint64) uint64 { return open }, runtime.CodeDeadlineExceeded},
		{"answer to what the read showed", func(open uint64) uint64 { return open + 1 }, runtime.CodeRunFinished},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := tracestore.NewMemory()
			svc, _, clock := newTestService(t, store)
			r := toReview(t, svc)
			clock.Add(time.Hour)
			_, err := svc.Decide(ctx, r.RunID, runtime.Decide{Seq: c.seq(r.Seq), Role: "editor", Decision: js(t, `{"approved": true}`)})
			if code(err) != c.want {
				t.Fatalf("late decision: %v, want %s", err, c.want)
			}
			events, err := svc.Events(ctx, r.RunID)
			if err != nil || lastOf(events, runtime.EventTaskExpired) == nil {
				t.Fatalf("no task_expired recorded: %v", err)
			}
			if run, _, _ := svc.Get(ctx, r.RunID); run.Outcome != "EXPIRED" {
				t.Fatalf("outcome %s, want EXPIRED", run.Outcome)
			}
		})
	}
}

// Who may see and drive a run: the operator every run, the owner its own,
// an approver also a run waiting for its role; any other gets the answer
// for a run that does not exist.
func TestCallersSeeAndDriveOnlyWhatTheyMay(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newTestService(t, tracestore.NewMemory())
	r := toReview(t, svc) // owned by "t", waits for an editor
	for _, c := range []struct {
		name        string
		caller      Caller
		read, drive bool
	}{
		{"owner", Caller{ID: "t"}, true, true},
		{"operator", Caller{ID: "ops", Operator: true}, true, true},
		{"stranger", Caller{ID: "mallory"}, false, false},
		{"approver of the awaited role", Caller{ID: "ed", ApproverRole: "editor"}, true, false},
		{"approver of another role", Caller{ID: "cfo", ApproverRole: "finance"}, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := svc.Read(ctx, r.RunID, c.caller)
			if (err == nil) != c.read || err != nil && code(err) != runtime.CodeNoSuchRun {
				t.Errorf("read: %v, want allowed=%v", err, c.read)
			}
			_, _, err = svc.Own(ctx, r.RunID, c.caller)
			if (err == nil) != c.drive || err != nil && code(err) != runtime.CodeNoSuchRun {
				t.Errorf("drive: %v, want allowed=%v", err, c.drive)
			}
		})
	}
}

// An approver reads a run only while it waits for their decision: once
// the decision's deadline has passed, even before anything records the
// timeout, the run is hidden from them as from a stranger, while its owner
// sees it timed out.
func TestApproverDoesNotReadARunWhoseDecisionTimedOut(t *testing.T) {
	ctx := context.Background()
	svc, _, clock := newTestService(t, tracestore.NewMemory())
	r := toReview(t, svc) // owned by "t", waits for an editor until t0+1h
	approver := Caller{ID: "ed", ApproverRole: "editor"}
	if _, _, err := svc.Read(ctx, r.RunID, approver); err != nil {
		t.Fatalf("approver's read before the deadline: %v", err)
	}
	clock.Add(time.Hour)
	if _, _, err := svc.Read(ctx, r.RunID, approver); code(err) != runtime.CodeNoSuchRun {
		t.Fatalf("approver's read after the deadline: %v, want %s", err, runtime.CodeNoSuchRun)
	}
	if run, _, err := svc.Read(ctx, r.RunID, Caller{ID: "t"}); err != nil || run.Outcome != "EXPIRED" {
		t.Fatalf("owner's read after the deadline: %+v, %v; want EXPIRED", run, err)
	}
}

// Listing follows the same rule: the operator finds every run, anyone
// else only their own.
func TestCallersListOnlyTheRunsTheyDrive(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newTestService(t, tracestore.NewMemory())
	for _, owner := range []string{"t", "u", "t"} {
		if _, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), owner); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		caller Caller
		want   int
	}{
		{Caller{ID: "t"}, 2}, {Caller{ID: "u"}, 1}, {Caller{ID: "mallory"}, 0},
		{Caller{ID: "ops", Operator: true}, 3},
		// A filter naming someone else does not widen the listing.
		{Caller{ID: "mallory", ApproverRole: "editor"}, 0},
	} {
		runs, _, err := svc.Runs(ctx, c.caller, tracestore.ListFilter{Principal: "t"})
		if c.caller.Operator {
			runs, _, err = svc.Runs(ctx, c.caller, tracestore.ListFilter{})
		}
		if err != nil || len(runs) != c.want {
			t.Errorf("%+v lists %d runs, %v; want %d", c.caller, len(runs), err, c.want)
		}
	}
}

// earlyRows is a store whose run rows name each running run's start as
// its due time, as a store migrated to schema step 7 names it for every
// run running then (tracestore's dueStep): a bound before the deadline.
type earlyRows struct{ tracestore.Store }

func (s earlyRows) Append(ctx context.Context, runID string, recs []tracestore.Record, info tracestore.RunInfo) error {
	if info.Status == string(runtime.StatusRunning) {
		info.Deadline = info.StartedAt
	}
	return s.Store.Append(ctx, runID, recs, info)
}

// A run whose row names a due time before its deadline (one from before
// the due column) is looked at by one sweep; later sweeps pass over it,
// without reading it, until its real deadline, when it times out, or for
// good when its task has none.
func TestSweepLooksAtARunWithAnEarlyRowOnceUntilItsDeadline(t *testing.T) {
	ctx := context.Background()
	store := &readCounting{Store: earlyRows{tracestore.NewMemory()}, reads: map[string]int{}}
	svc, _, _ := newTestService(t, store)
	open, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t") // an llm task without a timeout
	if err != nil {
		t.Fatal(err)
	}
	review := toReview(t, svc) // deadline t0+1h

	// A restarted server with room for one folded run only, so that a
	// run looked at again is read again.
	fresh, _, clock := newTestServiceWith(t, Options{Store: store, MaxCachedRuns: 1})
	clock.Add(30 * time.Minute)
	if n, err := fresh.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("first sweep timed out %d runs, %v; want none", n, err)
	}
	reads := map[string]int{open.RunID: store.readsOf(open.RunID), review.RunID: store.readsOf(review.RunID)}
	clock.Add(time.Minute)
	if n, err := fresh.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("second sweep timed out %d runs, %v; want none", n, err)
	}
	for id, before := range reads {
		if got := store.readsOf(id) - before; got != 0 {
			t.Errorf("the second sweep read run %s %d times; want it passed over", id, got)
		}
	}

	clock.Add(29 * time.Minute) // t0+1h: the review is due
	if n, err := fresh.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("sweep at the review's deadline timed out %d runs, %v; want 1", n, err)
	}
	if run, _, err := fresh.Get(ctx, review.RunID); err != nil || run.Outcome != "EXPIRED" {
		t.Fatalf("review run: %+v %v; want EXPIRED", run, err)
	}
	if got := store.readsOf(open.RunID) - reads[open.RunID]; got != 0 {
		t.Errorf("the sweeps read the run without a deadline %d times; want none", got)
	}
}

// A run waiting when its store was migrated to the due column, with a
// deadline the row could not name, is timed out by the sweeper once that
// deadline passes, without any append in between.
func TestSweepTimesOutARunFromBeforeTheDueColumn(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "traces.db")
	store, err := tracestore.OpenSQLite(path, tracestore.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Both servers share the data directory's keys.
	keks := keyring.MemoryKEKs()
	svc, _, _ := newTestServiceWith(t, Options{Store: store, KEKs: keks})
	r := toReview(t, svc) // deadline t0+1h
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// The store as a binary from before the due column left it: an
	// approval's deadline unknown (as schema step 6 fills it in), no due
	// column and no open-call columns (step 9), at version 6.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE runs SET awaiting_deadline = 9223372036854775807 WHERE awaiting_role <> ''`,
		`DROP INDEX runs_open_call`, // schema step 9's, which came later
		`ALTER TABLE runs DROP COLUMN call_id`,
		`ALTER TABLE runs DROP COLUMN lease_holder`,
		`ALTER TABLE runs DROP COLUMN lease_expires`,
		`DROP INDEX runs_due`,
		`ALTER TABLE runs DROP COLUMN due`,
		`DELETE FROM schema_version WHERE version > 6`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	migrated, err := tracestore.OpenSQLite(path, tracestore.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer migrated.Close()
	fresh, _, clock := newTestServiceWith(t, Options{Store: migrated, KEKs: keks})
	clock.Add(time.Hour)
	if n, err := fresh.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("sweep after the deadline timed out %d runs, %v; want 1", n, err)
	}
	if run, _, err := fresh.Get(ctx, r.RunID); err != nil || run.Outcome != "EXPIRED" {
		t.Fatalf("run from before the due column: %+v, %v; want EXPIRED", run, err)
	}
}
