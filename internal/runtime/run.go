package runtime

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
)

// Status is where a run stands.
type Status string

// Run statuses.
const (
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed" // reached a terminal state
	StatusFailed    Status = "failed"    // a limit or a runtime rule ended it
	StatusCancelled Status = "cancelled"
)

// Failure reasons recorded when the runtime ends a run.
const (
	ReasonBudgetExceeded         = "budget_exceeded"
	ReasonRollbackBudgetExceeded = "rollback_budget_exceeded"
	ReasonVisitBudgetExceeded    = "visit_budget_exceeded"
	ReasonAttemptsExhausted      = "attempts_exhausted"
	ReasonTimeout                = "timeout"
	ReasonArgumentError          = "argument_error"
)

// Run is the state of one run: the fold of its events, and nothing else.
type Run struct {
	ID        string
	Program   ProgramRef
	Principal string
	Lab       bool // a laboratory run (Started.Lab)
	Input     any  // converted per the input schema (CEL-ready)

	Status  Status
	Outcome string
	Reason  string

	State     string
	Seq       uint64 // the current (or last) task's sequence number
	NextIndex uint64 // index of the next event

	Data map[string]any // accepted outputs by state, converted per schema
	// Path is every state entered, in order. Its array is shared with the
	// run's clones (path): read it, never write into it, nor append to a
	// shorter re-slice of it (append(Path[:k], x) would write into the
	// clones' array); copy it first.
	Path     []string
	path     *sharedPath
	Visits   map[string]int
	Attempts int // counted rejections in the current visit

	Steps      int
	Rollbacks  int
	Rejections int // every rejection, counted or not
	// Uncounted is how many uncounted rejections task UncountedSeq has
	// recorded (RejectionRecord.Uncounted); the core throttles past the
	// program's max_uncounted_rejections.
	Uncounted    int
	UncountedSeq uint64

	// Executors are the runtime-executed tool states (Started.Executors).
	Executors map[string]string
	// Call is the runtime tool call the run waits on, nil when none.
	Call *OpenCall

	Task     *projection.Task // the open task, nil when none
	Deadline time.Time        // of the open task; zero when it has no timeout
	TaskAt   string           // when the open (or last) task was issued
	Last     *Accepted        // the last accepted submission
	// Submitters are the principals recorded submitting a model or tool
	// answer (accepted or not), in order of their first: separation of
	// duties keeps them from deciding the run's approvals.
	Submitters []string

	// Pending is the decision awaiting more approvers on an approval state
	// that needs several (approvals > 1); nil when none.
	Pending *PendingApproval
	// ApprovalsNeeded is, while such a task is open, how many distinct
	// approvers its decision needs; ApprovalsGiven how many have submitted
	// the pending decision so far. Both are 0 otherwise.
	ApprovalsNeeded int
	ApprovalsGiven  int

	StartedAt, UpdatedAt string
}

// Accepted remembers the last accepted submission, so that an exact
// duplicate can get the original answer back: the answer is the trace from
// Index up to and including the next task_issued or run_finished event.
type Accepted struct {
	Seq   uint64
	State string
	// Who answered, with which claims: a duplicate must repeat them, so a
	// decision replayed by another role or as a model step is no duplicate.
	Actor     Actor
	Principal string // who submitted it (for a decision, its last approver)
	Role      string
	Tool      string
	Output    any // as submitted (decoded JSON)
	Index     uint64
	// Approvers of a decision that needed several: only they may repeat it
	// as a duplicate.
	Approvers []string
}

// PendingApproval is a decision some, but not yet enough, distinct
// approvers have submitted for the open task.
type PendingApproval struct {
	Seq       uint64
	State     string
	Role      string
	Decision  any      // as submitted (decoded JSON)
	Approvers []string // distinct principals, in order
}

// Finished reports whether the run has ended. A run waiting for the
// operator has not.
func (r *Run) Finished() bool {
	return r.Status != "" && r.Status != StatusRunning && r.Status != StatusWaitingOperator
}

// clone copies r deeply enough that folding into the copy leaves r alone.
// Values inside Data are immutable once stored, so they are shared.
// nextUncounted is the number the next uncounted rejection of task seq
// records (RejectionRecord.Uncounted): 1 for a task's first.
func (r *Run) nextUncounted(seq uint64) int {
	if r.UncountedSeq == seq {
		return r.Uncounted + 1
	}
	return 1
}

// Clone is a copy of the run that shares nothing Apply modifies. Path's
// array is shared: appendPath writes only slots no run holds yet, so the
// clone's step costs the same however long the run. Submitters grows only
// with a new principal, so its copy on the clone's first append stays.
func (r *Run) Clone() *Run {
	c := *r
	c.Data = maps.Clone(r.Data)
	c.Visits = maps.Clone(r.Visits)
	c.Submitters = slices.Clip(r.Submitters)
	return &c
}

