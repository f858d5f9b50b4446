package service

import (
	"context"
	"errors"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/pgtest"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service/servicetest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The runtime-executed tool calls, through the service, with a registry of
// real executors: http tools against an endpoint in the test
// (servicetest.Endpoint), which records the calls by idempotency key and
// answers as scripted.

// toolProgram is the refunds program with a runtime tool state calling
// tool; onError, when set, is its on_error target.
func toolProgram(tool, onError string) string {
	return servicetest.Program(tool, servicetest.ProgramOptions{OnError: onError})
}

// sleeps records the backoffs the runner sleeps, without sleeping.
type sleeps struct {
	mu  sync.Mutex
	got []time.Duration
}

func (s *sleeps) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, d)
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.got...)
}

type toolFixture struct {
	svc   *Service
	p     *program.Program
	clock *fixedClock
	sl    *sleeps
}

// newToolService is a service over store with the registry reg and the
// program src, on a clock at t0, with a recording sleeper.
func newToolService(t *testing.T, store tracestore.Store, reg *executor.Registry, src string, o Options) toolFixture {
	t.Helper()
	p, err := program.Load("refunds.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fixedClock{now: t0}
	sl := &sleeps{}
	o.Store, o.Tools, o.Clock, o.Sleep = store, reg, clock.Now, sl.Sleep
	if o.Secret == nil {
		o.Secret = make([]byte, 32)
	}
	svc := New(o)
	t.Cleanup(svc.Close)
	if err := svc.AddProgram(context.Background(), p, []byte(src)); err != nil {
		t.Fatal(err)
	}
	return toolFixture{svc: svc, p: p, clock: clock, sl: sl}
}

var operator = Caller{ID: "ops", Operator: true}

// startAndPlan starts a run and answers its plan task; the answer is the
// step's.
func (f toolFixture) startAndPlan(t *testing.T) (Answer, error) {
	t.Helper()
	ctx := context.Background()
	a, err := f.svc.StartRun(ctx, StartOptions{Program: "refunds", Input: js(t, `{"order": "o-7", "customer": "c-1"}`), Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if a.State != "plan" || a.Task == nil {
		t.Fatalf("start: %+v, want the plan task", a)
	}
	return f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Principal: "alice", Output: js(t, `{"amount": 12}`)})
}

func types(events []runtime.Event) string {
	var out []string
	for _, e := range events {
		out = append(out, string(e.Type))
	}
	return strings.Join(out, " ")
}

func hops(a Answer) string {
	var out []string
	for _, h := range a.Transitions {
		out = append(out, h.From+">"+h.To)
	}
	return strings.Join(out, " ")
}

// A step into a runtime tool state runs the tool inside the step: the
// answer is the next caller task, with both hops, and the trace records
// the intent before the result; the endpoint saw one call, with the
// call's idempotency key and the evaluated arguments; the argument that
// reads personal data is sealed in the store and clear when read.
func TestRuntimeToolRunsInsideTheStep(t *testing.T) {
	ctx := context.Background()
	e := servicetest.NewEndpoint(t)
	store := tracestore.NewMemory()
	f := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), toolProgram("refund", ""), Options{})
	a, err := f.startAndPlan(t)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != runtime.StatusRunning || a.State != "confirm" || a.Task == nil || a.WaitingFor != "" || hops(a) != "plan>refund refund>confirm" {
		t.Fatalf("answer %+v (hops %q), want the confirm task after plan>refund refund>confirm", a, hops(a))
	}
	events, err := f.svc.Events(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	started, completed := lastOf(events, runtime.EventToolCallStarted), lastOf(events, runtime.EventToolCallCompleted)
	if started == nil || completed == nil || started.Index > completed.Index {
		t.Fatalf("trace %s: want tool_call_started before tool_call_completed", types(events))
	}
	if lastOf(events[:started.Index], runtime.EventTaskIssued).State != "plan" {
		t.Error("the runtime tool state issued a task to the caller")
	}
	call := started.Call
	want := runtime.IdempotencyKey(a.RunID, "refund", 1, call.CallID)
	keys, bodies := e.Calls()
	if len(keys) != 1 || keys[0] != want || call.IdempotencyKey != want || call.Attempt != 1 || call.Executor != "http" || call.Tool != "refund" {
		t.Fatalf("endpoint keys %v, intent %+v; want one call with key %s", keys, call, want)
	}
	if bodies[0] != `{"amount":12,"customer":"c-1","order":"o-7"}` {
		t.Errorf("the tool got %s", bodies[0])
	}
	if call.Arguments["customer"] != "c-1" {
		t.Errorf("read back, the argument is %v, want it opened", call.Arguments["customer"])
	}
	recs, err := store.Load(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Type == string(runtime.EventToolCallStarted) && (strings.Contains(string(r.Body), "c-1") || !strings.Contains(string(r.Body), projection.SealedKey)) {
			t.Errorf("stored intent %s: want the customer argument sealed", r.Body)
		}
		if r.Type == string(runtime.EventToolCallCompleted) && strings.Contains(string(r.Body), "Ada") {
			t.Errorf("stored result %s: want the receipt sealed", r.Body)
		}
	}
	if got := completed.Call.Result.(map[string]any)["receipt"]; got != servicetest.ReceiptPII {
		t.Errorf("read back, the result's receipt is %v", got)
	}

	// Erasing the customer erases the argument and the result's receipt.
	if _, err := f.svc.EraseSubject(ctx, EraseOptions{SubjectID: "c-1", Reason: "Art. 17", Principal: "dpo"}); err != nil {
		t.Fatal(err)
	}
	events, err = f.svc.Events(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	started, completed = lastOf(events, runtime.EventToolCallStarted), lastOf(events, runtime.EventToolCallCompleted)
	if !projection.IsErased(started.Call.Arguments["customer"]) || started.Call.Arguments["order"] != "o-7" {
		t.Errorf("after erasure the arguments are %v, want the customer erased and the order kept", started.Call.Arguments)
	}
	if res := completed.Call.Result.(map[string]any); !projection.IsErased(res["receipt"]) || res["refund_id"] != "r-1" {
		t.Errorf("after erasure the result is %v, want the receipt erased", res)
	}
}

// Failed attempts are retried under the registry's policy, with its
// backoff on the injected sleeper, the same key and a new attempt number;
// exhausted, the run takes on_error, or fails with tool_failed.
func TestRuntimeToolRetriesAndExhaustion(t *testing.T) {
	ctx := context.Background()
	fail := servicetest.Reply{Status: 500, Body: `{"error": "down"}`}
	for _, c := range []struct {
		name     string
		script   []servicetest.Reply
		attempts int
		onError  string
		state    string
		status   runtime.Status
		reason   string
		trace    string
	}{
		{"retry then success", []servicetest.Reply{fail, fail}, 3, "", "confirm", runtime.StatusRunning, "",
			"tool_call_started tool_call_failed tool_call_started tool_call_failed tool_call_started tool_call_completed"},
		{"exhausted with on_error", []servicetest.Reply{fail, fail}, 2, "manual", "manual", runtime.StatusCompleted, "",
			"tool_call_started tool_call_failed tool_call_started tool_call_failed"},
		{"exhausted without on_error", []servicetest.Reply{fail, fail}, 2, "", "refund", runtime.StatusFailed, runtime.ReasonToolFailed,
			"tool_call_started tool_call_failed tool_call_started tool_call_failed"},
		{"a result the schema refuses, retried", []servicetest.Reply{{Status: 200, Body: `{"wrong": 1}`}}, 2, "", "confirm", runtime.StatusRunning, "",
			"tool_call_started tool_call_failed tool_call_started tool_call_completed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := servicetest.NewEndpoint(t, c.script...)
			f := newToolService(t, tracestore.NewMemory(), servicetest.Registry(t, e, c.attempts, "200ms"), toolProgram("refund", c.onError), Options{})
			a, err := f.startAndPlan(t)
			if err != nil {
				t.Fatal(err)
			}
			if a.State != c.state || a.Status != c.status || !strings.HasPrefix(a.Reason, c.reason) || (c.reason == "") != (a.Reason == "") || a.WaitingFor != "" {
				t.Fatalf("answer %+v, want state %s, status %s, reason %q", a, c.state, c.status, c.reason)
			}
			events, _ := f.svc.Events(ctx, a.RunID)
			var calls []runtime.Event
			for _, ev := range events {
				if ev.Call != nil {
					calls = append(calls, ev)
				}
			}
			if got := types(calls); got != c.trace {
				t.Fatalf("tool call events %q, want %q", got, c.trace)
			}
			keys, _ := e.Calls()
			for i, ev := range calls {
				if ev.Type == runtime.EventToolCallStarted && ev.Call.Attempt != i/2+1 {
					t.Errorf("event %d: attempt %d, want %d", i, ev.Call.Attempt, i/2+1)
				}
			}
			for _, k := range keys {
				if k != keys[0] {
					t.Errorf("keys %v: every attempt must carry the same key", keys)
				}
			}
			if got, want := len(f.sl.all()), len(keys)-1; got != want {
				t.Errorf("slept %v between %d attempts, want %d backoffs", f.sl.all(), len(keys), want)
			}
			for _, d := range f.sl.all() {
				if d != 200*time.Millisecond {
					t.Errorf("backoff %v, want the registry's 200ms", d)
				}
			}
		})
	}
}

