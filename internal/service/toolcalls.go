package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Runtime-executed tool calls, the shell's half (docs/tools.md). The core
// emits the intent, tool_call_started, when a run enters a tool state its
// executors name; the append that persists it also writes this instance's
// lease on the call (tracestore.RunInfo.LeaseHolder), in the same
// transaction. Only then does the runner invoke the tool, on a context the
// service owns (a caller that gives up waiting does not cancel the call),
// renewing the lease while it runs; it reports the outcome to the core as
// an input (ToolResult, ToolFailure), appends what the core makes of it
// on condition that it still holds the lease (tracestore.RunInfo.IfLease),
// and goes on while the run enters another runtime tool state. The core
// decides every retry, on_error edge and failure; the runner decides
// nothing but the registry's word (Retry: another attempt is allowed) and
// the backoff it sleeps before one.
//
// After a crash, an intent without an outcome is found by Recover (the
// run index's open call, once its lease expired): an idempotent tool is
// invoked again with the same idempotency key and attempt; any other call
// is reported unknown (ToolUnknown), and the run waits for an operator's
// ResolveToolCall.

// callRunner is the service's runtime tool call machinery.
type callRunner struct {
	tools    *executor.Registry
	stepWait time.Duration
	sleep    func(context.Context, time.Duration) error
	instance string
	leaseTTL time.Duration

	ctx    context.Context // the runners' context, ended by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// idleFor is how long a runner goroutine waits for another run's
	// calls before it ends (runnerIdle; shorter in tests).
	idleFor time.Duration

	mu      sync.Mutex
	active  map[string]*runnerState // by run id: a runner executes its calls
	watches map[string]*watchers    // by run id: closed at its next append
	// unrecorded is, by run id, the attempt this process invoked and has
	// not recorded the outcome of (attemptOf).
	unrecorded map[string]string
	// leased is, by run id, the lease this process's own append wrote with
	// a call's intent: the runner then knows it holds the call without
	// reading the row back (holds).
	leased map[string]leaseNote
	// idle are the runner goroutines waiting for work, each by its own
	// channel (capacity 1), the most recently idle last: kick hands work
	// to that one, so that under a light load the others reach idleFor
	// and end, instead of taking turns and all living on.
	idle    []chan string
	runners int // runner goroutines alive
	stopped bool
}

// leaseNote is a lease this instance wrote: on which call, until when.
type leaseNote struct {
	call    string
	expires time.Time
}

// runnerState is one run's runner. again asks it for another look at the
// run before it ends: an append made while it was busy may have opened a
// call it has not seen.
type runnerState struct{ again bool }

func (c *callRunner) init(o Options) {
	c.tools, c.stepWait, c.sleep, c.instance, c.leaseTTL = o.Tools, o.StepWait, o.Sleep, o.Instance, o.LeaseTTL
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.idleFor = runnerIdle
	c.active, c.watches, c.unrecorded = map[string]*runnerState{}, map[string]*watchers{}, map[string]string{}
	c.leased = map[string]leaseNote{}
}

func (c *callRunner) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// sleep is Options.Sleep's default.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitingTool is Answer.WaitingFor while a runtime tool call runs.
const waitingTool = "tool"

// executing reports whether r waits on a runtime tool call that is the
// runtime's to run now (not one whose outcome waits for an operator).
func executing(r *runtime.Run) bool {
	return r != nil && r.Status == runtime.StatusRunning && r.Call != nil
}

// startsCall reports whether events record a call's intent.
func startsCall(events []runtime.Event) bool {
	for _, e := range events {
		if e.Type == runtime.EventToolCallStarted {
			return true
		}
	}
	return false
}

// leaseRow sets, in the index row of an append that leaves r with events,
// the open call and, when the append records its intent and this instance
// can run the tool, this instance's lease on it. Without a registry that
// has the tool the call stays unheld, for an instance that has it.
func (s *Service) leaseRow(info *tracestore.RunInfo, r *runtime.Run, events []runtime.Event) {
	if !executing(r) {
		return
	}
	info.Call = r.Call.CallID
	if !startsCall(events) || s.calls.tools == nil {
		return
	}
	if _, ok := s.calls.tools.Tool(r.Call.Tool); ok {
		info.LeaseHolder, info.LeaseExpires = s.calls.instance, s.clock().Add(s.calls.leaseTTL)
	}
}

