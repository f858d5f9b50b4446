package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// TestValidateReportsEveryFile checks that a file validate cannot read is
// one more problem, not the end: every other file is still checked, all
// problems come out sorted by file and position, and the exit is 2.
func TestValidateReportsEveryFile(t *testing.T) {
	dir := t.TempDir()
	// Broken several ways: an undefined target, an undeclared reference.
	broken := []byte("name: t\nversion: 1\ninitial: a\nstates:\n  a:\n    kind: llm\n    output_schema: {type: object}\n    transitions:\n      - to: b\n        when: outptu.x\n")
	// problems is what the loader says about a broken file, in its order.
	problems := func(path string) []string {
		_, err := program.Load(path, broken)
		var pe *program.Error
		if !errors.As(err, &pe) || len(pe.Problems) < 2 {
			t.Fatalf("%s: want several problems, got %v", path, err)
		}
		var out []string
		for _, p := range pe.Problems {
			out = append(out, p.String())
		}
		return out
	}
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	for _, path := range []string{a, b} {
		if err := os.WriteFile(path, broken, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.yaml")
	sub := filepath.Join(dir, "sub.yaml")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	cannotRead := missing + ": cannot read: no such file or directory"
	tests := []struct {
		name string
		args []string
		code int
		want []string // stdout, line by line
	}{
		{"broken then missing", []string{b, missing}, exitUsage, append(problems(b), cannotRead)},
		{"missing then broken", []string{missing, b}, exitUsage, append(problems(b), cannotRead)},
		{"sorted by file, not argument order", []string{b, a}, exitUsage, append(problems(a), problems(b)...)},
		{"a directory", []string{sub, "refund"}, exitUsage, []string{"refund: ok", sub + ": cannot read: is a directory"}},
		{"only missing", []string{missing}, exitUsage, []string{cannotRead}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"validate"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tt.code, out, errOut)
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			for i := range lines {
				if i < len(tt.want) && strings.HasSuffix(tt.want[i], ": ok") {
					lines[i], _, _ = strings.Cut(lines[i], " (") // drop the version and hash
				}
			}
			if !slices.Equal(lines, tt.want) {
				t.Fatalf("output:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tt.want, "\n"))
			}
			if _, again, _ := runCLI(t, append([]string{"validate"}, tt.args...)...); again != out {
				t.Errorf("a second run printed otherwise:\n%s", again)
			}
		})
	}
}

// TestReadErrorExitCodes checks docs/configuration.md's split: a name that
// is neither a file nor an example is a bad argument (2); a file that is
// there but cannot be read is an I/O error (1).
func TestReadErrorExitCodes(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	in, ans := "../../examples/refund.input.json", "../../examples/refund.refunded.answers.jsonl"
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"graph: a directory", []string{"graph", dir}, exitError},
		{"graph: no such file or example", []string{"graph", missing}, exitUsage},
		{"run: program is a directory", []string{"run", dir, "--input", in, "--answers", ans}, exitError},
		{"run: no such program", []string{"run", missing, "--input", in, "--answers", ans}, exitUsage},
		{"run: input is a directory", []string{"run", "refund", "--input", dir, "--answers", ans}, exitError},
		{"run: no such input", []string{"run", "refund", "--input", missing, "--answers", ans}, exitUsage},
		{"run: answers is a directory", []string{"run", "refund", "--input", in, "--answers", dir}, exitError},
		{"run: no such answers", []string{"run", "refund", "--input", in, "--answers", missing}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, out, errOut := runCLI(t, tt.args...); code != tt.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tt.code, out, errOut)
			}
		})
	}
}

// TestHelpNamesEnvironment keeps the promise of docs/configuration.md that
// <command> --help lists each flag's environment variable.
func TestHelpNamesEnvironment(t *testing.T) {
	tests := []struct {
		command string
		want    []string
	}{
		{"run", []string{"NANO_VM_INPUT", "NANO_VM_ANSWERS", "NANO_VM_JSON", "NANO_VM_STORE", "NANO_VM_LOG_LEVEL"}},
		{"graph", []string{"NANO_VM_FORMAT", "NANO_VM_LOG_LEVEL"}},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			code, out, _ := runCLI(t, tt.command, "--help")
			if code != exitOK {
				t.Fatalf("exit %d", code)
			}
			for _, want := range tt.want {
				if n := strings.Count(out, want); n != 1 {
					t.Errorf("help names %s %d times, want once:\n%s", want, n, out)
				}
			}
			if strings.Contains(out, "NANO_VM_HELP") {
				t.Errorf("help offers NANO_VM_HELP:\n%s", out)
			}
		})
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

