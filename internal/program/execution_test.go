package program

import (
	"maps"
	"strings"
	"testing"
)

// toolBase is a valid program with two tool states: fetch (runtime, with
// an on_error edge to fallback) and log (no execution field).
const toolBase = `
name: t
version: 1.0
initial: fetch
states:
  fetch:
    kind: tool
    tool: http_get
    execution: runtime
    on_error: fallback
    output_schema: {type: object, properties: {ok: {type: boolean}}, required: [ok]}
    transitions:
      - to: log
  log:
    kind: tool
    tool: audit
    output_schema: {type: object}
    transitions:
      - to: done
  fallback:
    kind: llm
    output_schema: {type: object}
    transitions:
      - to: done
  done: {kind: terminal, outcome: DONE}
`

func TestExecutionAndOnErrorLoadOnToolStates(t *testing.T) {
	p, probs := load(t, toolBase)
	if len(probs) > 0 {
		t.Fatalf("problems:\n%s", problemsText(probs))
	}
	fetch := p.States["fetch"]
	if fetch.Execution != ExecutionRuntime || fetch.OnError == nil || fetch.OnError.Name != "fallback" {
		t.Fatalf("fetch: execution %q, on_error %v", fetch.Execution, fetch.OnError)
	}
	norm := p.Normalized().States["fetch"]
	if norm.Execution != ExecutionRuntime || norm.OnError != "fallback" {
		t.Fatalf("the normalised document lacks them: %+v", norm)
	}
}

func TestExecutionAndOnErrorProblems(t *testing.T) {
	runRejects(t, toolBase, []rejectCase{
		{"on_error target not defined", repl("on_error: fallback", "on_error: nowhere"), "fetch", "on_error", "not defined"},
		{"execution on an llm state", repl("    kind: llm\n", "    kind: llm\n    execution: runtime\n"), "fallback", "execution", "does not apply to a llm state"},
		{"on_error on an llm state", repl("    kind: llm\n", "    kind: llm\n    on_error: done\n"), "fallback", "on_error", "does not apply to a llm state"},
		{"unknown execution", repl("execution: runtime", "execution: server"), "fetch", "execution", ""},
		// Without the on_error edge, fallback is reachable from nowhere.
		{"on_error edge is the only way in", repl("    on_error: fallback\n", ""), "fallback", "kind", "unreachable"},
	})
}

// A state's data is not certainly set after it left by its on_error edge:
// a guard downstream must not read it unguarded.
func TestDataOfAStateLeftByOnErrorIsNotCertain(t *testing.T) {
	src := repl("    kind: llm\n    output_schema: {type: object}\n    transitions:\n      - to: done",
		"    kind: llm\n    output_schema: {type: object}\n    transitions:\n      - to: done\n        when: data.fetch.ok\n      - to: done")(toolBase)
	_, probs := load(t, src)
	for _, p := range probs {
		if p.State == "fallback" && strings.Contains(p.Message, "has(data.fetch)") {
			return
		}
	}
	t.Fatalf("a guard reading data.fetch after its on_error edge loaded:\n%s", problemsText(probs))
}

func TestDefinitionHashUnchangedWithoutExecutionFields(t *testing.T) {
	// The fields are omitempty: a program without them hashes as before
	// they existed (base's hash is pinned in TestDefinitionHash), and one
	// with them hashes differently.
	with, _ := load(t, toolBase)
	without, probs := load(t, repl("    execution: runtime\n", "")(toolBase))
	if len(probs) > 0 {
		t.Fatal(problemsText(probs))
	}
	if with.Hash == without.Hash {
		t.Fatal("execution: runtime does not change the definition hash")
	}
}

func TestCheckExecutionNamesRuntimeToolsTheRegistryLacks(t *testing.T) {
	p, _ := load(t, toolBase)
	if probs := CheckExecution(p, func(tool string) bool { return tool == "http_get" }); len(probs) != 0 {
		t.Fatalf("the registry has http_get, yet: %v", probs)
	}
	// log has no execution field: a registry without audit leaves it to the caller.
	probs := CheckExecution(p, func(string) bool { return false })
	if len(probs) != 1 {
		t.Fatalf("want one problem, got %v", probs)
	}
	pr := probs[0]
	want := "execution: runtime, but the server's tool registry has no tool http_get"
	if pr.File != "t.yaml" || pr.Line == 0 || pr.State != "fetch" || pr.Field != "execution" || pr.Message != want {
		t.Fatalf("problem %+v, want t.yaml, a line, fetch.execution, %q", pr, want)
	}
}

func TestExecutedMapsTheToolStatesTheRuntimeRuns(t *testing.T) {
	caller, _ := load(t, repl("    tool: audit\n", "    tool: audit\n    execution: caller\n")(toolBase))
	plain, _ := load(t, toolBase)
	kinds := map[string]string{"http_get": "http", "audit": "exec"}
	has := func(tool string) (string, bool) { k, ok := kinds[tool]; return k, ok }
	none := func(string) (string, bool) { return "", false }
	tests := []struct {
		name string
		p    *Program
		has  func(string) (string, bool)
		want map[string]string
	}{
		{"no field: the registry decides", plain, has, map[string]string{"fetch": "http", "log": "exec"}},
		{"execution caller stays the caller's", caller, has, map[string]string{"fetch": "http"}},
		{"an empty registry runs nothing", caller, none, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Executed(tt.p, tt.has); !maps.Equal(got, tt.want) {
				t.Fatalf("Executed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRenderingDrawsTheOnErrorEdge(t *testing.T) {
	p, _ := load(t, toolBase)
	if out := Mermaid(p); !strings.Contains(out, `s_fetch ==>|"on_error"| s_fallback`) {
		t.Errorf("Mermaid lacks the on_error edge:\n%s", out)
	}
	if out := DOT(p); !strings.Contains(out, `"fetch" -> "fallback" [label="on_error", style=bold];`) {
		t.Errorf("DOT lacks the on_error edge:\n%s", out)
	}
}
