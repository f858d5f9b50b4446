package runtime

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/policy"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
)

// Version is the runtime's version, recorded at every run start. Builds
// set it with -ldflags "-X github.com/nano-vm/nano-vm-mcp/internal/runtime.Version=...".
var Version = "0.1.0-dev"

// Input is something that happens to a run: the only way its state changes.
type Input interface{ isInput() }

// Start begins a run. The shell supplies the id and the time.
type Start struct {
	RunID     string
	Principal string
	Input     any  // decoded JSON
	Size      int  // bytes of the input's canonical JSON, checked against max_document_bytes
	Lab       bool // a laboratory run (recorded in run_started)
	// Executors are the tool states the runtime runs, with each one's
	// executor kind, as the shell's registry resolves them (Started.Executors).
	Executors map[string]string
	At        time.Time
}

// Submit answers the open llm or tool task. State, Tool and DefinitionHash
// are optional claims; each one given is checked. Actor is inferred from
// the run when empty: the one home of that rule, so that every face
// (MCP step, laboratory) records the same actor for the same submission.
type Submit struct {
	Seq            uint64
	State          string
	Tool           string
	DefinitionHash string
	Actor          Actor // ActorModel or ActorTool; empty: the core infers it (inferActor)
	Principal      string
	Output         any // decoded JSON
	Size           int // bytes of the output's canonical JSON, checked against max_document_bytes (Service.Submit measures it)
	At             time.Time
	// Digest is for replay only: an output an uncounted rejection recorded
	// by its digest alone (Output is then nil). Such a rejection is decided
	// before the output is read, and records this digest again.
	Digest *OutputDigest
}

// Decide answers an open approval task with the decision form.
// DefinitionHash is an optional claim, checked like Submit's. On a state
// that needs several approvers (approvals > 1), Principal is required and
// names the approver: the decision takes effect when that many distinct
// principals have submitted it identically.
//
// Separation of duties: a decision is forbidden when its Principal started
// the run or submitted any model or tool answer in it, unless AllowSelf is
// set. Only the channels where the owner's own decision is the design set
// it: the operator-side drivers (CLI run, console demo, laboratory) and
// the elicitation channel (await_approval), which asks the human at the
// owner's client. The elicitation channel counts as at most one approver
// of a decision that needs several.
type Decide struct {
	Seq            uint64
	State          string
	DefinitionHash string
	Role           string // the approver's role; must match the state's role
	Principal      string
	Decision       any // decoded JSON
	Size           int // bytes of the decision's canonical JSON (Service.Decide measures it)
	AllowSelf      bool
	At             time.Time
	Digest         *OutputDigest // replay only, as Submit's
}

// ElicitedPrefix begins the principal of a decision taken through the
// elicitation channel: "elicitation:" + the caller at whose client the
// human answered.
const ElicitedPrefix = "elicitation:"

// Cancel ends a running run.
type Cancel struct {
	Principal string
	Reason    string
	At        time.Time
}

// Tick tells the run what time it is, so that an expired task times out
// even when nobody submits.
type Tick struct{ At time.Time }

// Fault records an attack of the failure laboratory and the runtime's
// answer to it: one fault_injected event, and nothing else changes (not
// the state, the seq, the data, the attempts nor the status). It is
// accepted on a finished run too.
type Fault struct {
	Record FaultRecord
	At     time.Time
}

// Erase records that one of the run's data subjects was erased: one
// subject_erased event. A running run is cancelled as well, since it can
// no longer process the data it was given; a finished one stays as it was.
type Erase struct {
	Record ErasureRecord
	At     time.Time
}

func (Start) isInput()  {}
func (Submit) isInput() {}
func (Decide) isInput() {}
func (Cancel) isInput() {}
func (Tick) isInput()   {}
func (Fault) isInput()  {}
func (Erase) isInput()  {}

// Result is what Apply produced.
type Result struct {
	Events []Event
	// Run is the run after the events, the same as folding them into the
	// run Apply was given. The caller adopts it once the events are durable.
	Run *Run
	// Duplicate is set when the input repeated the last accepted submission
	// exactly: no events, and the original answer stands (see Accepted).
	Duplicate bool
	// PendingApproval is set, with Duplicate, when the input repeated an
	// approval the pending decision already counts (same approver, same
	// decision): no events, and the open task stands as it is.
	PendingApproval bool
}

