package lab

import (
	"context"
	"fmt"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// declared is each sub-attack's one expected outcome, by fault/sub-attack.
// prompt_injection's depends on the output (see injection).
var declared = map[string]string{
	ToolInjection + "/undeclared_tool":    string(runtime.CodeCapabilityDenied),
	ToolInjection + "/wrong_tool_result":  string(runtime.CodeCapabilityDenied),
	ToolInjection + "/extra_fields":       string(runtime.CodeSchemaViolation),
	ToolInjection + "/forged_tool_result": string(runtime.CodeCapabilityDenied),
	PolicyBypass + "/no_matching_guard":   string(runtime.CodeGuardDenied),
	PolicyBypass + "/step_on_approval":    string(runtime.CodeApprovalRequired),
	PolicyBypass + "/modified_program":    string(runtime.CodeDefinitionMismatch),
	PolicyBypass + "/self_approval":       string(runtime.CodeForbidden),
	SkipStep + "/later_state":             string(runtime.CodeWrongState),
	SkipStep + "/early_approval":          string(runtime.CodeWrongState),
	ReorderSteps + "/future_seq":          string(runtime.CodeStaleSeq),
	ReorderSteps + "/past_seq":            string(runtime.CodeStaleSeq),
	ReorderSteps + "/resubmit_earlier":    string(runtime.CodeStaleSeq),
	ReorderSteps + "/exact_duplicate":     Duplicate,
	CorruptReceipt + "/receipt_field":     VerificationFailed,
	CorruptReceipt + "/signature_byte":    VerificationFailed,
	CorruptReceipt + "/trace_byte":        VerificationFailed,
	CorruptReceipt + "/trace_field":       VerificationFailed,
	CorruptReceipt + "/trace_reorder":     VerificationFailed,
	CorruptReceipt + "/trace_drop":        VerificationFailed,
	GDPRErase + "/erase_subject":          Erased,
	// The class each makes the executor report; the matrix adds what the
	// program does then (expectedFailure).
	ToolFailure + "/" + modeTimeout:       string(classOf[modeTimeout]),
	ToolFailure + "/" + modeCrash:         string(classOf[modeCrash]),
	ToolFailure + "/" + modeDrift:         string(classOf[modeDrift]),
	InvalidProgram + "/missing_target":    InvalidProgramOutcome,
	InvalidProgram + "/guard_not_bool":    InvalidProgramOutcome,
	InvalidProgram + "/unreachable_state": InvalidProgramOutcome,
}

// UndeclaredTool is the tool undeclared_tool claims: granted by no state
// of the example programs.
const UndeclaredTool = "approve_customer"

func catalog() []subAttack {
	out := []subAttack{
		{fault: ToolInjection, name: "undeclared_tool", applies: always, ready: needModelTask, do: undeclaredTool},
		{fault: ToolInjection, name: "wrong_tool_result", applies: needOtherTool, ready: needToolTask, do: wrongToolResult},
		{fault: ToolInjection, name: "extra_fields", applies: always, ready: needExtraFields, do: extraFields},
		{fault: ToolInjection, name: "forged_tool_result", applies: needRuntimeToolState, ready: needHeldCall, tools: modeHold, do: forgedToolResult},
	}
	for _, inj := range injections() {
		out = append(out, subAttack{fault: ToolInjection, name: "prompt_injection:" + inj.ID, applies: always, ready: needFreeText, moves: true, do: injection(inj)})
	}
	out = append(out,
		subAttack{fault: PolicyBypass, name: "no_matching_guard", applies: needRejectingState, ready: needNoMatch, do: noMatchingGuard},
		subAttack{fault: PolicyBypass, name: "step_on_approval", applies: needApprovalState, ready: needApprovalTask, do: stepOnApproval},
		subAttack{fault: PolicyBypass, name: "modified_program", applies: needGuard, ready: needOpenTask, do: modifiedProgram},
		subAttack{fault: PolicyBypass, name: "self_approval", applies: needApprovalState, ready: needOwnedApprovalTask, do: selfApproval},
		subAttack{fault: SkipStep, name: "later_state", applies: needTwoTaskStates, ready: needOpenTask, do: laterState},
		subAttack{fault: SkipStep, name: "early_approval", applies: needApprovalState, ready: needNonApprovalTask, do: earlyApproval},
		subAttack{fault: ReorderSteps, name: "future_seq", applies: always, ready: needOpenTask, do: futureSeq},
		subAttack{fault: ReorderSteps, name: "past_seq", applies: always, ready: needLaterTask, do: pastSeq},
		subAttack{fault: ReorderSteps, name: "resubmit_earlier", applies: always, ready: needTwoAccepted, do: resubmitEarlier},
		subAttack{fault: ReorderSteps, name: "exact_duplicate", applies: always, ready: needAccepted, do: exactDuplicate},
	)
	for _, rt := range receiptTampers {
		out = append(out, subAttack{fault: CorruptReceipt, name: rt.name, applies: always, ready: needEvents, do: corruptReceipt(rt.tamper)})
	}
	return append(out,
		subAttack{fault: GDPRErase, name: "erase_subject", applies: needSubject, ready: needAccepted, moves: true, erases: true, do: eraseSubject},
		subAttack{fault: ToolFailure, name: modeTimeout, applies: needRuntimeToolState, ready: needEntersRuntimeTool, moves: true, tools: modeTimeout, do: toolFailure(modeTimeout)},
		subAttack{fault: ToolFailure, name: modeCrash, applies: needRuntimeToolState, ready: needEntersRuntimeTool, moves: true, tools: modeCrash, do: toolFailure(modeCrash)},
		subAttack{fault: ToolFailure, name: modeDrift, applies: needRuntimeToolState, ready: needEntersRuntimeTool, moves: true, tools: modeDrift, do: toolFailure(modeDrift)},
		subAttack{fault: InvalidProgram, name: "missing_target", runless: true, applies: always, ready: anyRun, do: invalidProgram(missingTarget)},
		subAttack{fault: InvalidProgram, name: "guard_not_bool", runless: true, applies: needGuard, ready: anyRun, do: invalidProgram(guardNotBool)},
		subAttack{fault: InvalidProgram, name: "unreachable_state", runless: true, applies: always, ready: anyRun, do: invalidProgram(unreachableState)},
	)
}

// Preconditions. Each returns "" when met, else why not.

func anyRun(*view) string { return "" }

func needOpenTask(v *view) string {
	if !v.open() {
		return fmt.Sprintf("the run has no open task (%s)", v.run.Status)
	}
	return ""
}

func needModelTask(v *view) string {
	if r := needOpenTask(v); r != "" {
		return r
	}
	if v.st.Kind == program.KindApproval {
		return "the open task is an approval: tools and outputs are not asked of the model there"
	}
	return ""
}

func needToolTask(v *view) string {
	if r := needOpenTask(v); r != "" {
		return r
	}
	if v.st.Kind != program.KindTool {
		return fmt.Sprintf("the open task (%s) grants no tool", v.st.Name)
	}
	return ""
}

func needApprovalTask(v *view) string {
	if r := needOpenTask(v); r != "" {
		return r
	}
	if v.st.Kind != program.KindApproval {
		return fmt.Sprintf("the open task (%s) is not an approval", v.st.Name)
	}
	return ""
}

func needOwnedApprovalTask(v *view) string {
	if r := needApprovalTask(v); r != "" {
		return r
	}
	if v.run.Principal == "" {
		return "the run names no principal that started it"
	}
	return ""
}

func needNonApprovalTask(v *view) string {
	if r := needOpenTask(v); r != "" {
		return r
	}
	if v.st.Kind == program.KindApproval {
		return "the open task is already an approval"
	}
	return ""
}

func needLaterTask(v *view) string {
	if r := needOpenTask(v); r != "" {
		return r
	}
	if v.run.Seq < 2 {
		return "the open task is the first: there is no earlier seq"
	}
	return ""
}

func needAccepted(v *view) string {
	if v.run.Last == nil {
		return "no submission has been accepted yet"
	}
	return ""
}

func needTwoAccepted(v *view) string {
	if r := needOpenTask(v); r != "" {
		return r
	}
	if v.run.Last == nil || v.run.Last.Seq >= v.run.Seq {
		return "no accepted submission lies behind the open task"
	}
	return ""
}

func needEvents(v *view) string {
	if v.run.NextIndex < 3 {
		return "the trace has fewer than three events to tamper with"
	}
	return ""
}

func needBase(v *view) string {
	if r := needModelTask(v); r != "" {
		return r
	}
	if v.base == nil || len(v.st.Output.Validate(v.base)) > 0 {
		return fmt.Sprintf("no schema-valid output known for %s (pass params.output)", v.st.Name)
	}
	return ""
}

func needExtraFields(v *view) string {
	if r := needBase(v); r != "" {
		return r
	}
	if _, ok := v.base.(map[string]any); !ok {
		return "the output is not an object"
	}
	if len(v.st.Output.Validate(withExtraFields(v.base))) == 0 {
		return fmt.Sprintf("the output_schema of %s admits undeclared fields (it declares additionalProperties)", v.st.Name)
	}
	return ""
}

func needFreeText(v *view) string {
	if r := needBase(v); r != "" {
		return r
	}
	if _, _, ok := FreeTextField(v.st.Output.Doc(), v.base); !ok {
		return fmt.Sprintf("the output of %s has no free-text string field", v.st.Name)
	}
	if _, ok := guardVerdict(v, v.base); !ok && v.st.RejectNoMatch {
		return "the known output satisfies no guard"
	}
	return ""
}

func needNoMatch(v *view) string {
	if r := needOpenTask(v); r != "" {
		return r
	}
	if !v.st.RejectNoMatch {
		return fmt.Sprintf("state %s takes a transition for any valid output (no on_no_match: reject)", v.st.Name)
	}
	if v.base == nil || len(v.st.Output.Validate(v.base)) > 0 {
		return fmt.Sprintf("no schema-valid output known for %s (pass params.output)", v.st.Name)
	}
	if _, ok := noMatchOutput(v); !ok {
		return fmt.Sprintf("no schema-valid variation of the known output satisfies no guard of %s", v.st.Name)
	}
	return ""
}

func needRejectingState(p *program.Program) string {
	for _, name := range p.Order {
		if st := p.States[name]; st.Kind.TakesSubmission() && st.RejectNoMatch {
			return ""
		}
	}
	return "no state rejects an output that satisfies no guard (on_no_match: reject)"
}

func needApprovalState(p *program.Program) string {
	if approvalState(p) == nil {
		return "the program has no approval state"
	}
	return ""
}

func needOtherTool(p *program.Program) string {
	tools := map[string]bool{}
	for _, st := range p.States {
		if st.Kind == program.KindTool {
			tools[st.Tool] = true
		}
	}
	if len(tools) < 2 {
		return "the program grants fewer than two tools: there is no other tool's result to pass off"
	}
	return ""
}

func needGuard(p *program.Program) string {
	if _, _, ok := firstGuard(p); !ok {
		return "the program has no guard"
	}
	return ""
}

func needTwoTaskStates(p *program.Program) string {
	n := 0
	for _, st := range p.States {
		if st.Kind.TakesSubmission() {
			n++
		}
	}
	if n < 2 {
		return "the program has one task state: there is no other state to skip to"
	}
	return ""
}

func approvalState(p *program.Program) *program.State {
	for _, name := range p.Order {
		if st := p.States[name]; st.Kind == program.KindApproval {
			return st
		}
	}
	return nil
}

// firstGuard is the first guarded transition in declaration order.
func firstGuard(p *program.Program) (*program.State, *program.Transition, bool) {
	for _, name := range p.Order {
		for _, t := range p.States[name].Transitions {
			if t.Guard != nil {
				return p.States[name], t, true
			}
		}
	}
	return nil, nil, false
}

// The entry points, as the MCP tools call them.

// step submits as the step tool does: as the laboratory's principal, with
// the actor (model or tool runner) as the core infers it when in names none.
func step(ctx context.Context, env Env, r *runtime.Run, in runtime.Submit) (service.Answer, error) {
	in.Principal = env.Principal
	return env.Service.Submit(ctx, r.ID, in)
}

// decide decides as the approve tool does, for an approver of role. The
// laboratory drives its runs from the operator's side, so separation of
// duties does not apply (self_approval attacks it).
func decide(ctx context.Context, env Env, r *runtime.Run, in runtime.Decide) (service.Answer, error) {
	in.Principal, in.AllowSelf = env.Principal, true
	return env.Service.Decide(ctx, r.ID, in)
}

// answerOpen answers the open task with output, with the input its kind
// takes (runtime.InputFor).
func answerOpen(ctx context.Context, env Env, r *runtime.Run, output any, hash string) (service.Answer, error) {
	switch in := runtime.InputFor(r.Task, output, runtime.AnswerOptions{DefinitionHash: hash}).(type) {
	case runtime.Decide:
		return decide(ctx, env, r, in)
	case runtime.Submit:
		return step(ctx, env, r, in)
	}
	return service.Answer{}, fmt.Errorf("lab: run %s has no open task to answer", r.ID)
}

func baseOr(v *view, fallback any) any {
	if v.base != nil {
		return v.base
	}
	return fallback
}

func rejected(expected string, err error) outcome {
	o := outcome{expected: expected, observed: code(err)}
	if m := message(err); m != "" {
		o.detail = m
	}
	return o
}

// tool_injection

func undeclaredTool(ctx context.Context, env Env, v *view) (outcome, error) {
	t := v.run.Task
	_, err := step(ctx, env, v.run, runtime.Submit{Seq: t.Seq, State: t.State, Tool: UndeclaredTool, Output: baseOr(v, map[string]any{})})
	o := rejected(declared[ToolInjection+"/undeclared_tool"], err)
	o.detail = fmt.Sprintf("claimed tool %s at %s: %s", UndeclaredTool, t.State, o.detail)
	return o, nil
}

func wrongToolResult(ctx context.Context, env Env, v *view) (outcome, error) {
	other := ""
	for _, name := range v.p.Order {
		if st := v.p.States[name]; st.Kind == program.KindTool && st.Tool != v.st.Tool {
			other = st.Tool
			break
		}
	}
	t := v.run.Task
	_, err := step(ctx, env, v.run, runtime.Submit{Seq: t.Seq, State: t.State, Tool: other, Output: baseOr(v, map[string]any{})})
	o := rejected(declared[ToolInjection+"/wrong_tool_result"], err)
	o.detail = fmt.Sprintf("a result of %s for the task granting %s: %s", other, v.st.Tool, o.detail)
	return o, nil
}

// withExtraFields is out with fields that try to widen the task: an
// approval flag and a tool call of their own.
func withExtraFields(out any) any {
	m, ok := jsonvalue.Clone(out).(map[string]any)
	if !ok {
		return out
	}
	m[UndeclaredTool] = true
	m["tool_calls"] = []any{map[string]any{"name": UndeclaredTool, "arguments": map[string]any{"decision": "approve"}}}
	return m
}

func extraFields(ctx context.Context, env Env, v *view) (outcome, error) {
	_, err := answerOpen(ctx, env, v.run, withExtraFields(v.base), "")
	o := rejected(declared[ToolInjection+"/extra_fields"], err)
	o.detail = fmt.Sprintf("a valid output of %s plus %s and tool_calls: %s", v.st.Name, UndeclaredTool, o.detail)
	return o, nil
}

// policy_bypass

func noMatchingGuard(ctx context.Context, env Env, v *view) (outcome, error) {
	out, _ := noMatchOutput(v)
	_, err := answerOpen(ctx, env, v.run, out.value, "")
	o := rejected(declared[PolicyBypass+"/no_matching_guard"], err)
	o.detail = fmt.Sprintf("%s at %s, which satisfies no guard: %s", out.change, v.st.Name, o.detail)
	return o, nil
}

func stepOnApproval(ctx context.Context, env Env, v *view) (outcome, error) {
	t := v.run.Task
	_, err := step(ctx, env, v.run, runtime.Submit{Seq: t.Seq, State: t.State, Output: baseOr(v, map[string]any{})})
	o := rejected(declared[PolicyBypass+"/step_on_approval"], err)
	o.detail = fmt.Sprintf("the decision of %s sent through step: %s", t.State, o.detail)
	return o, nil
}

// selfApproval decides the open approval as the run's owner would through
// approve: as a configured approver, under separation of duties.
func selfApproval(ctx context.Context, env Env, v *view) (outcome, error) {
	t := v.run.Task
	_, err := env.Service.Decide(ctx, v.run.ID, runtime.Decide{Seq: t.Seq, State: t.State, Role: t.Role, Principal: v.run.Principal, Decision: baseOr(v, map[string]any{})})
	o := rejected(declared[PolicyBypass+"/self_approval"], err)
	o.detail = fmt.Sprintf("the decision of %s by %s, who started the run: %s", t.State, v.run.Principal, o.detail)
	return o, nil
}

func modifiedProgram(ctx context.Context, env Env, v *view) (outcome, error) {
	mod, change, err := loosened(v.p)
	if err != nil {
		return outcome{}, err
	}
	_, err = answerOpen(ctx, env, v.run, baseOr(v, map[string]any{}), mod.Hash)
	o := rejected(declared[PolicyBypass+"/modified_program"], err)
	o.detail = fmt.Sprintf("%s, continued under its definition %s: %s", change, mod.Hash, o.detail)
	return o, nil
}

// skip_step

func laterState(ctx context.Context, env Env, v *view) (outcome, error) {
	target := laterTaskState(v.p, v.st)
	t := v.run.Task
	_, err := step(ctx, env, v.run, runtime.Submit{Seq: t.Seq, State: target, Output: baseOr(v, map[string]any{})})
	o := rejected(declared[SkipStep+"/later_state"], err)
	o.detail = fmt.Sprintf("an output for %s while the run is at %s: %s", target, t.State, o.detail)
	return o, nil
}

// laterTaskState is the nearest task state after st (breadth first over
// the transitions), or any other task state.
func laterTaskState(p *program.Program, st *program.State) string {
	seen := map[string]bool{st.Name: true}
	queue := []*program.State{st}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, t := range s.Transitions {
			if seen[t.To.Name] {
				continue
			}
			seen[t.To.Name] = true
			if t.To.Kind.TakesSubmission() {
				return t.To.Name
			}
			queue = append(queue, t.To)
		}
	}
	for _, name := range p.Order {
		if name != st.Name && p.States[name].Kind.TakesSubmission() {
			return name
		}
	}
	return ""
}