// Fold rebuilds a run from its events. Replay and recovery use it.
func Fold(p *program.Program, events []Event) (*Run, error) {
	r := &Run{}
	for i := range events {
		if err := r.apply(p, &events[i]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// apply folds one event into r.
func (r *Run) apply(p *program.Program, e *Event) error {
	if e.Index != r.NextIndex {
		return fmt.Errorf("event %d out of order: expected index %d", e.Index, r.NextIndex)
	}
	r.NextIndex++
	r.UpdatedAt = e.At
	switch e.Type {
	case EventRunStarted:
		s := e.Started
		r.ID, r.Program, r.Principal, r.Lab = e.RunID, s.Program, s.Principal, s.Lab
		r.Executors = s.Executors
		r.Input = p.Input.Root.Convert(s.Input)
		r.Status = StatusRunning
		r.State = p.Initial.Name
		r.Data = map[string]any{}
		r.Visits = map[string]int{p.Initial.Name: 1}
		r.Path, r.path = nil, nil
		r.appendPath(p.Initial.Name)
		r.StartedAt = e.At
	case EventTaskIssued:
		r.Seq = e.Seq
		r.Task = e.Task
		r.TaskAt = e.At
		r.Attempts = 0
		r.closeApprovals()
		if st := p.States[e.State]; st != nil && st.Kind == program.KindApproval && st.Approvals > 1 {
			r.ApprovalsNeeded = st.Approvals
		}
		if err := r.setDeadline(p, e); err != nil {
			return err
		}
	case EventToolCallStarted, EventToolCallCompleted, EventToolCallFailed, EventToolCallUnknown, EventToolCallResolved:
		return r.applyCall(p, e)
	case EventInputReceived:
		if in := e.Input; in != nil && in.Kind == "submit" && in.Principal != "" && !slices.Contains(r.Submitters, in.Principal) {
			r.Submitters = append(r.Submitters, in.Principal)
		}
	case EventGuardEvaluated, EventTaskExpired:
		// Evidence only.
	case EventFaultInjected:
		// Evidence only: an attack and the runtime's answer, recorded.
		if e.Fault == nil {
			return fmt.Errorf("event %d: fault_injected without a fault", e.Index)
		}
	case EventSubjectErased:
		// Evidence: the run_finished that may follow changes the run.
		if e.Erasure == nil {
			return fmt.Errorf("event %d: subject_erased without an erasure", e.Index)
		}
	case EventSubmissionAccepted:
		st := p.States[e.State]
		if st == nil || st.Output == nil {
			return fmt.Errorf("event %d: state %q takes no submission", e.Index, e.State)
		}
		if e.converted != nil {
			r.Data[e.State] = e.converted
		} else {
			r.Data[e.State] = st.Output.Root.Convert(e.Submission.Output)
		}
		sub := e.Submission
		r.Last = &Accepted{Seq: e.Seq, State: e.State, Actor: sub.Actor, Principal: sub.Principal, Role: sub.Role, Tool: sub.Tool, Output: sub.Output, Index: e.Index, Approvers: sub.Approvers}
		r.Task = nil
		r.closeApprovals()
	case EventApprovalRecorded:
		return r.applyApproval(p, e)
	case EventSubmissionRejected:
		if rec := e.Rejection; rec != nil && !rec.Counted && rec.Uncounted > 0 {
			n := r.nextUncounted(e.Seq)
			if rec.Uncounted != n {
				return fmt.Errorf("event %d: uncounted rejection %d of task %d, expected %d", e.Index, rec.Uncounted, e.Seq, n)
			}
			r.Uncounted, r.UncountedSeq = n, e.Seq
		}
		r.Rejections++
		if e.Rejection.Counted {
			r.Attempts++
			if r.Task != nil {
				t := *r.Task // the issued task in the trace stays as it was
				t.AttemptsLeft--
				r.Task = &t
			}
		}
	case EventTransitioned:
		t := e.Transition
		if t.Rollback {
			r.Rollbacks++
			for _, s := range t.Cleared {
				delete(r.Data, s)
			}
		}
		r.Steps++
		r.Task = nil
		r.Call = nil
		r.Deadline = time.Time{}
		r.closeApprovals()
		r.State = t.To
		r.appendPath(t.To)
		r.Visits[t.To]++
	case EventRunFinished:
		r.Status, r.Outcome, r.Reason = e.Finished.Status, e.Finished.Outcome, e.Finished.Reason
		r.Task = nil
		r.Call = nil
		r.Deadline = time.Time{}
		r.closeApprovals()
	default:
		return fmt.Errorf("event %d: unknown type %q", e.Index, e.Type)
	}
	return nil
}

// setDeadline sets the deadline of the task or call e opens: its state's
// timeout after e, none without one.
func (r *Run) setDeadline(p *program.Program, e *Event) error {
	r.Deadline = time.Time{}
	if st := p.States[e.State]; st != nil && st.Timeout > 0 {
		at, err := time.Parse(time.RFC3339Nano, e.At)
		if err != nil {
			return fmt.Errorf("event %d: bad time %q", e.Index, e.At)
		}
		r.Deadline = at.Add(st.Timeout)
	}
	return nil
}

// applyCall folds a tool_call_* event. A call's first attempt opens it
// like a task (seq, attempts, deadline); a retry only reopens it, under
// the same deadline: the state's timeout bounds the whole call.
func (r *Run) applyCall(p *program.Program, e *Event) error {
	c := e.Call
	if c == nil {
		return fmt.Errorf("event %d: %s without a call", e.Index, e.Type)
	}
	st := p.States[e.State]
	if st == nil || st.Kind != program.KindTool {
		return fmt.Errorf("event %d: state %q is not a tool state", e.Index, e.State)
	}
	if e.Type != EventToolCallStarted && (r.Call == nil || r.Call.CallID != c.CallID) {
		return fmt.Errorf("event %d: %s of %s, but the open call is not it", e.Index, e.Type, c.CallID)
	}
	switch e.Type {
	case EventToolCallStarted:
		if c.Attempt < 1 {
			return fmt.Errorf("event %d: tool_call_started with attempt %d", e.Index, c.Attempt)
		}
		if c.Attempt == 1 {
			r.Seq = e.Seq
			r.Task = nil
			r.TaskAt = e.At
			r.Attempts = 0
			r.closeApprovals()
			if err := r.setDeadline(p, e); err != nil {
				return err
			}
		} else if r.Seq != e.Seq {
			return fmt.Errorf("event %d: a retry of call %s at seq %d, but the run is at seq %d", e.Index, c.CallID, e.Seq, r.Seq)
		}
		r.Call = &OpenCall{Seq: e.Seq, State: e.State, CallID: c.CallID, Tool: c.Tool, Executor: c.Executor,
			Arguments: c.Arguments, Attempt: c.Attempt, IdempotencyKey: c.IdempotencyKey}
	case EventToolCallCompleted:
		r.takeResult(st, e)
	case EventToolCallFailed:
		r.Call = nil // a retry reopens it
	case EventToolCallUnknown:
		r.Status, r.Reason = StatusWaitingOperator, ReasonToolOutcomeUnknown
	case EventToolCallResolved:
		r.Status, r.Reason = StatusRunning, ""
		if c.Failed {
			r.Call = nil
		} else {
			r.takeResult(st, e)
		}
	}
	return nil
}

// takeResult stores a call's result as the state's data and closes the call.
func (r *Run) takeResult(st *program.State, e *Event) {
	if e.converted != nil {
		r.Data[e.State] = e.converted
	} else {
		r.Data[e.State] = st.Output.Root.Convert(e.Call.Result)
	}
	r.Call = nil
}

// closeApprovals forgets the pending decision and the approval counters:
// the task they belonged to is closed.
func (r *Run) closeApprovals() {
	r.Pending = nil
	r.ApprovalsNeeded, r.ApprovalsGiven = 0, 0
}

// applyApproval folds an approval_recorded event: a count of 1 starts a
// new pending decision, any other count adds one approver to it.
func (r *Run) applyApproval(p *program.Program, e *Event) error {
	st, a := p.States[e.State], e.Approval
	switch {
	case a == nil:
		return fmt.Errorf("event %d: approval_recorded without an approval", e.Index)
	case st == nil || st.Kind != program.KindApproval || st.Approvals < 2:
		return fmt.Errorf("event %d: state %q does not need several approvers", e.Index, e.State)
	case r.Task == nil || r.Task.Seq != e.Seq || r.State != e.State:
		return fmt.Errorf("event %d: no open task %d at %s", e.Index, e.Seq, e.State)
	case a.Count < 1 || a.Count >= st.Approvals:
		return fmt.Errorf("event %d: approval count %d out of range for %d needed", e.Index, a.Count, st.Approvals)
	}
	var approvers []string
	if a.Count > 1 {
		pd := r.Pending
		if pd == nil || len(pd.Approvers) != a.Count-1 {
			return fmt.Errorf("event %d: approval count %d does not follow the pending decision", e.Index, a.Count)
		}
		approvers = slices.Clone(pd.Approvers)
	}
	// A new value, never changed in place: clones of the run share it.
	r.Pending = &PendingApproval{Seq: e.Seq, State: e.State, Role: a.Role, Decision: a.Output, Approvers: append(approvers, a.Principal)}
	r.ApprovalsGiven = a.Count
	return nil
}

// AwaitedRole is the role whose decision the run's open task waits for,
// "" when it waits for none.
func (r *Run) AwaitedRole() string {
	if r.Status != StatusRunning || r.Task == nil || r.Task.Kind != string(program.KindApproval) {
		return ""
	}
	return r.Task.Role
}
