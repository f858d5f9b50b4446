package runtime

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// The core of runtime-executed tool calls: what entering such a state
// records, and what each reported outcome does to the run. The shell
// invokes the tool between the intent (tool_call_started, durable first)
// and the outcome it reports here.

// call enters a runtime-executed tool state: the arguments are evaluated
// as for a caller's task, and the intent to call is recorded in place of
// the task.
func (m *machine) call(st *program.State) {
	args, ok := m.arguments(st)
	if !ok {
		return
	}
	seq := m.r.Seq + 1
	id := CallID(seq)
	m.emit(Event{Type: EventToolCallStarted, Seq: seq, State: st.Name, Call: &ToolCallRecord{
		CallID:         id,
		Tool:           st.Tool,
		Executor:       m.r.Executors[st.Name],
		Arguments:      args,
		Attempt:        1,
		IdempotencyKey: IdempotencyKey(m.r.ID, st.Name, m.r.Visits[st.Name], id),
	}})
}

// outcome is a reported tool call outcome, normalised for the checks
// every kind shares.
type outcome struct {
	kind    string // the InputRecord kind a refusal records
	seq     uint64 // 0 for an operator's resolution, which names the call only
	callID  string
	attempt int
	now     time.Time
	a       answer // how a refusal is recorded
}

// refuse checks that o reports the run's open call, as it stands now; it
// returns the refusal, recorded (with whatever a passed deadline caused),
// or ok when the outcome may proceed.
func (m *machine) refuse(o outcome) (res Result, err error, refused bool) {
	r := m.r
	m.seq, m.state = r.Seq, r.State
	var rej *Rejection
	expired := false
	c := r.Call
	switch {
	case r.Finished():
		rej = Reject(CodeRunFinished, "the run has already finished (%s, %s)", r.Status, r.Outcome)
	case o.kind == "resolve_tool" && r.Status != StatusWaitingOperator:
		rej = Reject(CodeWrongState, "the run is not waiting for the operator: no call's outcome is unknown")
	case o.kind != "resolve_tool" && r.Status == StatusWaitingOperator:
		rej = Reject(CodeWrongState, "the run waits for the operator to resolve call %s", c.CallID)
	case c == nil:
		rej = Reject(CodeWrongState, "the run waits on no runtime tool call at %s", r.State)
	case o.seq != 0 && o.seq != c.Seq:
		rej = Reject(CodeStaleSeq, "the open call is seq %d; the outcome reports seq %d", c.Seq, o.seq)
	case o.callID != c.CallID:
		rej = Reject(CodeWrongState, "the open call is %s, not %s", c.CallID, o.callID)
	case o.kind != "resolve_tool" && o.attempt != c.Attempt:
		rej = Reject(CodeStaleSeq, "the open call %s is at attempt %d; the outcome reports attempt %d", c.CallID, c.Attempt, o.attempt)
	case m.due(o.now):
		rej = Reject(CodeDeadlineExceeded, "the call's deadline %s has passed", stamp(r.Deadline))
		expired = true
	default:
		return Result{}, nil, false
	}
	m.emit(Event{Type: EventInputReceived, Seq: r.Seq, Input: &InputRecord{Kind: o.kind, Seq: o.seq, Actor: o.a.actor,
		Principal: o.a.principal, Size: o.a.size, CallID: o.callID, Attempt: o.attempt}})
	if expired {
		m.expireIfDue(o.now)
	}
	o.a.seq, o.a.callID, o.a.attempt = o.seq, o.callID, o.attempt
	res, err = m.rejected(rej, o.a)
	return res, err, true
}

// toolResult applies a runtime call's result: validated like a
// submission, then recorded and routed as an accepted tool answer is. A
// result the run cannot take is a failed attempt (schema_violation).
func (m *machine) toolResult(in ToolResult) (Result, error) {
	o := outcome{kind: "tool_result", seq: in.Seq, callID: in.CallID, attempt: in.Attempt, now: in.At,
		a: answer{actor: ActorTool, output: in.Output, size: in.Size, digest: in.Digest}}
	if res, err, refused := m.refuse(o); refused {
		return res, err
	}
	st := m.p.States[m.r.State]
	converted, t, guards, _, detail := m.judge(st, in.Output, in.Size)
	if t == nil {
		return m.attemptFailed(st, ClassSchemaViolation, detail, in.Retry)
	}
	m.emit(Event{Type: EventToolCallCompleted, Seq: m.r.Seq, converted: converted, Call: &ToolCallRecord{CallID: in.CallID, Attempt: in.Attempt, Result: in.Output}})
	m.route(st, t, guards)
	return m.result(), nil
}

// judge validates a result against the state's limits and output schema
// and chooses the transition it takes. t is nil when the run cannot take
// it; code and detail then say why.
func (m *machine) judge(st *program.State, output any, size int) (converted any, t *program.Transition, guards []*GuardEvaluation, code Code, detail string) {
	if limit := m.p.Limits.MaxDocumentBytes; size > limit {
		return nil, nil, nil, CodeSchemaViolation, fmt.Sprintf("the result is %d bytes; the limit is %d", size, limit)
	}
	if vs := st.Output.Validate(output); len(vs) > 0 {
		return nil, nil, nil, CodeSchemaViolation, fmt.Sprintf("the result does not match the output_schema of %s: %s", st.Name, strings.Join(violations(vs), "; "))
	}
	converted = st.Output.Root.Convert(output)
	t, guards = m.choose(st, converted)
	if t == nil {
		return nil, nil, nil, CodeGuardDenied, fmt.Sprintf("no transition's guard holds for the result of %s", st.Name)
	}
	return converted, t, guards, "", ""
}

