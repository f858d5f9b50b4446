package service

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// fixedClock is an injected clock that tests move by hand.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fixedClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestService(t *testing.T, store tracestore.Store) (*Service, *program.Program, *fixedClock) {
	t.Helper()
	return newTestServiceWith(t, Options{Store: store})
}

// newTestServiceWith is newTestService with more options; it sets Clock
// and NewID.
func newTestServiceWith(t *testing.T, o Options) (*Service, *program.Program, *fixedClock) {
	t.Helper()
	src, err := os.ReadFile("../runtime/testdata/review.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := program.Load("review.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fixedClock{now: t0}
	n := 0
	var mu sync.Mutex
	o.Clock = clock.Now
	o.NewID = func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("run-%d", n)
	}
	svc := New(o)
	if err := svc.AddProgram(context.Background(), p, src); err != nil {
		t.Fatal(err)
	}
	return svc, p, clock
}

func TestServiceConcurrentSubmissionsExactlyOneWins(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newTestService(t, tracestore.NewMemory())
	a, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Different outputs for the same seq: not duplicates of each other.
			_, errs[i] = svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: js(t, fmt.Sprintf(`{"score": %d}`, i))})
		}(i)
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch code(err) {
		case "":
			wins++
		case runtime.CodeStaleSeq:
		default:
			t.Fatalf("unexpected %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d submissions won, want 1", wins)
	}
	run, _, _ := svc.Get(ctx, a.RunID)
	if run.Attempts != 0 || run.Rejections != n-1 {
		t.Fatalf("attempts %d rejections %d: losers of a race must not use attempts", run.Attempts, run.Rejections)
	}
}

