package service

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Submit answers a run's open llm or tool task. The service sets the time
// and measures the output (Size).
func (s *Service) Submit(ctx context.Context, runID string, in runtime.Submit) (Answer, error) {
	in.At, in.Size = s.clock(), jsonSize(in.Output)
	a, err := s.apply(ctx, runID, in)
	return s.settle(ctx, a, err)
}

// Decide answers a run's open approval task. The service sets the time
// and measures the decision (Size).
func (s *Service) Decide(ctx context.Context, runID string, in runtime.Decide) (Answer, error) {
	in.At, in.Size = s.clock(), jsonSize(in.Decision)
	a, err := s.apply(ctx, runID, in)
	return s.settle(ctx, a, err)
}

// Cancel ends a run.
func (s *Service) Cancel(ctx context.Context, runID, principal, reason string) (Answer, error) {
	return s.apply(ctx, runID, runtime.Cancel{Principal: principal, Reason: reason, At: s.clock()})
}

// Tick times out the run's open task if its deadline has passed.
func (s *Service) Tick(ctx context.Context, runID string) (Answer, error) {
	return s.apply(ctx, runID, runtime.Tick{At: s.clock()})
}

// RecordFault appends a fault_injected event to the run: the failure
// laboratory's record of an attack it made through the other entry points
// and of the runtime's answer. It changes nothing else in the run, and is
// recorded on a finished run too.
func (s *Service) RecordFault(ctx context.Context, runID string, rec runtime.FaultRecord) (Answer, error) {
	return s.apply(ctx, runID, runtime.Fault{Record: rec, At: s.clock()})
}

// Get returns a snapshot of the run.
func (s *Service) Get(ctx context.Context, runID string) (*runtime.Run, *program.Program, error) {
	lr, err := s.live(ctx, runID)
	if err != nil {
		return nil, nil, err
	}
	defer s.release(lr)
	return lr.run.Clone(), lr.p, nil
}

// Events returns the run's trace, decoded.
func (s *Service) Events(ctx context.Context, runID string) ([]runtime.Event, error) {
	recs, err := s.store.Load(ctx, runID)
	if err != nil {
		return nil, noSuchRun(err, runID)
	}
	return s.opened(ctx, recs)
}

// noSuchRun turns the store's ErrNotFound for a run into the domain error.
func noSuchRun(err error, runID string) error {
	if errors.Is(err, tracestore.ErrNotFound) {
		return runtime.Reject(runtime.CodeNoSuchRun, "no run %s", runID)
	}
	return err
}

// opened decodes stored records and opens their sealed personal data.
func (s *Service) opened(ctx context.Context, recs []tracestore.Record) ([]runtime.Event, error) {
	events, err := DecodeEvents(recs)
	if err != nil {
		return nil, err
	}
	if err := s.sealer.open(ctx, events); err != nil {
		return nil, err
	}
	return events, nil
}

// stalledRetries bounds how often an input is re-applied after an append
// conflict that the reload does not explain: the trace is no longer than
// before. A store reports that only while the transaction that beat this
// one is still committing (PostgreSQL's deadlock and serialization
// failures), so a few retries see it land.
const stalledRetries = 3

func (s *Service) apply(ctx context.Context, runID string, in runtime.Input) (Answer, error) {
	return s.applyIf(ctx, runID, in, nil)
}

// applyIf is apply whose append, when cond is set, is conditional on
// cond's lease (tracestore.RunInfo.IfLease): the runner's outcome is
// recorded only while this instance still holds the call, in the same
// transaction, or refused with tracestore.ErrLeaseLost.
func (s *Service) applyIf(ctx context.Context, runID string, in runtime.Input, cond *tracestore.Lease) (Answer, error) {
	lr, err := s.live(ctx, runID)
	if err != nil {
		return Answer{}, err
	}
	defer s.release(lr)
	if at, ok := answersAfterTimeout(lr.run, in); ok {
		// A read showed the run as its timeout leaves it (Read), and this
		// answers what it showed: the timeout is recorded first, as the
		// sweeper would have, and the answer then meets the run as shown.
		if _, err := s.applyLocked(ctx, lr, runID, runtime.Tick{At: at}, nil); err != nil {
			return Answer{}, err
		}
	}
	return s.applyLocked(ctx, lr, runID, in, cond)
}

