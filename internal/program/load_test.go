package program

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestProgramSchemaUpToDate(t *testing.T) {
	path := filepath.Join("..", "..", "schemas", "program.schema.json")
	want := FormatSchemaJSON()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("schemas/program.schema.json is stale: run go test ./internal/program -run TestProgramSchemaUpToDate -update")
	}
}

// base is a valid program; the table below breaks it one way at a time.
const base = `
name: t
version: 1.0
input_schema:
  type: object
  properties:
    k: {type: integer}
    customer:
      type: object
      properties:
        id: {type: string}
        name: {type: string}
  required: [k]
subjects:
  customer:
    id: input.customer.id
    pii: [input.customer.name]
initial: a
states:
  a:
    kind: llm
    instructions: do it
    view: [input.k]
    output_schema:
      type: object
      properties:
        ok: {type: boolean}
        risk: {type: string}
      required: [ok]
    transitions:
      - to: b
        when: output.ok
      - to: done
  b:
    kind: decision
    transitions:
      - to: done
        when: input.k == 0
      - to: done
  done: {kind: terminal, outcome: DONE}
`

func load(t *testing.T, src string) (*Program, []Problem) {
	t.Helper()
	p, err := Load("t.yaml", []byte(src))
	if err == nil {
		return p, nil
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error is %T, want *Error: %v", err, err)
	}
	return nil, pe.Problems
}

func TestBaseProgramLoads(t *testing.T) {
	p, probs := load(t, base)
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	if p.Version != "1.0" {
		t.Fatalf("version %q: YAML typing was not pinned", p.Version)
	}
	if !strings.HasPrefix(p.Hash, "sha256:") || len(p.Hash) != 71 {
		t.Fatalf("hash %q", p.Hash)
	}
}

// rejectCase breaks a valid program one way (edit) and names the problem
// the loader must report: state, field (each "" for any) and a piece of
// its text.
type rejectCase struct {
	name  string
	edit  func(string) string
	state string
	field string
	msg   string
}