// A program whose state requires runtime execution of a tool the
// registry lacks is refused at load, naming the state.
func TestAddProgramRefusesARuntimeToolTheRegistryLacks(t *testing.T) {
	e := servicetest.NewEndpoint(t)
	for _, reg := range []*executor.Registry{nil, servicetest.Registry(t, e, 1, "0s")} {
		svc := New(Options{Tools: reg})
		t.Cleanup(svc.Close)
		src := toolProgram("ledger", "")
		p, err := program.Load("refunds.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		err = svc.AddProgram(context.Background(), p, []byte(src))
		var perr *program.Error
		if !errors.As(err, &perr) || !strings.Contains(err.Error(), "state refund") || !strings.Contains(err.Error(), "ledger") {
			t.Errorf("registry %v: AddProgram = %v, want a program error naming state refund and tool ledger", reg != nil, err)
		}
	}
}

// When the chain does not settle within the step wait, the step answers
// "running", waiting for a tool; a read shows the same and writes
// nothing; a caller's submission for the tool state is refused
// (capability_denied, counted); await_run returns once the tool answered.
func TestStepWaitExpiresAndAwaitRunSettles(t *testing.T) {
	ctx := context.Background()
	e := servicetest.NewEndpoint(t)
	e.Hold()
	f := newToolService(t, tracestore.NewMemory(), servicetest.Registry(t, e, 1, "0s"), toolProgram("refund", ""), Options{StepWait: time.Millisecond})
	a, err := f.startAndPlan(t)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != runtime.StatusRunning || a.WaitingFor != "tool" || a.State != "refund" || a.Task != nil || hops(a) != "plan>refund" {
		t.Fatalf("answer %+v, want running, waiting for a tool in refund", a)
	}
	<-e.Entered
	r, _, err := f.svc.Read(ctx, a.RunID, Caller{ID: "alice"})
	if err != nil || r.Call == nil || r.State != "refund" {
		t.Fatalf("read %+v, %v: want the open call", r, err)
	}
	before := r.NextIndex
	_, err = f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: r.Call.Seq, State: "refund", Principal: "alice", Output: js(t, `{"refund_id": "forged"}`)})
	if code(err) != runtime.CodeCapabilityDenied {
		t.Fatalf("a forged tool result: %v, want capability_denied", err)
	}
	events, _ := f.svc.Events(ctx, a.RunID)
	if rej := lastOf(events, runtime.EventSubmissionRejected); rej == nil || !rej.Rejection.Counted || uint64(len(events)) != before+2 {
		t.Fatalf("the forged result is not recorded as a counted rejection: %s", types(events[before:]))
	}

	done := make(chan *runtime.Run)
	go func() {
		r, _, err := f.svc.AwaitRun(ctx, a.RunID, Caller{ID: "alice"}, MaxAwait)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	e.Release()
	r = <-done
	if r.State != "confirm" || r.Call != nil || r.Task == nil {
		t.Fatalf("after await_run: state %s, call %+v; want the confirm task", r.State, r.Call)
	}
}

