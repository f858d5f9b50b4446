package projection_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// TestModelTasksHoldOnlyTheAllowlist drives many generated runs of every
// example program, with random outputs shaped by the schemas, and checks
// every task handed out against the allowlist: the task's own fields, view
// leaves under the state's view paths only, personal data only where named,
// declared tool arguments only, and no guard text or definition hash.
func TestModelTasksHoldOnlyTheAllowlist(t *testing.T) {
	runs := 300
	if testing.Short() {
		runs = 50
	}
	type subject struct {
		p      *program.Program
		inputs []any
	}
	subjects := map[string]subject{}
	for _, name := range examples.Programs() {
		p, _ := examples.MustLoad(name)
		subjects[name] = subject{p, exampleInputs(t, name)}
	}
	// The core's test program views a parent of personal data without
	// naming it; its inputs are generated with every field present.
	review, err := program.LoadFile("../runtime/testdata/review.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	var generated []any
	for i := 0; i < 20; i++ {
		generated = append(generated, generateFull(review.Input.Root, rng))
	}
	subjects["review"] = subject{review, generated}
	for name, s := range subjects {
		p, inputs := s.p, s.inputs
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(name))))
			tasks := 0
			for i := 0; i < runs; i++ {
				tasks += generatedRun(t, p, inputs[i%len(inputs)], rng)
			}
			if tasks < runs {
				t.Fatalf("only %d tasks in %d runs", tasks, runs)
			}
		})
	}
}

func exampleInputs(t *testing.T, name string) []any {
	out := exampleDocs(t, name, ".input.json")
	if len(out) == 0 {
		t.Fatalf("no inputs for %s", name)
	}
	return out
}

// exampleDocs are the JSON documents of the example's files whose names
// end in suffix, one a line in .jsonl files.
func exampleDocs(t *testing.T, name, suffix string) []any {
	entries, err := examples.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), name+".") || !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		data, _ := examples.FS.ReadFile(e.Name())
		docs := [][]byte{data}
		if strings.HasSuffix(suffix, ".jsonl") {
			docs = nil
			for _, line := range strings.Split(string(data), "\n") {
				if strings.TrimSpace(line) != "" {
					docs = append(docs, []byte(line))
				}
			}
		}
		for _, d := range docs {
			v, err := jsonvalue.Decode(d)
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			out = append(out, v)
		}
	}
	return out
}

// generatedRun plays one run to its end (or 40 inputs) and checks each task.
func generatedRun(t *testing.T, p *program.Program, input any, rng *rand.Rand) int {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	res, err := runtime.Apply(p, nil, runtime.Start{RunID: "r", Input: input, At: at})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	run, tasks := res.Run, 0
	var issued *projection.Task
	for i := 0; i < 40 && !run.Finished(); i++ {
		task := run.Task
		checkTask(t, p, run, task)
		checkAuditorTask(t, p, task)
		issued = task
		checkAudiences(t, p, run, issued)
		tasks++
		st := p.States[task.State]
		out := generate(st.Output.Root, rng)
		var in runtime.Input
		switch st.Kind {
		case program.KindApproval:
			in = runtime.Decide{Seq: task.Seq, Role: st.Role, Decision: out, At: at}
		case program.KindTool:
			in = runtime.Submit{Seq: task.Seq, Tool: st.Tool, Output: out, At: at}
		default:
			in = runtime.Submit{Seq: task.Seq, Output: out, At: at}
		}
		res, _ = runtime.Apply(p, run, in)
		run = res.Run
	}
	checkAudiences(t, p, run, issued)
	return tasks
}

var taskFields = map[string]bool{"seq": true, "state": true, "kind": true, "instructions": true, "role": true, "view": true, "output_schema": true, "attempts_left": true, "tool": true, "executed_by": true}