func TestLoadRejects(t *testing.T) {
	tests := []rejectCase{
		{"unknown field", repl("    instructions: do it", "    instructions: do it\n    nxt_step: b"), "a", "", "nxt_step"},
		{"duplicate key", repl("    instructions: do it", "    instructions: do it\n    instructions: again"), "", "", "duplicate key"},
		{"duplicate state", repl("  done: {kind: terminal, outcome: DONE}", "  done: {kind: terminal, outcome: DONE}\n  done: {kind: terminal, outcome: X}"), "", "", "duplicate key \"done\""},
		{"missing target", repl("      - to: b\n", "      - to: nowhere\n"), "a", "transitions[0].to", "not defined"},
		{"unreachable state", repl("  done: {", "  orphan: {kind: terminal, outcome: O}\n  done: {"), "orphan", "kind", "unreachable"},
		{"cannot reach a terminal", repl("      - to: done\n        when: input.k == 0\n      - to: done", "      - to: spin\n  spin:\n    kind: llm\n    max_visits: 3\n    output_schema: {type: object}\n    transitions:\n      - to: spin"), "spin", "transitions", "cannot reach a terminal"},
		{"default not last", repl("      - to: b\n        when: output.ok\n      - to: done", "      - to: done\n      - to: b\n        when: output.ok"), "a", "transitions[0]", "must be the last"},
		{"no default and no on_no_match", repl("      - to: b\n        when: output.ok\n      - to: done", "      - to: b\n        when: output.ok"), "a", "transitions", "no default transition"},
		{"guard not bool", repl("when: output.ok", "when: output.risk"), "a", "transitions[0].when", "bool"},
		{"guard does not compile", repl("when: output.ok", "when: output.ok &&"), "a", "transitions[0].when", ""},
		{"guard type mismatch", repl("when: input.k == 0", "when: input.k == 'x'"), "b", "transitions[0].when", ""},
		{"output in a decision state", repl("when: input.k == 0", "when: output.ok"), "b", "transitions[0].when", "output"},
		{"data reference not set on every path", repl("when: output.ok", "when: data.a.ok"), "a", "transitions[0].when", "has(data.a)"},
		{"guard reads personal data", repl("when: output.ok", "when: output.ok && input.customer.name == 'x'"), "a", "transitions[0].when", "personal data"},
		{"data of a state left by its timeout", func(s string) string {
			s = repl("    instructions: do it", "    instructions: do it\n    timeout: 1h\n    on_timeout: b")(s)
			return repl("when: input.k == 0", "when: data.a.ok")(s)
		}, "b", "transitions[0].when", "has(data.a)"},
		{"guard reads personal data through output", func(s string) string {
			s = repl("pii: [input.customer.name]", "pii: [input.customer.name, data.a.risk]")(s)
			return repl("when: output.ok", "when: output.ok && output.risk == 'x'")(s)
		}, "a", "transitions[0].when", "personal data"},
		{"view path that cannot exist", repl("view: [input.k]", "view: [input.k.deeper]"), "a", "view[0]", "cannot exist"},
		{"pii path that cannot exist", repl("pii: [input.customer.name]", "pii: [data.a.missing]"), "", "subjects.customer.pii[0]", "cannot exist"},
		{"invalid output schema", repl("ok: {type: boolean}", "ok: {type: bool}"), "a", "", "invalid JSON Schema"},
		{"misspelt schema keyword", repl("ok: {type: boolean}", "ok: {type: boolean, requird: true}"), "a", "output_schema.properties.ok.requird", "unknown keyword"},
		{"field not for this kind", repl("    kind: decision", "    kind: decision\n    role: x"), "b", "role", "does not apply"},
		{"reserved outcome", repl("outcome: DONE", "outcome: FAILED"), "done", "outcome", "reserved"},
		{"unbounded loop", repl("      - to: done\n        when: input.k == 0\n      - to: done", "      - to: done\n        when: input.k == 0\n      - to: a"), "a", "transitions", "bounded by no limit"},
		{"float spelling of an integer beyond 2^53", repl("k: {type: integer}", "k: {type: integer, maximum: 1e300}"), "", "", "2^53"},
		{"integer beyond 2^53", repl("k: {type: integer}", "k: {type: integer, maximum: 9007199254740993}"), "", "", "2^53"},
		{"yaml alias", repl("  done: {kind: terminal, outcome: DONE}", "  done: &d {kind: terminal, outcome: DONE}\n  again: *d"), "", "", "aliases"},
		{"bad state name", repl("  done: {", "  Done2: {kind: terminal, outcome: D}\n  done: {"), "", "", ""},
		{"initial not defined", repl("initial: a", "initial: zz"), "", "initial", "not defined"},
		{"on_no_match with a default", repl("    view: [input.k]", "    view: [input.k]\n    on_no_match: reject"), "a", "on_no_match", "no effect"},
	}
	runRejects(t, base, tests)
}

// runRejects loads each case's edit of src and requires its problem, with
// a file position.
func runRejects(t *testing.T, src string, tests []rejectCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, probs := load(t, tt.edit(src))
			if len(probs) == 0 {
				t.Fatal("program loaded; want a problem")
			}
			for _, p := range probs {
				if p.File != "t.yaml" || p.Line == 0 {
					t.Errorf("problem without a file position: %+v", p)
				}
				if (tt.state == "" || p.State == tt.state) && (tt.field == "" || p.Field == tt.field) && strings.Contains(p.String(), tt.msg) {
					return
				}
			}
			t.Fatalf("no problem with state %q field %q containing %q in:\n%s", tt.state, tt.field, tt.msg, problemsText(probs))
		})
	}
}