// appended is what follows every durable append to a run: its watchers
// wake, and a call the append left open is run.
func (s *Service) appended(r *runtime.Run, info tracestore.RunInfo) {
	s.calls.mu.Lock()
	if w := s.calls.watches[r.ID]; w != nil {
		close(w.ch)
		delete(s.calls.watches, r.ID)
	}
	if info.LeaseHolder == s.calls.instance && info.Call != "" {
		s.calls.leased[r.ID] = leaseNote{call: info.Call, expires: info.LeaseExpires}
	} else if !executing(r) {
		delete(s.calls.leased, r.ID)
	}
	s.calls.mu.Unlock()
	if executing(r) {
		s.kick(r.ID)
	}
}

// watchers is the channel the waiters on one run share, and how many
// there are.
type watchers struct {
	ch chan struct{}
	n  int
}

// watch returns a channel closed at the run's next append in this process,
// and the function the waiter calls when it stops waiting: the last one to
// stop forgets the channel, so that a run whose next append happens on
// another instance leaves nothing behind here.
func (s *Service) watch(runID string) (<-chan struct{}, func()) {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	w := s.calls.watches[runID]
	if w == nil {
		w = &watchers{ch: make(chan struct{})}
		s.calls.watches[runID] = w
	}
	w.n++
	return w.ch, func() {
		s.calls.mu.Lock()
		defer s.calls.mu.Unlock()
		if w.n--; w.n == 0 && s.calls.watches[runID] == w {
			delete(s.calls.watches, runID)
		}
	}
}

// kick makes sure a runner looks at the run: it starts one, or asks the
// one at work for another look. One runner per run at a time.
func (s *Service) kick(runID string) {
	c := &s.calls
	if c.tools == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if st := c.active[runID]; st != nil {
		st.again = true
		return
	}
	c.active[runID] = &runnerState{}
	if n := len(c.idle); n > 0 {
		work := c.idle[n-1]
		c.idle = c.idle[:n-1]
		work <- runID // empty, of capacity 1: never blocks
		return
	}
	c.wg.Add(1)
	c.runners++
	go s.runner(runID)
}

// runnerIdle is how long a runner goroutine waits for another run's calls
// before it ends.
const runnerIdle = 10 * time.Second

