package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestRunEveryExampleAnswersFile drives every shipped answers file through
// the command and checks the outcome its name promises
// (<program>[.<variant>].<outcome>.answers.jsonl).
func TestRunEveryExampleAnswersFile(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.answers.jsonl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no answers files: %v", err)
	}
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".answers.jsonl")
		parts := strings.Split(base, ".")
		prog, outcome := parts[0], strings.ToUpper(parts[len(parts)-1])
		input := "../../examples/" + strings.Join(parts[:len(parts)-1], ".") + ".input.json"
		t.Run(base, func(t *testing.T) {
			code, out, errOut := runCLI(t, "run", prog, "--input", input, "--answers", f, "--json")
			var s summary
			if err := json.Unmarshal([]byte(lastLine(out)), &s); err != nil {
				t.Fatalf("last line is not the JSON summary: %v\n%s\n%s", err, out, errOut)
			}
			if s.Outcome != outcome {
				t.Fatalf("outcome %s (%s), want %s\n%s", s.Outcome, s.Reason, outcome, out)
			}
			wantCode := exitOK
			if outcome == "FAILED" {
				wantCode = exitRunFailed
			}
			if code != wantCode {
				t.Fatalf("exit %d, want %d", code, wantCode)
			}
			if s.RunID == "" || len(s.Path) == 0 || s.FinalState != s.Path[len(s.Path)-1] || !strings.HasPrefix(s.DefinitionHash, "sha256:") {
				t.Fatalf("incomplete summary %+v", s)
			}
		})
	}
}

func TestRunPrintsTasksTransitionsAndRejections(t *testing.T) {
	code, out, _ := runCLI(t, "run", "kyc-onboarding", "--input", "../../examples/kyc-onboarding.input.json", "--answers", "../../examples/kyc-onboarding.approved.answers.jsonl")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"task 1: collect_customer_data (llm), attempts left 3",
		"rejected: schema_violation",
		"task 1: collect_customer_data (llm), attempts left 2",
		"human_approval -> collect_customer_data [guard] (rollback)",
		"finished: completed APPROVED",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestFlagsMayFollowOrPrecedePositionals(t *testing.T) {
	in, ans := "../../examples/refund.input.json", "../../examples/refund.refunded.answers.jsonl"
	for _, args := range [][]string{
		{"run", "refund", "--input", in, "--answers", ans, "--json"},
		{"run", "--json", "--input", in, "--answers", ans, "refund"},
		{"--log-level", "error", "run", "--input=" + in, "refund", "--answers=" + ans, "--json"},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != exitOK || !strings.Contains(lastLine(out), `"outcome":"REFUNDED"`) {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
	}
}

func TestEnvironmentFallsBackForFlags(t *testing.T) {
	t.Setenv("NANO_VM_INPUT", "../../examples/refund.input.json")
	t.Setenv("NANO_VM_ANSWERS", "../../examples/refund.refunded.answers.jsonl")
	t.Setenv("NANO_VM_JSON", "true")
	code, out, errOut := runCLI(t, "run", "refund")
	if code != exitOK || !strings.Contains(lastLine(out), `"outcome":"REFUNDED"`) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	t.Setenv("NANO_VM_LOG_LEVEL", "loud")
	if code, _, _ := runCLI(t, "run", "refund"); code != exitUsage {
		t.Fatalf("a bad environment value gave exit %d, want %d", code, exitUsage)
	}
}

func TestRunExitCodes(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.jsonl")
	os.WriteFile(short, nil, 0o600)
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{not json}\n"), 0o600)
	in := "../../examples/refund.input.json"
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"answers run out", []string{"run", "refund", "--input", in, "--answers", short}, exitIncomplete},
		{"answers not JSON", []string{"run", "refund", "--input", in, "--answers", bad}, exitUsage},
		{"no such program", []string{"run", "nope", "--input", in, "--answers", short}, exitUsage},
		{"missing flag", []string{"run", "refund", "--input", in}, exitUsage},
		{"unknown store", []string{"run", "refund", "--input", in, "--answers", short, "--store", "etcd"}, exitUsage},
		{"input fails input_schema", []string{"run", "refund", "--input", "../../examples/kyc-onboarding.input.json", "--answers", short}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, out, errOut := runCLI(t, tt.args...); code != tt.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tt.code, out, errOut)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: t\nversion: 1\ninitial: a\nstates:\n  a:\n    kind: llm\n    output_schema: {type: object}\n    transitions:\n      - to: b\n        when: outptu.x\n"), 0o600)
	code, out, _ := runCLI(t, "validate", "../../examples/refund.yaml", bad)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	for _, want := range []string{"refund.yaml: ok", "bad.yaml:9:13: state a: transitions[0].to: target state \"b\" is not defined", "transitions[0].when (expression 1:1): undeclared reference to 'outptu'"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := runCLI(t, "validate", "../../examples/kyc-onboarding.yaml", "../../examples/code-change.yaml"); code != exitOK {
		t.Fatalf("valid examples: exit %d", code)
	}
}

func TestGraph(t *testing.T) {
	for format, want := range map[string]string{"mermaid": "flowchart TD", "dot": "digraph \"kyc-onboarding\""} {
		code, out, _ := runCLI(t, "graph", "kyc-onboarding", "--format", format)
		if code != exitOK || !strings.HasPrefix(out, want) || !strings.Contains(out, "human_approval") {
			t.Fatalf("%s: exit %d\n%s", format, code, out)
		}
	}
	if code, _, _ := runCLI(t, "graph", "refund", "--format", "svg"); code != exitUsage {
		t.Fatal("an unknown format was accepted")
	}
}

// TestDocumentedProgramsLoad keeps the YAML programs shown in the README
// and the format documentation valid.
func TestDocumentedProgramsLoad(t *testing.T) {
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	for _, doc := range []string{"../../README.md", "../../docs/program-format.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range block.FindAllSubmatch(data, -1) {
			src := m[1]
			if !bytes.Contains(src, []byte("\nstates:")) {
				continue // a fragment, not a whole program
			}
			n++
			if _, err := program.Load(doc, src); err != nil {
				t.Errorf("%s: program %d: %v", doc, n, err)
			}
		}
		if n == 0 {
			t.Errorf("%s shows no whole program", doc)
		}
	}
}
