package service

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Who may see and drive which run, in one place. The faces (tools, the
// console, the laboratory) identify the caller and map it to a Caller;
// the service alone decides. An operator sees and drives every run; anyone
// else drives only the runs they started; an approver also reads, and
// decides, the runs that wait for a decision of their role, and only while
// they wait. Every refusal looks like a run that does not exist, so that
// nobody learns of another's run.

// Caller is who calls the service, as the face that took the call
// identified them.
type Caller struct {
	ID       string // the principal; runs record it as their owner
	Operator bool   // sees and drives every run
	// ApproverRole is an approver's role ("" for anyone else): such a
	// caller also reads the runs that wait for a decision of that role.
	ApproverRole string
}

// drives reports whether c may act on r as its owner does.
func (c Caller) drives(r *runtime.Run) bool {
	return c.Operator || r.Principal == c.ID
}

// reads reports whether c may look at r: a run it drives, or, for an
// approver, one that waits for a decision of its role now.
func (c Caller) reads(r *runtime.Run) bool {
	return c.drives(r) || c.ApproverRole != "" && r.AwaitedRole() == c.ApproverRole
}

// hidden is the refusal of a run the caller may not reach: the same as
// for a run that does not exist.
func hidden(runID string) error {
	return runtime.Reject(runtime.CodeNoSuchRun, "no run %s", runID)
}

// Own returns a snapshot of a run the caller drives: its own, or any for
// the operator. Another's run is no_such_run.
func (s *Service) Own(ctx context.Context, runID string, c Caller) (*runtime.Run, *program.Program, error) {
	r, p, err := s.Get(ctx, runID)
	if err != nil {
		return nil, nil, err
	}
	if !c.drives(r) {
		return nil, nil, hidden(runID)
	}
	return r, p, nil
}

// Read returns a snapshot of a run the caller may look at (see Caller),
// as it stands at the service's clock. A read never writes: if the open
// task's deadline has passed, the run is shown as the timeout will leave
// it (expired, and moved to on_timeout or finished), but nothing is
// appended; the sweeper or the run's next write records the timeout.
// Another's run is no_such_run, and so is, for an approver, a run whose
// decision has timed out: it no longer waits for them, and the run as the
// timeout leaves it (the agent's next task, say) is not theirs to see.
// The run is read as the store holds it: another instance sharing the
// store may have appended since this one cached it.
func (s *Service) Read(ctx context.Context, runID string, c Caller) (*runtime.Run, *program.Program, error) {
	if err := s.refresh(ctx, runID); err != nil {
		return nil, nil, err
	}
	r, p, err := s.Get(ctx, runID)
	if err != nil {
		return nil, nil, err
	}
	now := asOf(p, r, s.clock())
	if !c.reads(r) || !c.reads(now) {
		return nil, nil, hidden(runID)
	}
	return now, p, nil
}

// asOf is r as it stands at now: the run a tick at now would leave, when
// the open task's deadline has passed, else r. Apply is pure, so asking it
// writes nothing.
func asOf(p *program.Program, r *runtime.Run, now time.Time) *runtime.Run {
	if r.Status != runtime.StatusRunning || r.Deadline.IsZero() || now.Before(r.Deadline) {
		return r
	}
	res, err := runtime.Apply(p, r, runtime.Tick{At: now})
	if err != nil || len(res.Events) == 0 {
		return r
	}
	return res.Run
}

// Runs lists a page of the runs c may find by listing: every run for the
// operator, else only c's own (f.Principal is set to c.ID). An approver
// finds the runs awaiting its role through Inbox instead.
func (s *Service) Runs(ctx context.Context, c Caller, f tracestore.ListFilter) ([]tracestore.RunInfo, string, error) {
	if !c.Operator {
		f.Principal = c.ID
	}
	return s.store.ListRuns(ctx, f)
}

// Refusal is the service's answer to a decision the caller may not make,
// given before the core and so recorded nowhere: Code is no_such_run (the
// approver may not read the run) or forbidden (the task needs another
// role, Role).
type Refusal struct {
	Code    runtime.Code
	Message string
	Role    string // forbidden: the role the task needs
}

func (r *Refusal) Error() string { return string(r.Code) + ": " + r.Message }

// Approve applies a configured approver's decision (in.Principal and
// in.Role name the approver) on behalf of c, the caller that presented the
// approver's credential. Before the core, and recorded nowhere, it refuses
// (*Refusal) an approver who may not read the run: one that is not the
// run's owner gets no_such_run unless the run waits for an approval (as
// for a run that does not exist), and forbidden when it waits for another
// role. A wrong role is refused here for every caller, as an authorisation
// failure: in the core it would cost the task an attempt, and a stranger
// must not use up the approvers' attempts. Everything else (a stale seq,
// separation of duties) is the core's to judge and record, in a run the
// approver may read; and an approver's exact repeat of the decision that
// moved the run on, a lost answer retried, gets the original answer.
//
// The answer's task is left out unless c is the operator or the task is
// an approval of the approver's role: an approver never sees the agent's
// next task and its view.
func (s *Service) Approve(ctx context.Context, c Caller, runID string, in runtime.Decide) (Answer, error) {
	r, p, err := s.Get(ctx, runID)
	if err != nil {
		return Answer{}, err
	}
	waiting := r.AwaitedRole() != ""
	if !c.Operator && r.Principal != in.Principal && !waiting && !retried(p, r, in) {
		s.log.Info("approve refused: run not waiting for an approval", zap.String("run_id", r.ID), zap.String("approver", in.Principal))
		return Answer{}, &Refusal{Code: runtime.CodeNoSuchRun, Message: "no run " + r.ID + " waits for a decision of role " + in.Role}
	}
	if waiting && r.Task.Role != in.Role {
		s.log.Info("approve refused: wrong role", zap.String("run_id", r.ID), zap.String("approver", in.Principal), zap.String("role", in.Role))
		return Answer{}, &Refusal{Code: runtime.CodeForbidden, Role: r.Task.Role,
			Message: "approver " + in.Principal + " has role " + in.Role + "; this decision needs role " + r.Task.Role}
	}
	a, err := s.Decide(ctx, r.ID, in)
	if !c.Operator && a.Task != nil && !(a.Task.Kind == string(program.KindApproval) && a.Task.Role == in.Role) {
		a.Task = nil
	}
	return a, err
}

// retried reports whether in is its approver's exact repeat of the run's
// last accepted decision, which the core answers with the original answer
// and records nothing. Apply is pure: asking it appends nothing.
func retried(p *program.Program, r *runtime.Run, in runtime.Decide) bool {
	if l := r.Last; l == nil || (l.Principal != in.Principal && !slices.Contains(l.Approvers, in.Principal)) {
		return false
	}
	res, err := runtime.Apply(p, r, in)
	return err == nil && res.Duplicate && !res.PendingApproval
}

// ApprovalTask returns the state of r's open approval task with seq, or
// the core's rejection of a decision for it (run_finished, wrong_state,
// stale_seq), for a channel that must know the task before it asks the
// human (await_approval's form). Nothing is recorded: the decision, when
// it comes, goes through the core.
func ApprovalTask(r *runtime.Run, p *program.Program, seq uint64) (*program.State, error) {
	if r.Finished() {
		return nil, runtime.Reject(runtime.CodeRunFinished, "run %s has ended (%s)", r.ID, r.Status)
	}
	if r.Task == nil || r.Task.Kind != string(program.KindApproval) {
		return nil, runtime.Reject(runtime.CodeWrongState, "run %s is not waiting for an approval", r.ID)
	}
	if r.Task.Seq != seq {
		return nil, runtime.Reject(runtime.CodeStaleSeq, "seq %d is not the open approval task's (%d)", seq, r.Task.Seq)
	}
	return p.States[r.State], nil
}