// runner runs the calls of runID, then of each run kick hands it while it
// idles, until it has idled for idleFor or the service stops. A
// goroutine that lives on keeps the stack a call grew (the downstream
// client's encoding runs deep), which a fresh one grows again, copying it
// at each doubling, on every call's path.
func (s *Service) runner(runID string) {
	c := &s.calls
	defer c.wg.Done()
	defer func() {
		c.mu.Lock()
		c.runners--
		c.mu.Unlock()
	}()
	work := make(chan string, 1)
	idle := time.NewTimer(c.idleFor)
	defer idle.Stop()
	for {
		s.runCalls(runID)
		c.mu.Lock()
		if c.stopped {
			c.mu.Unlock()
			return
		}
		c.idle = append(c.idle, work)
		c.mu.Unlock()
		idle.Reset(c.idleFor)
		select {
		case runID = <-work:
			continue
		case <-idle.C:
		case <-c.ctx.Done():
		}
		// Leave the idle runners, unless kick took this one meanwhile:
		// then the run it handed over is in work, and is run first.
		c.mu.Lock()
		if i := slices.Index(c.idle, work); i >= 0 {
			c.idle = slices.Delete(c.idle, i, i+1)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		runID = <-work
	}
}

// runCalls is a run's runner: it executes the run's open calls one after
// the other until none is left that it may run.
func (s *Service) runCalls(runID string) {
	c := &s.calls
	for {
		progressed := s.runCall(runID)
		c.mu.Lock()
		st := c.active[runID]
		if !progressed && !st.again || c.stopped {
			delete(c.active, runID)
			c.mu.Unlock()
			return
		}
		st.again = false
		c.mu.Unlock()
	}
}

// runCall executes the run's open call once, if there is one and this
// instance holds its lease, and records the outcome. It
// reports whether it recorded anything.
func (s *Service) runCall(runID string) bool {
	ctx := s.calls.ctx
	lr, err := s.live(ctx, runID)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("tool call: load the run", zap.String("run_id", runID), zap.Error(err))
		}
		return false
	}
	var call runtime.OpenCall
	open := executing(lr.run)
	if open {
		call = *lr.run.Call
	}
	s.release(lr)
	if !open {
		return false
	}
	if held, fresh := s.holds(ctx, runID, call.CallID); !held || !fresh && !s.lease(ctx, runID, call.CallID) {
		return false
	}
	if !s.calls.invoking(runID, call) {
		// Invoked here before, its outcome never recorded (the append
		// failed): a crash as far as the call goes, which Recover settles
		// once the lease expires.
		s.log.Warn("tool call: the outcome of this attempt was not recorded and the tool is not idempotent; it is not invoked again",
			zap.String("run_id", runID), zap.String("call_id", call.CallID), zap.Int("attempt", call.Attempt))
		return false
	}
	in, ok := s.invoke(ctx, runID, call)
	if !ok {
		return false
	}
	// The lease may have passed to another instance while the tool ran
	// (this one stalled past its expiry): then that one's outcome counts.
	// The outcome's append is conditional on the lease, in its own
	// transaction, so no takeover can slip in between a check and the
	// write.
	if _, err := s.applyIf(ctx, runID, in, &tracestore.Lease{Call: call.CallID, Holder: s.calls.instance}); err != nil {
		var rej *runtime.Rejection
		if errors.Is(err, tracestore.ErrLeaseLost) {
			s.log.Warn("tool call: the lease passed to another instance; this outcome is not recorded",
				zap.String("run_id", runID), zap.String("call_id", call.CallID), zap.Int("attempt", call.Attempt))
			return false
		}
		if !errors.As(err, &rej) {
			s.log.Warn("tool call: record the outcome", zap.String("run_id", runID), zap.String("call_id", call.CallID), zap.Error(err))
			return false
		}
	}
	s.calls.mu.Lock()
	delete(s.calls.unrecorded, runID)
	s.calls.mu.Unlock()
	return true
}

// attemptOf names one attempt of a call.
func attemptOf(call runtime.OpenCall) string {
	return call.CallID + "#" + strconv.Itoa(call.Attempt)
}

// invoking notes that this process is about to invoke the attempt, and
// reports whether it may: not when it invoked the same attempt before
// without recording its outcome and the tool is not idempotent.
func (c *callRunner) invoking(runID string, call runtime.OpenCall) bool {
	t, ok := c.tools.Tool(call.Tool)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unrecorded[runID] == attemptOf(call) && !(ok && t.Idempotent) {
		return false
	}
	c.unrecorded[runID] = attemptOf(call)
	return true
}

// holds reports whether this instance holds the lease on the run's open
// call (the append of its intent gave it, or Recover took it over), and
// whether it is fresh: at least half the lease's life left, as when the
// intent's append wrote it moments ago. A fresh lease is not renewed
// before the invocation: no other instance may take it before it expires,
// the renewal loop renews it long before that (every third of its life),
// and the outcome's append is conditional on it. A stale one is renewed
// first (lease). A runner only renews a lease it holds, never takes an
// expired one over: that is Recover's, which invokes only an idempotent
// tool again. The renewal's compare-and-set fails if another instance
// took it in between.
func (s *Service) holds(ctx context.Context, runID, callID string) (held, fresh bool) {
	// The lease this instance's own append just wrote with the intent
	// needs no read: only recovery takes a lease over, and only once it
	// has expired, which a fresh one has not. (The outcome's append is
	// conditional on the lease all the same.)
	s.calls.mu.Lock()
	note, ok := s.calls.leased[runID]
	delete(s.calls.leased, runID)
	s.calls.mu.Unlock()
	if ok && note.call == callID && !note.expires.Before(s.clock().Add(s.calls.leaseTTL/2)) {
		return true, true
	}
	info, err := s.store.Run(ctx, runID)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("tool call: read the lease", zap.String("run_id", runID), zap.Error(err))
		}
		return false, false
	}
	if info.Call != callID || info.LeaseHolder != s.calls.instance {
		return false, false
	}
	return true, !info.LeaseExpires.Before(s.clock().Add(s.calls.leaseTTL / 2))
}

