package lab

import (
	"context"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// failureSeen names what the runtime did after a runtime call: the failure
// class of the last attempt, then the on_error edge or the run's end; a
// retried attempt does not decide, and a completed call is no failure.
func TestFailureSeenReadsTheLastAttemptAndWhatFollowed(t *testing.T) {
	st := &program.State{Name: "screen", Tool: "sanctions_screen"}
	failed := func(class string, retry bool) runtime.Event {
		return runtime.Event{Type: runtime.EventToolCallFailed, Call: &runtime.ToolCallRecord{CallID: "c", Class: class, Retry: retry}}
	}
	onError := runtime.Event{Type: runtime.EventTransitioned, Transition: &runtime.TransitionRecord{From: "screen", To: "manual", Transition: runtime.TransitionOnError, Cause: runtime.CauseOnError}}
	finished := runtime.Event{Type: runtime.EventRunFinished, Finished: &runtime.Finished{Status: runtime.StatusFailed, Reason: runtime.ReasonToolFailed + ": tool sanctions_screen failed at screen (timeout)"}}
	for _, c := range []struct {
		name   string
		events []runtime.Event
		want   string
	}{
		{"on_error after the failure", []runtime.Event{failed("timeout", false), onError}, "timeout+on_error"},
		{"tool_failed without on_error", []runtime.Event{failed("transport", false), finished}, "transport+tool_failed"},
		{"a retried attempt does not decide", []runtime.Event{failed("timeout", true), failed("drifted", false), onError}, "drifted+on_error"},
		{"a completed call", []runtime.Event{{Type: runtime.EventToolCallCompleted, Call: &runtime.ToolCallRecord{CallID: "c"}}}, "completed"},
		{"a failure and nothing after it", []runtime.Event{failed("timeout", false)}, "timeout"},
		{"no call at all", nil, "no_tool_call"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got, detail := failureSeen(c.events, st); got != c.want || detail == "" {
				t.Errorf("failureSeen = %q (%q), want %q", got, detail, c.want)
			}
		})
	}
}

// The expected outcome follows the program: the state's on_error edge
// when it has one, else the run fails with tool_failed.
func TestExpectedFailureFollowsTheProgram(t *testing.T) {
	withEdge := &program.State{Name: "a", OnError: &program.State{Name: "b"}}
	for _, c := range []struct {
		mode string
		st   *program.State
		want string
	}{
		{modeTimeout, withEdge, "timeout+on_error"},
		{modeCrash, &program.State{Name: "a"}, "transport+tool_failed"},
		{modeDrift, &program.State{Name: "a"}, "drifted+tool_failed"},
	} {
		if got := expectedFailure(c.mode, c.st); got != c.want {
			t.Errorf("expectedFailure(%s) = %q, want %q", c.mode, got, c.want)
		}
	}
}

// inject_fault: tool_failure is an operator's attack, made on a lab run of
// its own that replays the caller's run; forged_tool_result needs a run
// that waits on a runtime call, which a run without runtime tools never
// does.
func TestInjectToolFailureIsAnOperatorsAttackOnALabRunOfItsOwn(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		operator bool
		fault    string
		wantNA   bool
	}{
		{"an agent gets n/a", false, ToolFailure, true},
		{"an operator gets a lab run of its own", true, ToolFailure, false},
		{"forged_tool_result on a run without runtime tools is n/a", true, ToolInjection, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t)
			env.Operator = c.operator
			scripts, err := ExampleScripts("kyc-onboarding")
			if err != nil || len(scripts) == 0 {
				t.Fatal(scripts, err)
			}
			ans, err := env.Service.StartRun(ctx, service.StartOptions{Program: "kyc-onboarding", Input: scripts[0].Input, Principal: "lab", Lab: true})
			if err != nil {
				t.Fatal(err)
			}
			// Answer the caller's run up to its first tool task (the
			// caller's here: this service has no registry), so that its
			// accepted answers lead a replay into that state.
			for _, out := range scripts[0].Answers {
				r, _, err := env.Service.Get(ctx, ans.RunID)
				if err != nil {
					t.Fatal(err)
				}
				if r.Task == nil || r.Task.Tool != nil {
					break
				}
				// Scripts hold rejected answers too.
				if _, err := answerOpen(ctx, env, r, out, ""); err != nil && code(err) == "error" {
					t.Fatal(err)
				}
			}
			results, err := Inject(ctx, env, ans.RunID, c.fault, Params{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				if c.fault == ToolInjection && r.SubAttack != "forged_tool_result" {
					continue
				}
				if r.Applicable == c.wantNA || (c.wantNA && r.Detail == "") {
					t.Fatalf("%s: applicable %v, want %v: %s", r.SubAttack, r.Applicable, !c.wantNA, r.Detail)
				}
				if r.Applicable && (!r.Pass || r.RunID == ans.RunID || !strings.HasPrefix(r.Detail, "on lab run "+r.RunID+": ")) {
					t.Errorf("%s: pass %v on run %s (the caller's is %s): %s", r.SubAttack, r.Pass, r.RunID, ans.RunID, r.Detail)
				}
			}
		})
	}
}

