package tools

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/policy"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// stepAttempt is one step submission, as the oracle needs it.
type stepAttempt struct {
	argsOK bool // the arguments decode within the nesting limit
	output any  // decoded
	size   int  // bytes of the output as canonical JSON, what max_document_bytes measures
	state  string
	tool   *string
}

// verdict is what a step must do, and where it must leave the run.
type verdict struct {
	code string // the error code; "" when the output is accepted
	hops []service.Hop

	status                     runtime.Status
	outcome                    string
	reason                     string // a prefix of the run's reason, up to ':'
	state                      string
	seq                        uint64
	task                       string // the open task's kind, "" for none
	attemptsLeft               int    // of the open task
	data                       map[string]any
	path                       []string
	visits                     map[string]int
	attempts, steps, rollbacks int
	rejections                 int
	toolName                   string // the tool an open tool task names
}

// expectStep is the oracle: what a step answering before's open task with
// a must do, worked out from the program alone. Guards are evaluated here
// with the compiled expressions on the run's input and data, the output
// judged by the state's schema; the order of the checks and the limits are
// those docs/mcp.md and docs/program-format.md give.
func expectStep(p *program.Program, before *runtime.Run, a stepAttempt) verdict {
	st := p.States[before.State]
	v := verdict{
		status: before.Status, outcome: before.Outcome, reason: before.Reason,
		state: before.State, seq: before.Seq, data: before.Data, path: before.Path, visits: before.Visits,
		attempts: before.Attempts, steps: before.Steps, rollbacks: before.Rollbacks, rejections: before.Rejections,
	}
	if before.Task != nil {
		v.task, v.attemptsLeft = before.Task.Kind, st.MaxAttempts-before.Attempts
		if st.Kind == program.KindTool {
			v.toolName = st.Tool
		}
	}
	reject := func(code string, counted bool) verdict {
		v.code = code
		v.rejections++
		if counted {
			v.attempts++
			v.attemptsLeft--
			if v.attempts >= st.MaxAttempts {
				v.status, v.outcome, v.reason = runtime.StatusFailed, program.OutcomeFailed, runtime.ReasonAttemptsExhausted
				v.task, v.toolName = "", ""
			}
		}
		return v
	}
	switch {
	case !a.argsOK:
		v.code = CodeInvalidArguments // refused before the runtime: nothing recorded
		return v
	case a.state != "" && a.state != st.Name:
		return reject(string(runtime.CodeWrongState), false)
	case st.Kind == program.KindApproval:
		return reject(string(runtime.CodeApprovalRequired), false)
	case a.tool != nil && (st.Kind != program.KindTool || *a.tool != st.Tool):
		return reject(string(runtime.CodeCapabilityDenied), true)
	case a.size > p.Limits.MaxDocumentBytes:
		return reject(string(runtime.CodeSchemaViolation), true)
	case len(st.Output.Validate(a.output)) > 0:
		return reject(string(runtime.CodeSchemaViolation), true)
	}
	// The output is judged on the data of the earlier states; once
	// accepted, it is data for the states after.
	out := st.Output.Root.Convert(a.output)
	t := firstHolding(st, policy.Vars{Input: before.Input, Data: before.Data, Output: out})
	if t == nil {
		return reject(string(runtime.CodeGuardDenied), true)
	}
	data := make(map[string]any, len(before.Data)+1)
	for k, x := range before.Data {
		data[k] = x
	}
	data[st.Name] = out
	path := slices.Clone(before.Path)
	visits := make(map[string]int, len(before.Visits)+1)
	for k, n := range before.Visits {
		visits[k] = n
	}
	v.task, v.toolName, v.attemptsLeft = "", "", 0
	lim := p.Limits
hops:
	for cur := st; ; {
		to := t.To
		switch {
		case v.steps >= lim.MaxSteps:
			v.status, v.outcome, v.reason = runtime.StatusFailed, program.OutcomeFailed, runtime.ReasonBudgetExceeded
		case t.Rollback && v.rollbacks >= lim.MaxRollbacks:
			v.status, v.outcome, v.reason = runtime.StatusFailed, program.OutcomeFailed, runtime.ReasonRollbackBudgetExceeded
		case to.MaxVisits > 0 && visits[to.Name] >= to.MaxVisits:
			v.status, v.outcome, v.reason = runtime.StatusFailed, program.OutcomeFailed, runtime.ReasonVisitBudgetExceeded
		}
		if v.status != runtime.StatusRunning {
			break hops
		}
		cause := "guard"
		if t.Guard == nil {
			cause = "default"
		}
		v.hops = append(v.hops, service.Hop{From: cur.Name, To: to.Name, Cause: cause, Rollback: t.Rollback})
		if t.Rollback {
			// Every state visited after the target's last visit loses its data.
			last := len(path) - 1
			for last >= 0 && path[last] != to.Name {
				last--
			}
			for _, s := range path[last+1:] {
				delete(data, s)
			}
			v.rollbacks++
		}
		v.steps++
		path = append(path, to.Name)
		visits[to.Name]++
		v.state, cur = to.Name, to
		if to.Kind == program.KindTerminal {
			v.status, v.outcome = runtime.StatusCompleted, to.Outcome
			break hops
		}
		if to.Kind == program.KindDecision {
			if t = firstHolding(to, policy.Vars{Input: before.Input, Data: data}); t == nil {
				panic("oracle: decision state " + to.Name + " without a default")
			}
			continue
		}
		if to.Kind == program.KindTool {
			failed := false
			for _, arg := range to.Args {
				if _, err := arg.Expr.Eval(policy.Vars{Input: before.Input, Data: data}); err != nil {
					failed = true
				}
			}
			if failed {
				v.status, v.outcome, v.reason = runtime.StatusFailed, program.OutcomeFailed, runtime.ReasonArgumentError
				break hops
			}
			v.toolName = to.Tool
		}
		v.seq++
		v.task, v.attemptsLeft, v.attempts = string(to.Kind), to.MaxAttempts, 0
		break hops
	}
	v.data, v.path, v.visits = data, path, visits
	return v
}