// answersAfterTimeout reports whether in answers a run whose open task's
// deadline has passed at in's time, without answering that task (another
// seq): the client answers what a read showed past the timeout, which
// nothing has recorded yet. An answer to the expired task itself is the
// core's to refuse (deadline_exceeded), with the timeout.
func answersAfterTimeout(r *runtime.Run, in runtime.Input) (time.Time, bool) {
	var (
		seq uint64
		at  time.Time
	)
	switch in := in.(type) {
	case runtime.Submit:
		seq, at = in.Seq, in.At
	case runtime.Decide:
		seq, at = in.Seq, in.At
	default:
		return time.Time{}, false
	}
	due := r.Status == runtime.StatusRunning && !r.Deadline.IsZero() && !at.Before(r.Deadline)
	return at, due && seq != r.Seq
}

// applyLocked applies in to a loaded run whose lock the caller holds.
//
// An append conflict means another process appended to the run first. The
// run is refolded and the input applied again, as often as it takes while
// each conflict shows that progress: the input then meets the run as it
// really is, and a lost race is answered, and recorded, like any other
// rejection, never as a failure. Each retry follows another append to the
// run, so only a run that others keep moving delays it, and each of those
// appends is someone's answered input.
func (s *Service) applyLocked(ctx context.Context, lr *liveRun, runID string, in runtime.Input, cond *tracestore.Lease) (Answer, error) {
	for stalled := 0; ; {
		res, applyErr := runtime.Apply(lr.p, lr.run, in)
		if res.PendingApproval {
			// The open task stands; the answer is the run as it is.
			a := answerFrom(lr.run, nil)
			a.Duplicate = true
			return a, nil
		}
		if res.Duplicate {
			return s.originalAnswer(ctx, lr.p, lr.run)
		}
		if len(res.Events) > 0 {
			err := s.append(ctx, lr, res.Run, res.Events, cond)
			if errors.Is(err, tracestore.ErrConflict) && stalled < stalledRetries {
				before := lr.run.NextIndex
				if err := s.load(ctx, lr, runID); err != nil {
					return Answer{}, err
				}
				if lr.run.NextIndex <= before {
					stalled++
				}
				s.log.Debug("append conflict: applying the input again", zap.String("run_id", runID),
					zap.Uint64("events_before", before), zap.Uint64("events_now", lr.run.NextIndex))
				continue
			}
			if err != nil {
				return Answer{}, err
			}
			lr.run = res.Run
		}
		if applyErr != nil {
			// A refusal the trace does not record (throttled past the cap)
			// logs at debug: the log must not grow where the trace may not.
			logAt := s.log.Info
			if len(res.Events) == 0 {
				logAt = s.log.Debug
			}
			logAt("input rejected", zap.String("run_id", runID), zap.Error(applyErr))
		}
		return answerFrom(lr.run, res.Events), applyErr
	}
}

// live returns the run's in-process state, locked, loading it from the
// store by folding its trace if needed.
func (s *Service) live(ctx context.Context, runID string) (*liveRun, error) {
	lr := s.claim(runID)
	if lr.run != nil {
		return lr, nil
	}
	if err := s.load(ctx, lr, runID); err != nil {
		// Forget the placeholder, so that unknown ids cost nothing.
		s.forget(runID, lr)
		s.release(lr)
		return nil, err
	}
	return lr, nil
}

// claim returns the run's in-process entry, locked, creating an empty
// placeholder if there is none; the caller gives it back with release. The
// entry returned is the one registered under id: a placeholder forgotten
// while this waited for its lock is passed over.
func (s *Service) claim(id string) *liveRun {
	for {
		s.mu.Lock()
		lr := s.runs[id]
		if lr == nil {
			lr = &liveRun{}
			s.insertLocked(id, lr)
		} else {
			s.lru.MoveToFront(lr.elem)
			lr.refs++
		}
		s.mu.Unlock()
		lr.mu.Lock()
		s.mu.Lock()
		current := s.runs[id] == lr
		s.mu.Unlock()
		if current {
			return lr
		}
		s.release(lr)
	}
}

// release unlocks a claimed entry and, once nobody holds it, lets it be
// evicted if the cache is over its bound.
func (s *Service) release(lr *liveRun) {
	lr.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	lr.refs--
	s.trimLocked()
}

// insertLocked registers a new entry, with one reference: the caller's.
// The caller holds s.mu.
func (s *Service) insertLocked(id string, lr *liveRun) {
	s.runs[id] = lr
	lr.elem = s.lru.PushFront(id)
	lr.refs = 1
	s.trimLocked()
}

// dropLocked removes lr from the cache if it is still the entry for id.
// The caller holds s.mu.
func (s *Service) dropLocked(id string, lr *liveRun) {
	if s.runs[id] == lr {
		delete(s.runs, id)
		s.lru.Remove(lr.elem)
	}
}