func TestLoadAccepts(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
	}{
		{"data reference guarded by has", repl("when: output.ok", "when: has(data.a) && data.a.ok")},
		{"data reference in a dominated state", repl("when: input.k == 0", "when: data.a.ok")},
		{"integer compared with an int literal", repl("when: input.k == 0", "when: input.k == 0 || input.k > 10")},
		{"string enum comparisons", repl("when: output.ok", "when: output.ok && output.risk in ['low', 'medium']")},
		{"version stays text", repl("version: 1.0", "version: 01.10")},
		{"YAML 1.2 decimal, not 1.1 octal", repl("k: {type: integer}", "k: {type: integer, maximum: 010, minimum: 0o7}")},
		{"json style flow mapping", repl("  done: {kind: terminal, outcome: DONE}", "  \"done\": {\"kind\": \"terminal\", \"outcome\": \"DONE\"}")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, probs := load(t, tt.edit(base)); len(probs) > 0 {
				t.Fatalf("problems:\n%s", problemsText(probs))
			}
		})
	}
}

// Personal data may sit in the elements of an array: pii paths step into
// them, guards may read the other fields of the elements but not it.
func TestPersonalDataInsideArrays(t *testing.T) {
	src := `
name: arr
version: "1"
input_schema:
  type: object
  properties:
    pid: {type: string}
    people:
      type: array
      maxItems: 5
      items:
        type: object
        additionalProperties: false
        properties:
          name: {type: string, maxLength: 20}
          age: {type: integer}
subjects:
  person:
    id: input.pid
    pii: [input.people.name]
initial: a
states:
  a:
    kind: decision
    transitions:
      - to: done
        when: GUARD
      - to: done
  done: {kind: terminal, outcome: DONE}
`
	if _, probs := load(t, strings.Replace(src, "GUARD", "input.people.exists(p, p.age > 3)", 1)); len(probs) > 0 {
		t.Fatalf("a guard over non-personal element fields was refused:\n%s", problemsText(probs))
	}
	_, probs := load(t, strings.Replace(src, "GUARD", "input.people.exists(p, p.name == 'x')", 1))
	if !strings.Contains(problemsText(probs), "personal data input.people.name") {
		t.Fatalf("a guard over personal element fields loaded: %s", problemsText(probs))
	}
	if _, probs := load(t, strings.Replace(strings.Replace(src, "GUARD", "true", 1), "input.people.name]", "input.people.nick]", 1)); !strings.Contains(problemsText(probs), "cannot exist") {
		t.Fatalf("a pii path into a field the elements do not have loaded: %s", problemsText(probs))
	}
}

func TestYAMLNumbersFollowTheCoreSchema(t *testing.T) {
	p, probs := load(t, repl("k: {type: integer}", "k: {type: integer, maximum: 010, title: 1_000}")(base))
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemsText(probs))
	}
	k := p.Input.Doc().(map[string]any)["properties"].(map[string]any)["k"].(map[string]any)
	if k["maximum"] != json.Number("10") || k["title"] != "1_000" {
		t.Fatalf("maximum %#v title %#v: want 10 and the string 1_000", k["maximum"], k["title"])
	}
}

func TestLoadReportsEveryProblemSortedAndStable(t *testing.T) {
	src := repl("      - to: b\n", "      - to: nowhere\n")(base)
	src = repl("view: [input.k]", "view: [input.k]\n    role: r")(src)
	_, first := load(t, src)
	_, second := load(t, src)
	if len(first) < 2 {
		t.Fatalf("want at least two problems, got %v", first)
	}
	if problemsText(first) != problemsText(second) {
		t.Fatal("problems differ between two loads")
	}
	for i := 1; i < len(first); i++ {
		if first[i-1].Line > first[i].Line {
			t.Fatalf("problems not sorted: %s", problemsText(first))
		}
	}
}

func TestExpressionProblemsCarryPositionInsideTheExpression(t *testing.T) {
	_, probs := load(t, repl("when: output.ok", "when: output.ok && outptu.ok")(base))
	for _, p := range probs {
		if p.Field == "transitions[0].when" && p.ExprLine == 1 && p.ExprColumn > 1 {
			return
		}
	}
	t.Fatalf("no positioned expression problem in:\n%s", problemsText(probs))
}