// lease takes or renews this instance's lease on the run's open call.
func (s *Service) lease(ctx context.Context, runID, callID string) bool {
	now := s.clock()
	held, err := s.store.TakeLease(ctx, runID, callID, s.calls.instance, now, now.Add(s.calls.leaseTTL))
	if err != nil && ctx.Err() == nil {
		s.log.Warn("tool call: lease", zap.String("run_id", runID), zap.String("call_id", callID), zap.Error(err))
	}
	return err == nil && held
}

// renewEvery renews this instance's lease on the call every d until the
// function it returns is called, which returns once no renewal is under
// way or will start. A timer, not a goroutine of its own: a call shorter
// than d (most are) costs no goroutine to start and none to wait for at
// its end, on the call's path.
func (s *Service) renewEvery(ctx context.Context, runID, callID string, d time.Duration) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			s.lease(ctx, runID, callID)
			t.Reset(d)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// invoke makes one attempt of the call through the registry, after the
// registry's backoff when it is a retry, renewing the lease through both,
// and returns the input that reports its outcome. ok is false when the
// service stopped meanwhile, or the lease passed to another instance
// during the backoff: nothing is to be recorded, and recovery (or the
// other instance) settles the call.
func (s *Service) invoke(ctx context.Context, runID string, call runtime.OpenCall) (in runtime.Input, ok bool) {
	tool, found := s.calls.tools.Tool(call.Tool)
	ex, built := s.calls.tools.Executor(call.Tool)
	if !found || !built {
		return runtime.ToolFailure{Seq: call.Seq, CallID: call.CallID, Attempt: call.Attempt, Class: string(executor.ClassTransport),
			Detail: fmt.Sprintf("the server's tool registry has no tool %s", call.Tool), At: s.clock()}, true
	}
	// The lease is renewed from the backoff's start to the invocation's
	// end: a backoff may outlast the lease's life.
	defer s.renewEvery(ctx, runID, call.CallID, max(s.calls.leaseTTL/3, time.Millisecond))()
	if call.Attempt > 1 && tool.Retry.Backoff > 0 {
		if err := s.calls.sleep(ctx, tool.Retry.Backoff); err != nil {
			return nil, false
		}
		// Had this instance stalled past the lease, another may have
		// taken the call over: then it is that one's, and not invoked here.
		if !s.lease(ctx, runID, call.CallID) {
			s.log.Warn("tool call: the lease passed to another instance during the backoff; not invoked",
				zap.String("run_id", runID), zap.String("call_id", call.CallID), zap.Int("attempt", call.Attempt))
			return nil, false
		}
	}
	s.log.Info("tool call", zap.String("run_id", runID), zap.String("call_id", call.CallID), zap.String("tool", call.Tool), zap.Int("attempt", call.Attempt))
	out, err := ex.Invoke(ctx, executor.Call{Tool: call.Tool, Arguments: call.Arguments, IdempotencyKey: call.IdempotencyKey, Attempt: call.Attempt})
	if ctx.Err() != nil {
		return nil, false
	}
	// The registry's word on another attempt; the core bounds it by the
	// state's max_attempts.
	retry := call.Attempt < max(tool.Retry.MaxAttempts, 1)
	if err != nil {
		f := &executor.Failure{Class: executor.ClassTransport, Detail: err.Error()}
		errors.As(err, &f)
		detail := f.Detail
		if f.Status != 0 {
			detail = fmt.Sprintf("HTTP %d: %s", f.Status, f.Detail)
		}
		s.log.Info("tool call failed", zap.String("run_id", runID), zap.String("call_id", call.CallID), zap.String("class", string(f.Class)), zap.Int("attempt", call.Attempt))
		return runtime.ToolFailure{Seq: call.Seq, CallID: call.CallID, Attempt: call.Attempt, Class: string(f.Class), Detail: detail, Retry: retry, At: s.clock()}, true
	}
	return runtime.ToolResult{Seq: call.Seq, CallID: call.CallID, Attempt: call.Attempt, Output: out, Size: jsonSize(out), Retry: retry, At: s.clock()}, true
}

