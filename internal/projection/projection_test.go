package projection

import (
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

const prog = `
name: p
version: "1"
input_schema:
  type: object
  properties:
    doc: {type: string}
    customer:
      type: object
      properties:
        id: {type: string}
        name: {type: string}
        country: {type: string}
subjects:
  c:
    id: input.customer.id
    pii: [input.customer.name, data.a.full_name]
initial: a
states:
  a:
    kind: llm
    output_schema:
      type: object
      properties:
        full_name: {type: string}
        risk: {type: string}
    transitions: [{to: done}]
  done: {kind: terminal, outcome: DONE}
`

func TestView(t *testing.T) {
	p, err := program.Load("p.yaml", []byte(prog))
	if err != nil {
		t.Fatal(err)
	}
	s := State{
		Input: map[string]any{"doc": "D", "customer": map[string]any{"id": "C1", "name": "Ann", "country": "SE"}},
		Data:  map[string]any{"a": map[string]any{"full_name": "Ann Lee", "risk": "low"}},
	}
	paths := func(ps ...string) []program.Path {
		var out []program.Path
		for _, x := range ps {
			out = append(out, program.ParsePath(x))
		}
		return out
	}
	tests := []struct {
		name string
		view []program.Path
		want map[string]any
	}{
		{"nothing named, nothing shown", nil, map[string]any{}},
		{"a scalar path", paths("input.doc"), map[string]any{"input": map[string]any{"doc": "D"}}},
		{"a parent of personal data shows only the rest", paths("input.customer"),
			map[string]any{"input": map[string]any{"customer": map[string]any{"country": "SE"}}}},
		{"personal data named explicitly", paths("input.customer", "input.customer.name"),
			map[string]any{"input": map[string]any{"customer": map[string]any{"country": "SE", "name": "Ann"}}}},
		{"data of a state, personal data left out", paths("data.a"),
			map[string]any{"data": map[string]any{"a": map[string]any{"risk": "low"}}}},
		{"absent path is absent", paths("data.b.x"), map[string]any{}},
		{"a parent and its child", paths("input.customer", "input.customer.country", "input.customer.name"),
			map[string]any{"input": map[string]any{"customer": map[string]any{"country": "SE", "name": "Ann"}}}},
		{"the whole input, personal data left out", paths("input"),
			map[string]any{"input": map[string]any{"doc": "D", "customer": map[string]any{"country": "SE"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := View(p, tt.view, s); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("View = %v, want %v", got, tt.want)
			}
		})
	}
	// An object with personal data left out is rebuilt, never the run's own.
	v := View(p, paths("input.customer"), s)
	v["input"].(map[string]any)["customer"].(map[string]any)["country"] = "XX"
	if s.Input.(map[string]any)["customer"].(map[string]any)["country"] != "SE" {
		t.Fatal("a filtered object aliases the run state")
	}
}

// TestViewNeverWritesIntoRunValues: views share subtrees without personal
// data with the run, so listing a child after its parent must not write
// into them. Under -race, a reader of the run state would catch a write.
func TestViewNeverWritesIntoRunValues(t *testing.T) {
	p, err := program.Load("p.yaml", []byte(prog))
	if err != nil {
		t.Fatal(err)
	}
	shared := map[string]any{"x": "1", "y": "2"}
	s := State{Input: map[string]any{"extra": shared}}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				for k, v := range shared {
					_, _ = k, v
				}
			}
		}
	}()
	for i := 0; i < 200; i++ {
		v := View(p, []program.Path{program.ParsePath("input.extra"), program.ParsePath("input.extra.x")}, s)
		if got := v["input"].(map[string]any)["extra"].(map[string]any)["x"]; got != "1" {
			t.Fatalf("view lost input.extra.x: %v", v)
		}
	}
	close(stop)
	wg.Wait()
}

