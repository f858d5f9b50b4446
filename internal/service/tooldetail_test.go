package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
	"github.com/nano-vm/nano-vm-mcp/internal/executor/executortest"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// failRegistry maps refund to the downstream server's fail tool, over
// stdio: it answers isError with text that names its customer argument.
func failRegistry(t *testing.T) *executor.Registry {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, env := t.TempDir(), executortest.Env()
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	doc := fmt.Sprintf("tools:\n  refund:\n    mcp: {command: [%q], env: [%s], tool: fail}\n    timeout: 30s\n",
		exe, strings.Join(names, ", "))
	reg, err := executor.Parse([]byte(doc), "tools.yaml", executor.Options{
		RegistryDir: dir, Getenv: func(k string) string { return env[k] }, Pins: filepath.Join(dir, "tools.pins.json"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// A downstream tool's own error text can echo an argument that reads
// personal data. In a run with data subjects the failure's detail is
// sealed under the run's subjects: the stored trace never holds it in
// clear, the operator reads it opened, and after erasure it reads as
// erased. A run without subjects keeps it in clear, as before.
func TestAToolsFailureTextIsSealedAndErased(t *testing.T) {
	const echoed = "the downstream tool answered isError: the bureau has no record of customer c-1"
	withSubjects := toolProgram("refund", "manual")
	without := strings.Replace(withSubjects, "subjects:\n  customer:\n    id: input.customer\n    pii: [data.refund.receipt]\n", "", 1)
	if without == withSubjects {
		t.Fatal("the program without subjects still has them")
	}
	for _, c := range []struct {
		name   string
		src    string
		sealed bool
	}{
		{"a run with a subject seals the detail", withSubjects, true},
		{"a run without subjects keeps it in clear", without, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			store := tracestore.NewMemory()
			f := newToolService(t, store, failRegistry(t), c.src, Options{})
			a, err := f.startAndPlan(t)
			if err != nil {
				t.Fatal(err)
			}
			if a.State != "manual" {
				t.Fatalf("answer %+v, want the on_error hop to manual", a)
			}
			events, err := f.svc.Events(ctx, a.RunID)
			if err != nil {
				t.Fatal(err)
			}
			if failed := lastOf(events, runtime.EventToolCallFailed); failed == nil || failed.Call.Class != "tool_error" || failed.Call.Detail != echoed {
				t.Fatalf("the operator reads the failure %+v, want tool_error with %q", failed, echoed)
			}
			// inspect: the operator reads the detail; the auditor, in a run
			// with subjects, the redaction marker; the model nothing.
			run, prog, err := f.svc.Get(ctx, a.RunID)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range []struct {
				who  projection.Audience
				want string
			}{{projection.Operator, echoed}, {projection.Auditor, map[bool]string{true: projection.RedactedText, false: echoed}[c.sealed]}, {projection.Model, "-"}} {
				calls := runtime.Inspect(run, prog, events, v.who).ToolCalls
				switch {
				case v.want == "-" && calls != nil:
					t.Errorf("the model's inspect view shows tool calls %+v", calls)
				case v.want != "-" && (len(calls) == 0 || calls[len(calls)-1].Class != "tool_error" || calls[len(calls)-1].Detail != v.want):
					t.Errorf("the %s's inspect view shows %+v, want the failure with %q", v.who, calls, v.want)
				}
			}
			stored := func() string {
				recs, err := store.Load(ctx, a.RunID)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					if r.Type == string(runtime.EventToolCallFailed) {
						return string(r.Body)
					}
				}
				t.Fatal("no tool_call_failed stored")
				return ""
			}
			if body := stored(); strings.Contains(body, "c-1") == c.sealed || strings.Contains(body, projection.SealedKey) != c.sealed {
				t.Fatalf("stored failure %s: sealed %t, want %t", body, !c.sealed, c.sealed)
			}
			if !c.sealed {
				return
			}
			if _, err := f.svc.EraseSubject(ctx, EraseOptions{SubjectID: "c-1", Reason: "Art. 17", Principal: "dpo"}); err != nil {
				t.Fatal(err)
			}
			if body := stored(); strings.Contains(body, "c-1") || strings.Contains(body, "no record") {
				t.Errorf("after erasure the stored failure is %s", body)
			}
			if events, err = f.svc.Events(ctx, a.RunID); err != nil {
				t.Fatal(err)
			}
			d := lastOf(events, runtime.EventToolCallFailed).Call.Detail
			if !strings.HasPrefix(d, `{"`+projection.ErasedKey+`":`) {
				t.Errorf("after erasure the detail reads %q, want the erased marker", d)
			}
			// Replay feeds the recorded failure back as it now reads.
			if rep, err := runtime.ReplayReport(f.p, events); err != nil || rep.Divergence != nil {
				t.Errorf("replay after erasure: %+v, %v; want identical", rep.Divergence, err)
			}
		})
	}
}