// Recover settles the runtime tool calls whose intent is recorded and
// whose outcome is not, once their lease has expired by the service's
// clock (their holder died or stalled): it takes the lease, then invokes
// an idempotent tool again with the same idempotency key and attempt (and
// any tool whose call nobody ever held, so never invoked), and reports
// any other call unknown (the run waits for an operator's
// ResolveToolCall). It returns how many calls it took over. A failure on
// one run is logged and recovery goes on; a failure to list is returned.
func (s *Service) Recover(ctx context.Context) (int, error) {
	now := s.clock()
	f := tracestore.OpenCallFilter{ExpiredBy: now, Limit: sweepPage}
	taken := 0
	for {
		open, next, err := s.store.ListOpenCalls(ctx, f)
		if err != nil {
			return taken, err
		}
		for _, info := range open {
			if s.recoverCall(ctx, info, now) {
				taken++
			}
			if ctx.Err() != nil {
				return taken, ctx.Err()
			}
		}
		if next == "" {
			return taken, nil
		}
		f.Cursor = next
	}
}

// recoverCall takes over one open call whose lease expired.
func (s *Service) recoverCall(ctx context.Context, info tracestore.RunInfo, now time.Time) bool {
	s.calls.mu.Lock()
	_, busy := s.calls.active[info.RunID]
	s.calls.mu.Unlock()
	if busy {
		return false
	}
	// A call nobody ever held was never invoked (an instance invokes only
	// under its lease): it is invoked now, whatever the tool. Read just
	// before the compare-and-set, the row cannot have been taken and let
	// expire in between.
	row, err := s.store.Run(ctx, info.RunID)
	if err != nil || row.Call != info.Call {
		return false
	}
	never := row.LeaseHolder == ""
	held, err := s.store.TakeLease(ctx, info.RunID, info.Call, s.calls.instance, now, now.Add(s.calls.leaseTTL))
	if err != nil || !held {
		return false
	}
	if err := s.refresh(ctx, info.RunID); err != nil {
		s.log.Warn("tool call recovery: load the run", zap.String("run_id", info.RunID), zap.Error(err))
		return false
	}
	r, _, err := s.Get(ctx, info.RunID)
	if err != nil || !executing(r) || r.Call.CallID != info.Call {
		return false
	}
	if s.calls.tools != nil {
		if t, ok := s.calls.tools.Tool(r.Call.Tool); ok && (t.Idempotent || never) {
			s.log.Info("tool call recovery: invoking the tool (idempotent, or never invoked) with the call's key",
				zap.String("run_id", r.ID), zap.String("call_id", r.Call.CallID), zap.String("tool", r.Call.Tool), zap.Int("attempt", r.Call.Attempt), zap.Bool("never_held", never))
			s.kick(r.ID)
			return true
		}
	}
	s.log.Warn("tool call recovery: outcome unknown; the run waits for an operator",
		zap.String("run_id", r.ID), zap.String("call_id", r.Call.CallID), zap.String("tool", r.Call.Tool))
	_, err = s.apply(ctx, r.ID, runtime.ToolUnknown{Seq: r.Call.Seq, CallID: r.Call.CallID, Attempt: r.Call.Attempt,
		Detail: "the server stopped while the call ran, and the tool is not idempotent: it may or may not have taken effect, and is not invoked again", At: s.clock()})
	if err != nil {
		s.log.Warn("tool call recovery: record the unknown outcome", zap.String("run_id", r.ID), zap.Error(err))
		return false
	}
	return true
}

// RecoverEvery runs Recover on every tick until ctx ends.
func (s *Service) RecoverEvery(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		if _, err := s.Recover(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("tool call recovery", zap.Error(err))
		}
	}
}

// refresh folds the run again if the store holds more of it than this
// process has seen (another instance appended).
func (s *Service) refresh(ctx context.Context, runID string) error {
	lr, err := s.live(ctx, runID)
	if err != nil {
		return err
	}
	defer s.release(lr)
	info, err := s.store.Run(ctx, runID)
	if err != nil {
		return noSuchRun(err, runID)
	}
	if info.Events > lr.run.NextIndex {
		return s.load(ctx, lr, runID)
	}
	return nil
}