// A crash between the intent and the outcome: the next service over the
// store, once the dead holder's lease expired, invokes an idempotent tool
// again with the same key, exactly once, and the run goes on; a
// non-idempotent one is reported unknown, the run waits for an operator,
// and resolve_tool_call continues it (with a result, or as failed).
func TestRecoveryAfterACrash(t *testing.T) {
	for _, c := range []recoveryCase{
		{"idempotent: invoked again with the same key", "refund", nil, "confirm", runtime.StatusRunning},
		{"not idempotent: resolved with a result", "charge", &Resolution{Result: map[string]any{"refund_id": "r-by-hand"}}, "confirm", runtime.StatusRunning},
		{"not idempotent: resolved as failed", "charge", &Resolution{Failed: true, Detail: "the bank never saw it"}, "manual", runtime.StatusCompleted},
	} {
		for _, be := range sharedBackends {
			t.Run(c.name+"/"+be.name, func(t *testing.T) {
				recoverAfterACrash(t, be.open(t), c)
			})
		}
	}
}

// recoveryCase is a case of TestRecoveryAfterACrash: the tool the state
// calls, the operator's resolution (none for an idempotent tool), and
// where the run ends up.
type recoveryCase struct {
	name    string
	tool    string
	resolve *Resolution
	state   string
	status  runtime.Status
}

