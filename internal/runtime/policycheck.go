package runtime

import (
	"fmt"

	"github.com/nano-vm/nano-vm-mcp/internal/policy"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// CheckPolicy confirms, from a trace alone, that the run followed its
// program: every recorded guard result is what the guard gives on the
// recorded data, and every transition is the first one whose guard holds
// (or the default when none does). It needs no keys: guards never read
// personal data, so sealed values can stay sealed. The receipt proves the
// trace is intact; this proves the policy was followed. Nil means it was.
func CheckPolicy(p *program.Program, events []Event) (*Divergence, error) {
	if len(events) == 0 || events[0].Started == nil {
		return nil, fmt.Errorf("policy check: the trace does not begin with run_started")
	}
	if h := events[0].Started.Program.DefinitionHash; h != p.Hash {
		return nil, fmt.Errorf("policy check: the run is pinned to %s, the program given is %s", h, p.Hash)
	}
	c := &policyChecker{p: p, r: &Run{}}
	for i := range events {
		if d, err := c.check(events, i); d != nil || err != nil {
			return d, err
		}
	}
	return nil, nil
}

// policyChecker checks events one by one against the guards, folding each
// into r.
type policyChecker struct {
	p *program.Program
	r *Run
	// The guards evaluated since the last transition, in order.
	evaluated []*GuardEvaluation
}

// check checks events[i] (the events after it are where a refused
// submission's output is found) and folds it.
func (c *policyChecker) check(events []Event, i int) (*Divergence, error) {
	p, r := c.p, c.r
	e := &events[i]
	switch e.Type {
	case EventGuardEvaluated:
		st := p.States[e.State]
		if st == nil || e.Guard.Transition < 0 || e.Guard.Transition >= len(st.Transitions) || st.Transitions[e.Guard.Transition].Guard == nil {
			return diverge(e.Index, "guard", fmt.Sprintf("%+v", e.Guard), "no such guard in the program"), nil
		}
		var output any
		if st.Kind != program.KindDecision {
			output = outputJudged(p, r, events, i)
		}
		ok, _, err := st.Transitions[e.Guard.Transition].Guard.EvalBool(policy.Vars{Input: r.Input, Data: r.Data, Output: output})
		if got := ok && err == nil; got != e.Guard.Result {
			return diverge(e.Index, "guard.result", fmt.Sprint(e.Guard.Result), fmt.Sprint(got)), nil
		}
		c.evaluated = append(c.evaluated, e.Guard)
	case EventTransitioned:
		if d := checkChoice(p, e, c.evaluated); d != nil {
			return d, nil
		}
		if e.Transition.Cause == CauseOnError && !failedForGood(events[:i]) {
			return diverge(e.Index, "transition", e.Transition.From+" -> "+e.Transition.To+" (on_error)", "no call failed for good before it"), nil
		}
		c.evaluated = nil
	case EventInputReceived, EventSubmissionRejected, EventApprovalRecorded,
		EventToolCallCompleted, EventToolCallFailed, EventToolCallUnknown, EventToolCallResolved:
		c.evaluated = nil
	}
	if err := r.apply(p, e); err != nil {
		return nil, fmt.Errorf("policy check: %w", err)
	}
	return nil, nil
}

// failedForGood reports whether the last of events ends a call as failed
// for good: a failed attempt with no retry, or an operator's resolution as
// failed. Only that takes the on_error edge, right after it.
func failedForGood(events []Event) bool {
	if len(events) == 0 {
		return false
	}
	e := events[len(events)-1]
	switch {
	case e.Call == nil:
		return false
	case e.Type == EventToolCallFailed:
		return !e.Call.Retry
	case e.Type == EventToolCallResolved:
		return e.Call.Failed
	}
	return false
}

// outputJudged is the submission the guards at events[i] judged: the one
// accepted just before them, or the one refused just after them.
func outputJudged(p *program.Program, r *Run, events []Event, i int) any {
	for _, e := range events[i+1:] {
		switch e.Type {
		case EventSubmissionRejected:
			return p.States[e.State].Output.Root.Convert(e.Rejection.Output)
		case EventGuardEvaluated:
			continue
		}
		break
	}
	return r.Data[events[i].State]
}

// checkChoice confirms a transition is the first whose guard held, after
// every earlier guard was evaluated and failed.
func checkChoice(p *program.Program, e *Event, evaluated []*GuardEvaluation) *Divergence {
	t := e.Transition
	if t.Cause == "timeout" {
		if st := p.States[t.From]; st == nil || st.OnTimeout == nil || st.OnTimeout.Name != t.To {
			return diverge(e.Index, "transition", t.From+" -> "+t.To, "no such timeout edge")
		}
		return nil
	}
	if t.Cause == CauseOnError {
		if st := p.States[t.From]; st == nil || st.OnError == nil || st.OnError.Name != t.To || t.Transition != TransitionOnError {
			return diverge(e.Index, "transition", t.From+" -> "+t.To, "no such on_error edge")
		}
		return nil
	}
	st := p.States[t.From]
	if st == nil || t.Transition < 0 || t.Transition >= len(st.Transitions) || st.Transitions[t.Transition].To.Name != t.To {
		return diverge(e.Index, "transition", fmt.Sprintf("%s -> %s (#%d)", t.From, t.To, t.Transition), "no such transition in the program")
	}
	for k := 0; k < t.Transition; k++ {
		if k >= len(evaluated) || evaluated[k].Transition != k || evaluated[k].Result {
			return diverge(e.Index, "transition", fmt.Sprintf("#%d", t.Transition), fmt.Sprintf("transition #%d was not evaluated and refused first", k))
		}
	}
	chosen := st.Transitions[t.Transition]
	if chosen.Guard != nil && (len(evaluated) <= t.Transition || !evaluated[t.Transition].Result) {
		return diverge(e.Index, "transition", fmt.Sprintf("#%d", t.Transition), "its guard was not recorded as holding")
	}
	return nil
}
