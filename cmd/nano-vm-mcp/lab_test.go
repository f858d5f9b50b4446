package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/lab"
)

// TestLabMatrixPassesOnTheExamples runs the whole laboratory on each
// embedded example, on the memory store: every applicable sub-attack meets
// its outcome, so the command exits 0, and the JSON line holds every row.
func TestLabMatrixPassesOnTheExamples(t *testing.T) {
	for _, prog := range []string{"refund", "kyc-onboarding", "code-change"} {
		t.Run(prog, func(t *testing.T) {
			code, out, errOut := runCLI(t, "lab", prog, "--json")
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			var sum labSummary
			if err := json.Unmarshal([]byte(lastLine(out)), &sum); err != nil {
				t.Fatal(err)
			}
			if sum.Program != prog || sum.Failed != 0 || len(sum.Results) < 20 {
				t.Fatalf("summary: %+v", sum)
			}
			for _, r := range sum.Results {
				if r.Fault == lab.GDPRErase && (r.Applicable || r.Observed != lab.NA) {
					t.Fatalf("gdpr_erase: %+v", r)
				}
			}
			for _, want := range []string{"FAULT", "skip_step", "wrong_state", "corrupt_receipt", "verification_failed", "0 failed"} {
				if !strings.Contains(out, want) {
					t.Errorf("the matrix lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func TestLabFaultFilterAndInput(t *testing.T) {
	code, out, errOut := runCLI(t, "lab", "../../examples/refund.yaml", "--fault", "reorder_steps", "--fault", "skip_step",
		"--input", "../../examples/refund.large.input.json", "--answers", "../../examples/refund.large.refunded.answers.jsonl")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out, "tool_injection") || !strings.Contains(out, "exact_duplicate") || !strings.Contains(out, "early_approval") {
		t.Fatalf("filtered matrix:\n%s", out)
	}
	if code, _, errOut := runCLI(t, "lab", "refund", "--fault", "format_disk"); code != exitUsage || !strings.Contains(errOut, "not a fault") {
		t.Fatalf("unknown fault: exit %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "lab", "no-such-program"); code != exitUsage {
		t.Fatalf("unknown program: exit %d", code)
	}
}

func TestLabMatrixCountsFailures(t *testing.T) {
	var b bytes.Buffer
	failed := printMatrix(&b, []lab.Result{
		{Fault: "f", SubAttack: "ok", Expected: "x", Observed: "x", Applicable: true, Pass: true},
		{Fault: "f", SubAttack: "bad", Expected: "x", Observed: "y", Applicable: true, Detail: "why"},
		{Fault: "f", SubAttack: "na", Expected: "x", Observed: lab.NA, Detail: "reason"},
	})
	if failed != 1 || !strings.Contains(b.String(), "FAIL") || !strings.Contains(b.String(), "1 passed, 1 failed, 1 n/a") {
		t.Fatalf("%d\n%s", failed, b.String())
	}
}

// The program comes from --program (default kyc-onboarding) or the one
// argument, never both.
func TestLabProgramFlag(t *testing.T) {
	if code, out, errOut := runCLI(t, "lab", "--program", "refund", "--fault", "skip_step", "--json"); code != exitOK {
		t.Fatalf("--program refund: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "lab", "--fault", "reorder_steps"); code != exitOK || !strings.Contains(out, "kyc-onboarding") {
		t.Fatalf("default program: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, _ := runCLI(t, "lab", "refund", "--program", "refund"); code != exitUsage {
		t.Fatalf("both: exit %d, want %d", code, exitUsage)
	}
}
