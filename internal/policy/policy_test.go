package policy

import (
	"errors"
	"fmt"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
	"reflect"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/interpreter"
)

// testEnvs are the environments the tables refer to by name.
func testEnvs(t testing.TB) map[string]*Env {
	d := fixtureDecls()
	decision := fixtureDecls()
	decision.Output = nil
	return map[string]*Env{
		"state":    mustEnv(t, d, Options{}),
		"decision": mustEnv(t, decision, Options{}),
		"small":    mustEnv(t, d, Options{CostLimit: 1000}),
	}
}

func TestCompileAndEval(t *testing.T) {
	envs := testEnvs(t)
	tests := []struct {
		name string
		env  string // default "state"
		kind Kind   // default GuardKind
		src  string

		// Compile failure: the first problem contains problem, at line:col.
		problem   string
		line, col int

		// Success: EvalBool (or Eval for ValueKind) gives want, or an
		// error containing evalErr.
		want    any
		evalErr string
	}{
		// Values and operators.
		{name: "int equals zero", src: "input.k == 0", want: true},
		{name: "int literal compares with double field", src: "output.amount <= input.order_total", want: true},
		{name: "simple guard", src: "output.approved && output.amount <= input.order_total", want: true},
		{name: "precedence and binds tighter", src: "true || false && false", want: true},
		{name: "parentheses override", src: "(true || false) && false", want: false},
		{name: "precedence with fields", src: "input.k == 1 || input.k == 0 && output.approved", want: true},
		{name: "not prefix", src: "!output.approved || input.k == 0", want: true},
		{name: "not parenthesized", src: "!(input.k == 0)", want: false},
		{name: "double not", src: "!!output.approved", want: true},
		{name: "not inside comprehension", src: "output.reasons.all(r, !(r == 'bad'))", want: true},
		{name: "ternary", src: "input.k == 0 ? output.approved : false", want: true},
		{name: "in list field", src: "'vip' in input.tags", want: true},
		{name: "not in list field", src: "!('x' in input.tags)", want: true},
		{name: "in list literal", src: "input.k in [0, 1]", want: true},
		{name: "string in literal list", src: "output.risk in ['low', 'medium']", want: true},
		{name: "index list", src: "input.tags[1] == 'vip'", want: true},
		{name: "index out of range", src: "input.tags[5] == 'x'", evalErr: "index out of bounds"},
		{name: "map field by select", src: "input.profile.city == 'Paris'", want: true},
		{name: "map field by literal key", src: "input.profile['city'] == 'Paris'", want: true},
		{name: "size of list", src: "size(input.tags) == 2 && input.tags.size() == 2", want: true},
		{name: "size of string", src: "size(input.name) == 3", want: true},
		{name: "exists", src: "output.reasons.exists(r, r == 'ok')", want: true},
		{name: "all", src: "input.tags.all(t, size(t) > 0)", want: true},
		{name: "exists_one", src: "input.tags.exists_one(t, t.startsWith('v'))", want: true},
		{name: "exists over objects", src: "input.customers.exists(c, c.id == '1')", want: true},
		{name: "string functions", src: "input.name.contains('n') && input.name.startsWith('a') && input.name.endsWith('n')", want: true},
		{name: "matches literal pattern", src: "input.name.matches('^a.n$')", want: true},
		{name: "int arithmetic", src: "input.k + 1 == 1 && input.order_total - 1 == 99 && input.order_total * 2 == 200 && -input.k == 0", want: true},
		{name: "double arithmetic", src: "output.amount * 2.0 == 100.0 && output.amount + 0.5 > 50.0", want: true},
		{name: "conversions", src: "int(output.amount) == 50 && double(input.k) == 0.0 && string(input.k) == '0' && int('7') == 7", want: true},
		{name: "conversion of malformed string fails at runtime", src: "int(input.name) == 1", evalErr: "type conversion error"},
		{name: "dyn field compared", src: "input.meta.flag == true", want: true},
		{name: "dyn plus int resolves to int", src: "input.meta.n + 1 == 4", want: true},
		{name: "dyn compared with int", src: "input.meta.n < 10", want: true},
		{name: "nullable field is dyn", src: "input.nick == null", want: true},
		{name: "has present", src: "has(input.customer.id)", want: true},
		{name: "has absent", src: "has(input.customer.age)", want: false},
		{name: "missing field without has", src: "input.customer.age > 1", evalErr: "no such key: age"},
		{name: "missing field behind has", src: "has(input.customer.age) && input.customer.age > 1", want: false},
		{name: "absent state without has", src: "data.review.approved", evalErr: "no such key: review"},
		{name: "absent state behind has", src: "has(data.review) && data.review.approved", want: false},
		{name: "deep has on absent state errors", src: "has(data.review.approved)", evalErr: "no such key: review"},
		{name: "present state", src: "has(data.collect) && data.collect.verified", want: true},
		{name: "error absorbed by false conjunct", src: "data.review.approved && has(data.review)", want: false},

		// Type errors.
		{name: "int compared with string", src: "input.k == 'x'", problem: "found no matching overload for '_==_' applied to '(int, string)'", line: 1, col: 9},
		{name: "double compared with string", src: "output.amount > 'x'", problem: "found no matching overload for '_>_'", line: 1, col: 15},
		{name: "guard of type string", src: "output.risk", problem: "guard must be bool, got string", line: 1, col: 1},
		{name: "guard of type dyn", src: "input.meta.flag", problem: "guard must be bool, got dyn", line: 1, col: 1},
		{name: "guard of object type", src: "output", problem: "guard must be bool, got object output", line: 1, col: 1},
		{name: "guard of type int", src: "input.k + 1", problem: "guard must be bool, got int", line: 1, col: 1},
		{name: "undeclared field", src: "input.customer.nme == 'x'", problem: "undefined field 'nme'", line: 1, col: 15},
		{name: "undefined state", src: "has(data.nope)", problem: "undefined field 'nope'", line: 1, col: 4},
		{name: "undefined state select", src: "data.nope.x == 1", problem: "undefined field 'nope'", line: 1, col: 5},
		{name: "undeclared variable", src: "x == 1", problem: "undeclared reference to 'x'", line: 1, col: 1},
		{name: "size of struct", src: "size(input.customer) > 0", problem: "found no matching overload for 'size' applied to '(object:input.customer)'", line: 1, col: 5},
		{name: "multi-line position", src: "input.k == 0 &&\n  output.risk == 1", problem: "found no matching overload for '_==_'", line: 2, col: 15},

		// output in a decision state.
		{name: "output in decision state", env: "decision", src: "output.approved", problem: "output is not available in a decision state", line: 1, col: 1},
		{name: "output later in decision state", env: "decision", src: "input.k == 0 && has(output.approved)", problem: "output is not available in a decision state", line: 1, col: 21},
		{name: "decision guard without output", env: "decision", src: "has(data.collect) && data.collect.verified", want: true},

		// Forbidden functions and operators.
		{name: "timestamp", src: "timestamp('2020-01-01T00:00:00Z') < timestamp('2021-01-01T00:00:00Z')", problem: "timestamp is not allowed: an expression must not read a clock", line: 1, col: 1},
		{name: "duration", src: "duration('1h') > duration('1m')", problem: "duration is not allowed", line: 1, col: 1},
		{name: "time accessor", src: "input.k.getFullYear() > 2000", problem: "getFullYear is not allowed", line: 1, col: 9},
		{name: "dyn", src: "dyn(input.k) == 'x'", problem: "dyn() is not allowed", line: 1, col: 1},
		{name: "type", src: "type(input.k) == int", problem: "type() is not allowed", line: 1, col: 1},
		{name: "type name as value", src: "int == int", problem: "int is not a value here", line: 1, col: 1},
		{name: "division", src: "input.k / 2 == 0", problem: "division is not allowed", line: 1, col: 9},
		{name: "remainder", src: "input.k % 2 == 0", problem: "the remainder operator % is not allowed", line: 1, col: 9},
		{name: "string concatenation", src: "input.name + 'x' == 'annx'", problem: "concatenation with + is not allowed", line: 1, col: 12},
		{name: "list concatenation", src: "size(input.tags + ['x']) == 3", problem: "concatenation with + is not allowed", line: 1, col: 17},
		{name: "dyn plus dyn may concatenate", src: "input.meta.n + input.meta.n == 6", problem: "concatenation with + is not allowed", line: 1, col: 14},
		{name: "map macro", src: "input.tags.map(t, t).size() > 0", problem: "macro map is not allowed", line: 1, col: 12},
		{name: "filter macro", src: "size(input.tags.filter(t, t == 'a')) > 0", problem: "macro filter is not allowed", line: 1, col: 17},
		{name: "bind macro", src: "cel.bind(x, 1, x == 1)", problem: "macro bind is not allowed", line: 1, col: 5},
		{name: "two-variable all", src: "input.profile.all(k, v, v == 'x')", problem: "all takes a variable and a predicate", line: 1, col: 15},
		{name: "bytes literal", src: "b'abc' == b'abc'", problem: "bytes literals are not allowed", line: 1, col: 1},
		{name: "uint literal", src: "1u == 1u", problem: "unsigned integer literals are not allowed", line: 1, col: 1},
		{name: "uint conversion", src: "uint(input.k) == uint(input.k)", problem: "uint() is not allowed", line: 1, col: 1},
		{name: "bool conversion", src: "bool('true')", problem: "bool() is not allowed", line: 1, col: 1},
		{name: "unknown function", src: "frobnicate(input.k)", problem: "function frobnicate is not allowed", line: 1, col: 1},
		{name: "extension function", src: "input.name.lowerAscii() == 'ann'", problem: "function lowerAscii is not allowed", line: 1, col: 12},
		{name: "object literal", src: "input.customer{name: 'x'} == input.customer", problem: "object literals are not allowed", line: 1, col: 15},
		{name: "well-known object literal", src: "google.protobuf.Int64Value{value: 1} == 1", problem: "object literals are not allowed", line: 1, col: 27},
		{name: "map literal", src: "{'x': 1, 'y': 2}[input.k] == 1", problem: "map literals are not allowed: compare fields instead", line: 1, col: 1},
		{name: "map literal after an operator", src: "input.k == 0 ||\n  {'a': true}[input.name]", problem: "map literals are not allowed", line: 2, col: 3},
		{name: "empty map literal", src: "'k' in {}", problem: "map literals are not allowed", line: 1, col: 8},
		{name: "matches computed pattern", src: "input.name.matches(input.country)", problem: "the pattern of matches must be a string literal", line: 1, col: 20},
		{name: "matches invalid pattern", src: "input.name.matches('(')", problem: "invalid regular expression", line: 1, col: 20},
		{name: "bare data", src: "data == data", problem: "data must be followed by a state name", line: 1, col: 1},
		{name: "variable hides input", src: "[1].exists(input, input == 1)", problem: "variable input would hide the input variable", line: 1, col: 11},

		// Text CEL does not understand.
		{name: "stray at sign", src: "input.k == 1 @ 2", problem: "token recognition error at: '@'", line: 1, col: 14},
		{name: "python import", src: "__import__('os')", problem: "function __import__ is not allowed", line: 1, col: 1},
		{name: "dollar and triple equals", src: "$a === 1", problem: "token recognition error at: '$'", line: 1, col: 1},
		{name: "assignment", src: "input.k = 1", problem: "Syntax error", line: 1, col: 9},
		{name: "trailing semicolon", src: "input.k == 1;", problem: "Syntax error", line: 1, col: 13},
		{name: "dangling operator", src: "input.k ==", problem: "Syntax error", line: 1, col: 11},
		{name: "empty", src: "", problem: "expression is empty", line: 1, col: 1},
		{name: "blank", src: " \n\t", problem: "expression is empty", line: 1, col: 1},
		{name: "non-ASCII garbage", src: "input.k == 1 § 2", problem: "token recognition error at: '§'", line: 1, col: 14},
		{name: "invalid UTF-8", src: "input.k == \xff", problem: "not valid UTF-8", line: 1, col: 12},
		{name: "too long", src: "input.k == 0" + strings.Repeat(" ", MaxExpressionBytes), problem: "the limit is 4096", line: 1, col: 1},
		{name: "too deep", src: strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200), problem: "expression recursion limit exceeded: 64"},

		// Cost.
		{name: "unbounded exists over budget", env: "small", src: "input.items.exists(i, i == 'x')", problem: "exceeds the budget 1000; declare maxItems/maxLength"},
		{name: "unbounded exists over default budget", src: "input.items.exists(i, i.contains('x'))", problem: "exceeds the budget 1000000"},
		{name: "bounded exists within small budget", env: "small", src: "output.reasons.exists(r, r == 'ok')", want: true},

		// Personal data.
		{name: "pii field", src: "input.customer.name == 'Bob'", problem: "guard reads personal data input.customer.name; decide on a step output instead", line: 1, col: 1},
		{name: "pii in has", src: "has(input.customer.name)", problem: "guard reads personal data input.customer.name", line: 1, col: 5},
		{name: "pii through comprehension variable", src: "input.customers.exists(c, c.name == 'x')", problem: "guard reads personal data input.customers.name", line: 1, col: 27},
		{name: "pii ancestor element used whole", src: "input.customers.exists(c, c == c)", problem: "guard reads personal data input.customers.name", line: 1, col: 27},
		{name: "pii ancestor compared whole", src: "input.customer == input.customer", problem: "guard reads personal data input.customer.name", line: 1, col: 1},
		{name: "pii ancestor map size", src: "size(input.profile) > 0", problem: "guard reads personal data input.profile.name", line: 1, col: 6},
		{name: "pii map literal key", src: "input.profile['name'] == 'x'", problem: "guard reads personal data input.profile.name", line: 1, col: 1},
		{name: "pii map computed key", src: "input.profile[input.country] == 'x'", problem: "guard reads personal data input.profile.name", line: 1, col: 1},
		{name: "pii in list index", src: "input.customers[0].name == 'x'", problem: "guard reads personal data input.customers.name", line: 1, col: 1},
		{name: "pii in data", src: "has(data.collect) && data.collect.full_name == 'x'", problem: "guard reads personal data data.collect.full_name", line: 1, col: 22},
		{name: "pii in list literal", src: "'x' in [input.customer.name]", problem: "guard reads personal data input.customer.name", line: 1, col: 9},
		{name: "pii sibling is fine", src: "input.customer.id == 'c1'", want: true},
		{name: "pii ancestor presence is fine", src: "has(input.customer) && has(data.collect)", want: true},
		{name: "pii element sibling is fine", src: "input.customers.exists(c, c.id == '1')", want: true},
		{name: "pii other map entry is fine", src: "input.profile.city == 'Paris'", want: true},
		{name: "pii other map key membership is fine", src: "'city' in input.profile", want: true},
		{name: "pii map key membership", src: "'name' in input.profile", problem: "guard reads personal data input.profile.name", line: 1, col: 11},
		{name: "pii map computed key membership", src: "input.country in input.profile", problem: "guard reads personal data input.profile.name", line: 1, col: 18},
		{name: "pii in tool argument", kind: ValueKind, src: "input.customer.name", want: "Bob"},

		// Values (tool arguments).
		{name: "value int", kind: ValueKind, src: "input.k", want: int64(0)},
		{name: "value object", kind: ValueKind, src: "input.customer", want: map[string]any{"name": "Bob", "id": "c1"}},
		{name: "value list literal", kind: ValueKind, src: "[input.k, output.amount, 'x', null, true]", want: []any{int64(0), 50.0, "x", nil, true}},
		{name: "value map literal", kind: ValueKind, src: "{'tags': input.tags, 'n': input.k + 1}", want: map[string]any{"tags": []any{"a", "vip"}, "n": int64(1)}},
		{name: "value non-finite double", kind: ValueKind, src: "output.amount * 1e308 * 10.0", evalErr: "not a JSON number"},
		{name: "value with non-string key", kind: ValueKind, src: "{1: 'a'}", evalErr: "not string"},
		{name: "value forbids division too", kind: ValueKind, src: "input.k / 2", problem: "division is not allowed", line: 1, col: 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			envName := tc.env
			if envName == "" {
				envName = "state"
			}
			env := envs[envName]
			x, probs := env.Compile(tc.src, tc.kind)
			if tc.problem != "" {
				if x != nil || len(probs) == 0 {
					t.Fatalf("Compile(%q) succeeded, want problem %q", tc.src, tc.problem)
				}
				p := probs[0]
				if !strings.Contains(p.Message, tc.problem) || p.Line != tc.line || (tc.col != 0 && p.Column != tc.col) {
					t.Fatalf("Compile(%q) problems %v, want first %d:%d %q", tc.src, probs, tc.line, tc.col, tc.problem)
				}
				return
			}
			if len(probs) > 0 {
				t.Fatalf("Compile(%q): %v", tc.src, probs)
			}
			var got any
			var err error
			if tc.kind == GuardKind {
				got, _, err = x.EvalBool(fixtureVars())
			} else {
				got, err = x.Eval(fixtureVars())
			}
			if tc.evalErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.evalErr) {
					t.Fatalf("eval %q = %v, %v; want error containing %q", tc.src, got, err, tc.evalErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("eval %q: %v", tc.src, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("eval %q = %#v, want %#v", tc.src, got, tc.want)
			}
		})
	}
}