// Apply is the deterministic core: (program, run, input) → events. It does
// no I/O and reads no clock; the same arguments give byte-identical events.
// run is not modified; pass nil for Start. A refused input gives a
// *Rejection error together with the events that record it.
func Apply(p *program.Program, run *Run, in Input) (Result, error) {
	// Events are large; a start usually makes two, a step up to eight.
	m := &machine{p: p}
	if s, ok := in.(Start); ok {
		m.events = make([]Event, 0, 4)
		if run != nil {
			return Result{}, Reject(CodeRunExists, "run %s has already started", run.ID)
		}
		m.r = &Run{NextIndex: 0}
		m.at = stamp(s.At)
		return m.start(s)
	}
	if run == nil {
		return Result{}, Reject(CodeNoSuchRun, "the run has not started")
	}
	m.orig, m.r = run, run.Clone()
	m.events = make([]Event, 0, 8)
	switch in := in.(type) {
	case Submit:
		m.at = stamp(in.At)
		return m.submit(in.At, answer{seq: in.Seq, state: in.State, tool: in.Tool, hash: in.DefinitionHash, actor: inferActor(run, in), principal: in.Principal, output: in.Output, size: in.Size, digest: in.Digest})
	case Decide:
		m.at = stamp(in.At)
		return m.submit(in.At, answer{seq: in.Seq, state: in.State, role: in.Role, hash: in.DefinitionHash, decide: true, actor: ActorHuman, principal: in.Principal, output: in.Decision, size: in.Size, separate: !in.AllowSelf, digest: in.Digest})
	case Cancel:
		m.at = stamp(in.At)
		m.seq, m.state = m.r.Seq, m.r.State
		m.emit(Event{Type: EventInputReceived, Seq: m.seq, Input: &InputRecord{Kind: "cancel", Principal: in.Principal, Reason: in.Reason}})
		if m.r.Finished() {
			return m.rejected(Reject(CodeRunFinished, "the run has already finished (%s)", m.r.Status), answer{actor: ActorHuman, principal: in.Principal, cancel: true})
		}
		reason := "cancelled"
		if in.Reason != "" {
			reason = "cancelled: " + in.Reason
		}
		m.finish(StatusCancelled, program.OutcomeCancelled, reason)
		return m.result(), nil
	case Tick:
		m.at = stamp(in.At)
		if m.due(in.At) {
			m.emit(Event{Type: EventInputReceived, Seq: m.r.Seq, Input: &InputRecord{Kind: "tick"}})
			m.expireIfDue(in.At)
		}
		return m.result(), nil
	case ToolResult:
		m.at = stamp(in.At)
		return m.toolResult(in)
	case ToolFailure:
		m.at = stamp(in.At)
		return m.toolFailure(in)
	case ToolUnknown:
		m.at = stamp(in.At)
		return m.toolUnknown(in)
	case ResolveTool:
		m.at = stamp(in.At)
		return m.resolveTool(in)
	case Fault:
		if in.Record.Fault == "" || in.Record.SubAttack == "" {
			return Result{}, Reject(CodeInvalidInput, "a fault record names its fault and sub-attack")
		}
		m.at = stamp(in.At)
		rec := in.Record
		m.emit(Event{Type: EventFaultInjected, Seq: m.r.Seq, Fault: &rec})
		return m.result(), nil
	case Erase:
		if in.Record.Subject == "" {
			return Result{}, Reject(CodeInvalidInput, "an erasure names its subject")
		}
		m.at = stamp(in.At)
		rec := in.Record
		m.emit(Event{Type: EventSubjectErased, Seq: m.r.Seq, Erasure: &rec})
		if !m.r.Finished() {
			m.finish(StatusCancelled, program.OutcomeCancelled, "cancelled: a data subject of the run was erased")
		}
		return m.result(), nil
	}
	return Result{}, fmt.Errorf("runtime: unknown input %T", in)
}

