package examples

import (
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

// TestProgramsLoad loads every embedded program and reports each problem
// the loader finds.
func TestProgramsLoad(t *testing.T) {
	names := Programs()
	if len(names) == 0 {
		t.Fatal("no embedded programs")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			p := load(t, name)
			if p.Name != name {
				t.Errorf("program name %q does not match its file %s.yaml", p.Name, name)
			}
		})
	}
}

func TestProgramUnknown(t *testing.T) {
	for _, name := range []string{"", "nope", "../examples/refund", "refund.yaml", "code-change.tools"} {
		if _, err := Program(name); err == nil {
			t.Errorf("Program(%q) succeeded", name)
		}
		if p, src, err := Load(name); err == nil || p != nil || src != nil {
			t.Errorf("Load(%q) = %v, %d bytes, %v; want an error", name, p, len(src), err)
		}
	}
}

func TestMustLoadPanicsOnAnUnknownName(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustLoad(\"nope\") did not panic")
		}
	}()
	MustLoad("nope")
}

// TestInputsValid checks every input file against its program's input
// schema.
func TestInputsValid(t *testing.T) {
	for _, f := range files(t, ".input.json") {
		t.Run(f, func(t *testing.T) {
			prog, _, _ := splitName(t, f, ".input.json", false)
			p := load(t, prog)
			in := decodeFile(t, f)
			if vs := p.Input.Validate(in); len(vs) > 0 {
				t.Errorf("%s does not match the input_schema of %s: %v", f, prog, vs)
			}
		})
	}
}

// TestAnswersPaired checks that every answers file names a program and an
// input that exist, and that each line is a JSON object.
func TestAnswersPaired(t *testing.T) {
	answers := files(t, ".answers.jsonl")
	if len(answers) == 0 {
		t.Fatal("no answers files")
	}
	for _, f := range answers {
		prog, variant, _ := splitName(t, f, ".answers.jsonl", true)
		if _, err := Program(prog); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if _, err := fs.Stat(FS, inputFile(prog, variant)); err != nil {
			t.Errorf("%s: no input %s", f, inputFile(prog, variant))
		}
		for i, line := range answerLines(t, f) {
			if _, ok := line.(map[string]any); !ok {
				t.Errorf("%s:%d: not a JSON object", f, i+1)
			}
		}
	}
}

func load(t *testing.T, name string) *program.Program {
	t.Helper()
	p, _, err := Load(name)
	if err != nil {
		var perr *program.Error
		if errors.As(err, &perr) {
			for _, pr := range perr.Problems {
				t.Error(pr.String())
			}
			t.FailNow()
		}
		t.Fatal(err)
	}
	return p
}

func files(t *testing.T, suffix string) []string {
	t.Helper()
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), suffix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// splitName splits <program>[.<variant>][.<outcome>]<suffix>.
func splitName(t *testing.T, f, suffix string, withOutcome bool) (prog, variant, outcome string) {
	t.Helper()
	parts := strings.Split(strings.TrimSuffix(f, suffix), ".")
	if withOutcome {
		if len(parts) < 2 {
			t.Fatalf("%s: want <program>[.<variant>].<outcome>%s", f, suffix)
		}
		outcome = parts[len(parts)-1]
		parts = parts[:len(parts)-1]
	}
	switch len(parts) {
	case 1:
		return parts[0], "", outcome
	case 2:
		return parts[0], parts[1], outcome
	}
	t.Fatalf("%s: want <program>[.<variant>]%s", f, suffix)
	return
}

func inputFile(prog, variant string) string {
	if variant == "" {
		return prog + ".input.json"
	}
	return prog + "." + variant + ".input.json"
}

func decodeFile(t *testing.T, f string) any {
	t.Helper()
	data, err := FS.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonvalue.Decode(data)
	if err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	return v
}

func answerLines(t *testing.T, f string) []any {
	t.Helper()
	data, err := FS.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		v, err := jsonvalue.Decode([]byte(line))
		if err != nil {
			t.Fatalf("%s:%d: %v", f, i+1, err)
		}
		out = append(out, v)
	}
	return out
}

// TestAnswersReachOutcome drives a run of each answers file through the
// deterministic core, one line per task (a rejected line uses up an
// attempt and the same task takes the next line), and checks that the run
// ends with the outcome the file is named after, using every line.
func TestAnswersReachOutcome(t *testing.T) {
	for _, f := range files(t, ".answers.jsonl") {
		t.Run(f, func(t *testing.T) {
			prog, variant, outcome := splitName(t, f, ".answers.jsonl", true)
			p := load(t, prog)
			lines := answerLines(t, f)
			run, used := drive(t, p, decodeFile(t, inputFile(prog, variant)), lines, len(lines))
			if !run.Finished() {
				t.Fatalf("run still at %s (task %d) after all %d answers; path %v", run.State, run.Seq, used, run.Path)
			}
			if want := strings.ToUpper(outcome); run.Outcome != want {
				t.Fatalf("outcome %s (%s), want %s; path %v", run.Outcome, run.Reason, want, run.Path)
			}
			if used != len(lines) {
				t.Errorf("the run ended after %d of %d answers", used, len(lines))
			}
		})
	}
}

