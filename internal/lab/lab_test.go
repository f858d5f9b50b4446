package lab

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// newEnv is a service over the memory store with every example program.
func newEnv(t *testing.T) Env {
	t.Helper()
	store := tracestore.NewMemory()
	n := 0
	svc := service.New(service.Options{Store: store, Clock: func() time.Time { return t0 },
		NewID: func() string { n++; return fmt.Sprintf("run-%d", n) }})
	for _, name := range examples.Programs() {
		p, src := examples.MustLoad(name)
		if err := svc.AddProgram(context.Background(), p, src); err != nil {
			t.Fatal(err)
		}
	}
	return Env{Service: svc, Store: store, Signer: ed25519.NewKeyFromSeed(make([]byte, 32)), Principal: "lab"}
}

// TestMatrixOnTheExamples runs every fault against every example program,
// each sub-attack on a fresh run, and checks each applicable one met its
// outcome, was recorded in its run's trace (counted by the receipt), and
// left a trace that replays identically.
func TestMatrixOnTheExamples(t *testing.T) {
	for _, tc := range []struct {
		program string
		na      []string // fault/sub-attack expected n/a
	}{
		{"refund", []string{"tool_injection/wrong_tool_result", "tool_injection/forged_tool_result", "policy_bypass/no_matching_guard", "gdpr_erase/erase_subject",
			"tool_failure/timeout", "tool_failure/crash", "tool_failure/drift"}},
		{"kyc-onboarding", nil},
		{"code-change", []string{"gdpr_erase/erase_subject"}},
	} {
		t.Run(tc.program, func(t *testing.T) {
			ctx := context.Background()
			env := newEnv(t)
			results, err := Matrix(ctx, env, MatrixOptions{Program: tc.program})
			if err != nil {
				t.Fatal(err)
			}
			want := len(catalog()) // every sub-attack
			if len(results) != want {
				t.Fatalf("%d results, want %d", len(results), want)
			}
			na := map[string]bool{}
			for _, n := range tc.na {
				na[n] = true
			}
			for _, r := range results {
				key := r.Fault + "/" + r.SubAttack
				if na[key] {
					if r.Applicable || r.Observed != NA || r.Detail == "" || r.Failed() || r.TraceVerified != nil || r.ReceiptVerified != nil {
						t.Errorf("%s: want n/a with a reason, got %+v", key, r)
					}
					continue
				}
				if !r.Pass || !r.Applicable || r.Observed != r.Expected {
					t.Errorf("%s: expected %s, observed %s (pass %v): %s", key, r.Expected, r.Observed, r.Pass, r.Detail)
				}
				// Accepted injected text moves the run on; an erasure cancels
				// it and erases its data; a failed tool call takes on_error
				// or fails the run.
				if moves := strings.HasPrefix(r.SubAttack, "prompt_injection:") || r.Fault == GDPRErase || r.Fault == ToolFailure; r.RunUnchanged == moves {
					t.Errorf("%s: run_unchanged %v", key, r.RunUnchanged)
				}
				if r.Fault == InvalidProgram {
					// A program that does not load meets no run.
					if r.RunID != "" || r.TraceVerified != nil || r.ReceiptVerified != nil {
						t.Errorf("%s: want no run and n/a verification, got %+v", key, r)
					}
					continue
				}
				if r.TraceVerified == nil || !*r.TraceVerified || r.ReceiptVerified == nil || !*r.ReceiptVerified || len(r.Verification) > 0 {
					t.Errorf("%s: trace %v, receipt %v: %v", key, r.TraceVerified, r.ReceiptVerified, r.Verification)
				}
				checkRecorded(t, env, r)
			}
		})
	}
}

// checkRecorded: the run the sub-attack met holds exactly one
// fault_injected record of it, its receipt counts one fault, and its trace
// replays identically.
func checkRecorded(t *testing.T, env Env, r Result) {
	t.Helper()
	ctx := context.Background()
	events, err := env.Service.Events(ctx, r.RunID)
	if err != nil {
		t.Fatal(err)
	}
	var recs []runtime.FaultRecord
	for _, e := range events {
		if e.Type == runtime.EventFaultInjected {
			recs = append(recs, *e.Fault)
		}
	}
	if len(recs) != 1 || recs[0].Fault != r.Fault || recs[0].SubAttack != r.SubAttack || recs[0].Observed != r.Observed || recs[0].Expected != r.Expected {
		t.Errorf("%s/%s: fault records %+v", r.Fault, r.SubAttack, recs)
	}
	stored, err := env.Store.Load(ctx, r.RunID)
	if err != nil {
		t.Fatal(err)
	}
	body, err := receipt.Derive(stored, uint64(len(stored)), "k")
	if err != nil || body.Counts.Faults != 1 {
		t.Errorf("%s/%s: receipt %+v, %v", r.Fault, r.SubAttack, body, err)
	}
	_, p, _ := env.Service.Get(ctx, r.RunID)
	if d, err := runtime.Replay(p, events); d != nil || err != nil {
		t.Errorf("%s/%s: replay diverged: %+v %v", r.Fault, r.SubAttack, d, err)
	}
}