// inferActor is who a submission comes from: in.Actor when given, else
// the tool runner when the submission claims a tool, answers the run's
// open tool task, or repeats the last accepted tool result at its seq (so
// that the repeat is recognised as the duplicate it is even after the run
// moved on), and the model otherwise. run is the run as the submission
// meets it.
func inferActor(run *Run, in Submit) Actor {
	if in.Actor != "" {
		return in.Actor
	}
	openTool := run.Task != nil && run.Task.Kind == string(program.KindTool) && run.Task.Seq == in.Seq ||
		run.Call != nil && run.Call.Seq == in.Seq // a forged result of a runtime call
	lastTool := run.Last != nil && run.Last.Seq == in.Seq && run.Last.Actor == ActorTool
	if in.Tool != "" || openTool || lastTool {
		return ActorTool
	}
	return ActorModel
}

// SameJSON reports whether two decoded values have the same canonical JSON:
// an exact duplicate, whatever number spelling or key order it arrived in.
func SameJSON(a, b any) bool {
	ca, errA := jsonvalue.Canonical(a)
	cb, errB := jsonvalue.Canonical(b)
	return errA == nil && errB == nil && string(ca) == string(cb)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// machine holds one Apply: a scratch copy of the run that the emitted
// events are folded into as they are produced, so that later decisions in
// the same Apply see their effect.
type machine struct {
	p      *program.Program
	orig   *Run // the run Apply was given, untouched
	r      *Run
	at     string
	seq    uint64 // the open task when the input arrived
	state  string // the state when the input arrived
	events []Event
}

func (m *machine) emit(e Event) {
	e.RunID = m.r.ID
	e.Index = m.r.NextIndex
	e.At = m.at
	if e.State == "" {
		e.State = m.r.State
	}
	m.events = append(m.events, e)
	if err := m.r.apply(m.p, &m.events[len(m.events)-1]); err != nil {
		// The core only emits events it can fold; anything else is a bug.
		panic("runtime: core emitted an unfoldable event: " + err.Error())
	}
}

func (m *machine) result() Result { return Result{Events: m.events, Run: m.r} }

func (m *machine) start(s Start) (Result, error) {
	if limit := m.p.Limits.MaxDocumentBytes; s.Size > limit {
		return Result{}, Reject(CodeInvalidInput, "the run input is %d bytes; the limit is %d", s.Size, limit)
	}
	if vs := m.p.Input.Validate(s.Input); len(vs) > 0 {
		return Result{}, &Rejection{Code: CodeInvalidInput, Message: "the run input does not match the program's input_schema", Details: violations(vs)}
	}
	for _, name := range sortedNames(s.Executors) {
		if st := m.p.States[name]; st == nil || st.Kind != program.KindTool {
			return Result{}, Reject(CodeInvalidInput, "executors: %s is not a tool state of the program", name)
		}
		if s.Executors[name] == "" {
			return Result{}, Reject(CodeInvalidInput, "executors: state %s names no executor kind", name)
		}
	}
	var executors map[string]string
	if len(s.Executors) > 0 {
		executors = s.Executors // absent otherwise: traces without runtime tools stay as they were
	}
	m.r.ID = s.RunID
	m.r.State = m.p.Initial.Name
	m.emit(Event{Type: EventRunStarted, Started: &Started{
		Program:     ProgramRef{Name: m.p.Name, Version: m.p.Version, DefinitionHash: m.p.Hash},
		TraceFormat: trace.Format,
		Runtime:     Version,
		CEL:         policy.Version(),
		Principal:   s.Principal,
		Lab:         s.Lab,
		Executors:   executors,
		Input:       s.Input,
	}})
	m.enter(m.p.Initial)
	return m.result(), nil
}

// answer is a Submit or Decide, normalised.
type answer struct {
	seq       uint64
	state     string
	tool      string
	role      string
	hash      string
	decide    bool
	actor     Actor
	principal string
	output    any
	size      int
	separate  bool          // a decision under separation of duties
	cancel    bool          // a cancel (or a tool outcome without a result): no output
	uncounted bool          // never costs an attempt, whatever its code (an operator's refused resolution)
	callID    string        // the runtime tool call a tool outcome claims
	attempt   int           // and its attempt
	digest    *OutputDigest // replay: the output is known by its digest only
}

func (m *machine) submit(now time.Time, a answer) (Result, error) {
	r := m.r
	m.seq, m.state = r.Seq, r.State
	// A lost response retried: the original answer stands, even when that
	// answer finished the run, and nothing is recorded.
	if l := r.Last; l != nil && a.digest == nil && (a.hash == "" || a.hash == r.Program.DefinitionHash) &&
		a.seq == l.Seq && a.actor == l.Actor && a.role == l.Role && a.tool == l.Tool &&
		(a.state == "" || a.state == l.State) && (len(l.Approvers) == 0 || slices.Contains(l.Approvers, a.principal)) &&
		SameJSON(a.output, l.Output) {
		return Result{Run: r, Duplicate: true}, nil
	}
	// An approver repeating the decision the pending count already holds
	// from them: counting them twice would defeat four eyes, so nothing
	// changes. Once the task is due, the input meets the deadline instead.
	if pd := r.Pending; pd != nil && a.decide && a.digest == nil && !m.due(now) && (a.hash == "" || a.hash == r.Program.DefinitionHash) &&
		a.seq == pd.Seq && a.role == pd.Role && (a.state == "" || a.state == pd.State) &&
		slices.Contains(pd.Approvers, a.principal) && SameJSON(a.output, pd.Decision) {
		return Result{Run: r, Duplicate: true, PendingApproval: true}, nil
	}
	kind := "submit"
	if a.decide {
		kind = "decide"
	}
	m.emit(Event{Type: EventInputReceived, Seq: r.Seq, Input: &InputRecord{Kind: kind, Seq: a.seq, State: a.state, Tool: a.tool,
		Role: a.role, DefinitionHash: a.hash, Actor: a.actor, Principal: a.principal, Size: a.size, SeparateDuties: a.separate}})
	if rej := m.separation(a); rej != nil {
		// Before anything else: the refused approver learns nothing of
		// where the run stands.
		return m.rejected(rej, a)
	}
	if a.hash != "" && a.hash != r.Program.DefinitionHash {
		return m.rejected(Reject(CodeDefinitionMismatch, "the run is pinned to %s; the submission names %s", r.Program.DefinitionHash, a.hash), a)
	}
	if r.Finished() {
		return m.rejected(Reject(CodeRunFinished, "the run has already finished (%s, %s)", r.Status, r.Outcome), a)
	}
	if a.seq != r.Seq {
		return m.rejected(Reject(CodeStaleSeq, "the open task is seq %d; the submission answers seq %d", r.Seq, a.seq), a)
	}
	if a.state != "" && a.state != r.State {
		return m.rejected(Reject(CodeWrongState, "the run is at %s, not %s", r.State, a.state), a)
	}
	st := m.p.States[r.State]
	if deadline := r.Deadline; !deadline.IsZero() && !now.Before(deadline) {
		m.expireIfDue(now)
		return m.rejected(Reject(CodeDeadlineExceeded, "the task's deadline %s has passed", stamp(deadline)), a)
	}
	if r.Call != nil && !a.decide {
		// The runtime runs this state's tool: an answer from outside is a
		// forgery, and costs an attempt.
		return m.rejected(Reject(CodeCapabilityDenied, "the runtime runs this tool; submit nothing for it: continue with get_run or await_run"), a)
	}
	switch {
	case st.Kind == program.KindApproval && !a.decide:
		return m.rejected(Reject(CodeApprovalRequired, "state %s needs a human decision from role %s; it cannot be answered by a step", st.Name, st.Role), a)
	case st.Kind != program.KindApproval && a.decide:
		return m.rejected(Reject(CodeWrongState, "state %s is not awaiting an approval", st.Name), a)
	case a.decide && a.role != st.Role:
		return m.rejected(Reject(CodeCapabilityDenied, "state %s needs role %s, not %q", st.Name, st.Role, a.role), a)
	case !a.decide && a.actor != ActorModel && a.actor != ActorTool:
		return m.rejected(Reject(CodeCapabilityDenied, "a step is submitted by the model or a tool runner, not %q", a.actor), a)
	case a.actor == ActorTool && st.Kind != program.KindTool:
		return m.rejected(Reject(CodeCapabilityDenied, "the task grants no tool; a tool runner cannot answer %s", st.Name), a)
	case a.tool != "" && st.Kind != program.KindTool:
		return m.rejected(Reject(CodeCapabilityDenied, "the task grants no tool; the submission claims tool %q", a.tool), a)
	case a.tool != "" && a.tool != st.Tool:
		return m.rejected(Reject(CodeCapabilityDenied, "the task grants tool %s, not %q", st.Tool, a.tool), a)
	}
	needed := 1
	if a.decide {
		needed = max(st.Approvals, 1)
	}
	if needed > 1 && a.principal == "" {
		return m.rejected(Reject(CodeInvalidInput, "state %s needs %d distinct approvers: the decision must name its approver (principal)", st.Name, needed), a)
	}
	if limit := m.p.Limits.MaxDocumentBytes; a.size > limit {
		return m.rejected(Reject(CodeSchemaViolation, "the output is %d bytes; the limit is %d", a.size, limit), a)
	}
	if vs := st.Output.Validate(a.output); len(vs) > 0 {
		rej := Reject(CodeSchemaViolation, "the output does not match the output_schema of %s", st.Name)
		rej.Details = violations(vs)
		return m.rejected(rej, a)
	}
	converted := st.Output.Root.Convert(a.output)
	t, guards := m.choose(st, converted)
	if t == nil {
		for _, g := range guards {
			m.emit(Event{Type: EventGuardEvaluated, Seq: r.Seq, Guard: g})
		}
		return m.rejected(Reject(CodeGuardDenied, "the output satisfies no transition of %s", st.Name), a)
	}
	sub := &Submission{Actor: a.actor, Principal: a.principal, Role: a.role, Tool: a.tool, Output: a.output}
	if needed > 1 {
		// The same decision from one more distinct approver adds to the
		// count; a different one starts a new count, discarding the old.
		// (The same approver repeating the pending decision was a
		// duplicate above.) Guards are pure, and the data they read cannot
		// change while the task is open, so the choice made here is the one
		// the last approver's submission records.
		approvers, discarded := []string{a.principal}, 0
		if pd := r.Pending; pd != nil {
			if SameJSON(pd.Decision, a.output) {
				approvers = append(slices.Clone(pd.Approvers), a.principal)
			} else {
				discarded = len(pd.Approvers)
			}
		}
		if len(approvers) < needed {
			m.emit(Event{Type: EventApprovalRecorded, Seq: r.Seq, Approval: &ApprovalRecord{
				Actor: a.actor, Principal: a.principal, Role: a.role,
				Count: len(approvers), Needed: needed, Discarded: discarded, Output: a.output,
			}})
			return m.result(), nil
		}
		sub.Approvers = approvers
	}
	m.emit(Event{Type: EventSubmissionAccepted, Seq: r.Seq, converted: converted, Submission: sub})
	for _, g := range guards {
		m.emit(Event{Type: EventGuardEvaluated, Seq: m.r.Seq, Guard: g})
	}
	m.take(st, t)
	return m.result(), nil
}

// separation is separation of duties: who may decide, given the run's
// owner and the principals recorded as submitting its answers. It returns
// the refusal, or nil.
func (m *machine) separation(a answer) *Rejection {
	r := m.r
	if !a.decide || a.principal == "" {
		return nil
	}
	switch {
	case a.separate && a.principal == r.Principal:
		return Reject(CodeForbidden, "separation of duties: %s started this run, so %s cannot decide its approvals", a.principal, a.principal)
	case a.separate && slices.Contains(r.Submitters, a.principal):
		return Reject(CodeForbidden, "separation of duties: %s submitted answers in this run, so %s cannot decide its approvals", a.principal, a.principal)
	}
	// The elicitation channel is whoever sits at the owner's client: it
	// counts once toward a decision, however many callers open it.
	if pd := r.Pending; pd != nil && strings.HasPrefix(a.principal, ElicitedPrefix) && !slices.Contains(pd.Approvers, a.principal) &&
		slices.ContainsFunc(pd.Approvers, func(p string) bool { return strings.HasPrefix(p, ElicitedPrefix) }) {
		return Reject(CodeForbidden, "separation of duties: the elicitation channel already counts as one approver of this decision; the others must approve with their own tokens")
	}
	return nil
}

// rejected records a refused answer and, when it used up the last attempt,
// ends the run.
func (m *machine) rejected(rej *Rejection, a answer) (Result, error) {
	counted := rej.Code.CountsAsAttempt() && !m.r.Finished() && !a.uncounted
	attempts := m.r.Attempts
	if counted {
		attempts++
	}
	rec := &RejectionRecord{
		Code: rej.Code, Message: rej.Message, Details: rej.Details, Counted: counted, Attempts: attempts,
		Actor: a.actor, Principal: a.principal, ClaimedSeq: a.seq, ClaimedState: a.state, ClaimedTool: a.tool, Output: a.output,
	}
	if a.size > m.p.Limits.MaxDocumentBytes || rej.Code == CodeForbidden {
		// An oversized answer is refused, not stored; nor is the decision
		// of an approver separation of duties refuses.
		rec.Output = nil
	}
	if !counted {
		// An uncounted rejection costs the submitter nothing: keep a
		// bounded digest of the output, and bound how many one task records.
		n := m.r.nextUncounted(m.seq)
		limit := m.p.Limits.MaxUncountedRejections
		if n > limit+1 {
			// Already recorded as throttled: refuse without a trace, and
			// without the events (an expiry, say) the input caused before;
			// a tick or the next input records those.
			return Result{Run: m.orig}, Reject(CodeThrottled,
				"task seq %d has recorded %d rejections that used no attempt (max_uncounted_rejections); this one is refused and not recorded. It was %s: %s",
				m.seq, limit+1, rej.Code, rej.Message)
		}
		rec.Uncounted, rec.Output = n, nil
		// A refused approver's decision leaves not even a digest: its
		// prefix would be payload.
		if !a.cancel && rej.Code != CodeForbidden {
			rec.Digest = a.digest
			if rec.Digest == nil {
				rec.Digest = digestOf(m.p, a.output)
			}
		}
		if n == limit+1 {
			rej = Reject(CodeThrottled,
				"task seq %d has now had %d rejections that used no attempt (max_uncounted_rejections %d); until the run issues its next task, further ones are refused and not recorded. This one was %s: %s",
				m.seq, n, limit, rej.Code, rej.Message)
			rec.Code, rec.Message, rec.Details = rej.Code, rej.Message, nil
		}
	}
	// The rejection belongs to the task and state the answer met, even
	// when a timeout moved the run on first.
	m.emit(Event{Type: EventSubmissionRejected, Seq: m.seq, State: m.state, Rejection: rec})
	if counted {
		if st := m.p.States[m.r.State]; attempts >= st.MaxAttempts {
			m.finish(StatusFailed, program.OutcomeFailed, fmt.Sprintf("%s: %d rejected submissions at %s", ReasonAttemptsExhausted, attempts, st.Name))
		}
	}
	return m.result(), rej
}

// choose picks the first transition whose guard holds, with the evaluation
// evidence. output is nil in decision states.
func (m *machine) choose(st *program.State, output any) (*program.Transition, []*GuardEvaluation) {
	vars := policy.Vars{Input: m.r.Input, Data: m.r.Data, Output: output}
	var evidence []*GuardEvaluation
	for _, t := range st.Transitions {
		if t.Guard == nil {
			return t, evidence
		}
		ok, res, err := t.Guard.EvalBool(vars)
		g := &GuardEvaluation{Transition: t.Index, To: t.To.Name, Expression: t.When, Result: ok && err == nil, Cost: res.Cost}
		if err != nil {
			g.Error = err.Error()
		}
		evidence = append(evidence, g)
		if g.Result {
			return t, evidence
		}
	}
	return nil, evidence
}

func causeOf(t *program.Transition) string {
	if t.Guard == nil {
		return "default"
	}
	return "guard"
}

// take follows t out of from, unless a limit forbids it, then enters the
// target.
func (m *machine) take(from *program.State, t *program.Transition) {
	m.hop(from, t.To, t.Index, t.Rollback, causeOf(t))
}

func (m *machine) hop(from, to *program.State, index int, rollback bool, cause string) {
	r, lim := m.r, m.p.Limits
	switch {
	case r.Steps >= lim.MaxSteps:
		m.finish(StatusFailed, program.OutcomeFailed, fmt.Sprintf("%s: max_steps %d reached at %s", ReasonBudgetExceeded, lim.MaxSteps, from.Name))
		return
	case rollback && r.Rollbacks >= lim.MaxRollbacks:
		m.finish(StatusFailed, program.OutcomeFailed, fmt.Sprintf("%s: max_rollbacks %d reached at %s", ReasonRollbackBudgetExceeded, lim.MaxRollbacks, from.Name))
		return
	case to.MaxVisits > 0 && r.Visits[to.Name] >= to.MaxVisits:
		m.finish(StatusFailed, program.OutcomeFailed, fmt.Sprintf("%s: %s entered %d times", ReasonVisitBudgetExceeded, to.Name, r.Visits[to.Name]))
		return
	}
	rec := &TransitionRecord{From: from.Name, To: to.Name, Transition: index, Cause: cause, Rollback: rollback}
	if rollback {
		rec.Cleared = clearedBy(r.Path, to.Name, r.Data)
	}
	m.emit(Event{Type: EventTransitioned, Seq: r.Seq, Transition: rec})
	m.enter(to)
}

// clearedBy lists the states with data that were visited after the last
// visit of target, sorted: a rollback to target clears them.
func clearedBy(path []string, target string, data map[string]any) []string {
	// From the end: a rollback costs the states since the target, not
	// the run's whole path.
	last := -1
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == target {
			last = i
			break
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range path[last+1:] {
		if _, has := data[s]; has && !seen[s] && s != target {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// enter runs the state the run has just entered: a terminal ends the run, a
// decision routes on, anything else issues the next task.
func (m *machine) enter(st *program.State) {
	switch st.Kind {
	case program.KindTerminal:
		m.finish(StatusCompleted, st.Outcome, "")
	case program.KindDecision:
		t, guards := m.choose(st, nil)
		for _, g := range guards {
			m.emit(Event{Type: EventGuardEvaluated, Seq: m.r.Seq, Guard: g})
		}
		m.take(st, t) // the validator guarantees a default
	case program.KindTool:
		if m.r.Executors[st.Name] != "" {
			m.call(st)
			return
		}
		m.issue(st)
	default:
		m.issue(st)
	}
}

// arguments evaluates a tool state's arguments; an argument that fails to
// evaluate fails the run (ok false).
func (m *machine) arguments(st *program.State) (args map[string]any, ok bool) {
	args = make(map[string]any, len(st.Args))
	vars := policy.Vars{Input: m.r.Input, Data: m.r.Data}
	for _, a := range st.Args {
		v, err := a.Expr.Eval(vars)
		if err != nil {
			m.finish(StatusFailed, program.OutcomeFailed, fmt.Sprintf("%s: argument %s of %s: %v", ReasonArgumentError, a.Name, st.Name, err))
			return nil, false
		}
		args[a.Name] = v
	}
	return args, true
}

func (m *machine) issue(st *program.State) {
	state := projection.State{Input: m.r.Input, Data: m.r.Data}
	var args map[string]any
	if st.Kind == program.KindTool {
		var ok bool
		if args, ok = m.arguments(st); !ok {
			return
		}
	}
	seq := m.r.Seq + 1
	task := projection.ForModel(m.p, st, seq, st.MaxAttempts, state, args)
	m.emit(Event{Type: EventTaskIssued, Seq: seq, State: st.Name, Task: task})
}

// expireIfDue times out the open task when now has reached its deadline.
// due reports whether the open task's (or runtime call's) deadline has
// passed at now. A run waiting for the operator does not expire: its
// call's outcome is unknown, and only the operator settles it.
func (m *machine) due(now time.Time) bool {
	r := m.r
	return r.Status == StatusRunning && !r.Deadline.IsZero() && !now.Before(r.Deadline)
}

func (m *machine) expireIfDue(now time.Time) {
	r := m.r
	if !m.due(now) {
		return
	}
	st := m.p.States[r.State]
	m.emit(Event{Type: EventTaskExpired, Seq: r.Seq, Expiry: &Expiry{Deadline: stamp(r.Deadline)}})
	if st.OnTimeout == nil {
		m.finish(StatusFailed, program.OutcomeFailed, fmt.Sprintf("%s: %s was not answered within %s", ReasonTimeout, st.Name, st.Timeout))
		return
	}
	m.hop(st, st.OnTimeout, -1, false, "timeout")
}

func (m *machine) finish(status Status, outcome, reason string) {
	m.emit(Event{Type: EventRunFinished, Seq: m.r.Seq, Finished: &Finished{Status: status, Outcome: outcome, Reason: reason}})
}

func violations(vs []schema.Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		path := v.Path
		if path == "" {
			path = "/"
		}
		out[i] = strings.TrimSpace(path + ": " + v.Message)
	}
	return out
}