// recoverAfterACrash runs one case on a store that connect opens once per
// instance, as two processes would.
func recoverAfterACrash(t *testing.T, connect func() tracestore.Store, c recoveryCase) {
	ctx := context.Background()
	keks := keyring.MemoryKEKs()
	store := connect()
	e := servicetest.NewEndpoint(t)
	e.Hold()
	src := toolProgram(c.tool, "manual")
	first := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), src, Options{StepWait: time.Millisecond, Instance: "first", KEKs: keks})
	a, err := first.startAndPlan(t)
	if err != nil {
		t.Fatal(err)
	}
	<-e.Entered
	first.svc.Close() // the crash: the call is in flight, its outcome never recorded
	if info, _ := store.Run(ctx, a.RunID); info.Call == "" || info.LeaseHolder != "first" {
		t.Fatalf("after the crash the row is %+v, want the open call leased to first", info)
	}
	e.Release()

	next := newToolService(t, connect(), servicetest.Registry(t, e, 1, "0s"), src, Options{Instance: "next", KEKs: keks})
	next.clock.Add(time.Second)
	if n, err := next.svc.Recover(ctx); err != nil || n != 0 {
		t.Fatalf("recovery before the lease expired took %d calls, %v; want none", n, err)
	}
	next.clock.Add(DefaultLeaseTTL)
	if n, err := next.svc.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("recovery took %d calls, %v; want 1", n, err)
	}
	r, _, err := next.svc.AwaitRun(ctx, a.RunID, operator, MaxAwait)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := e.Calls()
	if c.resolve == nil {
		if len(keys) != 2 || keys[1] != keys[0] {
			t.Fatalf("the idempotent tool saw keys %v, want the same key once more", keys)
		}
	} else {
		if len(keys) != 1 || r.Status != runtime.StatusWaitingOperator || r.Reason != runtime.ReasonToolOutcomeUnknown && r.Reason != "" {
			t.Fatalf("keys %v, run %s (%s); want no new call and the run waiting for the operator", keys, r.Status, r.Reason)
		}
		if _, err := next.svc.ResolveToolCall(ctx, Caller{ID: "alice"}, a.RunID, Resolution{CallID: r.Call.CallID, Failed: true}); code(err) != runtime.CodeNoSuchRun {
			t.Fatalf("a resolution by the run's owner: %v, want it refused as no_such_run", err)
		}
		res := *c.resolve
		res.CallID = r.Call.CallID
		ans, err := next.svc.ResolveToolCall(ctx, operator, a.RunID, res)
		if err != nil {
			t.Fatal(err)
		}
		if ans.State != c.state || ans.Status != c.status {
			t.Fatalf("after the resolution: %+v, want state %s, status %s", ans, c.state, c.status)
		}
		events, _ := next.svc.Events(ctx, a.RunID)
		if ev := lastOf(events, runtime.EventToolCallResolved); ev == nil || ev.Call.Principal != "ops" {
			t.Fatalf("trace %s: want tool_call_resolved by ops", types(events))
		}
		r, _, _ = next.svc.Get(ctx, a.RunID)
	}
	if r.State != c.state || r.Status != c.status {
		t.Fatalf("run in %s (%s), want %s (%s)", r.State, r.Status, c.state, c.status)
	}
	if n, err := next.svc.Recover(ctx); err != nil || n != 0 {
		t.Errorf("a second recovery took %d calls, %v; want none", n, err)
	}
}