func checkTask(t *testing.T, p *program.Program, run *runtime.Run, task *projection.Task) {
	t.Helper()
	raw, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	st := p.States[task.State]
	for k := range doc {
		if !taskFields[k] {
			t.Fatalf("task of %s has field %q outside the allowlist: %s", st.Name, k, raw)
		}
	}
	text := string(raw)
	if strings.Contains(text, p.Hash) || strings.Contains(text, strings.TrimPrefix(p.Hash, "sha256:")) {
		t.Fatalf("task of %s leaks the definition hash", st.Name)
	}
	for _, other := range p.States {
		for _, tr := range other.Transitions {
			if len(tr.When) > 12 && strings.Contains(text, jsonText(tr.When)) {
				t.Fatalf("task of %s leaks guard %q", st.Name, tr.When)
			}
		}
	}
	if task.AttemptsLeft != st.MaxAttempts-run.Attempts {
		t.Fatalf("attempts_left %d, want %d", task.AttemptsLeft, st.MaxAttempts-run.Attempts)
	}
	// A tool task handed out is the caller's to run, and says so.
	if want := map[bool]any{true: projection.ExecutedByCaller, false: nil}[st.Kind == program.KindTool]; doc["executed_by"] != want {
		t.Fatalf("task of %s: executed_by %v, want %v", st.Name, doc["executed_by"], want)
	}
	// The tool target: the named tool and exactly the declared arguments.
	if tool, ok := doc["tool"].(map[string]any); ok {
		if st.Kind != program.KindTool || tool["name"] != st.Tool || len(tool) != 2 {
			t.Fatalf("task of %s: tool %v", st.Name, tool)
		}
		args, _ := tool["arguments"].(map[string]any)
		for k := range args {
			if !declaredArg(st, k) {
				t.Fatalf("task of %s: undeclared argument %q", st.Name, k)
			}
		}
	}
	// The view: every leaf lies under a view path, and personal data only
	// where the view names it.
	view, _ := doc["view"].(map[string]any)
	walkLeaves(nil, view, func(path program.Path) {
		under := false
		for _, v := range st.View {
			if v.Covers(path) {
				under = true
			}
		}
		if !under {
			t.Fatalf("task of %s shows %s, outside its view %v", st.Name, path, st.View)
		}
		if p.IsPII(path) {
			named := false
			for _, v := range st.View {
				if v.Covers(path) && p.IsPII(v) {
					named = true
				}
			}
			if !named {
				t.Fatalf("task of %s shows personal data %s its view does not name", st.Name, path)
			}
		}
	})
}

// checkAuditorTask checks the auditor's view of a task (the console's run
// page shows it): every value at a personal-data path of the view, and
// every tool argument whose expression reads personal data, is the
// redaction marker; the rest is the task as issued.
func checkAuditorTask(t *testing.T, p *program.Program, task *projection.Task) {
	t.Helper()
	a := projection.ForAuditorTask(p, task, nil)
	checkRedacted(t, p, "the auditor's task of "+task.State, a.View)
	if len(a.View) != len(task.View) || a.Seq != task.Seq || a.State != task.State || a.Instructions != task.Instructions {
		t.Fatalf("the auditor's task of %s is not the task issued: %+v", task.State, a)
	}
	st := p.States[task.State]
	for _, arg := range st.Args {
		v, ok := a.Tool.Arguments[arg.Name]
		if ok && arg.Expr != nil && len(arg.Expr.PII) > 0 && !reflect.DeepEqual(v, projection.Redacted) {
			t.Fatalf("the auditor's task of %s shows tool argument %s, which reads personal data: %v", task.State, arg.Name, v)
		}
	}
}

func jsonText(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

func declaredArg(st *program.State, name string) bool {
	for _, a := range st.Args {
		if a.Name == name {
			return true
		}
	}
	return false
}

// walkLeaves calls f with the path of every leaf; arrays keep their
// parent's path, as personal-data paths do.
func walkLeaves(path program.Path, v any, f func(program.Path)) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 && len(path) > 0 {
			f(path)
		}
		for k, c := range x {
			walkLeaves(append(path[:len(path):len(path)], k), c, f)
		}
	case []any:
		if len(x) == 0 {
			f(path)
		}
		for _, c := range x {
			walkLeaves(path, c, f)
		}
	default:
		f(path)
	}
}

// generateFull is generate with every declared property present.
func generateFull(n *schema.Node, rng *rand.Rand) any {
	if n.Kind != schema.Object {
		return generate(n, rng)
	}
	out := map[string]any{}
	for _, k := range n.Order {
		out[k] = generateFull(n.Properties[k], rng)
	}
	return out
}