// TestInjectOnARun attacks one lab run in place, fault by fault: each
// applicable sub-attack meets its outcome and leaves the run as it was,
// attempt-counting ones stop before the last attempt, and the run then
// goes on normally.
func TestInjectOnARun(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t)
	scripts, err := ExampleScripts("kyc-onboarding")
	if err != nil || len(scripts) == 0 {
		t.Fatal(scripts, err)
	}
	a, err := env.Service.StartRun(ctx, service.StartOptions{Program: "kyc-onboarding", Input: scripts[0].Input, Principal: "lab", Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	start, _, _ := env.Service.Get(ctx, a.RunID)
	type want map[string]string // sub-attack → observed
	for _, tc := range []struct {
		fault string
		want  want
	}{
		{ToolInjection, want{"undeclared_tool": "capability_denied", "wrong_tool_result": NA, "extra_fields": "schema_violation", "prompt_injection:ignore_previous": NA}},
		{PolicyBypass, want{"no_matching_guard": NA, "step_on_approval": NA, "modified_program": "definition_mismatch", "self_approval": NA}},
		{SkipStep, want{"later_state": "wrong_state", "early_approval": "wrong_state"}},
		{ReorderSteps, want{"future_seq": "stale_seq", "past_seq": NA, "resubmit_earlier": NA, "exact_duplicate": NA}},
		{CorruptReceipt, want{"receipt_field": VerificationFailed, "signature_byte": VerificationFailed, "trace_byte": VerificationFailed, "trace_field": VerificationFailed, "trace_reorder": VerificationFailed, "trace_drop": VerificationFailed}},
		{InvalidProgram, want{"missing_target": InvalidProgramOutcome, "guard_not_bool": InvalidProgramOutcome, "unreachable_state": InvalidProgramOutcome}},
		// Again: the task has one attempt left, which no attack may use.
		{ToolInjection, want{"undeclared_tool": NA, "extra_fields": NA}},
	} {
		results, err := Inject(ctx, env, a.RunID, tc.fault, Params{})
		if err != nil {
			t.Fatal(tc.fault, err)
		}
		seen := map[string]bool{}
		for _, r := range results {
			seen[r.SubAttack] = true
			if w, ok := tc.want[r.SubAttack]; ok && r.Observed != w {
				t.Errorf("%s/%s: observed %s, want %s: %s", tc.fault, r.SubAttack, r.Observed, w, r.Detail)
			}
			if r.Failed() {
				t.Errorf("%s/%s failed: %+v", tc.fault, r.SubAttack, r)
			}
			if r.Applicable && !r.RunUnchanged {
				t.Errorf("%s/%s changed the run: %s", tc.fault, r.SubAttack, r.Detail)
			}
			if r.Applicable && (r.TraceVerified == nil || r.ReceiptVerified == nil || !r.Verified()) {
				t.Errorf("%s/%s: trace %v, receipt %v: %v", tc.fault, r.SubAttack, r.TraceVerified, r.ReceiptVerified, r.Verification)
			}
		}
		for sub := range tc.want {
			if !seen[sub] {
				t.Errorf("%s: no result for %s", tc.fault, sub)
			}
		}
		outcome, detail, unchanged := Summary(results)
		if outcome == "" || detail == "" || !unchanged {
			t.Errorf("%s: summary %q %v", tc.fault, outcome, unchanged)
		}
	}
	// Erasure is an operator's attack: for anyone else it is n/a, and
	// nothing is done.
	if res, err := Inject(ctx, env, a.RunID, GDPRErase, Params{}); err != nil || len(res) != 1 || res[0].Applicable {
		t.Fatalf("gdpr_erase for a non-operator: %+v, %v", res, err)
	}
	if _, err := Inject(ctx, env, a.RunID, "format_disk", Params{}); !errors.Is(err, ErrUnknownFault) {
		t.Fatalf("unknown fault: %v", err)
	}
	r, p, _ := env.Service.Get(ctx, a.RunID)
	if snapshot(r) != snapshot(start) || r.Task.AttemptsLeft != 1 {
		t.Fatalf("the run changed: %s (attempts left %d)", snapshot(start).diff(snapshot(r)), r.Task.AttemptsLeft)
	}
	// The run goes on: the scripted answer is accepted.
	next, err := env.Service.Submit(ctx, a.RunID, runtime.Submit{Seq: r.Seq, Principal: "lab", Output: scripts[0].Answers[1]})
	if err != nil || next.State != "screen_sanctions" {
		t.Fatalf("continue: %+v %v", next, err)
	}
	events, _ := env.Service.Events(ctx, a.RunID)
	if d, err := runtime.Replay(p, events); d != nil || err != nil {
		t.Fatalf("replay: %+v %v", d, err)
	}
	stored, _ := env.Store.Load(ctx, a.RunID)
	body, err := receipt.Derive(stored, uint64(len(stored)), "k")
	if err != nil || body.Counts.Faults != 2+1+2+1+6+3 {
		t.Fatalf("receipt counts %+v %v", body.Counts, err)
	}
}

func TestSummary(t *testing.T) {
	ok := Result{SubAttack: "a", Expected: "x", Observed: "x", Applicable: true, Pass: true, RunUnchanged: true}
	bad := Result{SubAttack: "b", Expected: "x", Observed: "y", Applicable: true, RunUnchanged: true}
	na := Result{SubAttack: "c", Expected: "x", Observed: NA}
	for _, tc := range []struct {
		in        []Result
		outcome   string
		unchanged bool
	}{
		{[]Result{na, ok}, "x", true},
		{[]Result{ok, bad}, "y", true},
		{[]Result{na}, NA, true},
		{[]Result{ok, {SubAttack: "d", Expected: "x", Observed: "x", Applicable: true}}, "x", false},
	} {
		outcome, detail, unchanged := Summary(tc.in)
		if outcome != tc.outcome || unchanged != tc.unchanged || strings.Count(detail, "\n") != len(tc.in)-1 {
			t.Errorf("%v: %q %v %q", tc.in, outcome, unchanged, detail)
		}
	}
}