func TestDefinitionHash(t *testing.T) {
	p1, _ := load(t, base)
	p2, _ := load(t, strings.Replace(base, "name: t\n", "name: t\ndescription: same program, new words\n", 1))
	p3, _ := load(t, "# a comment changes nothing\n"+base)
	if p1 == nil || p2 == nil || p3 == nil {
		t.Fatal("programs did not load")
	}
	if p1.Hash != p3.Hash {
		t.Fatal("a comment changed the definition hash")
	}
	if p1.Hash == p2.Hash {
		t.Fatal("a description change did not change the definition hash")
	}
	// JSON and YAML spellings of one program hash alike.
	j := `{"name":"t","version":"1.0","initial":"done","states":{"done":{"kind":"terminal","outcome":"DONE"}}}`
	y := "name: t\nversion: 1.0\ninitial: done\nstates:\n  done: {kind: terminal, outcome: DONE}\n"
	pj, _ := load(t, j)
	py, _ := load(t, y)
	if pj == nil || py == nil || pj.Hash != py.Hash {
		t.Fatal("JSON and YAML forms of one program hash differently")
	}
}

func TestOutputSchemasAreClosedByDefault(t *testing.T) {
	p, _ := load(t, base)
	if vs := p.States["a"].Output.Validate(map[string]any{"ok": true, "approve_customer": true}); len(vs) == 0 {
		t.Fatal("an undeclared output field was accepted")
	}
}

func repl(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("test edit does not apply: " + old)
		}
		return strings.Replace(s, old, new, 1)
	}
}

func problemsText(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(`{"name":"t","version":"1","initial":"d","states":{"d":{"kind":"terminal","outcome":"D"}}}`))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("states: {a: {kind: decision, transitions: [{to: a}]}}\ninitial: a\nname: x\nversion: 1\n"))
	f.Add([]byte("version: 1e400\n"))
	f.Add([]byte("---\n...\n---\n"))
	for _, name := range []string{"../../examples/kyc-onboarding.yaml", "../../examples/refund.yaml", "../../examples/code-change.yaml"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Load("fuzz.yaml", data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || len(pe.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		if p.Hash == "" || p.Initial == nil {
			t.Fatal("loaded program without hash or initial state")
		}
	})
}

// approvalProgram has one approval state; APPROVALS is replaced by the
// approvals line under test (or nothing).
const approvalProgram = `
name: sign
version: "1"
initial: sign_off
states:
  sign_off:
    kind: approval
    role: officer
APPROVALS
    output_schema:
      type: object
      properties:
        approve: {type: boolean}
      required: [approve]
    transitions:
      - to: done
        when: output.approve
      - to: refused
  done: {kind: terminal, outcome: DONE}
  refused: {kind: terminal, outcome: REFUSED}
`

