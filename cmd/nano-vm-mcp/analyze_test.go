package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// analyzeFixture runs refund three times (two refunds, one denial) and
// kyc-onboarding once (personal data sealed, a rollback) into a fresh
// data directory, through the run command.
func analyzeFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, r := range []struct{ prog, input, answers string }{
		{"refund", "refund.input.json", "refund.refunded.answers.jsonl"},
		{"refund", "refund.late.input.json", "refund.late.denied.answers.jsonl"},
		{"refund", "refund.input.json", "refund.refunded.answers.jsonl"},
		{"kyc-onboarding", "kyc-onboarding.input.json", "kyc-onboarding.approved.answers.jsonl"},
	} {
		if code, out, errOut := runCLI(t, "run", r.prog, "--data-dir", dir, "--input", "../../examples/"+r.input, "--answers", "../../examples/"+r.answers); code != exitOK {
			t.Fatalf("run %s: exit %d\n%s%s", r.prog, code, out, errOut)
		}
	}
	return dir
}

// analyzeJSON runs analyze --json and decodes its last line.
func analyzeJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, errOut := runCLI(t, append([]string{"analyze", "--json"}, args...)...)
	if code != exitOK {
		t.Fatalf("analyze %v: exit %d\n%s%s", args, code, out, errOut)
	}
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("--json printed more than one line:\n%s", out)
	}
	m := map[string]any{}
	if err := json.Unmarshal([]byte(lastLine(out)), &m); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"program", "runs", "transition_entropy_bits", "path_entropy_bits", "rollback_density", "alerts", "drift", "states", "window"} {
		if _, ok := m[k]; !ok {
			t.Errorf("the JSON line lacks %s: %s", k, out)
		}
	}
	return m
}

func TestAnalyzeStoredRuns(t *testing.T) {
	dir := analyzeFixture(t)
	m := analyzeJSON(t, "refund", "--data-dir", dir)
	// assess_refund → check 3 times; check → refunded 2, → denied 1.
	h := -(2.0/3)*math.Log2(2.0/3) - (1.0/3)*math.Log2(1.0/3)
	if m["program"] != "refund" || m["runs"] != 3.0 || math.Abs(m["transition_entropy_bits"].(float64)-h/2) > 1e-12 ||
		m["drift"] != nil || len(m["alerts"].([]any)) != 0 || m["window"] != 100.0 || m["baseline_saved"] != false {
		t.Fatalf("refund report %v", m)
	}
	if !strings.HasPrefix(m["definition_hash"].(string), "sha256:") {
		t.Fatalf("definition_hash %v", m["definition_hash"])
	}
	if m := analyzeJSON(t, "refund", "--data-dir", dir, "--window", "1"); m["runs"] != 1.0 || m["transition_entropy_bits"] != 0.0 {
		t.Fatalf("window of 1: %v", m)
	}

	// The kyc run's personal data is sealed; the analyzer reads structure
	// only. Its approved path rolls back once from human_approval.
	k := analyzeJSON(t, "kyc-onboarding", "--data-dir", dir)
	rd := k["rollback_density"].(map[string]any)
	if k["runs"] != 1.0 || rd["num"] != 1.0 || rd["den"].(float64) < 2 {
		t.Fatalf("kyc report %v", k)
	}

	code, out, _ := runCLI(t, "analyze", "refund", "--data-dir", dir)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"program refund, definition sha256:", "3 runs (window 100)", "transition entropy  0.4591 bits",
		"check: 0.9183 bits (normalised 0.92), 3 transitions to 2 successors: denied 1, refunded 2", "drift               none", "alerts: none"} {
		if !strings.Contains(out, want) {
			t.Errorf("human output lacks %q:\n%s", want, out)
		}
	}
}