// Two instances on one PostgreSQL database drive the same runs at once:
// both submit every run's step, and both keep recovering. The append that
// records the intent carries its lease, so exactly one instance invokes
// each call: the endpoint sees each idempotency key exactly once, and
// every run records exactly one completion.
func TestTwoInstancesOnPostgresInvokeEachCallOnce(t *testing.T) {
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t, "toolcalls_test_")
	connect := func() tracestore.Store {
		s, err := tracestore.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	e := servicetest.NewEndpoint(t)
	src := toolProgram("refund", "")
	keks := keyring.MemoryKEKs()
	inst := []toolFixture{
		newToolService(t, connect(), servicetest.Registry(t, e, 1, "0s"), src, Options{Instance: "A", KEKs: keks}),
		newToolService(t, connect(), servicetest.Registry(t, e, 1, "0s"), src, Options{Instance: "B", KEKs: keks}),
	}
	stop := make(chan struct{})
	var recovering sync.WaitGroup
	for _, f := range inst {
		recovering.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := f.svc.Recover(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	const runs = 30
	ids := make([]string, runs)
	for i := range runs {
		a, err := inst[i%2].svc.StartRun(ctx, StartOptions{Program: "refunds", Input: js(t, `{"order": "o-7", "customer": "c-1"}`), Principal: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = a.RunID
		var both sync.WaitGroup
		for _, f := range inst {
			both.Go(func() {
				if _, err := f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Principal: "alice", Output: js(t, `{"amount": 12}`)}); err != nil && code(err) != runtime.CodeStaleSeq {
					t.Error(err)
				}
			})
		}
		both.Wait()
	}
	for _, id := range ids {
		r, _, err := inst[0].svc.AwaitRun(ctx, id, operator, MaxAwait)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != "confirm" {
			t.Errorf("run %s in %s (%s), want confirm", id, r.State, r.Status)
		}
	}
	close(stop)
	recovering.Wait()
	keys, _ := e.Calls()
	seen := map[string]int{}
	for _, k := range keys {
		seen[k]++
	}
	if len(keys) != runs || len(seen) != runs {
		t.Fatalf("%d calls with %d distinct keys for %d runs, want each key exactly once", len(keys), len(seen), runs)
	}
	for _, id := range ids {
		events, err := inst[1].svc.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range events {
			if ev.Type == runtime.EventToolCallCompleted {
				n++
			}
		}
		if n != 1 {
			t.Errorf("run %s records %d completions, want 1: %s", id, n, types(events))
		}
	}
}

// idle waits until no runner of f's service is at work. kick registers a
// runner before the append that kicked it returns, so once idle returns
// every runner an earlier append started has ended.
func (f toolFixture) idle() {
	for {
		f.svc.calls.mu.Lock()
		n := len(f.svc.calls.active)
		f.svc.calls.mu.Unlock()
		if n == 0 {
			return
		}
		goruntime.Gosched()
	}
}

// A run whose dead holder's lease expired is recovery's to settle, which
// invokes only an idempotent tool again. Any other append to the run (a
// lab's fault record here; a client's refused step alike) wakes a runner,
// which must not take the expired lease over and invoke a tool that is not
// idempotent a second time: the call stays for Recover, which reports it
// unknown.
func TestAnAppendAfterTheLeaseExpiredDoesNotInvokeANonIdempotentToolAgain(t *testing.T) {
	ctx := context.Background()
	keks := keyring.MemoryKEKs()
	store := tracestore.NewMemory()
	e := servicetest.NewEndpoint(t)
	e.Hold()
	src := toolProgram("charge", "manual")
	first := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), src, Options{StepWait: time.Millisecond, Instance: "first", KEKs: keks})
	a, err := first.startAndPlan(t)
	if err != nil {
		t.Fatal(err)
	}
	<-e.Entered
	first.svc.Close() // the crash: the call may or may not have taken effect
	e.Release()

	next := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), src, Options{Instance: "next", KEKs: keks})
	next.clock.Add(DefaultLeaseTTL + time.Second)
	if _, err := next.svc.RecordFault(ctx, a.RunID, runtime.FaultRecord{Fault: "probe", SubAttack: "append", Expected: "none", Observed: "none"}); err != nil {
		t.Fatal(err)
	}
	next.idle()
	if keys, _ := e.Calls(); len(keys) != 1 {
		t.Fatalf("the non-idempotent tool was called %d times, want once (before the crash)", len(keys))
	}
	if n, err := next.svc.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("recovery took %d calls, %v; want 1", n, err)
	}
	r, _, err := next.svc.Get(ctx, a.RunID)
	if err != nil || r.Status != runtime.StatusWaitingOperator {
		t.Fatalf("run %+v, %v; want it waiting for the operator", r, err)
	}
}