func TestApprovalsNeedDistinctApprovers(t *testing.T) {
	src := func(line string) string { return strings.Replace(approvalProgram, "APPROVALS\n", line, 1) }
	for _, tt := range []struct {
		line string
		want int
	}{{"", 1}, {"    approvals: 1\n", 1}, {"    approvals: 2\n", 2}, {"    approvals: 9\n", 9}} {
		p, probs := load(t, src(tt.line))
		if len(probs) > 0 {
			t.Fatalf("%q: %s", tt.line, problemsText(probs))
		}
		if got := p.States["sign_off"].Approvals; got != tt.want {
			t.Errorf("%q: approvals %d, want %d", tt.line, got, tt.want)
		}
	}
	// The default, written or not, is one definition: programs written
	// before the field existed keep their hash.
	implicit, _ := load(t, src(""))
	explicit, _ := load(t, src("    approvals: 1\n"))
	two, _ := load(t, src("    approvals: 2\n"))
	if implicit.Hash != explicit.Hash {
		t.Error("approvals: 1 changed the definition hash")
	}
	if two.Hash == implicit.Hash {
		t.Error("approvals: 2 kept the definition hash")
	}
	for _, line := range []string{"    approvals: 0\n", "    approvals: 10\n", "    approvals: -1\n", "    approvals: 1.5\n", "    approvals: two\n"} {
		_, probs := load(t, src(line))
		found := false
		for _, p := range probs {
			if p.Line == 9 && p.State == "sign_off" && p.Field == "approvals" {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: no positioned problem at sign_off.approvals in:\n%s", line, problemsText(probs))
		}
	}
}

func TestApprovalsOnlyOnApprovalStates(t *testing.T) {
	_, probs := load(t, repl("    instructions: do it", "    instructions: do it\n    approvals: 2")(base))
	for _, p := range probs {
		if p.State == "a" && p.Field == "approvals" && p.Line > 0 && strings.Contains(p.Message, "does not apply to a llm state") {
			return
		}
	}
	t.Fatalf("approvals on an llm state loaded or was not named:\n%s", problemsText(probs))
}

func TestElicitationOnlyOnApprovalStates(t *testing.T) {
	_, probs := load(t, repl("    instructions: do it", "    instructions: do it\n    elicitation: true")(base))
	for _, p := range probs {
		if p.State == "a" && p.Field == "elicitation" && p.Line > 0 && strings.Contains(p.Message, "does not apply to a llm state") {
			return
		}
	}
	t.Fatalf("elicitation on an llm state loaded or was not named:\n%s", problemsText(probs))
}

// TestLimitsAtZero pins each limit's lower bound: an explicit 0 is a value
// of its own only for max_rollbacks (no rollback at all); for the others it
// is refused, never read as "the default".
func TestLimitsAtZero(t *testing.T) {
	tests := []struct {
		limits string
		want   RunLimits // zero: the program is refused
		field  string    // the refused field
	}{
		{"{max_rollbacks: 0}", RunLimits{MaxSteps: 100, MaxAttempts: 3, MaxRollbacks: 0, MaxDocumentBytes: 1 << 20, MaxUncountedRejections: 32}, ""},
		{"{max_rollbacks: 1}", RunLimits{MaxSteps: 100, MaxAttempts: 3, MaxRollbacks: 1, MaxDocumentBytes: 1 << 20, MaxUncountedRejections: 32}, ""},
		{"{}", RunLimits{MaxSteps: 100, MaxAttempts: 3, MaxRollbacks: 3, MaxDocumentBytes: 1 << 20, MaxUncountedRejections: 32}, ""},
		{"{max_steps: 1, max_attempts: 1, max_document_bytes: 256}", RunLimits{MaxSteps: 1, MaxAttempts: 1, MaxRollbacks: 3, MaxDocumentBytes: 256, MaxUncountedRejections: 32}, ""},
		{"{max_uncounted_rejections: 1}", RunLimits{MaxSteps: 100, MaxAttempts: 3, MaxRollbacks: 3, MaxDocumentBytes: 1 << 20, MaxUncountedRejections: 1}, ""},
		{"{max_uncounted_rejections: 0}", RunLimits{}, "limits.max_uncounted_rejections"},
		{"{max_rollbacks: -1}", RunLimits{}, "limits.max_rollbacks"},
		{"{max_steps: 0}", RunLimits{}, "limits.max_steps"},
		{"{max_attempts: 0}", RunLimits{}, "limits.max_attempts"},
		{"{max_document_bytes: 0}", RunLimits{}, "limits.max_document_bytes"},
		{"{max_rollbacks: null}", RunLimits{}, "limits.max_rollbacks"},
	}
	for _, tt := range tests {
		t.Run(tt.limits, func(t *testing.T) {
			p, probs := load(t, withLimits(tt.limits))
			if tt.field == "" {
				if p == nil {
					t.Fatalf("refused:\n%s", problemsText(probs))
				}
				if p.Limits != tt.want {
					t.Fatalf("limits %+v, want %+v", p.Limits, tt.want)
				}
				return
			}
			if p != nil {
				t.Fatalf("loaded with limits %+v; want a problem at %s", p.Limits, tt.field)
			}
			for _, pr := range probs {
				if pr.Field == tt.field {
					return
				}
			}
			t.Fatalf("no problem at %s in:\n%s", tt.field, problemsText(probs))
		})
	}
	for _, tt := range []struct{ field, edit string }{
		{"max_attempts", "    instructions: do it\n    max_attempts: 0"},
		{"max_visits", "    instructions: do it\n    max_visits: 0"},
	} {
		t.Run("state "+tt.field+": 0", func(t *testing.T) {
			_, probs := load(t, repl("    instructions: do it", tt.edit)(base))
			for _, pr := range probs {
				if pr.State == "a" && pr.Field == tt.field {
					return
				}
			}
			t.Fatalf("no problem at a.%s in:\n%s", tt.field, problemsText(probs))
		})
	}
}

// TestDefinitionHashOfLimits: an explicit max_rollbacks: 0 is a different
// program from one that leaves the field out, while writing a default out
// changes nothing. The pinned hashes were taken before explicit values
// were told apart from absent ones: no program that loaded then hashes
// differently now.
func TestDefinitionHashOfLimits(t *testing.T) {
	hash := func(src string) string {
		t.Helper()
		p, probs := load(t, src)
		if p == nil {
			t.Fatalf("refused:\n%s", problemsText(probs))
		}
		return p.Hash
	}
	pinned := []struct{ name, src, hash string }{
		{"no limits", base, "sha256:86cf2c60c321c6076d3dfa2dbe638aea3e7462baf8978044a90b9d0310de96f0"},
		{"empty limits", withLimits("{}"), "sha256:86cf2c60c321c6076d3dfa2dbe638aea3e7462baf8978044a90b9d0310de96f0"},
		{"defaults written out", withLimits("{max_steps: 100, max_attempts: 3, max_rollbacks: 3, max_document_bytes: 1048576}"), "sha256:86cf2c60c321c6076d3dfa2dbe638aea3e7462baf8978044a90b9d0310de96f0"},
		{"one limit", withLimits("{max_rollbacks: 2}"), "sha256:b0e3d10c57a5ae245bb3b833009f85990f7241500eaa30999f5935ecb03f8a49"},
		// A limit added after programs were hashed: its default, written
		// or not, leaves every earlier hash as it was.
		{"uncounted default written out", withLimits("{max_uncounted_rejections: 32}"), "sha256:86cf2c60c321c6076d3dfa2dbe638aea3e7462baf8978044a90b9d0310de96f0"},
		{"uncounted limit", withLimits("{max_uncounted_rejections: 5}"), "sha256:f015ff068c60c6cea8b2e8d010af93076443e8dba46e94cf5e0e0ab190114e6b"},
		{"every limit", withLimits("{max_steps: 50, max_attempts: 2, max_rollbacks: 1, max_document_bytes: 4096}"), "sha256:a2c52437c2fe348f63e32c37a5c6dd6a80b3109f5255b0c689d1b6aa728e8969"},
	}
	seen := map[string]string{}
	for _, c := range pinned {
		if got := hash(c.src); got != c.hash {
			t.Errorf("%s: hash %s, want %s", c.name, got, c.hash)
		}
		seen[c.hash] = c.name
	}
	zero := hash(withLimits("{max_rollbacks: 0}"))
	if name, dup := seen[zero]; dup {
		t.Fatalf("max_rollbacks: 0 hashes like %q", name)
	}
	p, _ := load(t, withLimits("{max_rollbacks: 0}"))
	if got := *p.Normalized().Limits.MaxRollbacks; got != 0 {
		t.Fatalf("normalised max_rollbacks %d, want an explicit 0", got)
	}
}

// withLimits is base with the limits l (a YAML flow mapping).
func withLimits(l string) string {
	return repl("initial: a\n", "limits: "+l+"\ninitial: a\n")(base)
}
