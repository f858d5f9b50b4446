package service

import (
	"context"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

// Hop is one transition as clients see it.
type Hop struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Cause    string `json:"cause"`
	Rollback bool   `json:"rollback,omitempty"`
}

// Answer is what an input produced, in the shape tools and the CLI report.
type Answer struct {
	RunID       string           `json:"run_id"`
	Status      runtime.Status   `json:"status"`
	State       string           `json:"state"`
	Seq         uint64           `json:"seq"`
	Transition  *Hop             `json:"transition,omitempty"` // the first hop taken
	Transitions []Hop            `json:"transitions,omitempty"`
	Task        *projection.Task `json:"task,omitempty"`
	Outcome     string           `json:"outcome,omitempty"`
	Reason      string           `json:"reason,omitempty"`
	Duplicate   bool             `json:"duplicate,omitempty"`
	// While an approval task whose decision needs several distinct
	// approvers is open: how many it needs, and how many have submitted
	// the pending decision so far.
	ApprovalsNeeded int `json:"approvals_needed,omitempty"`
	ApprovalsGiven  int `json:"approvals_given,omitempty"`
	// WaitingFor is "tool" while the running run waits on a tool call the
	// runtime itself executes: the caller has nothing to submit, and
	// continues with get_run or await_run.
	WaitingFor string `json:"waiting_for,omitempty"`

	// next is the index of the run's next event when the answer was made:
	// where the events of a chain of runtime tool calls that follows begin;
	// from is the index of the answered input's first event (its progress
	// reports begin there).
	next, from uint64
}

// originalAnswer rebuilds the answer to the last accepted submission from
// the trace: from its submission_accepted event to the next task or finish.
func (s *Service) originalAnswer(ctx context.Context, p *program.Program, r *runtime.Run) (Answer, error) {
	events, err := s.Events(ctx, r.ID)
	if err != nil {
		return Answer{}, err
	}
	var span []runtime.Event
	for _, e := range events[r.Last.Index:] {
		span = append(span, e)
		if e.Type == runtime.EventTaskIssued || e.Type == runtime.EventRunFinished {
			break
		}
	}
	// The state the answer reports is the one right after the original
	// answer, not wherever the run is now.
	a := Answer{RunID: r.ID, Duplicate: true, Status: runtime.StatusRunning}
	fillFromEvents(&a, span)
	if a.Task != nil {
		// The task was new then: no approvals yet.
		if st := p.States[a.Task.State]; st != nil && st.Kind == program.KindApproval && st.Approvals > 1 {
			a.ApprovalsNeeded = st.Approvals
		}
	}
	return a, nil
}

func answerFrom(r *runtime.Run, events []runtime.Event) Answer {
	a := Answer{RunID: r.ID, Status: r.Status, State: r.State, Seq: r.Seq, Task: r.Task, Outcome: r.Outcome, Reason: r.Reason,
		ApprovalsNeeded: r.ApprovalsNeeded, ApprovalsGiven: r.ApprovalsGiven, next: r.NextIndex, from: r.NextIndex - uint64(len(events))}
	if r.Status == runtime.StatusRunning {
		a.Outcome = ""
	}
	if executing(r) {
		a.WaitingFor = waitingTool
	}
	fillFromEvents(&a, events)
	return a
}

// fillFromEvents sets the hops (and, for a span of an older answer, the
// task and outcome) that events record.
func fillFromEvents(a *Answer, events []runtime.Event) {
	for _, e := range events {
		switch e.Type {
		case runtime.EventTransitioned:
			t := e.Transition
			a.Transitions = append(a.Transitions, Hop{From: t.From, To: t.To, Cause: t.Cause, Rollback: t.Rollback})
			a.State = t.To
		case runtime.EventTaskIssued:
			if a.Duplicate {
				a.Task, a.Seq, a.State = e.Task, e.Seq, e.State
			}
		case runtime.EventRunFinished:
			if a.Duplicate {
				a.Status, a.Outcome, a.Reason = e.Finished.Status, e.Finished.Outcome, e.Finished.Reason
			}
		}
	}
	if len(a.Transitions) > 0 {
		a.Transition = &a.Transitions[0]
	}
}