func TestServiceDuplicateReturnsTheOriginalAnswer(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newTestService(t, tracestore.NewMemory())
	a, _ := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
	first, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: js(t, `{"score": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	// The run moves on before the retry arrives.
	if _, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: first.Seq, Tool: "linter", Output: js(t, `{"ok": true}`)}); err != nil {
		t.Fatal(err)
	}
	again, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: first.Seq, Tool: "linter", Output: js(t, `{"ok": true}`)})
	if err != nil || !again.Duplicate {
		t.Fatalf("retry: %+v %v", again, err)
	}
	if again.Status != runtime.StatusCompleted || again.Outcome != "DONE" || len(again.Transitions) != 2 {
		t.Fatalf("retry answer %+v, want the original (completed, DONE, two hops)", again)
	}
}

func TestServiceReloadsRunsFromTheStore(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	svc, _, _ := newTestService(t, store)
	a, _ := svc.Start(ctx, "test-review", js(t, `{"limit": 5, "author": {"id": "x", "name": "Ann"}}`), "t")
	b, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: js(t, `{"score": 9, "text": "t"}`)})
	if err != nil {
		t.Fatal(err)
	}
	before, _, _ := svc.Get(ctx, a.RunID)

	// A new process: same store, no memory of the run, and it does not
	// even know the program: the pinned definition comes from the store.
	fresh := New(Options{Store: store, Clock: func() time.Time { return t0 }})
	after, _, err := fresh.Get(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if after.State != before.State || after.Seq != before.Seq || after.NextIndex != before.NextIndex {
		t.Fatalf("reloaded run differs: %+v vs %+v", after, before)
	}
	if _, err := fresh.Submit(ctx, a.RunID, runtime.Submit{Seq: b.Seq, Tool: "linter", Output: js(t, `{"ok": true}`)}); err != nil {
		t.Fatalf("continue after reload: %v", err)
	}
}

func TestServiceTickTimesOutAnOpenApproval(t *testing.T) {
	ctx := context.Background()
	svc, _, clock := newTestService(t, tracestore.NewMemory())
	a, _ := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
	b, _ := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: js(t, `{"score": 9}`)})
	c, _ := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: b.Seq, Tool: "linter", Output: js(t, `{"ok": true}`)})
	if c.State != "review" {
		t.Fatalf("at %s, want review", c.State)
	}
	clock.Add(59 * time.Minute)
	if d, _ := svc.Tick(ctx, a.RunID); d.Status != runtime.StatusRunning {
		t.Fatal("timed out early")
	}
	clock.Add(time.Minute)
	_, err := svc.Decide(ctx, a.RunID, runtime.Decide{Seq: c.Seq, Role: "editor", Decision: js(t, `{"approved": true}`)})
	if code(err) != runtime.CodeDeadlineExceeded {
		t.Fatalf("late decision: %v, want deadline_exceeded", err)
	}
	run, _, _ := svc.Get(ctx, a.RunID)
	if run.Outcome != "EXPIRED" {
		t.Fatalf("outcome %s, want EXPIRED", run.Outcome)
	}
}

func TestServiceRejectsUnknownProgramAndRun(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newTestService(t, tracestore.NewMemory())
	if _, err := svc.Start(ctx, "nope", js(t, `{}`), "t"); code(err) != runtime.CodeNoSuchProgram {
		t.Fatalf("unknown program: %v", err)
	}
	if _, err := svc.Submit(ctx, "missing", runtime.Submit{Seq: 1, Output: js(t, `{}`)}); code(err) != runtime.CodeNoSuchRun {
		t.Fatalf("unknown run: %v", err)
	}
	if _, err := svc.Start(ctx, "test-review", js(t, `{"limit": "x"}`), "t"); code(err) != runtime.CodeInvalidInput {
		t.Fatalf("bad input: %v", err)
	}
}

// TestServiceRaceAcrossProcesses: two services (two processes) share one
// store. The one whose cached run is stale loses at append, refolds, and
// its input then meets the run as it is: a different answer is a recorded
// stale_seq, the same answer is a duplicate with the original result.
func TestServiceRaceAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	a, _, _ := newTestService(t, store)
	b := New(Options{Store: store, Clock: func() time.Time { return t0 }})
	started, err := a.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(ctx, started.RunID); err != nil { // b caches the run
		t.Fatal(err)
	}
	if _, err := a.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, `{"score": 1}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, `{"score": 2}`)}); code(err) != runtime.CodeStaleSeq {
		t.Fatalf("the loser got %v, want stale_seq", err)
	}
	events, _ := b.Events(ctx, started.RunID)
	if last := events[len(events)-1]; last.Type != runtime.EventSubmissionRejected || last.Rejection.Code != runtime.CodeStaleSeq {
		t.Fatalf("the lost race is not recorded: %+v", last)
	}
	dup, err := b.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Output: js(t, `{"score": 1}`)})
	if err != nil || !dup.Duplicate || dup.State != "check" {
		t.Fatalf("same answer from the other process: %+v %v", dup, err)
	}
}

// TestRunsStayPinnedToTheirDefinition: replacing a program changes what new
// runs use; a running run keeps the definition it started with, and a
// submission that names the new definition is refused.
func TestRunsStayPinnedToTheirDefinition(t *testing.T) {
	ctx := context.Background()
	svc, old, _ := newTestService(t, tracestore.NewMemory())
	a, _ := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")

	src, _ := os.ReadFile("../runtime/testdata/review.yaml")
	changed := []byte(strings.Replace(string(src), "when: output.score >= 0", "when: output.score >= 100", 1))
	p2, err := program.Load("review-v2.yaml", changed)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddProgram(ctx, p2, changed); err != nil {
		t.Fatal(err)
	}
	if p2.Hash == old.Hash {
		t.Fatal("a changed guard kept the definition hash")
	}
	if _, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, DefinitionHash: p2.Hash, Output: js(t, `{"score": 1}`)}); code(err) != runtime.CodeDefinitionMismatch {
		t.Fatalf("submission under the new definition: %v, want definition_mismatch", err)
	}
	// Under the old guard a score of 1 passes; under the new one it would not.
	b, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, DefinitionHash: old.Hash, Output: js(t, `{"score": 1}`)})
	if err != nil || b.State != "check" {
		t.Fatalf("pinned run: %+v %v", b, err)
	}
	c, _ := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "t")
	if _, err := svc.Submit(ctx, c.RunID, runtime.Submit{Seq: c.Seq, Output: js(t, `{"score": 1}`)}); code(err) != runtime.CodeGuardDenied {
		t.Fatalf("a new run does not use the new definition: %v", err)
	}
}
