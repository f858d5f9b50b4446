package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

var updateInspect = flag.Bool("update", false, "rewrite testdata/inspect.golden")

// answerTask gives the open task of a its answer as the task's kind asks
// for it: a decision for an approval, a tool's result, or a model output.
func answerTask(ctx context.Context, svc *service.Service, a service.Answer, value any) (service.Answer, error) {
	task := a.Task
	switch task.Kind {
	case string(program.KindApproval):
		return svc.Decide(ctx, a.RunID, runtime.Decide{Seq: task.Seq, State: task.State, Role: task.Role, Principal: "alice", Decision: value})
	case string(program.KindTool):
		return svc.Submit(ctx, a.RunID, runtime.Submit{Seq: task.Seq, State: task.State, Tool: task.Tool.Name, Actor: runtime.ActorTool, Principal: "agent", Output: value})
	}
	return svc.Submit(ctx, a.RunID, runtime.Submit{Seq: task.Seq, State: task.State, Principal: "agent", Output: value})
}

// inspectStore writes, on a fixed clock with fixed ids and keys, the runs
// whose inspection the golden file pins: run-1 approved, run-2 waiting for
// its approval, run-3 rejected and its subject erased, run-4 a program
// that never issues a task.
func inspectStore(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	keys, err := keyring.Open(dir, rand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	st, err := tracestore.OpenSQLite(tracestore.SQLitePath(dir), tracestore.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tick, n := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), 0
	svc := service.New(service.Options{
		Store: st, Secret: keys.Secret, KEKs: keys.KEKs, Rand: rand.NewChaCha8([32]byte{2}),
		Clock: func() time.Time { tick = tick.Add(time.Second); return tick },
		NewID: func() string { n++; return fmt.Sprintf("run-%d", n) },
	})
	kyc, kycSrc := examples.MustLoad("kyc-onboarding")
	nothingSrc := []byte("name: nothing\nversion: \"1\"\ninput_schema: {type: object}\ninitial: done\nstates:\n  done: {kind: terminal, outcome: DONE}\n")
	nothing, err := program.Load("nothing.yaml", nothingSrc)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		p   *program.Program
		src []byte
	}{{kyc, kycSrc}, {nothing, nothingSrc}} {
		if err := svc.AddProgram(ctx, p.p, p.src); err != nil {
			t.Fatal(err)
		}
	}
	drive := func(input, answers string, n int) {
		in, err := readJSONFile("../../examples/" + input)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := readAnswers("../../examples/" + answers)
		if err != nil {
			t.Fatal(err)
		}
		a, err := svc.Start(ctx, kyc.Name, in, "agent")
		if err != nil {
			t.Fatal(err)
		}
		// A rejected answer leaves the task open for the next line.
		for i := 0; a.Task != nil && i < n && i < len(lines); i++ {
			next, err := answerTask(ctx, svc, a, lines[i].value)
			var rej *runtime.Rejection
			switch {
			case errors.As(err, &rej):
			case err != nil:
				t.Fatal(err)
			default:
				a = next
			}
		}
	}
	drive("kyc-onboarding.input.json", "kyc-onboarding.approved.answers.jsonl", 99)
	drive("kyc-onboarding.input.json", "kyc-onboarding.approved.answers.jsonl", 5)
	drive("kyc-onboarding.sanctioned.input.json", "kyc-onboarding.sanctioned.rejected.answers.jsonl", 99)
	if _, err := svc.EraseSubject(ctx, service.EraseOptions{SubjectID: "CUS-90377", Reason: "the customer asked", Principal: "cli"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Start(ctx, "nothing", map[string]any{}, "agent"); err != nil {
		t.Fatal(err)
	}
}

// TestInspectOutputIsPinned pins inspect's output byte for byte, text and
// --json, in every view, for a finished, a waiting, an erased run and one
// that never issued a task. go test -run TestInspectOutputIsPinned -update
// rewrites testdata/inspect.golden.
func TestInspectOutputIsPinned(t *testing.T) {
	dir := t.TempDir()
	inspectStore(t, dir)
	var got strings.Builder
	for _, id := range []string{"run-1", "run-2", "run-3", "run-4"} {
		for _, view := range []string{"operator", "auditor", "model"} {
			for _, format := range [][]string{nil, {"--json"}} {
				args := append([]string{"inspect", id, "--data-dir", dir, "--view", view}, format...)
				code, out, errOut := runCLI(t, args...)
				if code != exitOK || errOut != "" {
					t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, errOut)
				}
				fmt.Fprintf(&got, "== inspect %s --view %s %s\n%s", id, view, strings.Join(format, " "), out)
			}
		}
	}
	const golden = "testdata/inspect.golden"
	if *updateInspect {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("inspect output differs from %s (rerun with -update and read the diff):\n%s", golden, got.String())
	}
	// The JSON lines are JSON (and the test would notice a stray line).
	for _, line := range strings.Split(got.String(), "\n") {
		if strings.HasPrefix(line, `{"run_id"`) {
			if _, err := jsonvalue.Decode([]byte(line)); err != nil {
				t.Errorf("%v: %s", err, line)
			}
		}
	}
}