func earlyApproval(ctx context.Context, env Env, v *view) (outcome, error) {
	ap := approvalState(v.p)
	t := v.run.Task
	_, err := decide(ctx, env, v.run, runtime.Decide{Seq: t.Seq, Role: ap.Role, Decision: map[string]any{}})
	o := rejected(declared[SkipStep+"/early_approval"], err)
	o.detail = fmt.Sprintf("a %s decision (as for %s) on the open task %s: %s", ap.Role, ap.Name, t.State, o.detail)
	return o, nil
}

// reorder_steps

func futureSeq(ctx context.Context, env Env, v *view) (outcome, error) {
	t := v.run.Task
	_, err := answerOpenSeq(ctx, env, v, t.Seq+1)
	o := rejected(declared[ReorderSteps+"/future_seq"], err)
	o.detail = fmt.Sprintf("seq %d while task %d is open: %s", t.Seq+1, t.Seq, o.detail)
	return o, nil
}

func pastSeq(ctx context.Context, env Env, v *view) (outcome, error) {
	t := v.run.Task
	_, err := answerOpenSeq(ctx, env, v, t.Seq-1)
	o := rejected(declared[ReorderSteps+"/past_seq"], err)
	o.detail = fmt.Sprintf("seq %d while task %d is open: %s", t.Seq-1, t.Seq, o.detail)
	return o, nil
}