// failingStore fails every Append while failing is set, as a store that
// lost its disk or its connection would.
type failingStore struct {
	tracestore.Store
	failing atomic.Bool
}

func (s *failingStore) Append(ctx context.Context, runID string, recs []tracestore.Record, info tracestore.RunInfo) error {
	if s.failing.Load() {
		return errors.New("the store is unavailable")
	}
	return s.Store.Append(ctx, runID, recs, info)
}

// An outcome the runner could not record leaves the call as a crash
// would: its holder must not invoke a tool that is not idempotent again
// when a later append wakes its runner. Once the lease expires, Recover
// reports the call unknown.
func TestAnOutcomeNotRecordedIsNotInvokedAgainByItsHolder(t *testing.T) {
	ctx := context.Background()
	store := &failingStore{Store: tracestore.NewMemory()}
	e := servicetest.NewEndpoint(t)
	e.Hold()
	f := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), toolProgram("charge", "manual"), Options{StepWait: time.Millisecond})
	a, err := f.startAndPlan(t)
	if err != nil {
		t.Fatal(err)
	}
	<-e.Entered
	store.failing.Store(true)
	e.Release()
	f.idle()
	store.failing.Store(false)
	if _, err := f.svc.RecordFault(ctx, a.RunID, runtime.FaultRecord{Fault: "probe", SubAttack: "append", Expected: "none", Observed: "none"}); err != nil {
		t.Fatal(err)
	}
	f.idle()
	if keys, _ := e.Calls(); len(keys) != 1 {
		t.Fatalf("the non-idempotent tool was called %d times, want once", len(keys))
	}
	f.clock.Add(DefaultLeaseTTL + time.Second)
	if n, err := f.svc.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("recovery took %d calls, %v; want 1", n, err)
	}
	r, _, err := f.svc.Get(ctx, a.RunID)
	if err != nil || r.Status != runtime.StatusWaitingOperator {
		t.Fatalf("run %+v, %v; want it waiting for the operator", r, err)
	}
	if keys, _ := e.Calls(); len(keys) != 1 {
		t.Fatalf("the non-idempotent tool was called %d times, want once", len(keys))
	}
}

// An intent appended by an instance whose registry lacks the tool (here
// one with no registry at all) is left unheld: nobody invoked it, so the
// instance that has the tool and finds it in recovery invokes it, even a
// tool that is not idempotent, instead of reporting an outcome unknown.
func TestRecoveryInvokesAnUnheldCallThatNobodyInvoked(t *testing.T) {
	ctx := context.Background()
	keks := keyring.MemoryKEKs()
	store := tracestore.NewMemory()
	e := servicetest.NewEndpoint(t)
	runner := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), toolProgram("charge", "manual"), Options{Instance: "runner", KEKs: keks})
	a, err := runner.svc.StartRun(ctx, StartOptions{Program: "refunds", Input: js(t, `{"order": "o-7", "customer": "c-1"}`), Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	other := New(Options{Store: store, KEKs: keks, Secret: make([]byte, 32), Instance: "other", Clock: runner.clock.Now, StepWait: time.Millisecond})
	t.Cleanup(other.Close)
	if _, err := other.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Principal: "alice", Output: js(t, `{"amount": 12}`)}); err != nil {
		t.Fatal(err)
	}
	if info, _ := store.Run(ctx, a.RunID); info.Call == "" || info.LeaseHolder != "" {
		t.Fatalf("the row is %+v, want an open call nobody holds", info)
	}
	if n, err := runner.svc.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("recovery took %d calls, %v; want 1", n, err)
	}
	runner.idle()
	r, _, err := runner.svc.Get(ctx, a.RunID)
	if err != nil || r.State != "confirm" {
		t.Fatalf("run %+v, %v; want it in confirm after the call", r, err)
	}
	if keys, _ := e.Calls(); len(keys) != 1 {
		t.Fatalf("the tool was called %d times, want once", len(keys))
	}
}