func TestCompileReportsAllProblemsInOrder(t *testing.T) {
	env := testEnvs(t)["decision"]
	src := "timestamp('x') == timestamp('y') ||\n  output.approved || input.k / 0 == 1 || input.customer.nme == 1"
	_, probs := env.Compile(src, GuardKind)
	want := []struct {
		line, col int
		msg       string
	}{
		{1, 1, "timestamp is not allowed"},
		{1, 19, "timestamp is not allowed"},
		{2, 3, "output is not available in a decision state"},
		{2, 30, "division is not allowed"},
		{2, 56, "undefined field 'nme'"},
	}
	if len(probs) != len(want) {
		t.Fatalf("problems %v, want %d", probs, len(want))
	}
	for i, w := range want {
		p := probs[i]
		if p.Line != w.line || p.Column != w.col || !strings.Contains(p.Message, w.msg) {
			t.Errorf("problem %d = %v, want %d:%d %q", i, p, w.line, w.col, w.msg)
		}
	}
}

func TestDataRefs(t *testing.T) {
	env := testEnvs(t)["state"]
	type ref = DataRef
	tests := []struct {
		name string
		src  string
		want []DataRef
	}{
		{"no refs", "input.k == 0", nil},
		{"has alone", "has(data.collect)", []ref{{"collect", true, 1, 5}}},
		{"unguarded", "data.collect.verified", []ref{{"collect", false, 1, 1}}},
		{"guarded by left conjunct", "has(data.collect) && data.collect.verified",
			[]ref{{"collect", true, 1, 5}, {"collect", true, 1, 22}}},
		{"left of the test is unguarded", "data.collect.verified && has(data.collect)",
			[]ref{{"collect", false, 1, 1}, {"collect", true, 1, 30}}},
		{"ternary true branch", "has(data.collect) ? data.collect.verified : false",
			[]ref{{"collect", true, 1, 5}, {"collect", true, 1, 21}}},
		{"ternary false branch unguarded", "has(data.collect) ? true : data.collect.verified",
			[]ref{{"collect", true, 1, 5}, {"collect", false, 1, 28}}},
		{"negated test guards the right of or", "!has(data.review) || data.review.approved",
			[]ref{{"review", true, 1, 6}, {"review", true, 1, 22}}},
		{"negated test guards the false branch", "!has(data.review) ? false : data.review.approved",
			[]ref{{"review", true, 1, 6}, {"review", true, 1, 29}}},
		{"deep has is unguarded but guards what follows", "has(data.collect.verified) && data.collect.docs.size() > 0",
			[]ref{{"collect", false, 1, 5}, {"collect", true, 1, 31}}},
		{"long conjunction", "has(data.collect) && has(data.review) && data.review.approved && data.collect.verified",
			[]ref{{"collect", true, 1, 5}, {"review", true, 1, 26}, {"review", true, 1, 42}, {"collect", true, 1, 66}}},
		{"test under or does not guard", "(has(data.collect) || input.k == 0) && data.collect.verified",
			[]ref{{"collect", true, 1, 6}, {"collect", false, 1, 40}}},
		{"other state not guarded", "has(data.collect) && data.review.approved",
			[]ref{{"collect", true, 1, 5}, {"review", false, 1, 22}}},
		{"guard reaches into comprehension", "has(data.collect) && data.collect.docs.exists(d, d == 'passport' || data.collect.verified)",
			[]ref{{"collect", true, 1, 5}, {"collect", true, 1, 22}, {"collect", true, 1, 69}}},
		{"nested guards", "has(data.collect) && (has(data.review) ? data.review.approved : data.collect.verified)",
			[]ref{{"collect", true, 1, 5}, {"review", true, 1, 27}, {"review", true, 1, 42}, {"collect", true, 1, 65}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := mustCompile(t, env, tc.src, GuardKind)
			if !reflect.DeepEqual(x.DataRefs, tc.want) {
				t.Fatalf("DataRefs(%q) = %v, want %v", tc.src, x.DataRefs, tc.want)
			}
		})
	}
}