// firstHolding is the first transition of st whose guard holds, the
// default when none before it does, nil when none at all.
func firstHolding(st *program.State, vars policy.Vars) *program.Transition {
	for _, t := range st.Transitions {
		if t.Guard == nil {
			return t
		}
		if ok, _, err := t.Guard.EvalBool(vars); ok && err == nil {
			return t
		}
	}
	return nil
}

// stepObservation is what the server answered to a step and where the run
// is afterwards.
type stepObservation struct {
	err    *ErrorBody // the error result, or
	result *RunResult // the success result
	getRun GetRunResult
	run    *runtime.Run // the service's fold
}

// check compares an observation with the verdict; nil means they agree.
func (v verdict) check(o stepObservation) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	wantStatus := clientStatus(v.status, v.task)
	switch {
	case v.code != "" && o.err == nil:
		bad("accepted (hops %v), want %s", hopsOf(o.result), v.code)
	case v.code != "" && o.err.Code != v.code:
		bad("rejected with %s (%s), want %s", o.err.Code, o.err.Message, v.code)
	case v.code != "":
		carries := v.code != CodeInvalidArguments && v.status == runtime.StatusRunning
		if t := o.err.Task; carries != (t != nil) {
			bad("the error carries task %v, want one: %v", t, carries)
		} else if t != nil && (t.Seq != v.seq || t.State != v.state || t.AttemptsLeft != v.attemptsLeft) {
			bad("the error's task is seq %d at %s with %d attempts left, want seq %d at %s with %d", t.Seq, t.State, t.AttemptsLeft, v.seq, v.state, v.attemptsLeft)
		}
	case o.err != nil:
		bad("rejected with %s (%s %v), want the hops %v", o.err.Code, o.err.Message, o.err.Details, v.hops)
	default:
		r := o.result
		if !slices.Equal(r.Transitions, v.hops) {
			bad("hops %v, the guards give %v", r.Transitions, v.hops)
		}
		if len(v.hops) > 0 && (r.Transition == nil || *r.Transition != v.hops[0]) || len(v.hops) == 0 && r.Transition != nil {
			bad("transition %v, want the first of %v", r.Transition, v.hops)
		}
		if r.Status != wantStatus || r.Outcome != finishedOutcome(v) || !reasonIs(r.Reason, v.reason) {
			bad("answered %s %q %q, want %s %q %q", r.Status, r.Outcome, r.Reason, wantStatus, finishedOutcome(v), v.reason)
		}
		if v.task == "" && r.Task != nil {
			bad("answered task %d at %s, want none", r.Task.Seq, r.Task.State)
		}
		if t := r.Task; v.task != "" && (t == nil || t.Seq != v.seq || t.State != v.state || t.Kind != v.task || t.AttemptsLeft != v.attemptsLeft || toolOf(t.Tool) != v.toolName) {
			bad("answered task %+v, want %s task %d at %s (tool %q, %d attempts)", t, v.task, v.seq, v.state, v.toolName, v.attemptsLeft)
		}
	}
	g := o.getRun
	if g.Status != wantStatus || g.State != v.state || g.Seq != v.seq || !slices.Equal(g.Path, v.path) || g.Outcome != finishedOutcome(v) {
		bad("get_run: %s at %s seq %d path %v outcome %q; want %s at %s seq %d path %v outcome %q",
			g.Status, g.State, g.Seq, g.Path, g.Outcome, wantStatus, v.state, v.seq, v.path, finishedOutcome(v))
	}
	r := o.run
	if r.Status != v.status || r.State != v.state || r.Seq != v.seq || r.Outcome != v.outcome || !reasonIs(r.Reason, v.reason) {
		bad("run: %s %s at %s seq %d (%s); want %s %s at %s seq %d (%s)", r.Status, r.Outcome, r.State, r.Seq, r.Reason, v.status, v.outcome, v.state, v.seq, v.reason)
	}
	if r.Attempts != v.attempts || r.Steps != v.steps || r.Rollbacks != v.rollbacks || r.Rejections != v.rejections {
		bad("run counters: attempts %d steps %d rollbacks %d rejections %d; want %d %d %d %d",
			r.Attempts, r.Steps, r.Rollbacks, r.Rejections, v.attempts, v.steps, v.rollbacks, v.rejections)
	}
	if (r.Task != nil) != (v.task != "") {
		bad("run task %v, want one: %v", r.Task, v.task != "")
	}
	if !slices.Equal(r.Path, v.path) || !reflect.DeepEqual(r.Visits, v.visits) {
		bad("run path %v visits %v; want %v %v", r.Path, r.Visits, v.path, v.visits)
	}
	if !reflect.DeepEqual(r.Data, v.data) {
		bad("run data differs from what the step must leave:\n got  %s\n want %s", canonicalText(r.Data), canonicalText(v.data))
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "\n"))
}