// refreshEvery is how often a waiter looks at the store for appends made
// by another instance, which wake no watcher here.
const refreshEvery = time.Second

// await waits until the run no longer waits on a runtime tool call, or d
// passes, or ctx ends, and returns the run as it then stands. Each event
// of a call appended meanwhile is reported to ctx's progress function.
func (s *Service) await(ctx context.Context, runID string, d time.Duration, seen uint64) (*runtime.Run, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	poll := time.NewTicker(refreshEvery)
	defer poll.Stop()
	for {
		r, done, err := s.awaitOnce(ctx, runID, &seen, timer.C, poll.C)
		if done || err != nil {
			return r, err
		}
	}
}

// awaitOnce is one round of await: it reads the run and, while it still
// waits on a call, waits for the next append here, a poll, the end of the
// wait or of ctx. Its watch ends with the round.
func (s *Service) awaitOnce(ctx context.Context, runID string, seen *uint64, end, poll <-chan time.Time) (*runtime.Run, bool, error) {
	ch, stop := s.watch(runID)
	defer stop()
	r, p, err := s.Get(ctx, runID)
	if err != nil {
		return nil, true, err
	}
	*seen = s.progress(ctx, p, r, *seen)
	if !executing(r) {
		return r, true, nil
	}
	select {
	case <-ch:
	case <-poll:
		if err := s.refresh(ctx, runID); err != nil {
			return nil, true, err
		}
	case <-end:
		return r, true, nil
	case <-ctx.Done():
		return r, true, nil
	}
	return r, false, nil
}

// settle answers a caller whose input left the run on a runtime tool call:
// it waits for the chain of runtime tool states to settle, at most
// StepWait, and answers with the run as it then stands and every
// transition the chain took. Still running, the answer says it waits for
// a tool (WaitingFor), and the caller continues with get_run or await_run.
func (s *Service) settle(ctx context.Context, a Answer, err error) (Answer, error) {
	if err != nil || a.WaitingFor != waitingTool {
		return a, err
	}
	if b, err := s.chain(ctx, a); err == nil {
		return b, nil
	}
	// The answer stands as it was: its events are durable, and the chain
	// can be followed with get_run or await_run.
	return a, nil
}

// chain waits at most StepWait for the chain of runtime tool calls that
// follows answer a, and returns a continued with it.
func (s *Service) chain(ctx context.Context, a Answer) (Answer, error) {
	r, err := s.await(ctx, a.RunID, s.calls.stepWait, a.from)
	if err != nil {
		return a, err
	}
	later, err := s.eventsFrom(ctx, a.RunID, a.next, r.NextIndex)
	if err != nil {
		return a, err
	}
	return continued(a, r, later), nil
}

// continued is answer a continued to the run r, which the events later
// took on from a.
func continued(a Answer, r *runtime.Run, later []runtime.Event) Answer {
	b := answerFrom(r, later)
	b.Transitions = slices.Concat(a.Transitions, b.Transitions)
	if len(b.Transitions) > 0 {
		b.Transition = &b.Transitions[0]
	}
	b.Duplicate = a.Duplicate
	return b
}

// Continue waits again, at most StepWait, on an answer that still waits
// for a tool (WaitingFor), and returns it continued as Submit's answer
// would have been: the run as it then stands, with every hop since the
// input it answered. Another answer is returned as it is.
func (s *Service) Continue(ctx context.Context, a Answer) (Answer, error) {
	if a.WaitingFor != waitingTool {
		return a, nil
	}
	if err := ctx.Err(); err != nil {
		return a, err
	}
	return s.chain(ctx, a)
}

// Limits of await_run's long poll.
const (
	DefaultAwait = 25 * time.Second
	MaxAwait     = 30 * time.Second
)

// AwaitRun long-polls a run the caller may read: it returns the run (as
// Read does) once it no longer waits on a runtime tool call, or its
// status changed, or timeout passed (default DefaultAwait, at most
// MaxAwait). It never writes.
func (s *Service) AwaitRun(ctx context.Context, runID string, c Caller, timeout time.Duration) (*runtime.Run, *program.Program, error) {
	// Another instance may be running the call: Read starts from the store.
	r, p, err := s.Read(ctx, runID, c)
	if err != nil || !executing(r) {
		return r, p, err
	}
	if timeout <= 0 {
		timeout = DefaultAwait
	}
	if _, err := s.await(ctx, runID, min(timeout, MaxAwait), r.NextIndex); err != nil {
		return nil, nil, err
	}
	return s.Read(ctx, runID, c)
}