// TestApprovalTimeouts checks the timeout edges that answers files cannot
// express: an approval left open for its timeout moves to on_timeout
// (code-change's discards its stage on the way, one more answer).
func TestApprovalTimeouts(t *testing.T) {
	cases := []struct {
		prog, input, answers string
		lines                int // answers that bring the run to the approval
		state, outcome       string
		then                 string // the answer of the tool state on_timeout leads to, if any
	}{
		{"kyc-onboarding", "kyc-onboarding.input.json", "kyc-onboarding.approved.answers.jsonl", 5, "human_approval", "ESCALATED", ""},
		{"code-change", "code-change.ci.input.json", "code-change.ci.committed.answers.jsonl", 4, "security_review", "ABANDONED", `{"stage": "/stages/stage-1", "removed": true}`},
	}
	for _, c := range cases {
		t.Run(c.prog, func(t *testing.T) {
			p := load(t, c.prog)
			run, _ := drive(t, p, decodeFile(t, c.input), answerLines(t, c.answers), c.lines)
			if run.State != c.state || run.Finished() {
				t.Fatalf("run at %s (%s), want open at %s", run.State, run.Status, c.state)
			}
			deadline := p.States[c.state].Timeout
			res, err := runtime.Apply(p, run, runtime.Tick{At: clock(1000).Add(deadline)})
			if err != nil {
				t.Fatal(err)
			}
			if c.then != "" {
				if task := res.Run.Task; task == nil || task.Tool == nil {
					t.Fatalf("after %s at %s: at %s, want a tool task", deadline, c.state, res.Run.State)
				}
				var out any
				if err := json.Unmarshal([]byte(c.then), &out); err != nil {
					t.Fatal(err)
				}
				task := res.Run.Task
				if res, err = runtime.Apply(p, res.Run, runtime.Submit{Seq: task.Seq, State: task.State, Tool: task.Tool.Name, Actor: runtime.ActorTool, Principal: "test", Output: out, At: clock(1001).Add(deadline)}); err != nil {
					t.Fatal(err)
				}
			}
			if got := res.Run.Outcome; got != c.outcome {
				t.Fatalf("after %s at %s: outcome %q (%s), want %s", deadline, c.state, got, res.Run.Reason, c.outcome)
			}
		})
	}
}

// clock is a fixed time i seconds after a fixed start.
func clock(i int) time.Time {
	return time.Date(2025, 7, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
}

// drive starts a run and answers its tasks with up to limit lines. It
// returns the run and the number of lines used.
func drive(t *testing.T, p *program.Program, input any, lines []any, limit int) (*runtime.Run, int) {
	t.Helper()
	res, err := runtime.Apply(p, nil, runtime.Start{RunID: "run-example", Principal: "test", Input: input, At: clock(0)})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	run, used := res.Run, 0
	for !run.Finished() && run.Task != nil && used < limit {
		task, line := run.Task, lines[used]
		used++
		var in runtime.Input
		switch task.Kind {
		case string(program.KindApproval):
			// One scripted driver answers every task, as the CLI run does: exempt
			// from separation of duties (AllowSelf).
			in = runtime.Decide{Seq: task.Seq, State: task.State, Role: task.Role, Principal: "test", Decision: line, AllowSelf: true, At: clock(used)}
		case string(program.KindTool):
			in = runtime.Submit{Seq: task.Seq, State: task.State, Tool: task.Tool.Name, Actor: runtime.ActorTool, Principal: "test", Output: line, At: clock(used)}
		default:
			in = runtime.Submit{Seq: task.Seq, State: task.State, Principal: "test", Output: line, At: clock(used)}
		}
		res, err := runtime.Apply(p, run, in)
		var rej *runtime.Rejection
		switch {
		case errors.As(err, &rej):
			t.Logf("answer %d at %s rejected: %v", used, task.State, rej)
		case err != nil:
			t.Fatalf("answer %d at %s: %v", used, task.State, err)
		}
		if res.Run != nil {
			run = res.Run
		}
	}
	return run, used
}

// TestDefinitionHashesUnchanged pins the examples' definition hashes: runs
// and receipts name their program by it, so a change to how programs are
// normalised must not move the hash of a program that loaded before (as
// telling an explicit limit of 0 apart from an absent one did not).
// A change to an example itself updates its line here.
func TestDefinitionHashesUnchanged(t *testing.T) {
	want := map[string]string{
		"code-change":    "sha256:8d6b85d6ba21bbe2e4bb5c5bc4a71ac312c09b6a1d95f6953a283b7eadab2a5c",
		"kyc-onboarding": "sha256:9e14a2f7ab910f19726e6a33df6595f092b1b9c808ca16f7ed73c2f974acd71d",
		"refund":         "sha256:a0182e1efb7ba3f78c4dc380826c0175d3df3e8e2e00d078392fa5ec4ffdfdd5",
	}
	for _, name := range Programs() {
		if got := load(t, name).Hash; got != want[name] {
			t.Errorf("%s: definition hash %s, want %s", name, got, want[name])
		}
	}
	if len(Programs()) != len(want) {
		t.Errorf("programs %v, pinned %d: pin the new one's hash here", Programs(), len(want))
	}
}
