package service

import (
	"context"
	"fmt"
	"slices"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// A run's tail is the events this process itself appended to it, trimmed
// to what the trace records in the clear (appendTrimmed), while a chain of
// runtime tool calls may still need them: the answer after the chain (and
// its progress reports) is built from them, instead of reading them back
// from the store and opening their sealed data again (docs/performance.md,
// issue 15). The tail's events are never modified, so a span of them is
// shared with the readers.
//
// What reads a span (fillFromEvents without Duplicate, progress) reads only
// what the trace records in the clear: transitions, and the calls' ids,
// attempts, classes and states. Those are the same in the events the core
// made and in the events read back and opened, so an answer is the same
// whichever it was built from (TestAnAnswerFromTheTailEqualsOneReadBack).

// tailMax bounds a run's tail; past it, only the latest half is kept, and
// a waiter that needs older events reads them from the store.
const tailMax = 256

// grown returns the tail after an append of events that took the run
// from before (nil: the start) to after. It follows a chain: an append
// that leaves the run executing a call, or is the outcome of one, keeps
// its events, after the tail's when they follow on (the runner's appends),
// else from scratch (the input that starts a chain, or a gap: the run was
// folded again, or another instance appended); any other append keeps
// none.
func grown(tail []runtime.Event, before, after *runtime.Run, events []runtime.Event) []runtime.Event {
	switch {
	case !executing(before) && !executing(after):
		return nil
	case executing(before) && len(tail) > 0 && tail[len(tail)-1].Index+1 == events[0].Index:
		tail = appendTrimmed(tail, events)
		if len(tail) > tailMax {
			tail = slices.Clone(tail[len(tail)-tailMax/2:])
		}
		return tail
	default:
		return appendTrimmed(nil, events)
	}
}

// appendTrimmed appends to tail copies of events that keep only what a
// span's readers read: the event's place, its transition or finish, and
// its call's id, attempt and class. A tool's result, its arguments, a
// task's view, a submitted output would otherwise stay in memory with the
// cached run, up to tailMax of them, long after the answer needed them;
// and the tail thus never holds personal data.
func appendTrimmed(tail, events []runtime.Event) []runtime.Event {
	for _, e := range events {
		t := runtime.Event{RunID: e.RunID, Index: e.Index, Type: e.Type, Seq: e.Seq, State: e.State, Transition: e.Transition, Finished: e.Finished}
		if e.Call != nil {
			t.Call = &runtime.ToolCallRecord{CallID: e.Call.CallID, Attempt: e.Call.Attempt, Class: e.Call.Class}
		}
		tail = append(tail, t)
	}
	return tail
}

// span returns the events [from, to) of tail, if it holds all of them.
// The slice is clipped, so that the tail's later growth never writes
// where a reader looks.
func span(tail []runtime.Event, from, to uint64) ([]runtime.Event, bool) {
	if len(tail) == 0 || from < tail[0].Index {
		return nil, false
	}
	i, j := from-tail[0].Index, to-tail[0].Index
	if j > uint64(len(tail)) {
		return nil, false
	}
	return slices.Clip(tail[i:j]), true
}

// recent returns the run's events [from, to) from its tail, or false when
// the tail does not hold them all: the run is not cached here, or was
// folded again from the store (another instance appended, a conflict, a
// recovery, a restart), or they are older than the tail.
func (s *Service) recent(runID string, from, to uint64) ([]runtime.Event, bool) {
	lr := s.claim(runID)
	defer s.release(lr)
	if lr.run == nil {
		s.forget(runID, lr)
		return nil, false
	}
	return span(lr.tail, from, to)
}

// eventsFrom returns the run's events [from, to), opened: from the run's
// tail when it holds them, else read back from the store.
func (s *Service) eventsFrom(ctx context.Context, runID string, from, to uint64) ([]runtime.Event, error) {
	if to <= from {
		return nil, nil
	}
	if events, ok := s.recent(runID, from, to); ok {
		return events, nil
	}
	return s.storedEvents(ctx, runID, from, to)
}

// storedEvents reads the run's events [from, to) from the store and opens
// them.
func (s *Service) storedEvents(ctx context.Context, runID string, from, to uint64) ([]runtime.Event, error) {
	// Only the stretch asked for: a long run's answers must not cost a
	// read of its whole trace each (docs/performance.md, issue 15).
	recs, err := tracestore.Range(ctx, s.store, runID, from, to)
	if err != nil {
		return nil, noSuchRun(err, runID)
	}
	if uint64(len(recs)) < to-from {
		return nil, fmt.Errorf("run %s: the trace holds %d events from %d, want %d", runID, len(recs), from, to-from)
	}
	return s.opened(ctx, recs)
}
