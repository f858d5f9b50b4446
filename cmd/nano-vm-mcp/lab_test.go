package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/lab"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
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
				// Only the KYC example declares a data subject to erase.
				if wantErase := prog == "kyc-onboarding"; r.Fault == lab.GDPRErase && (r.Applicable != wantErase || (wantErase && r.Observed != lab.Erased) || (!wantErase && r.Observed != lab.NA)) {
					t.Fatalf("gdpr_erase: %+v", r)
				}
				// Every attacked run verified; rows without a run say n/a (null).
				if hasRun := r.RunID != ""; (r.TraceVerified != nil) != hasRun || (r.ReceiptVerified != nil) != hasRun || !r.Verified() {
					t.Errorf("%s/%s: run %q, trace %v, receipt %v", r.Fault, r.SubAttack, r.RunID, r.TraceVerified, r.ReceiptVerified)
				}
			}
			var raw struct {
				Results []map[string]json.RawMessage `json:"results"`
			}
			if err := json.Unmarshal([]byte(lastLine(out)), &raw); err != nil {
				t.Fatal(err)
			}
			for _, r := range raw.Results {
				if _, ok := r["trace_verified"]; !ok {
					t.Fatalf("a JSON result without trace_verified: %v", r)
				}
				if _, ok := r["receipt_verified"]; !ok {
					t.Fatalf("a JSON result without receipt_verified: %v", r)
				}
			}
			// Under --json the matrix is on stderr.
			for _, want := range []string{"FAULT", "TRACE VERIFIED", "RECEIPT VERIFIED", "skip_step", "wrong_state", "corrupt_receipt", "verification_failed", "0 failed"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("the matrix lacks %q:\n%s", want, errOut)
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

// A row fails on its outcome, and on its verification alone: an attack
// that met its outcome on a run whose trace no longer verifies is a
// failure too.
func TestLabMatrixCountsFailures(t *testing.T) {
	yes, no := true, false
	var b bytes.Buffer
	failed := printMatrix(&b, []lab.Result{
		{Fault: "f", SubAttack: "ok", RunID: "run_1", Expected: "x", Observed: "x", Applicable: true, Pass: true, TraceVerified: &yes, ReceiptVerified: &yes},
		{Fault: "f", SubAttack: "bad", RunID: "run_2", Expected: "x", Observed: "y", Applicable: true, Detail: "why", TraceVerified: &yes, ReceiptVerified: &yes},
		{Fault: "f", SubAttack: "forged", RunID: "run_3", Expected: "x", Observed: "x", Applicable: true, Detail: "met", TraceVerified: &no, ReceiptVerified: &yes,
			Verification: []string{"trace: Merkle root: the store committed to 00, the events give 11"}},
		{Fault: "f", SubAttack: "na", Expected: "x", Observed: lab.NA, Detail: "reason"},
	})
	out := b.String()
	if failed != 2 || !strings.Contains(out, "1 passed, 2 failed, 1 n/a") || !strings.Contains(out, "Merkle root") {
		t.Fatalf("%d\n%s", failed, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "f" && f[1] == "forged" && (f[5] != "NO" || f[6] != "yes" || f[7] != "FAIL") {
			t.Fatalf("the forged row: %q", line)
		}
		if len(f) > 0 && f[0] == "f" && f[1] == "na" && (f[2] != "-" || f[5] != "n/a" || f[6] != "n/a") {
			t.Fatalf("the n/a row: %q", line)
		}
	}
}

// The laboratory runs on the store the flags name; its runs are marked as
// lab runs there and verify after the fact, as export and verify see them.
func TestLabOnSQLiteKeepsLabRuns(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "lab", "refund", "--fault", "skip_step", "--store", "sqlite", "--data-dir", dir, "--json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var sum labSummary
	if err := json.Unmarshal([]byte(lastLine(out)), &sum); err != nil {
		t.Fatal(err)
	}
	st, err := tracestore.OpenSQLite(tracestore.SQLitePath(dir), tracestore.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	code, key, errOut := runCLI(t, "keys", "--data-dir", dir)
	if code != exitOK {
		t.Fatalf("keys: exit %d %s", code, errOut)
	}
	keyFile := filepath.Join(dir, "key.pub")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	runs := 0
	for _, r := range sum.Results {
		if r.RunID == "" {
			continue
		}
		runs++
		info, err := st.Run(context.Background(), r.RunID)
		if err != nil || !info.Lab {
			t.Fatalf("%s: %+v %v", r.RunID, info, err)
		}
		exported := t.TempDir()
		if code, out, errOut := runCLI(t, "export", r.RunID, "--out", exported, "--data-dir", dir); code != exitOK {
			t.Fatalf("export: exit %d\n%s\n%s", code, out, errOut)
		}
		if code, out, errOut := runCLI(t, "verify", "--receipt", filepath.Join(exported, "receipt.json"), "--trace", filepath.Join(exported, "trace.jsonl"),
			"--public-key", keyFile, "--program", "refund"); code != exitOK {
			t.Fatalf("verify %s: exit %d\n%s\n%s", r.RunID, code, out, errOut)
		}
	}
	if runs != 2 {
		t.Fatalf("%d lab runs, want 2 (later_state, early_approval)", runs)
	}
}

// A program file with no input and answers beside it is driven by
// synthesised ones; one whose input cannot be synthesised is refused with
// the place named.
func TestLabSynthesisesForAProgramWithoutAnswers(t *testing.T) {
	code, out, errOut := runCLI(t, "lab", "../../internal/lab/testdata/expense-claim.yaml", "--json")
	if code != exitOK || !strings.Contains(errOut, "synthesised scripts") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var sum labSummary
	if err := json.Unmarshal([]byte(lastLine(out)), &sum); err != nil {
		t.Fatal(err)
	}
	for _, r := range sum.Results {
		if r.Fault != lab.GDPRErase && !r.Applicable {
			t.Errorf("%s/%s is n/a on synthesised runs: %s", r.Fault, r.SubAttack, r.Detail)
		}
	}

	dir := t.TempDir()
	src := `name: impossible
version: "1"
input_schema:
  type: object
  required: [code]
  properties:
    code: {type: string, pattern: "^[a-z]{5}$", maxLength: 3}
initial: ask
states:
  ask:
    kind: llm
    output_schema: {type: object, properties: {ok: {type: boolean}}, required: [ok]}
    transitions: [{to: done}]
  done: {kind: terminal, outcome: DONE}
`
	path := filepath.Join(dir, "impossible.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, "lab", path); code != exitUsage || !strings.Contains(errOut, "/code: no string of length 0..3 matching pattern") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "lab", "refund", "--answers", "../../examples/refund.refunded.answers.jsonl"); code != exitUsage || !strings.Contains(errOut, "--answers needs --input") {
		t.Fatalf("--answers alone: exit %d %s", code, errOut)
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

// lab --tools runs the program's tools through the operator's registry,
// but the tool_failure and forged_tool_result attacks through the
// laboratory's own failing tools: every row passes with its class, and
// the operator's endpoint is never called by them.
func TestLabToolFailureUsesTheLaboratorysOwnTools(t *testing.T) {
	var calls atomic.Int64
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "the operator's endpoint", http.StatusInternalServerError)
	}))
	defer endpoint.Close()
	reg := filepath.Join(t.TempDir(), "tools.yaml")
	if err := os.WriteFile(reg, []byte("tools:\n  sanctions_screen:\n    http: {url: "+endpoint.URL+", method: POST}\n    timeout: 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "lab", "kyc-onboarding", "--tools", reg, "--fault", "tool_failure", "--json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var sum labSummary
	if err := json.Unmarshal([]byte(lastLine(out)), &sum); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"timeout": "timeout+tool_failed", "crash": "transport+tool_failed", "drift": "drifted+tool_failed"}
	if len(sum.Results) != len(want) {
		t.Fatalf("results: %+v", sum.Results)
	}
	for _, r := range sum.Results {
		if !r.Pass || r.Observed != want[r.SubAttack] || !r.Verified() {
			t.Errorf("%s/%s: observed %s (pass %v), want %s: %s", r.Fault, r.SubAttack, r.Observed, r.Pass, want[r.SubAttack], r.Detail)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the operator's endpoint was called %d times by the tool_failure attacks", n)
	}
}
