package lab

import (
	"context"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

func compileJSON(t *testing.T, doc string) *schema.Schema {
	t.Helper()
	v, err := jsonvalue.Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.Compile(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSynthesisedValuesValidate: for every schema, the generated value
// and each of its variants validate, and the same schema gives the same
// values again.
func TestSynthesisedValuesValidate(t *testing.T) {
	h := hints{strings: []string{"go.mod", "approve", "sent"}, numbers: []float64{0.95, 500, 50000}}
	for _, tc := range []struct {
		name, schema string
		minVariants  int
	}{
		{"scalars", `{"type":"object","required":["b","i","n","s"],"properties":{"b":{"type":"boolean"},"i":{"type":"integer"},"n":{"type":"number"},"s":{"type":"string"}}}`, 4},
		{"enum and const", `{"type":"object","required":["e","c"],"properties":{"e":{"enum":["x","y",3]},"c":{"const":{"k":[1,2]}}}}`, 2},
		{"string lengths", `{"type":"object","required":["short","long","exact"],"properties":{"short":{"type":"string","maxLength":2},"long":{"type":"string","minLength":12},"exact":{"type":"string","minLength":5,"maxLength":5}}}`, 1},
		{"patterns", `{"type":"object","required":["date","cc","ref","alt","opt","hash"],"properties":{
			"date":{"type":"string","pattern":"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
			"cc":{"type":"string","pattern":"^[A-Z]{2}$"},
			"ref":{"type":"string","pattern":"^PAY-[0-9A-F]{8}$"},
			"alt":{"type":"string","pattern":"^(low|medium|high)$"},
			"opt":{"type":"string","pattern":"^(sha256:[0-9a-f]{64})?$"},
			"hash":{"type":"string","pattern":"^[a-z]+\\.[a-z]{2,}$","minLength":10}}}`, 3},
		{"formats", `{"type":"object","required":["d","dt","e","u","id","ip","h"],"properties":{
			"d":{"type":"string","format":"date"},"dt":{"type":"string","format":"date-time"},"e":{"type":"string","format":"email"},
			"u":{"type":"string","format":"uri"},"id":{"type":"string","format":"uuid"},"ip":{"type":"string","format":"ipv4"},"h":{"type":"string","format":"hostname"}}}`, 0},
		{"number bounds", `{"type":"object","required":["a","b","c","d","e","f"],"properties":{
			"a":{"type":"integer","minimum":1},"b":{"type":"integer","maximum":-5},"c":{"type":"number","exclusiveMinimum":0,"maximum":1},
			"d":{"type":"integer","minimum":10,"maximum":20,"multipleOf":7},"e":{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":0.5},
			"f":{"type":"integer","exclusiveMinimum":41,"exclusiveMaximum":43}}}`, 3},
		{"arrays", `{"type":"object","required":["few","many","uniq","tuple"],"properties":{
			"few":{"type":"array","items":{"type":"object","required":["score"],"properties":{"score":{"type":"number","minimum":0,"maximum":1},"hit":{"type":"boolean"}}}},
			"many":{"type":"array","minItems":3,"maxItems":3,"items":{"type":"string","enum":["a","b","c","d"]}},
			"uniq":{"type":"array","minItems":3,"uniqueItems":true,"items":{"enum":["x","y","z"]}},
			"tuple":{"type":"array","prefixItems":[{"type":"integer"},{"type":"string"}],"minItems":2}}}`, 4},
		{"optional properties and minProperties", `{"type":"object","minProperties":2,"properties":{"a":{"type":"string"},"b":{"type":"boolean"},"c":{"type":"integer"}}}`, 2},
		{"nullable and untyped", `{"type":"object","required":["n","u","t"],"properties":{"n":{"type":["string","null"],"maxLength":3},"u":{},"t":{"type":"null"}}}`, 0},
		{"refs and allOf", `{"$defs":{"money":{"type":"object","required":["cents","currency"],"properties":{"cents":{"type":"integer","minimum":1},"currency":{"type":"string","pattern":"^[A-Z]{3}$"}}}},
			"type":"object","required":["price","total"],"properties":{"price":{"$ref":"#/$defs/money"},
			"total":{"allOf":[{"$ref":"#/$defs/money"},{"properties":{"cents":{"minimum":100}}}]}}}`, 2},
		{"anyOf and oneOf", `{"type":"object","required":["a","o"],"properties":{
			"a":{"anyOf":[{"type":"string","pattern":"^x+$","minLength":3},{"type":"integer"}]},
			"o":{"oneOf":[{"type":"integer","maximum":-1},{"type":"integer","minimum":1}]}}}`, 1},
		{"closed nested objects", `{"type":"object","additionalProperties":false,"required":["doc"],"properties":{"doc":{"type":"object","additionalProperties":false,"required":["kind","number"],"properties":{"kind":{"enum":["passport","national_id"]},"number":{"type":"string","maxLength":64},"expiry":{"type":"string","format":"date"}}}}}`, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := compileJSON(t, tc.schema)
			v, err := synthValue(s, h)
			if err != nil {
				t.Fatal(err)
			}
			if vs := s.Validate(v); len(vs) > 0 {
				t.Fatalf("%s does not validate: %v", canonical(v), vs)
			}
			again, _ := synthValue(s, h)
			if canonical(again) != canonical(v) {
				t.Fatalf("not deterministic: %s, then %s", canonical(v), canonical(again))
			}
			vars := synthVariants(s, h, v)
			if len(vars) < tc.minVariants || len(vars) > maxVariants {
				t.Fatalf("%d variants of %s, want %d..%d", len(vars), canonical(v), tc.minVariants, maxVariants)
			}
			seen := map[string]bool{canonical(v): true}
			for _, w := range vars {
				if vs := s.Validate(w); len(vs) > 0 {
					t.Errorf("variant %s does not validate: %v", canonical(w), vs)
				}
				if seen[canonical(w)] {
					t.Errorf("variant %s repeats", canonical(w))
				}
				seen[canonical(w)] = true
			}
		})
	}
}

// TestSynthesisGivesUpNamingThePath: a schema the generator cannot
// satisfy gives an error that names where.
func TestSynthesisGivesUpNamingThePath(t *testing.T) {
	for _, tc := range []struct {
		name, schema, want string
	}{
		{"pattern longer than maxLength", `{"type":"object","required":["code"],"properties":{"code":{"type":"string","pattern":"^[a-z]{5}$","maxLength":3}}}`, "/code: no string of length 0..3 matching pattern"},
		{"empty number range", `{"type":"object","required":["n"],"properties":{"n":{"type":"object","required":["x"],"properties":{"x":{"type":"integer","minimum":5,"maximum":4}}}}}`, "/n/x: no number in [5, 4]"},
		{"required but forbidden", `{"type":"object","additionalProperties":false,"required":["ghost"],"properties":{"a":{"type":"string"}}}`, "(root): property ghost is required but not allowed"},
		{"false schema", `{"type":"object","required":["never"],"properties":{"never":false}}`, "/never: the schema is false"},
		{"format the validator refuses", `{"type":"object","required":["d"],"properties":{"d":{"type":"string","format":"date","maxLength":4}}}`, "/d: the date sample"},
		{"keyword the generator ignores", `{"type":"object","required":["s"],"properties":{"s":{"type":"string","not":{"const":"lab"}}}}`, "/s: the synthesised value does not validate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := synthValue(compileJSON(t, tc.schema), hints{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func loadTestProgram(t *testing.T, path string) (*program.Program, []byte) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := program.Load(path, src)
	if err != nil {
		t.Fatal(err)
	}
	return p, src
}

// TestSynthesisReachesEveryState: on a program shipped without answers,
// the synthesised scripts together enter every state, each answer
// validates, and synthesis is deterministic.
func TestSynthesisReachesEveryState(t *testing.T) {
	p, _ := loadTestProgram(t, "testdata/expense-claim.yaml")
	scripts, notes, err := Synthesize(p)
	if err != nil || len(notes) > 0 {
		t.Fatal(err, notes)
	}
	entered := map[string]bool{}
	for _, s := range scripts {
		if vs := p.Input.Validate(s.Input); len(vs) > 0 {
			t.Fatalf("%s: input %v", s.Name, vs)
		}
		for _, name := range strings.Split(s.Name[strings.Index(s.Name, "(")+1:len(s.Name)-1], ">") {
			entered[name] = true
		}
	}
	for _, name := range p.Order {
		if !entered[name] {
			t.Errorf("no script enters %s: %v", name, scriptNames(scripts))
		}
	}
	again, _, _ := Synthesize(p)
	if canonical(again) != canonical(scripts) {
		t.Fatalf("not deterministic:\n%v\n%v", scriptNames(scripts), scriptNames(again))
	}
}

func scriptNames(ss []Script) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

// TestMatrixOnASynthesisedProgram runs the whole laboratory on a program
// without example input and answers: every sub-attack applies and passes
// on synthesised runs (gdpr_erase aside, not implemented), each attacked
// run verifies and records its attack.
func TestMatrixOnASynthesisedProgram(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t)
	p, src := loadTestProgram(t, "testdata/expense-claim.yaml")
	if err := env.Service.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	results, err := Matrix(ctx, env, MatrixOptions{Program: p.Name})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(catalog()) {
		t.Fatalf("%d results", len(results))
	}
	for _, r := range results {
		key := r.Fault + "/" + r.SubAttack
		if r.Fault == GDPRErase {
			if r.Applicable || r.Detail == "" {
				t.Errorf("%s: %+v", key, r)
			}
			continue
		}
		if !r.Applicable || !r.Pass || r.Observed != r.Expected {
			t.Errorf("%s: expected %s, observed %s (applicable %v, pass %v): %s %v", key, r.Expected, r.Observed, r.Applicable, r.Pass, r.Detail, r.Verification)
			continue
		}
		if r.Fault == InvalidProgram {
			continue
		}
		if !r.Verified() || r.TraceVerified == nil || r.ReceiptVerified == nil {
			t.Errorf("%s: not verified: %v", key, r.Verification)
		}
		checkRecorded(t, env, r)
	}
	// The runs started the way every lab run does.
	for _, r := range results {
		if r.RunID == "" {
			continue
		}
		run, _, err := env.Service.Get(ctx, r.RunID)
		if err != nil || !run.Lab || !slices.Contains(p.Order, run.State) {
			t.Fatalf("%s: %+v %v", r.RunID, run, err)
		}
	}
}

// TestPromptInjectionOnAnOptionalFreeTextField: a program whose only free
// text is an optional field that the synthesised answers leave out still
// meets every prompt_injection sub-attack, the payload going into that
// field; a program with no free text at all is n/a, with a note that says
// why each open task was passed over.
func TestPromptInjectionOnAnOptionalFreeTextField(t *testing.T) {
	src, err := os.ReadFile("testdata/ticket-triage.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const field = "rationale: {type: string}"
	if !strings.Contains(string(src), field) {
		t.Fatalf("testdata/ticket-triage.yaml lost its %q", field)
	}
	for _, tc := range []struct {
		name, src string
		applies   bool
		detail    []string // each in every result's detail
	}{
		{"optional rationale", string(src), true, []string{"in rationale of triage", "accepted as data"}},
		{"no free text", strings.Replace(string(src), field, "rationale: {type: string, enum: [none]}", 1), false, []string{
			"at triage: the output of triage has no free-text string field",
			"at page_oncall: the output of page_oncall has no free-text string field",
			"the runs end completed",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			env := newEnv(t)
			p, err := program.Load("ticket-triage.yaml", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			if err := env.Service.AddProgram(ctx, p, []byte(tc.src)); err != nil {
				t.Fatal(err)
			}
			scripts, _, err := Synthesize(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range scripts {
				if m, ok := s.Answers[0].(map[string]any); !ok || m["rationale"] != nil {
					t.Fatalf("%s: the synthesised answer at triage %s should leave rationale out", s.Name, canonical(s.Answers[0]))
				}
			}
			results, err := Matrix(ctx, env, MatrixOptions{Program: p.Name, Faults: []string{ToolInjection}})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range results {
				if !strings.HasPrefix(r.SubAttack, "prompt_injection:") {
					continue
				}
				n++
				if r.Applicable != tc.applies || tc.applies && (!r.Pass || r.Observed != Inert || !r.Verified()) {
					t.Errorf("%s: applicable %v, expected %s, observed %s (pass %v): %s %v", r.SubAttack, r.Applicable, r.Expected, r.Observed, r.Pass, r.Detail, r.Verification)
				}
				for _, d := range tc.detail {
					if !strings.Contains(r.Detail, d) {
						t.Errorf("%s: detail %q, want it to say %q", r.SubAttack, r.Detail, d)
					}
				}
			}
			if n != len(injections()) {
				t.Fatalf("%d prompt_injection results, want %d", n, len(injections()))
			}
		})
	}
}

// TestFreeTextFieldFollowsTheSchema: the free-text field is found from the
// schema, present in the value or not, through $ref and allOf, and only
// where a string may go.
func TestFreeTextFieldFollowsTheSchema(t *testing.T) {
	for _, tc := range []struct {
		name, schema, value string
		path                string // "" for none
		room                int
	}{
		{"optional and absent", `{"type":"object","required":["p"],"properties":{"p":{"enum":["a","b"]},"rationale":{"type":"string"}}}`, `{"p":"a"}`, "rationale", math.MaxInt},
		{"present beats nothing", `{"type":"object","properties":{"s":{"type":"string","maxLength":9}}}`, `{"s":"x"}`, "s", 9},
		{"the most room wins, present or not", `{"type":"object","properties":{"a":{"type":"string","maxLength":400},"z":{"type":"string"}}}`, `{"a":"x"}`, "z", math.MaxInt},
		{"ties go to the first in byte order", `{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"string"}}}`, `{}`, "a", math.MaxInt},
		{"nullable string", `{"type":"object","properties":{"n":{"type":["null","string"],"maxLength":5}}}`, `{}`, "n", 5},
		{"through $ref", `{"$defs":{"t":{"type":"string","maxLength":7}},"type":"object","properties":{"r":{"$ref":"#/$defs/t"}}}`, `{}`, "r", 7},
		{"through allOf", `{"type":"object","allOf":[{"properties":{"x":{"type":"string","maxLength":3}}}]}`, `{}`, "x", 3},
		{"nested where the value has the object", `{"type":"object","properties":{"o":{"type":"object","properties":{"why":{"type":"string"}}}}}`, `{"o":{}}`, "o.why", math.MaxInt},
		{"not into an absent object", `{"type":"object","properties":{"o":{"type":"object","properties":{"why":{"type":"string"}}}}}`, `{}`, "", 0},
		{"untyped and present", `{"type":"object","properties":{"u":{}}}`, `{"u":"text"}`, "u", math.MaxInt},
		{"untyped and absent", `{"type":"object","properties":{"u":{}}}`, `{}`, "", 0},
		{"present but not a string", `{"type":"object","properties":{"v":{"type":["string","number"]}}}`, `{"v":3}`, "", 0},
		{"constrained strings", `{"type":"object","properties":{"e":{"type":"string","enum":["a"]},"c":{"const":"x"},"p":{"type":"string","pattern":"^a$"},"f":{"type":"string","format":"date"}}}`, `{}`, "", 0},
		{"undeclared fields", `{"type":"object"}`, `{"free":"text"}`, "", 0},
		{"not an object", `{"type":"string"}`, `"text"`, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := jsonvalue.Decode([]byte(tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			v, err := jsonvalue.Decode([]byte(tc.value))
			if err != nil {
				t.Fatal(err)
			}
			path, room, ok := FreeTextField(doc, v)
			if got := strings.Join(path, "."); got != tc.path || ok != (tc.path != "") || ok && room != tc.room {
				t.Fatalf("FreeTextField = %q, %d, %v; want %q, %d", got, room, ok, tc.path, tc.room)
			}
		})
	}
}