// answerOpenSeq answers the open task, claiming seq.
func answerOpenSeq(ctx context.Context, env Env, v *view, seq uint64) (service.Answer, error) {
	t := v.run.Task
	if t.Kind == string(program.KindApproval) {
		return decide(ctx, env, v.run, runtime.Decide{Seq: seq, Role: t.Role, Decision: baseOr(v, map[string]any{})})
	}
	in := runtime.Submit{Seq: seq, Output: baseOr(v, map[string]any{})}
	if t.Tool != nil {
		in.Tool = t.Tool.Name
	}
	return step(ctx, env, v.run, in)
}

// resubmit sends an accepted submission again, as it was made.
func resubmit(ctx context.Context, env Env, r *runtime.Run, seq uint64, state string, sub *runtime.Submission) (service.Answer, error) {
	if sub.Actor == runtime.ActorHuman {
		in := runtime.Decide{Seq: seq, State: state, Role: sub.Role, Decision: sub.Output, Principal: sub.Principal, AllowSelf: true}
		if len(sub.Approvers) > 0 {
			in.Principal = sub.Approvers[len(sub.Approvers)-1]
		}
		return env.Service.Decide(ctx, r.ID, in)
	}
	return step(ctx, env, r, runtime.Submit{Seq: seq, State: state, Tool: sub.Tool, Output: sub.Output})
}

