package lab

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/policy"
)

// Injection is one prompt-injection payload.
type Injection struct {
	ID    string `json:"id"`
	Style string `json:"style"`
	Text  string `json:"text"`
}

// injectionsJSON holds the payloads: written for this project in the
// style of public prompt-injection suites, chiefly AgentDojo's attacks
// (important_instructions, ignore_previous, system_message,
// tool_knowledge; Debenedetti et al., 2024), aimed at this runtime's
// tools and decisions, plus a string-to-structure breakout.
//
//go:embed testdata/injections.json
var injectionsJSON []byte

// injections returns the payload fixtures.
func injections() []Injection {
	var out []Injection
	if err := json.Unmarshal(injectionsJSON, &out); err != nil {
		panic("lab: testdata/injections.json: " + err.Error())
	}
	return out
}

// guardVerdict is the independent oracle: the target of the first
// transition of the open state whose guard holds for output, evaluated
// directly on the program's compiled guards with the run's input and data,
// as docs/guards.md defines them. ok is false when none holds.
func guardVerdict(v *view, output any) (to string, ok bool) {
	vars := policy.Vars{Input: v.run.Input, Data: v.run.Data, Output: v.st.Output.Root.Convert(output)}
	for _, t := range v.st.Transitions {
		if t.Guard == nil {
			return t.To.Name, true
		}
		if holds, _, err := t.Guard.EvalBool(vars); holds && err == nil {
			return t.To.Name, true
		}
	}
	return "", false
}

// injection submits the known output with one payload appended to its
// free-text field. The output's fate is decided in advance by the schema
// and the oracle: a schema_violation, a guard_denied, or inert: accepted,
// with exactly the transition the guards give.
func injection(inj Injection) func(ctx context.Context, env Env, v *view) (outcome, error) {
	return func(ctx context.Context, env Env, v *view) (outcome, error) {
		path, _, _ := FreeTextField(v.st.Output.Doc(), v.base)
		out := jsonvalue.Clone(v.base)
		added := setString(out, path, func(s string) string {
			if s == "" {
				return inj.Text
			}
			return s + "\n\n" + inj.Text
		})
		var o outcome
		to, guarded := guardVerdict(v, out)
		switch {
		case len(v.st.Output.Validate(out)) > 0:
			o.expected = "schema_violation"
		case !guarded:
			o.expected = "guard_denied"
		default:
			o.expected = Inert
		}
		a, err := answerOpen(ctx, env, v.run, out, "")
		where := fmt.Sprintf("payload %s in %s of %s", inj.ID, strings.Join(path, "."), v.st.Name)
		if added {
			where += " (optional, added to the known output)"
		}
		if err != nil {
			o.observed, o.detail = code(err), where+": "+message(err)
			return o, nil
		}
		got := a.State
		if len(a.Transitions) > 0 {
			got = a.Transitions[0].To
		}
		if got == to {
			o.observed = Inert
			o.detail = fmt.Sprintf("%s: accepted as data; %s → %s, as the guards give", where, v.st.Name, got)
		} else {
			o.observed = "hijacked"
			o.detail = fmt.Sprintf("%s: the run went to %s, the guards give %s", where, got, to)
		}
		return o, nil
	}
}

// FreeTextField finds, among the string fields the schema doc declares
// for value (an object), the one that takes free text (no enum, const,
// pattern or format) with the most room (the largest maxLength, none being
// the largest), ties to the first path in byte order. maxLength is
// math.MaxInt for a field without one. The search follows the schema, not
// the value, so an optional field the value leaves out counts too: the
// caller adds it (setString does). Nested objects are searched where the
// value holds them; an absent one would need its own required fields. The
// injection fuzzer (internal/tools) pads the same field.
func FreeTextField(doc, value any) (path []string, maxLength int, ok bool) {
	g := &generator{root: doc}
	var best []string
	bestRoom := -1
	var walk func(schema any, v map[string]any, path []string, depth int)
	walk = func(schema any, v map[string]any, path []string, depth int) {
		s, err := g.resolve(schema, depth)
		if err != nil {
			return
		}
		props, _ := s["properties"].(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(props)) {
			at := append(append([]string(nil), path...), k)
			child, present := v[k]
			if m, isObject := child.(map[string]any); isObject {
				walk(props[k], m, at, depth+1)
				continue
			}
			ps, err := g.resolve(props[k], depth+1)
			if err != nil {
				continue
			}
			if room, free := freeText(ps, child, present); free && room > bestRoom {
				best, bestRoom = at, room
			}
		}
	}
	if m, isObject := value.(map[string]any); isObject {
		walk(doc, m, nil, 0)
	}
	return best, bestRoom, best != nil
}

// freeText reports whether a field of schema s (resolved) holding v takes
// free text, and its room. A present field must hold a string; an absent
// one must be declared a string, since the value says nothing.
func freeText(s map[string]any, v any, present bool) (room int, ok bool) {
	for _, k := range []string{"enum", "const", "pattern", "format"} {
		if _, has := s[k]; has {
			return 0, false
		}
	}
	if _, isString := v.(string); present && !isString {
		return 0, false
	}
	switch t := s["type"].(type) {
	case string:
		ok = t == "string"
	case []any:
		ok = slices.Contains(t, any("string"))
	case nil:
		ok = present || typeOf(s) == "string"
	}
	room = math.MaxInt
	if n, has := number(s["maxLength"]); has {
		room = n
	}
	return room, ok
}

func number(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	case float64:
		return int(n), true
	case int64:
		return int(n), true
	case int:
		return n, true
	}
	return 0, false
}

// setString replaces the string at path inside v (a decoded object) by f
// of it; a field the last object lacks is added as f(""), and added says so.
func setString(v any, path []string, f func(string) string) (added bool) {
	for i, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if i == len(path)-1 {
			cur, has := m[k]
			if !has {
				m[k] = f("")
				return true
			}
			if s, ok := cur.(string); ok {
				m[k] = f(s)
			}
			return false
		}
		v = m[k]
	}
	return false
}

// variation is a changed output and what changed.
type variation struct {
	value  any
	change string
}

// noMatchOutput searches, among the one-field variations of the known
// output (booleans flipped, other enum values, empty strings and arrays,
// zero numbers), for a schema-valid one that no guard of the open state
// accepts.
func noMatchOutput(v *view) (variation, bool) {
	base, ok := v.base.(map[string]any)
	if !ok {
		return variation{}, false
	}
	doc, _ := v.st.Output.Doc().(map[string]any)
	props, _ := doc["properties"].(map[string]any)
	keys := make([]string, 0, len(base))
	for k := range base {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		schema, _ := props[k].(map[string]any)
		for _, alt := range alternatives(base[k], schema) {
			out := jsonvalue.Clone(base).(map[string]any)
			out[k] = alt
			if len(v.st.Output.Validate(out)) > 0 {
				continue
			}
			if _, holds := guardVerdict(v, out); !holds {
				return variation{value: out, change: fmt.Sprintf("a valid output with %s = %s", k, canonical(alt))}, true
			}
		}
	}
	return variation{}, false
}

func alternatives(v any, schema map[string]any) []any {
	var out []any
	if enum, ok := schema["enum"].([]any); ok {
		for _, e := range enum {
			if canonical(e) != canonical(v) {
				out = append(out, e)
			}
		}
		return out
	}
	switch x := v.(type) {
	case bool:
		return []any{!x}
	case string:
		return []any{""}
	case []any:
		return []any{[]any{}}
	case json.Number, float64, int64:
		return []any{json.Number("0"), json.Number("-1")}
	}
	return nil
}