// Resolution is an operator's settlement of a runtime tool call whose
// outcome is unknown: its result, or that it failed.
type Resolution struct {
	CallID string
	Result any // decoded JSON; ignored when Failed
	Failed bool
	Detail string
}

// ResolveToolCall applies an operator's settlement of a call whose outcome
// is unknown (the run waits for the operator), recorded with the
// operator's principal, and answers like a step: the run continues, and
// the answer waits for any runtime tool states that follow, as Submit's.
// Only an operator may; anyone else is refused before the core, recorded
// nowhere, as for a run that does not exist.
func (s *Service) ResolveToolCall(ctx context.Context, c Caller, runID string, res Resolution) (Answer, error) {
	if !c.Operator {
		return Answer{}, hidden(runID)
	}
	in := runtime.ResolveTool{CallID: res.CallID, Principal: c.ID, Failed: res.Failed, Detail: res.Detail, At: s.clock()}
	if !res.Failed {
		in.Output, in.Size = res.Result, jsonSize(res.Result)
	}
	a, err := s.apply(ctx, runID, in)
	return s.settle(ctx, a, err)
}

// Progress is one step of a runtime tool call, reported while a caller
// waits on it (MCP progress notifications). It carries no arguments and
// no results: only what the call is and how it went.
type Progress struct {
	RunID   string
	State   string
	Event   runtime.EventType // tool_call_started, _completed, _failed, _unknown or _resolved
	Tool    string
	CallID  string
	Attempt int
	Class   string // a failure's class
	Message string // for humans
}

type progressKey struct{}

// WithProgress returns ctx with a function to which a waiting start, step,
// decision, resolution or await reports each runtime tool call event.
func WithProgress(ctx context.Context, fn func(Progress)) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

// progress reports the tool call events of r appended since seen to ctx's
// progress function, and returns how far it has seen.
func (s *Service) progress(ctx context.Context, p *program.Program, r *runtime.Run, seen uint64) uint64 {
	fn, _ := ctx.Value(progressKey{}).(func(Progress))
	if fn == nil || r.NextIndex <= seen {
		return r.NextIndex
	}
	events, err := s.eventsFrom(ctx, r.ID, seen, r.NextIndex)
	if err != nil {
		return seen
	}
	for _, pr := range progressOf(p, events) {
		fn(pr)
	}
	return r.NextIndex
}

// progressOf is the progress reports of the tool call events among events.
func progressOf(p *program.Program, events []runtime.Event) []Progress {
	var out []Progress
	for _, e := range events {
		if e.Call == nil {
			continue
		}
		pr := Progress{RunID: e.RunID, State: e.State, Event: e.Type, CallID: e.Call.CallID, Attempt: e.Call.Attempt, Class: e.Call.Class}
		if st := p.States[e.State]; st != nil {
			pr.Tool = st.Tool
		}
		pr.Message = progressMessage(pr)
		out = append(out, pr)
	}
	return out
}

func progressMessage(p Progress) string {
	name := "tool " + p.Tool
	if p.Tool == "" {
		name = "tool call " + p.CallID
	}
	switch p.Event {
	case runtime.EventToolCallStarted:
		return fmt.Sprintf("state %s: %s, attempt %d, started", p.State, name, p.Attempt)
	case runtime.EventToolCallCompleted:
		return fmt.Sprintf("state %s: %s, attempt %d, completed", p.State, name, p.Attempt)
	case runtime.EventToolCallFailed:
		return fmt.Sprintf("state %s: %s, attempt %d, failed (%s)", p.State, name, p.Attempt, p.Class)
	case runtime.EventToolCallUnknown:
		return fmt.Sprintf("state %s: %s: outcome unknown; waiting for an operator", p.State, name)
	default:
		return fmt.Sprintf("state %s: %s resolved by an operator", p.State, name)
	}
}