// TestJSONStdoutHoldsOnlyTheJSON: under --json, stdout is the one JSON
// line and the human report goes to stderr; without it, the report is on
// stdout.
func TestJSONStdoutHoldsOnlyTheJSON(t *testing.T) {
	in, ans := "../../examples/refund.input.json", "../../examples/refund.refunded.answers.jsonl"
	tests := []struct {
		name  string
		args  []string
		human string // a line of the human report
	}{
		{"run", []string{"run", "refund", "--input", in, "--answers", ans, "--store", "memory"}, "finished: completed REFUNDED"},
		{"lab", []string{"lab", "--program", "refund", "--fault", "skip_step"}, "SUB-ATTACK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append(tt.args, "--json")...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			if strings.Count(out, "\n") != 1 || !json.Valid([]byte(out)) {
				t.Fatalf("stdout is not one JSON line:\n%s", out)
			}
			if !strings.Contains(errOut, tt.human) {
				t.Fatalf("stderr lacks %q:\n%s", tt.human, errOut)
			}
			code, out, errOut = runCLI(t, tt.args...)
			if code != exitOK || !strings.Contains(out, tt.human) || errOut != "" {
				t.Fatalf("without --json: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
		})
	}
}

// TestRejectionDetailsArePrinted: a typed error from the runtime comes out
// with its details, the schema violations of invalid_input as start_run
// gives them, one a line.
func TestRejectionDetailsArePrinted(t *testing.T) {
	dir := t.TempDir()
	ans := "../../examples/refund.refunded.answers.jsonl"
	tests := []struct {
		name, input string
		want        []string
	}{
		{"empty input", `{}`, []string{"invalid_input: the run input does not match the program's input_schema", "\n  /: missing properties 'order', 'request'\n"}},
		{"two violations", `{"order":{"id":"o-1","total_cents":-1,"currency":"EUR","days_since_delivery":3},"request":{"amount_cents":0,"reason":"late"}}`,
			[]string{"invalid_input", "\n  /order/total_cents: ", "\n  /request/amount_cents: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := filepath.Join(dir, "input.json")
			if err := os.WriteFile(in, []byte(tt.input), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runCLI(t, "run", "refund", "--input", in, "--answers", ans, "--store", "memory")
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, exitUsage, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// TestUsageErrorsPrintTheUsageLine: a command line a command cannot take
// (arguments missing or extra, a flag unknown or missing) is answered with
// the error, the command's usage line and where to find more, exit 2;
// other errors print no usage.
func TestUsageErrorsPrintTheUsageLine(t *testing.T) {
	in := "../../examples/refund.input.json"
	tests := []struct {
		args  []string
		usage string // "" for none
	}{
		{[]string{"run"}, "nano-vm-mcp run PROGRAM --input FILE --answers FILE [--json]"},
		{[]string{"run", "refund"}, "nano-vm-mcp run PROGRAM"},
		{[]string{"run", "refund", "extra", "--input", in, "--answers", in}, "nano-vm-mcp run PROGRAM"},
		{[]string{"run", "refund", "--bogus"}, "nano-vm-mcp run PROGRAM"},
		{[]string{"validate"}, "nano-vm-mcp validate FILE..."},
		{[]string{"graph"}, "nano-vm-mcp graph PROGRAM"},
		{[]string{"export"}, "nano-vm-mcp export RUN_ID --out DIR"},
		{[]string{"verify"}, "nano-vm-mcp verify --receipt FILE --trace FILE --public-key FILE"},
		{[]string{"replay"}, "nano-vm-mcp replay RUN_ID"},
		{[]string{"analyze"}, "nano-vm-mcp analyze PROGRAM"},
		{[]string{"erase"}, "nano-vm-mcp erase SUBJECT_ID --reason TEXT"},
		{[]string{"inspect"}, "nano-vm-mcp inspect RUN_ID"},
		{[]string{"lab", "refund", "code-change"}, "nano-vm-mcp lab"},
		{[]string{"serve", "extra"}, "nano-vm-mcp serve"},
		{[]string{"version", "extra"}, "nano-vm-mcp version"},
		{[]string{"keys", "extra"}, "nano-vm-mcp keys"},
		{[]string{"bogus"}, "nano-vm-mcp COMMAND"},
		{[]string{"--bogus"}, "nano-vm-mcp COMMAND"},
		// Not the command line: the program, or what is in a file.
		{[]string{"run", "nope", "--input", in, "--answers", in}, ""},
		{[]string{"graph", "refund", "--format", "svg"}, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, exitUsage, out, errOut)
			}
			if tt.usage == "" {
				if strings.Contains(errOut, "Usage:") {
					t.Fatalf("a usage line for an error that is not one:\n%s", errOut)
				}
				return
			}
			lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "nano-vm-mcp: ") || !strings.HasPrefix(lines[1], "Usage: "+tt.usage) ||
				!strings.HasPrefix(lines[2], "Run 'nano-vm-mcp") || !strings.Contains(lines[2], " --help'") {
				t.Fatalf("stderr:\n%s\nwant the error, then Usage: %s…, then where --help is", errOut, tt.usage)
			}
		})
	}
}