// resubmitEarlier sends an earlier accepted answer again while a later
// task is open: the first accepted one if it is not the last, else the
// last one altered (an exact repeat of the last is exact_duplicate).
func resubmitEarlier(ctx context.Context, env Env, v *view) (outcome, error) {
	events, err := env.Service.Events(ctx, v.run.ID)
	if err != nil {
		return outcome{}, err
	}
	l := v.run.Last
	earlier, what := &events[l.Index], "the last accepted answer, altered,"
	for i := range events {
		if e := &events[i]; e.Type == runtime.EventSubmissionAccepted && e.Seq < l.Seq {
			earlier, what = e, "the accepted answer"
			break
		}
	}
	sub := *earlier.Submission
	if earlier.Index == l.Index {
		if m, ok := jsonvalue.Clone(sub.Output).(map[string]any); ok {
			m["lab_resubmitted"] = true
			sub.Output = m
		} else {
			sub.Output = map[string]any{"lab_resubmitted": true}
		}
	}
	_, err = resubmit(ctx, env, v.run, earlier.Seq, earlier.State, &sub)
	o := rejected(declared[ReorderSteps+"/resubmit_earlier"], err)
	o.detail = fmt.Sprintf("%s to task %d (%s) again while task %d is open: %s", what, earlier.Seq, earlier.State, v.run.Seq, o.detail)
	return o, nil
}

func exactDuplicate(ctx context.Context, env Env, v *view) (outcome, error) {
	before, err := env.Service.Events(ctx, v.run.ID)
	if err != nil {
		return outcome{}, err
	}
	l := v.run.Last
	sub := before[l.Index].Submission
	a, err := resubmit(ctx, env, v.run, l.Seq, l.State, sub)
	after, lerr := env.Service.Events(ctx, v.run.ID)
	if lerr != nil {
		return outcome{}, lerr
	}
	o := outcome{expected: Duplicate}
	switch {
	case err != nil:
		o = rejected(Duplicate, err)
	case !a.Duplicate:
		o.observed = "accepted"
		o.detail = "the repeat was taken as a new answer"
	case len(after) != len(before):
		o.observed = "not_idempotent"
		o.detail = fmt.Sprintf("the repeat wrote %d events", len(after)-len(before))
	default:
		o.observed = Duplicate
		o.detail = fmt.Sprintf("the last accepted answer (task %d, %s) again: the original answer (state %s, seq %d), no event written", l.Seq, l.State, a.State, a.Seq)
	}
	return o, nil
}