const onErrorProgram = `name: on-error-probe
version: "1"
input_schema: {type: object, required: [id], properties: {id: {type: string}}}
initial: ask
states:
  ask:
    kind: llm
    instructions: Ask.
    output_schema: {type: object, required: [ok], properties: {ok: {type: boolean}}}
    transitions:
      - to: lookup
  lookup:
    kind: tool
    tool: probe_lookup
    arguments: {id: input.id}
    on_error: manual
    output_schema: {type: object, required: [found], properties: {found: {type: boolean}}}
    transitions:
      - to: done
  manual:
    kind: llm
    instructions: Look it up by hand.
    output_schema: {type: object, required: [found], properties: {found: {type: boolean}}}
    transitions:
      - to: done
  done: {kind: terminal, outcome: DONE}
`

// On a state that declares on_error, each tool_failure sub-attack expects
// and observes its class then the on_error edge; the run waits at the
// edge's target, its trace and receipt verify, and forged_tool_result is
// refused there as anywhere.
func TestToolFailureTakesOnError(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t)
	p, err := program.Load("on-error-probe.yaml", []byte(onErrorProgram))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Service.AddProgram(ctx, p, []byte(onErrorProgram)); err != nil {
		t.Fatal(err)
	}
	scripts := []Script{{Name: "probe", Input: map[string]any{"id": "x"}, Answers: []any{map[string]any{"ok": true}}}}
	results, err := Matrix(ctx, env, MatrixOptions{Program: p.Name, Faults: []string{ToolFailure, ToolInjection}, Scripts: scripts})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"tool_failure/timeout":              "timeout+on_error",
		"tool_failure/crash":                "transport+on_error",
		"tool_failure/drift":                "drifted+on_error",
		"tool_injection/forged_tool_result": "capability_denied",
	}
	for _, r := range results {
		key := r.Fault + "/" + r.SubAttack
		w, ok := want[key]
		if !ok {
			continue
		}
		delete(want, key)
		if !r.Pass || r.Expected != w || r.Observed != w {
			t.Errorf("%s: expected %s, observed %s (pass %v), want %s: %s %v", key, r.Expected, r.Observed, r.Pass, w, r.Detail, r.Verification)
			continue
		}
		checkRecorded(t, env, r)
		run, _, err := env.Service.Get(ctx, r.RunID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Fault == ToolFailure && (run.State != "manual" || run.Status != runtime.StatusRunning):
			t.Errorf("%s: the run is %s at %s, want running at manual", key, run.Status, run.State)
		case r.Fault == ToolInjection && (run.Status != runtime.StatusCancelled || run.Call != nil):
			// The held call is abandoned with the run: no open call is
			// left for recovery.
			t.Errorf("%s: the run is %s with call %v, want cancelled with none", key, run.Status, run.Call)
		}
	}
	if len(want) > 0 {
		t.Errorf("no result for %v", want)
	}
}