func TestAnalyzeSaveBaselineThenDrift(t *testing.T) {
	dir := analyzeFixture(t)
	first := analyzeJSON(t, "refund", "--data-dir", dir, "--save-baseline")
	if first["drift"] != nil || first["baseline_saved"] != true {
		t.Fatalf("the saving call: %v", first)
	}
	m := analyzeJSON(t, "refund", "--data-dir", dir)
	d, ok := m["drift"].(map[string]any)
	if !ok || d["jsd_bits"] != 0.0 || d["baseline_runs"] != 3.0 || d["baseline_definition_hash"] != m["definition_hash"] {
		t.Fatalf("drift after saving a baseline: %v", m["drift"])
	}
	// A narrower window drifts from it: the newest run alone is a refund.
	m = analyzeJSON(t, "refund", "--data-dir", dir, "--window", "1")
	if d, ok := m["drift"].(map[string]any); !ok || !(d["jsd_bits"].(float64) > 0) {
		t.Fatalf("drift of one run: %v", m["drift"])
	}
	code, out, _ := runCLI(t, "analyze", "refund", "--data-dir", dir)
	if code != exitOK || !strings.Contains(out, "drift               0.0000 bits (Jensen-Shannon) from a baseline of 3 runs") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestAnalyzeExitCodes(t *testing.T) {
	dir := analyzeFixture(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"alerts do not fail by default", []string{"refund", "--threshold", "0.5"}, exitOK},
		{"an alert with --fail-on-alert", []string{"refund", "--threshold", "0.5", "--fail-on-alert"}, exitAlert},
		{"no alert with --fail-on-alert", []string{"refund", "--fail-on-alert"}, exitOK},
		{"unknown program", []string{"nope"}, exitUsage},
		{"unknown definition", []string{"refund", "--definition", "sha256:nope"}, exitUsage},
		{"window 0", []string{"refund", "--window", "0"}, exitUsage},
		{"threshold 0", []string{"refund", "--threshold", "0"}, exitUsage},
		{"threshold NaN", []string{"refund", "--threshold", "NaN"}, exitUsage},
		{"no program", []string{}, exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"analyze", "--data-dir", dir}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, errOut)
			}
		})
	}
	code, out, _ := runCLI(t, "analyze", "refund", "--data-dir", dir, "--threshold", "0.5")
	if code != exitOK || !strings.Contains(out, "ALERT transition_entropy 0.9183 bits > 0.5 at state check") {
		t.Fatalf("alert output:\n%s", out)
	}
}

func TestAnalyzeHelpNamesEnvironment(t *testing.T) {
	code, out, _ := runCLI(t, "analyze", "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"NANO_VM_WINDOW", "NANO_VM_DEFINITION", "NANO_VM_THRESHOLD", "NANO_VM_SAVE_BASELINE", "NANO_VM_FAIL_ON_ALERT", "NANO_VM_JSON", "NANO_VM_STORE", "NANO_VM_DATA_DIR"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("help names %s %d times, want once", want, strings.Count(out, want))
		}
	}
}

// The window flag falls back to NANO_VM_WINDOW like every flag.
func TestAnalyzeWindowFromEnvironment(t *testing.T) {
	dir := analyzeFixture(t)
	t.Setenv("NANO_VM_WINDOW", "2")
	if m := analyzeJSON(t, "refund", "--data-dir", dir); m["runs"] != 2.0 || m["window"] != 2.0 {
		t.Fatalf("NANO_VM_WINDOW=2: %v runs, window %v", m["runs"], m["window"])
	}
}

// The laboratory's runs in the same store are left out of analyze unless
// --include-lab counts them.
func TestAnalyzeLeavesOutLabRuns(t *testing.T) {
	dir := analyzeFixture(t)
	if code, out, errOut := runCLI(t, "lab", "refund", "--fault", "skip_step", "--store", "sqlite", "--data-dir", dir, "--json"); code != exitOK {
		t.Fatalf("lab: exit %d\n%s%s", code, out, errOut)
	}
	if m := analyzeJSON(t, "refund", "--data-dir", dir); m["runs"] != 3.0 {
		t.Fatalf("without --include-lab: %v runs, want the 3 real ones", m["runs"])
	}
	if m := analyzeJSON(t, "refund", "--data-dir", dir, "--include-lab"); !(m["runs"].(float64) > 3) {
		t.Fatalf("with --include-lab: %v runs, want the lab's too", m["runs"])
	}
}