// gatedSleep is a sleeper that holds each backoff until released, and says
// when one began.
type gatedSleep struct {
	entered chan struct{}
	release chan struct{}
}

func (g gatedSleep) Sleep(ctx context.Context, _ time.Duration) error {
	g.entered <- struct{}{}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A retry's backoff may outlast the lease: another instance that took the
// call over meanwhile (here reporting a non-idempotent tool's outcome
// unknown) owns it, and the runner that wakes from the backoff must check
// its lease before it invokes the tool, not only after.
func TestARunnerChecksItsLeaseAfterTheBackoffBeforeItInvokes(t *testing.T) {
	ctx := context.Background()
	keks := keyring.MemoryKEKs()
	store := tracestore.NewMemory()
	e := servicetest.NewEndpoint(t, servicetest.Reply{Status: 500, Body: `{"error": "down"}`})
	src := toolProgram("charge", "manual")
	gate := gatedSleep{entered: make(chan struct{}, 1), release: make(chan struct{})}
	first := newToolService(t, store, servicetest.Registry(t, e, 2, "1m"), src, Options{StepWait: time.Millisecond, Instance: "first", KEKs: keks})
	first.svc.calls.sleep = gate.Sleep
	a, err := first.startAndPlan(t)
	if err != nil {
		t.Fatal(err)
	}
	<-gate.entered // attempt 1 failed; attempt 2 waits out its backoff

	next := newToolService(t, store, servicetest.Registry(t, e, 2, "1m"), src, Options{Instance: "next", KEKs: keks})
	next.clock.Add(DefaultLeaseTTL + time.Second)
	if n, err := next.svc.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("recovery took %d calls, %v; want 1", n, err)
	}
	close(gate.release)
	first.idle()
	if keys, _ := e.Calls(); len(keys) != 1 {
		t.Fatalf("the non-idempotent tool was called %d times, want once (attempt 1): the call was another instance's", len(keys))
	}
	r, _, err := next.svc.Get(ctx, a.RunID)
	if err != nil || r.Status != runtime.StatusWaitingOperator {
		t.Fatalf("run %+v, %v; want it waiting for the operator", r, err)
	}
}

// An await_run that ends without an append in this process (its wait ran
// out, the call still open) leaves no watch behind: a run whose next append
// happens on another instance must not keep its entry for ever.
func TestAnAwaitThatRunsOutLeavesNoWatchBehind(t *testing.T) {
	ctx := context.Background()
	e := servicetest.NewEndpoint(t)
	e.Hold()
	defer e.Release()
	f := newToolService(t, tracestore.NewMemory(), servicetest.Registry(t, e, 1, "0s"), toolProgram("refund", ""), Options{StepWait: time.Millisecond})
	a, err := f.startAndPlan(t)
	if err != nil || a.WaitingFor != "tool" {
		t.Fatalf("answer %+v, %v: want the call open", a, err)
	}
	<-e.Entered
	r, _, err := f.svc.AwaitRun(ctx, a.RunID, Caller{ID: "alice"}, 10*time.Millisecond)
	if err != nil || r.Call == nil {
		t.Fatalf("await_run: %+v, %v; want the call still open", r, err)
	}
	f.svc.calls.mu.Lock()
	n := len(f.svc.calls.watches)
	f.svc.calls.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d watches left after the await ended", n)
	}
}