// generate makes a random value shaped by n: mostly valid, sometimes not,
// so that runs also take rejections.
func generate(n *schema.Node, rng *rand.Rand) any {
	if len(n.Enum) > 0 && rng.IntN(10) > 0 {
		return n.Enum[rng.IntN(len(n.Enum))]
	}
	switch n.Kind {
	case schema.Object:
		out := map[string]any{}
		for _, k := range n.Order {
			if n.Required[k] || rng.IntN(2) == 0 {
				out[k] = generate(n.Properties[k], rng)
			}
		}
		return out
	case schema.Array:
		max := 3
		if n.MaxItems >= 0 && int(n.MaxItems) < max {
			max = int(n.MaxItems)
		}
		out := []any{}
		for i := 0; i < rng.IntN(max+1); i++ {
			out = append(out, generate(n.Items, rng))
		}
		return out
	case schema.String:
		return fmt.Sprintf("s%d", rng.IntN(1000))
	case schema.Integer:
		return json.Number(fmt.Sprint(rng.IntN(200000)))
	case schema.Number:
		return json.Number(fmt.Sprintf("%.2f", rng.Float64()*1000))
	case schema.Boolean:
		return rng.IntN(2) == 0
	}
	return nil
}

// checkRedacted fails when v (a document rooted at input and data) holds
// a value at a personal-data path that is not the redaction marker.
func checkRedacted(t *testing.T, p *program.Program, what string, v any) {
	t.Helper()
	var walk func(path program.Path, v any)
	walk = func(path program.Path, v any) {
		if len(path) > 0 && p.IsPII(path) {
			if !reflect.DeepEqual(v, projection.Redacted) {
				t.Fatalf("%s shows personal data %s: %v", what, path, v)
			}
			return
		}
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(append(path[:len(path):len(path)], k), c)
			}
		case []any:
			for _, c := range x {
				walk(path, c)
			}
		}
	}
	walk(nil, v)
}

// checkAudiences checks what each audience of inspect sees of run, whose
// last issued task is issued: the auditor no personal data and every
// member the operator sees, the operator the run's input and data, the
// model the task as issued and nothing before one was.
func checkAudiences(t *testing.T, p *program.Program, run *runtime.Run, issued *projection.Task) {
	t.Helper()
	s := projection.State{Input: run.Input, Data: run.Data}
	operator, _ := projection.ForAudience(projection.Operator, p, s, issued).(map[string]any)
	data := map[string]any{}
	if run.Data != nil {
		data = run.Data
	}
	if !reflect.DeepEqual(operator, map[string]any{"input": run.Input, "data": data}) {
		t.Fatalf("the operator's view of run at %s is not its input and data: %v", run.State, operator)
	}
	auditor, _ := projection.ForAudience(projection.Auditor, p, s, issued).(map[string]any)
	checkRedacted(t, p, "the auditor's view of the run at "+run.State, auditor)
	for state := range data {
		if _, ok := auditor["data"].(map[string]any)[state]; !ok {
			t.Fatalf("the auditor's view of the run at %s lacks the output of %s", run.State, state)
		}
	}
	model := projection.ForAudience(projection.Model, p, s, issued)
	if issued == nil && model != nil || issued != nil && model != issued {
		t.Fatalf("the model's view of the run at %s is %v, not the last task issued %v", run.State, model, issued)
	}
}

// TestAuditorViewsOfExecutedCallsHoldNoPersonalData drives generated runs
// of every example program with every tool state executed by the runtime,
// feeding random results (shaped by the schemas, so personal-data paths
// are filled), and checks the auditor's view of each call the console
// shows: every argument that reads personal data, or that the state does
// not declare, is the redaction marker and the others are as invoked; in
// each result every personal-data path below data.<state> is the marker
// and every other leaf is as returned.
func TestAuditorViewsOfExecutedCallsHoldNoPersonalData(t *testing.T) {
	runs := 100
	if testing.Short() {
		runs = 20
	}
	for _, name := range examples.Programs() {
		p, _ := examples.MustLoad(name)
		executors := program.Executed(p, func(string) (string, bool) { return "http", true })
		if len(executors) == 0 {
			continue
		}
		inputs, answers := exampleInputs(t, name), exampleDocs(t, name, ".answers.jsonl")
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, uint64(len(name))))
			calls := 0
			for i := 0; i < runs; i++ {
				calls += executedRun(t, p, executors, inputs[i%len(inputs)], answers, rng)
			}
			if calls < runs/2 {
				t.Fatalf("only %d executed calls in %d runs", calls, runs)
			}
		})
	}
}