// trimLocked evicts the least recently used entries nobody holds until
// the cache is within its bound, or only held entries are left over it.
// The caller holds s.mu.
func (s *Service) trimLocked() {
	for e := s.lru.Back(); e != nil && len(s.runs) > s.maxRuns; {
		prev := e.Prev()
		id := e.Value.(string)
		if lr := s.runs[id]; lr.refs == 0 {
			s.dropLocked(id, lr)
		}
		e = prev
	}
}

// forget drops a placeholder that holds no run; the caller holds its lock,
// so that nobody takes it up in between.
func (s *Service) forget(id string, lr *liveRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lr.run == nil {
		s.dropLocked(id, lr)
	}
}

// load folds the run's stored trace into lr, whose lock the caller holds.
// It reads the index row first, then the trace up to the row's length.
// Another process may append in between (this is the reload after a lost
// append, when one surely is): the trace is append-only, so its first
// row.Events records are the trace the row describes, and the rest belongs
// to a later row. Read the other way round, the row could be newer than the
// trace.
func (s *Service) load(ctx context.Context, lr *liveRun, runID string) error {
	info, err := s.store.Run(ctx, runID)
	if err != nil {
		return noSuchRun(err, runID)
	}
	recs, err := s.store.LoadPrefix(ctx, runID, info.Events)
	if err != nil {
		return noSuchRun(err, runID)
	}
	if uint64(len(recs)) != info.Events {
		return fmt.Errorf("run %s: the index row counts %d events, the trace has %d", runID, info.Events, len(recs))
	}
	events, err := s.opened(ctx, recs)
	if err != nil {
		return err
	}
	if len(events) == 0 || events[0].Started == nil {
		return fmt.Errorf("run %s: trace does not begin with run_started", runID)
	}
	p, err := s.programByHash(ctx, events[0].Started.Program.DefinitionHash)
	if err != nil {
		return err
	}
	run, err := runtime.Fold(p, events)
	if err != nil {
		return err
	}
	tree, err := trace.UnmarshalTree(info.Tree)
	if err != nil {
		return fmt.Errorf("run %s: %w", runID, err)
	}
	if tree.Size() != info.Events {
		return fmt.Errorf("run %s: the index row's tree has %d leaves, the row counts %d events", runID, tree.Size(), info.Events)
	}
	lr.p, lr.run, lr.tail = p, run, nil
	lr.chain = &chain{head: info.Head, tree: tree, subjects: events[0].Started.Subjects, erased: erasedIn(nil, events)}
	return nil
}

// append seals and stores the events that took a run to the state after,
// with the run's index row, and moves lr's chain on once they are stored.
// With cond set, the store writes them only while cond's lease is held.
func (s *Service) append(ctx context.Context, lr *liveRun, after *runtime.Run, events []runtime.Event, cond *tracestore.Lease) error {
	recs, next, err := s.sealer.seal(ctx, lr.p, lr.chain, events)
	if err != nil {
		return err
	}
	info := indexRow(after)
	s.leaseRow(&info, after, events)
	info.IfLease = cond
	info.Head = next.head
	if lr.chain.head == nil {
		// The run's first append: the store keeps its subjects from this
		// one only (RunInfo), so later steps need not list them.
		info.Subjects = slices.Sorted(maps.Values(next.subjects))
	}
	if info.Tree, err = next.tree.MarshalBinary(); err != nil {
		return err
	}
	if err := s.store.Append(ctx, after.ID, recs, info); err != nil {
		return err
	}
	lr.chain = next
	lr.tail = grown(lr.tail, lr.run, after, events)
	s.appended(after, info)
	return nil
}

// indexRow is what the store's run index keeps of a run.
func indexRow(r *runtime.Run) tracestore.RunInfo {
	started, _ := time.Parse(time.RFC3339Nano, r.StartedAt)
	updated, _ := time.Parse(time.RFC3339Nano, r.UpdatedAt)
	info := tracestore.RunInfo{
		RunID: r.ID, Program: r.Program.Name, DefinitionHash: r.Program.DefinitionHash,
		Status: string(r.Status), Outcome: r.Outcome, StartedAt: started, UpdatedAt: updated,
		Events: r.NextIndex, Principal: r.Principal, Lab: r.Lab,
	}
	if role := r.AwaitedRole(); role != "" {
		info.AwaitingRole, info.AwaitingDeadline = role, r.Deadline
	}
	if r.Status == runtime.StatusRunning {
		info.Deadline = r.Deadline
	}
	return info
}
