package service

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

var testSecret = bytes.Repeat([]byte{4}, 32)

// idempotentService is one process: its own service over store, with the
// shared secret and the review program.
func idempotentService(t *testing.T, store tracestore.Store) *Service {
	t.Helper()
	src, err := os.ReadFile("../runtime/testdata/review.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := program.Load("review.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	svc := New(Options{Store: store, Clock: func() time.Time { return t0 }, Secret: testSecret})
	if err := svc.AddProgram(context.Background(), p, src); err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestIdempotentStartDerivesTheRunID(t *testing.T) {
	svc := idempotentService(t, tracestore.NewMemory())
	a, err := svc.StartRun(context.Background(), StartOptions{Program: "test-review", Input: js(t, `{"limit": 5}`), Principal: "alice", IdempotencyKey: "order-42"})
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte("idempotency\x00alice\x00test-review\x00order-42"))
	if want := "run_" + hex.EncodeToString(mac.Sum(nil)[:16]); a.RunID != want || a.Duplicate {
		t.Fatalf("run id %s (duplicate %v), want %s", a.RunID, a.Duplicate, want)
	}
}

func TestIdempotentStartAnswersWithTheSameRun(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	svc := idempotentService(t, store)
	o := StartOptions{Program: "test-review", Input: js(t, `{"limit": 5, "author": {"id": "a", "name": "Ann"}}`), Principal: "alice", IdempotencyKey: "k.1:x-y_z"}
	first, err := svc.StartRun(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	step, err := svc.Submit(ctx, first.RunID, runtime.Submit{Seq: first.Seq, Output: js(t, `{"score": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := store.Load(ctx, first.RunID)
	// The same start, spelt differently: the run as it stands now.
	o.Input = js(t, `{"author": {"name": "Ann", "id": "a"}, "limit": 5.0}`)
	again, err := svc.StartRun(ctx, o)
	if err != nil || !again.Duplicate || again.RunID != first.RunID || again.State != "check" || again.Seq != step.Seq || again.Task == nil {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	// After a restart (a new process over the same store and secret).
	restarted := idempotentService(t, store)
	if a, err := restarted.StartRun(ctx, o); err != nil || !a.Duplicate || a.RunID != first.RunID || a.State != "check" {
		t.Fatalf("repeat after a restart: %+v %v", a, err)
	}
	// Another principal or program with the same key is another start.
	other := o
	other.Principal = "bob"
	if a, err := svc.StartRun(ctx, other); err != nil || a.Duplicate || a.RunID == first.RunID {
		t.Fatalf("another principal: %+v %v", a, err)
	}
	if after, _ := store.Load(ctx, first.RunID); len(after) != len(before) {
		t.Fatalf("the run has %d events, %d before the repeats", len(after), len(before))
	}
}

func TestIdempotentStartRefusesAnotherInput(t *testing.T) {
	ctx := context.Background()
	svc := idempotentService(t, tracestore.NewMemory())
	o := StartOptions{Program: "test-review", Input: js(t, `{"limit": 5}`), Principal: "alice", IdempotencyKey: "k"}
	if _, err := svc.StartRun(ctx, o); err != nil {
		t.Fatal(err)
	}
	changed := o
	changed.Input = js(t, `{"limit": 6}`)
	if _, err := svc.StartRun(ctx, changed); code(err) != runtime.CodeIdempotencyConflict || !strings.Contains(err.Error(), "new key") {
		t.Fatalf("another input: %v, want idempotency_conflict", err)
	}
	lab := o
	lab.Lab = true
	if _, err := svc.StartRun(ctx, lab); code(err) != runtime.CodeIdempotencyConflict {
		t.Fatalf("the same start as a lab run: %v, want idempotency_conflict", err)
	}
}

func TestIdempotencyKeysAreChecked(t *testing.T) {
	ctx := context.Background()
	svc := idempotentService(t, tracestore.NewMemory())
	for _, key := range []string{"a b", "ключ", strings.Repeat("k", 129), "k\x00", "a/b"} {
		if _, err := svc.StartRun(ctx, StartOptions{Program: "test-review", Input: js(t, `{"limit": 5}`), IdempotencyKey: key}); code(err) != runtime.CodeInvalidInput {
			t.Errorf("key %q: %v, want invalid_input", key, err)
		}
	}
	if _, err := svc.StartRun(ctx, StartOptions{Program: "test-review", Input: js(t, `{"limit": 5}`), IdempotencyKey: strings.Repeat("k", 128)}); err != nil {
		t.Errorf("a 128-character key: %v", err)
	}
	// A refused input leaves nothing behind: the key is still free.
	o := StartOptions{Program: "test-review", Input: js(t, `{"limit": "x"}`), IdempotencyKey: "retry"}
	if _, err := svc.StartRun(ctx, o); code(err) != runtime.CodeInvalidInput {
		t.Fatalf("bad input: %v", err)
	}
	o.Input = js(t, `{"limit": 5}`)
	if a, err := svc.StartRun(ctx, o); err != nil || a.Duplicate {
		t.Fatalf("the key after a refused start: %+v %v", a, err)
	}
}

// TestConcurrentIdempotentStartsMakeOneRun: many starts with one key, from
// goroutines of one process and of two processes sharing a store, start
// exactly one run; every other answer is that run, marked as a repeat.
func TestConcurrentIdempotentStartsMakeOneRun(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	procs := []*Service{idempotentService(t, store), idempotentService(t, store)}
	const n = 16
	answers := make([]Answer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			answers[i], errs[i] = procs[i%2].StartRun(ctx, StartOptions{Program: "test-review", Input: js(t, `{"limit": 5}`), Principal: "p", IdempotencyKey: "once"})
		}(i)
	}
	wg.Wait()
	fresh := 0
	for i, a := range answers {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		if a.RunID != answers[0].RunID || a.State != "draft" {
			t.Fatalf("start %d answered %+v, start 0 %+v", i, a, answers[0])
		}
		if !a.Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d starts began a run, want 1", fresh)
	}
	runs, _, err := store.ListRuns(ctx, tracestore.ListFilter{})
	if err != nil || len(runs) != 1 {
		t.Fatalf("%d runs stored (%v), want 1", len(runs), err)
	}
	recs, _ := store.Load(ctx, answers[0].RunID)
	if len(recs) != 2 {
		t.Fatalf("the run has %d events, want run_started and task_issued", len(recs))
	}
	// Both processes continue the one run.
	if _, err := procs[1].Submit(ctx, answers[0].RunID, runtime.Submit{Seq: 1, Output: js(t, `{"score": 1}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := procs[0].Submit(ctx, answers[0].RunID, runtime.Submit{Seq: 2, Tool: "linter", Actor: runtime.ActorTool, Output: js(t, `{"ok": true}`)}); err != nil {
		t.Fatal(err)
	}
}

func TestLabRunsAreRecorded(t *testing.T) {
	ctx := context.Background()
	svc := idempotentService(t, tracestore.NewMemory())
	lab, err := svc.StartRun(ctx, StartOptions{Program: "test-review", Input: js(t, `{"limit": 5}`), Principal: "alice", Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5}`), "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id  string
		lab bool
	}{{lab.RunID, true}, {plain.RunID, false}} {
		run, _, err := svc.Get(ctx, c.id)
		if err != nil || run.Lab != c.lab {
			t.Fatalf("run %s: lab %v (%v), want %v", c.id, run.Lab, err, c.lab)
		}
		events, _ := svc.Events(ctx, c.id)
		if events[0].Started.Lab != c.lab {
			t.Fatalf("run_started of %s: lab %v", c.id, events[0].Started.Lab)
		}
		if d, err := runtime.Replay(loadTestProgram(t, "../runtime/testdata/review.yaml"), events); err != nil || d != nil {
			t.Fatalf("replay of %s: %+v %v", c.id, d, err)
		}
		recs, _ := svc.store.Load(ctx, c.id)
		if got := bytes.Contains(recs[0].Body, []byte(`"lab":true`)); got != c.lab {
			t.Fatalf("run_started of %s: %s", c.id, recs[0].Body)
		}
	}
}

// staleStore hides a run from the first look at its index row: the view
// of a process that looked just before another one stored the run.
type staleStore struct {
	tracestore.Store
	mu     sync.Mutex
	hidden map[string]bool
}

func (s *staleStore) Run(ctx context.Context, runID string) (tracestore.RunInfo, error) {
	s.mu.Lock()
	hide := !s.hidden[runID]
	s.hidden[runID] = true
	s.mu.Unlock()
	if hide {
		return tracestore.RunInfo{}, tracestore.ErrNotFound
	}
	return s.Store.Run(ctx, runID)
}

// TestIdempotentStartLosingTheRaceToAnotherProcess: the process that
// looked too early finds out at append, and answers with the other's run.
func TestIdempotentStartLosingTheRaceToAnotherProcess(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	o := StartOptions{Program: "test-review", Input: js(t, `{"limit": 5}`), Principal: "p", IdempotencyKey: "race"}
	first, err := idempotentService(t, store).StartRun(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	late := idempotentService(t, &staleStore{Store: store, hidden: map[string]bool{}})
	a, err := late.StartRun(ctx, o)
	if err != nil || !a.Duplicate || a.RunID != first.RunID || a.State != "draft" {
		t.Fatalf("the loser: %+v %v", a, err)
	}
	o.Input = js(t, `{"limit": 6}`)
	late = idempotentService(t, &staleStore{Store: store, hidden: map[string]bool{}})
	if _, err := late.StartRun(ctx, o); code(err) != runtime.CodeIdempotencyConflict {
		t.Fatalf("the loser with another input: %v", err)
	}
	if recs, _ := store.Load(ctx, first.RunID); len(recs) != 2 {
		t.Fatalf("the run has %d events", len(recs))
	}
}