func TestEvalGuardedRefsDoNotFail(t *testing.T) {
	// A reference reported as guarded never errors because its state is
	// absent; this pins the runtime behaviour DataRef.Guarded relies on.
	env := testEnvs(t)["state"]
	for _, src := range []string{
		"has(data.review) && data.review.approved",
		"has(data.review) ? data.review.approved : false",
		"!has(data.review) || data.review.approved",
		"!has(data.review) ? false : data.review.approved",
	} {
		x := mustCompile(t, env, src, GuardKind)
		for _, ref := range x.DataRefs {
			if !ref.Guarded {
				t.Fatalf("%q: unguarded %v", src, ref)
			}
		}
		if _, _, err := x.EvalBool(fixtureVars()); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
}

func TestStaticCost(t *testing.T) {
	env := testEnvs(t)["state"]
	tests := []struct {
		name     string
		src      string
		min, max uint64 // bounds on Expr.Cost
	}{
		{"simple guard", "output.approved && output.amount <= input.order_total", 1, 20},
		// reasons: maxItems 5, maxLength 50.
		{"exists bounded by maxItems", "output.reasons.exists(r, r == 'ok')", 10, 200},
		// tags: maxItems 10 of maxLength 32, nested in customers (50).
		{"nested comprehension multiplies", "input.customers.exists(c, input.tags.exists(t, t == c.id))", 500, 10_000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := mustCompile(t, env, tc.src, GuardKind)
			if x.Cost < tc.min || x.Cost > tc.max {
				t.Fatalf("Cost(%q) = %d, want in [%d, %d]", tc.src, x.Cost, tc.min, tc.max)
			}
			_, res, err := x.EvalBool(fixtureVars())
			if err != nil {
				t.Fatal(err)
			}
			if res.Cost == 0 || res.Cost > x.Cost {
				t.Fatalf("runtime cost %d, want in (0, %d]", res.Cost, x.Cost)
			}
		})
	}
}