func hopsOf(r *RunResult) []service.Hop {
	if r == nil {
		return nil
	}
	return r.Transitions
}

// clientStatus is the status clients see: waiting_approval while an
// approval task is open.
func clientStatus(s runtime.Status, task string) string {
	if s == runtime.StatusRunning && task == string(program.KindApproval) {
		return "waiting_approval"
	}
	return string(s)
}

func finishedOutcome(v verdict) string {
	if v.status == runtime.StatusRunning {
		return ""
	}
	return v.outcome
}

// reasonIs reports whether a run's reason has the reason code want ("" for
// none): "attempts_exhausted: 2 rejected submissions at ..." is
// attempts_exhausted.
func reasonIs(got, want string) bool {
	if want == "" {
		return got == ""
	}
	return got == want || strings.HasPrefix(got, want+":")
}

func toolOf(t *projection.ToolCall) string {
	if t == nil {
		return ""
	}
	return t.Name
}

func canonicalText(v any) string {
	b, err := jsonvalue.Canonical(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// The oracle can fail: it agrees with a correct step, and reports every
// way an answer can stray from the guards: a hop to another state, a run
// left elsewhere, a rejection of what the guards accept, an acceptance of
// what the schema refuses, and guards that say something else than the
// program's.
func TestStepOracleCatchesWrongTransitions(t *testing.T) {
	loadInjectionFixtures()
	sc := scenarioNamed(t, "refund.large.refunded.answers.jsonl")
	e := newInjEnv(t)
	runID := e.start(sc, 0)
	before, p := e.get(runID)
	output := sc.answers[0] // 1,899.00, eligible: above 500.00, a manager decides
	a := stepAttempt{argsOK: true, size: len(output)}
	a.output, _ = jsonvalue.Decode(output)
	want := expectStep(p, before, a)
	if len(want.hops) != 2 || want.hops[1] != (service.Hop{From: "check", To: "manager_approval", Cause: "guard"}) {
		t.Fatalf("oracle: hops %v, want assess_refund → check → manager_approval", want.hops)
	}
	text, isError := e.call("step", stepArgs(runID, before.Seq, "", nil, output))
	got := e.observe(runID, text, isError)
	if err := want.check(got); err != nil {
		t.Fatalf("the oracle disagrees with a correct step: %v", err)
	}

	// The same program, but for a check that lets 5,000.00 through without
	// a manager: its guards send this output to refunded.
	src := strings.Replace(string(injSources["refund"]), "amount_cents <= 50000", "amount_cents <= 500000", 1)
	loose, err := program.Load("refund-loose.yaml", []byte(src))
	if err != nil || loose.Hash == p.Hash {
		t.Fatalf("loosened program: %v", err)
	}
	invalid := stepAttempt{argsOK: true, output: map[string]any{"eligible": "yes"}, size: 17}

	for _, c := range []struct {
		name    string
		verdict verdict
		seen    stepObservation
		report  string
	}{
		{"a hop to another state", want, tamperHop(got, 1, "refunded"), "the guards give"},
		{"the run left elsewhere", want, tamperRun(got, func(r *runtime.Run) { r.State = "refunded" }), "run: running"},
		{"the run's data changed", want, tamperRun(got, func(r *runtime.Run) { r.Data = map[string]any{} }), "run data differs"},
		{"a rejection of what the guards accept", want, rejectedAs(got, string(runtime.CodeGuardDenied)), "rejected with guard_denied"},
		{"an acceptance of what the schema refuses", expectStep(p, before, invalid), got, "want schema_violation"},
		{"guards other than the program's", expectStep(loose, before, a), got, "the guards give"},
	} {
		err := c.verdict.check(c.seen)
		if err == nil || !strings.Contains(err.Error(), c.report) {
			t.Errorf("%s: the oracle reports %v, want a mismatch naming %q", c.name, err, c.report)
		}
	}
}

func scenarioNamed(t *testing.T, name string) *injScenario {
	t.Helper()
	for i := range injScenarios {
		if injScenarios[i].name == name {
			return &injScenarios[i]
		}
	}
	t.Fatalf("no scenario %s", name)
	return nil
}

// tamperHop is o with hop i of the answer going to another state.
func tamperHop(o stepObservation, i int, to string) stepObservation {
	res := *o.result
	res.Transitions = slices.Clone(res.Transitions)
	res.Transitions[i].To = to
	o.result = &res
	return o
}

// tamperRun is o with the run's fold changed by f.
func tamperRun(o stepObservation, f func(*runtime.Run)) stepObservation {
	r := *o.run
	f(&r)
	o.run = &r
	return o
}

// rejectedAs is o answered by an error with code instead.
func rejectedAs(o stepObservation, code string) stepObservation {
	o.result, o.err = nil, &ErrorBody{Code: code, Message: "tampered"}
	return o
}