func TestForAuditorRedactsEveryPersonalDataPath(t *testing.T) {
	p, err := program.Load("p.yaml", []byte(prog))
	if err != nil {
		t.Fatal(err)
	}
	got := ForAuditor(p, State{
		Input: map[string]any{"doc": "D", "customer": map[string]any{"id": "C1", "name": "Ann", "country": "SE"}},
		Data:  map[string]any{"a": map[string]any{"full_name": "Ann Lee", "risk": "low"}},
	})
	want := map[string]any{
		"input": map[string]any{"doc": "D", "customer": map[string]any{"id": Redacted, "name": Redacted, "country": "SE"}},
		"data":  map[string]any{"a": map[string]any{"full_name": Redacted, "risk": "low"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ForAuditor = %v\nwant %v", got, want)
	}
}

// Erased personal data is not hidden but gone: the auditor sees the erased
// marker where the run holds it, and Redacted everywhere else.
func TestForAuditorShowsErasedMarkers(t *testing.T) {
	p, err := program.Load("p.yaml", []byte(prog))
	if err != nil {
		t.Fatal(err)
	}
	erased := map[string]any{ErasedKey: "0f1e"}
	got := ForAuditor(p, State{
		Input: map[string]any{"doc": "D", "customer": map[string]any{"id": erased, "name": erased, "country": "SE"}},
		Data: map[string]any{"a": map[string]any{
			// Not the marker: an object with more members is redacted.
			"full_name": map[string]any{ErasedKey: "0f1e", "name": "Ann Lee"},
			"risk":      "low",
		}},
	})
	want := map[string]any{
		"input": map[string]any{"doc": "D", "customer": map[string]any{"id": erased, "name": erased, "country": "SE"}},
		"data":  map[string]any{"a": map[string]any{"full_name": Redacted, "risk": "low"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ForAuditor = %v\nwant %v", got, want)
	}
	for _, tc := range []struct {
		v    any
		want bool
	}{
		{erased, true},
		{map[string]any{ErasedKey: 1.0}, false},
		{map[string]any{"$redacted": "personal_data"}, false},
		{"$erased", false},
		{nil, false},
	} {
		if got := IsErased(tc.v); got != tc.want {
			t.Errorf("IsErased(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestParseAudienceAcceptsTheThreeAudiencesOnly(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Audience
	}{
		{"operator", Operator}, {"auditor", Auditor}, {"model", Model},
		{"", ""}, {"Auditor", ""}, {"everyone", ""},
	} {
		got, err := ParseAudience(tc.name)
		var ue *UnknownAudienceError
		if got != tc.want || (tc.want == "") != errors.As(err, &ue) {
			t.Errorf("ParseAudience(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestForAudienceShowsTheModelOnlyTheTaskIssued(t *testing.T) {
	task := &Task{Seq: 3, State: "s"}
	for _, tc := range []struct {
		a      Audience
		issued *Task
		want   any
	}{
		{Model, task, task},
		{Model, nil, nil},
		{Audience("everyone"), task, nil},
	} {
		if got := ForAudience(tc.a, nil, State{Input: map[string]any{"x": 1}}, tc.issued); got != tc.want {
			t.Errorf("ForAudience(%q, issued %v) = %v, want %v", tc.a, tc.issued, got, tc.want)
		}
	}
}

// TestModelViewOfARuntimeCallHoldsNothingUngranted: while the runtime runs
// a tool, the model is shown the state, the tool's being the runtime's,
// and nothing else: not the arguments (which may read personal data the
// model was never shown), not the result, not an output schema to answer.
func TestModelViewOfARuntimeCallHoldsNothingUngranted(t *testing.T) {
	p, err := program.LoadFile("../runtime/testdata/toolcalls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	task := ForModelCall(p.States["refund"], 1)
	raw, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"seq":1,"state":"refund","kind":"tool","view":{},"output_schema":null,"attempts_left":0,"executed_by":"runtime"}`
	if string(raw) != want {
		t.Fatalf("the model's view of a runtime call:\n%s\nwant\n%s", raw, want)
	}
}

// A failed call's detail reaches the auditor unless it may quote personal
// data: a schema violation at a state whose data holds personal data, or
// a detail the trace stored sealed.
func TestForAuditorDetailRedactsWhatMayQuotePersonalData(t *testing.T) {
	p, err := program.Load("p.yaml", []byte(prog))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, state, class, detail string
		sealed                     bool
		want                       string
	}{
		{"a transport failure is shown", "a", "transport", "connection refused", false, "connection refused"},
		{"a schema violation where data holds personal data is redacted", "a", "schema_violation", "full_name: Ada", false, RedactedText},
		{"a schema violation elsewhere is shown", "done", "schema_violation", "risk: want a string", false, "risk: want a string"},
		{"a detail stored sealed is redacted", "done", "tool_error", "exit status 1", true, RedactedText},
		{"no detail stays none", "a", "schema_violation", "", false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ForAuditorDetail(p, c.state, c.class, c.detail, c.sealed); got != c.want {
				t.Errorf("ForAuditorDetail = %q, want %q", got, c.want)
			}
		})
	}
}