func TestCostBoundsFromDocumentSize(t *testing.T) {
	// Without maxItems the list bound comes from MaxDocumentBytes: a
	// smaller document admits a costlier expression.
	d := fixtureDecls()
	src := "input.items.exists(i, i == 'x')"
	big := mustEnv(t, d, Options{MaxDocumentBytes: 1 << 20, CostLimit: 1 << 40})
	small := mustEnv(t, d, Options{MaxDocumentBytes: 1 << 10, CostLimit: 1 << 40})
	xb := mustCompile(t, big, src, GuardKind)
	xs := mustCompile(t, small, src, GuardKind)
	if xs.Cost >= xb.Cost {
		t.Fatalf("cost with 1KiB documents %d, with 1MiB %d: want smaller", xs.Cost, xb.Cost)
	}
	if _, probs := mustEnv(t, d, Options{MaxDocumentBytes: 1 << 10, CostLimit: xs.Cost - 1}).Compile(src, GuardKind); len(probs) == 0 {
		t.Fatal("compiled over budget")
	}
}

func TestRuntimeCostLimit(t *testing.T) {
	env := testEnvs(t)["state"]
	src := "output.reasons.exists(r, r == 'nope')"
	x := mustCompile(t, env, src, GuardKind)
	// Replan with a limit below the actual cost: the static check normally
	// makes this unreachable.
	ast, iss := env.cel.Compile(src)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.cel.Program(ast, cel.CostLimit(2), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		t.Fatal(err)
	}
	x.prg, x.limit = prg, 2
	ok, _, err := x.EvalBool(fixtureVars())
	if ok || err == nil || !strings.Contains(err.Error(), "runtime cost limit 2 exceeded") {
		t.Fatalf("EvalBool = %v, %v; want cost limit error", ok, err)
	}
	var cancelled interpreter.EvalCancelledError
	if !errors.As(err, &cancelled) || cancelled.Cause != interpreter.CostLimitExceeded {
		t.Fatalf("error %v does not wrap the CEL cancellation", err)
	}
}

func TestNewEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Decls, *Options)
		want string
	}{
		{"state not an identifier", func(d *Decls, _ *Options) { d.Data["two-words"] = strN(1) }, "is not a CEL identifier"},
		{"keyword state", func(d *Decls, _ *Options) { d.Data["in"] = strN(1) }, "is not a CEL identifier"},
		{"negative document size", func(_ *Decls, o *Options) { o.MaxDocumentBytes = -1 }, "negative"},
		{"empty pii path", func(d *Decls, _ *Options) { d.PII = append(d.PII, nil) }, "empty personal-data path"},
		{"pii path outside variables", func(d *Decls, _ *Options) { d.PII = append(d.PII, []string{"env", "x"}) }, "does not start with"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, o := fixtureDecls(), Options{}
			tc.mod(&d, &o)
			_, err := NewEnv(d, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewEnv error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	e := mustEnv(t, fixtureDecls(), Options{})
	if got := e.Options(); got.MaxDocumentBytes != 1<<20 || got.CostLimit != 1_000_000 {
		t.Fatalf("defaults %+v", got)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{GuardKind.String(), "guard"},
		{ValueKind.String(), "expression"},
		{Problem{Line: 2, Column: 7, Message: "m"}.String(), "2:7: m"},
		{Problem{Message: "m"}.String(), "m"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	if v := Version(); !strings.HasPrefix(v, "v0.") {
		t.Fatalf("Version() = %q", v)
	}
}

func TestEvalConcurrent(t *testing.T) {
	env := testEnvs(t)["state"]
	x := mustCompile(t, env, "has(data.collect) && data.collect.docs.exists(d, d == 'passport') && output.amount <= input.order_total", GuardKind)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 200 {
				vars := fixtureVars()
				vars.Input.(map[string]any)["order_total"] = int64(g*1000 + i)
				ok, _, err := x.EvalBool(vars)
				if err == nil && ok != (50 <= g*1000+i) {
					err = fmt.Errorf("goroutine %d iteration %d: got %v", g, i, ok)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestNilData(t *testing.T) {
	env := testEnvs(t)["state"]
	x := mustCompile(t, env, "!has(data.collect) && input.k == 0", GuardKind)
	vars := fixtureVars()
	vars.Data = nil
	if ok, _, err := x.EvalBool(vars); err != nil || !ok {
		t.Fatalf("EvalBool with nil Data = %v, %v", ok, err)
	}
}

func TestValueExpressionsReportThePersonalDataTheyRead(t *testing.T) {
	input := objN(map[string]*schema.Node{
		"customer": objN(map[string]*schema.Node{"id": strN(-1), "name": strN(-1), "city": strN(-1)}),
		"k":        node(schema.Integer),
	})
	env, err := NewEnv(Decls{Input: input, PII: [][]string{{"input", "customer", "id"}, {"input", "customer", "name"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]string{
		"input.customer.name":                    "[[input customer name]]",
		"input.customer.city":                    "[]",
		"input.customer":                         "[[input customer id] [input customer name]]",
		"[input.customer.id, input.k]":           "[[input customer id]]",
		"input.k > 3 ? input.customer.name : ''": "[[input customer name]]",
	} {
		x, probs := env.Compile(src, ValueKind)
		if len(probs) > 0 {
			t.Fatalf("%s: %v", src, probs)
		}
		if got := fmt.Sprint(x.PII); got != want && !(want == "[]" && x.PII == nil) {
			t.Errorf("%s reads %s, want %s", src, got, want)
		}
	}
}