// executedRun plays one run whose tool states the runtime executes, and
// checks the auditor's view of every call's arguments and result.
func executedRun(t *testing.T, p *program.Program, executors map[string]string, input any, answers []any, rng *rand.Rand) int {
	t.Helper()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	res, err := runtime.Apply(p, nil, runtime.Start{RunID: "r", Input: input, Executors: executors, At: at})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	run, calls := res.Run, 0
	for i := 0; i < 40 && !run.Finished(); i++ {
		for _, e := range res.Events {
			if e.Call != nil {
				checkAuditorCall(t, p, &e)
			}
		}
		// Shaped by the schema alone, a result or answer often misses a
		// pattern; the example's recorded answers fill the gaps. The first
		// candidate the run accepts is taken.
		var ins []runtime.Input
		if c := run.Call; c != nil {
			calls++
			st := p.States[c.State]
			for _, out := range candidates(st, answers, rng) {
				ins = append(ins, runtime.ToolResult{Seq: c.Seq, CallID: c.CallID, Attempt: c.Attempt, Output: out, At: at})
			}
		} else {
			task := run.Task
			st := p.States[task.State]
			for _, out := range candidates(st, answers, rng) {
				switch st.Kind {
				case program.KindApproval:
					ins = append(ins, runtime.Decide{Seq: task.Seq, Role: st.Role, Decision: out, At: at})
				case program.KindTool:
					ins = append(ins, runtime.Submit{Seq: task.Seq, Tool: st.Tool, Output: out, At: at})
				default:
					ins = append(ins, runtime.Submit{Seq: task.Seq, Output: out, At: at})
				}
			}
		}
		for _, in := range ins {
			if res, _ = runtime.Apply(p, run, in); accepted(res) {
				break
			}
		}
		run = res.Run
	}
	return calls
}

// candidates are outputs to try for st, in order: a few of the example's
// recorded answers, then one generated with every property present.
func candidates(st *program.State, answers []any, rng *rand.Rand) []any {
	var out []any
	for _, i := range rng.Perm(len(answers)) {
		out = append(out, answers[i])
	}
	return append(out, generateFull(st.Output.Root, rng))
}

// accepted reports whether an input's events moved the run on: no
// rejection, and no failed tool attempt.
func accepted(res runtime.Result) bool {
	for _, e := range res.Events {
		if e.Type == runtime.EventSubmissionRejected || e.Type == runtime.EventToolCallFailed {
			return false
		}
	}
	return res.Run != nil
}

// checkAuditorCall checks the auditor's views of one tool_call_* event.
func checkAuditorCall(t *testing.T, p *program.Program, e *runtime.Event) {
	t.Helper()
	st := p.States[e.State]
	if e.Call.Arguments != nil {
		args := projection.ForAuditorArguments(p, e.State, e.Call.Arguments, nil)
		for k, v := range args {
			var arg *program.Arg
			for i := range st.Args {
				if st.Args[i].Name == k {
					arg = &st.Args[i]
				}
			}
			hidden := arg == nil || arg.Expr != nil && len(arg.Expr.PII) > 0
			if hidden && !reflect.DeepEqual(v, projection.Redacted) || !hidden && !reflect.DeepEqual(v, e.Call.Arguments[k]) {
				t.Fatalf("the auditor's view of the call at %s shows argument %s as %v (invoked with %v)", e.State, k, v, e.Call.Arguments[k])
			}
		}
	}
	if e.Call.Result != nil {
		shown := projection.ForAuditorResult(p, e.State, e.Call.Result, nil)
		doc := map[string]any{"data": map[string]any{e.State: shown}}
		checkRedacted(t, p, "the auditor's view of the result at "+e.State, doc)
		walkLeaves(program.Path{"data", e.State}, e.Call.Result, func(path program.Path) {
			got, ok := at(shown, path[2:])
			want, _ := at(e.Call.Result, path[2:])
			if ok && !p.IsPII(path) && !reflect.DeepEqual(got, want) {
				t.Fatalf("the auditor's view of the result at %s changes %s, which is no personal data", e.State, path)
			}
		})
	}
}

// at is the value at path below v; false where the path runs through an
// array or a marker (walkLeaves gives array elements their parent's path).
func at(v any, path program.Path) (any, bool) {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		v = m[k]
	}
	return v, true
}