// route records the guards that chose t and takes it.
func (m *machine) route(st *program.State, t *program.Transition, guards []*GuardEvaluation) {
	for _, g := range guards {
		m.emit(Event{Type: EventGuardEvaluated, Seq: m.r.Seq, Guard: g})
	}
	m.take(st, t)
}

// ClassSchemaViolation is the failure class of a result the run refused
// (executor.ClassSchemaViolation names the same class).
const ClassSchemaViolation = "schema_violation"

// toolFailure applies a failed attempt the shell reports.
func (m *machine) toolFailure(in ToolFailure) (Result, error) {
	o := outcome{kind: "tool_failure", seq: in.Seq, callID: in.CallID, attempt: in.Attempt, now: in.At,
		a: answer{actor: ActorTool, cancel: true}}
	if res, err, refused := m.refuse(o); refused {
		return res, err
	}
	if in.Class == "" {
		return Result{}, Reject(CodeInvalidInput, "a tool failure names its class")
	}
	return m.attemptFailed(m.p.States[m.r.State], in.Class, in.Detail, in.Retry)
}

// attemptFailed records a failed attempt of the open call: another
// attempt when the registry allows one and the state's max_attempts has
// room, else the call fails.
func (m *machine) attemptFailed(st *program.State, class, detail string, retry bool) (Result, error) {
	c := *m.r.Call
	retry = retry && c.Attempt < st.MaxAttempts
	m.emit(Event{Type: EventToolCallFailed, Seq: c.Seq, Call: &ToolCallRecord{CallID: c.CallID, Attempt: c.Attempt, Class: class, Detail: detail, Retry: retry}})
	if retry {
		m.emit(Event{Type: EventToolCallStarted, Seq: c.Seq, State: c.State, Call: &ToolCallRecord{
			CallID: c.CallID, Tool: c.Tool, Executor: c.Executor, Arguments: c.Arguments, Attempt: c.Attempt + 1, IdempotencyKey: c.IdempotencyKey,
		}})
		return m.result(), nil
	}
	m.callFailed(st, class)
	return m.result(), nil
}

// callFailed ends a call that failed for good: the state's on_error edge,
// or the run fails (tool_failed).
func (m *machine) callFailed(st *program.State, class string) {
	if st.OnError != nil {
		m.hop(st, st.OnError, TransitionOnError, false, CauseOnError)
		return
	}
	m.finish(StatusFailed, program.OutcomeFailed, fmt.Sprintf("%s: tool %s failed at %s (%s)", ReasonToolFailed, st.Tool, st.Name, class))
}

// The on_error edge as a transition record names it.
const (
	TransitionOnError = -2
	CauseOnError      = "on_error"
)

// toolUnknown records that the open call's outcome cannot be known: the
// run waits for the operator.
func (m *machine) toolUnknown(in ToolUnknown) (Result, error) {
	o := outcome{kind: "tool_unknown", seq: in.Seq, callID: in.CallID, attempt: in.Attempt, now: in.At,
		a: answer{actor: ActorTool, cancel: true}}
	if res, err, refused := m.refuse(o); refused {
		return res, err
	}
	m.emit(Event{Type: EventToolCallUnknown, Seq: m.r.Seq, Call: &ToolCallRecord{CallID: in.CallID, Attempt: in.Attempt, Detail: in.Detail}})
	return m.result(), nil
}

// resolveTool applies an operator's settlement of a call whose outcome is
// unknown. A result the run cannot take is refused (uncounted: it is the
// operator's mistake, not the tool's), and the run keeps waiting.
func (m *machine) resolveTool(in ResolveTool) (Result, error) {
	a := answer{actor: ActorHuman, principal: in.Principal, output: in.Output, size: in.Size, digest: in.Digest, uncounted: true, cancel: in.Failed}
	if in.Failed {
		a.output, a.size = nil, 0
	}
	o := outcome{kind: "resolve_tool", callID: in.CallID, now: in.At, a: a}
	if res, err, refused := m.refuse(o); refused {
		return res, err
	}
	st := m.p.States[m.r.State]
	if in.Failed {
		m.emit(Event{Type: EventToolCallResolved, Seq: m.r.Seq, Call: &ToolCallRecord{CallID: in.CallID, Principal: in.Principal, Failed: true, Detail: in.Detail}})
		m.callFailed(st, "resolved as failed")
		return m.result(), nil
	}
	converted, t, guards, code, detail := m.judge(st, in.Output, in.Size)
	if t == nil {
		m.emit(Event{Type: EventInputReceived, Seq: m.r.Seq, Input: &InputRecord{Kind: o.kind, Actor: a.actor, Principal: a.principal, Size: a.size, CallID: in.CallID}})
		a.callID = in.CallID
		// The trace records the refusal without its detail, which the
		// result's digest alone could not reproduce on replay; the
		// operator's answer has it, in the details: the shell logs the
		// message, and a validation message may quote the result.
		res, err := m.rejected(Reject(code, "the resolution's result cannot be taken by %s; the run keeps waiting", st.Name), a)
		if rj, ok := err.(*Rejection); ok && rj.Code == code {
			withDetail := *rj
			withDetail.Details = []string{detail}
			err = &withDetail
		}
		return res, err
	}
	m.emit(Event{Type: EventToolCallResolved, Seq: m.r.Seq, converted: converted, Call: &ToolCallRecord{CallID: in.CallID, Principal: in.Principal, Result: in.Output}})
	m.route(st, t, guards)
	return m.result(), nil
}

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
