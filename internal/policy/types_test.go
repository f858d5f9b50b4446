package policy

import (
	"strings"
	"testing"

	"cel.dev/cel-go/common/types"

	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

func TestDeclareTypes(t *testing.T) {
	recursive := objN(map[string]*schema.Node{"name": strN(10)})
	recursive.Properties["child"] = recursive
	tests := []struct {
		name string
		node *schema.Node
		want string
	}{
		{"nil is dyn", nil, "dyn"},
		{"any", anyN(), "dyn"},
		{"null", node(schema.Null), "null_type"},
		{"boolean", boolN(), "bool"},
		{"integer", intN(), "int"},
		{"number", numN(), "double"},
		{"string", strN(5), "string"},
		{"nullable string", nullableN(strN(5)), "dyn"},
		{"nullable object", nullableN(objN(map[string]*schema.Node{"a": intN()})), "dyn"},
		{"array", arrN(intN(), 3), "list(int)"},
		{"array of any", arrN(anyN(), 3), "list(dyn)"},
		{"array without items", arrN(nil, 3), "list(dyn)"},
		{"object", objN(map[string]*schema.Node{"a": intN()}), "object:input"},
		{"array of objects", arrN(objN(map[string]*schema.Node{"a": intN()}), 3), "list(object:input[])"},
		{"additional only", mapN(strN(5)), "map(string, string)"},
		{"additional objects", mapN(objN(map[string]*schema.Node{"a": intN()})), "map(string, object:input.*)"},
		{"no properties allowed", objN(nil), "object:input"},
		{"property that is not an identifier", objN(map[string]*schema.Node{"full-name": strN(5), "a": intN()}), "map(string, dyn)"},
		{"reserved word property is selectable", objN(map[string]*schema.Node{"package": strN(5)}), "object:input"},
		{"recursive", recursive, "object:input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newSchemaProvider(types.NewEmptyRegistry())
			if got := p.declare(tc.node, "input").String(); got != tc.want {
				t.Fatalf("declare = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestProviderFields(t *testing.T) {
	p := newSchemaProvider(types.NewEmptyRegistry())
	p.declare(objN(map[string]*schema.Node{
		"customer": objN(map[string]*schema.Node{"name": strN(5), "age": intN()}),
		"tags":     arrN(strN(5), 3),
	}), "input")

	names, ok := p.FindStructFieldNames("object:input.customer")
	if !ok || strings.Join(names, ",") != "age,name" {
		t.Fatalf("FindStructFieldNames = %v, %v", names, ok)
	}
	if typ, ok := p.FindStructType("object:input"); !ok || typ.String() != "type(object:input)" {
		t.Fatalf("FindStructType = %v, %v", typ, ok)
	}
	ft, ok := p.FindStructFieldType("object:input", "tags")
	if !ok || ft.Type.String() != "list(string)" {
		t.Fatalf("FindStructFieldType(tags) = %v, %v", ft, ok)
	}
	// No accessors: the interpreter then qualifies with its string
	// qualifier, which reads map[string]any (interpreter/attributes.go,
	// attrFactory.NewQualifier uses a FieldType only when GetFrom and IsSet
	// are both set).
	if ft.GetFrom != nil || ft.IsSet != nil {
		t.Fatal("field has accessors")
	}
	if _, ok := p.FindStructFieldType("object:input", "nope"); ok {
		t.Fatal("undeclared field found")
	}
	if _, ok := p.FindStructType("input.customer"); ok {
		t.Fatal("type reachable by its path: input.customer would resolve as a type name")
	}
	if v := p.NewValue("object:input", nil); !types.IsError(v) {
		t.Fatalf("NewValue = %v, want error", v)
	}
	// Everything else falls back to the base provider.
	base, _ := types.NewRegistry()
	p = newSchemaProvider(base)
	if _, ok := p.FindStructType("google.protobuf.Duration"); !ok {
		t.Fatal("no fallback to the base provider")
	}
}

// TestStructTypesOverMaps pins what cel-go does at runtime when a variable
// declared with a schema struct type is given plain map[string]any values.
func TestStructTypesOverMaps(t *testing.T) {
	d := Decls{
		Input: objN(map[string]*schema.Node{
			"k":        intN(),
			"customer": objN(map[string]*schema.Node{"name": strN(20), "age": intN(), "address": objN(map[string]*schema.Node{"city": strN(20)})}),
			"tags":     arrN(strN(10), 5),
			"people":   arrN(objN(map[string]*schema.Node{"id": strN(5)}), 5),
			"attrs":    mapN(intN()),
		}),
		Data: map[string]*schema.Node{"collect": objN(map[string]*schema.Node{"ok": boolN()})},
	}
	env := mustEnv(t, d, Options{})
	vars := Vars{
		Input: map[string]any{
			"k":        int64(0),
			"customer": map[string]any{"name": "Ann", "address": map[string]any{"city": "Oslo"}},
			"tags":     []any{"x", "y"},
			"people":   []any{map[string]any{"id": "p1"}, map[string]any{"id": "p2"}},
			"attrs":    map[string]any{"a": int64(1)},
		},
		Data: map[string]any{},
	}
	tests := []struct {
		src     string
		want    any
		evalErr string
	}{
		{src: "input.k == 0", want: true},
		{src: "input.customer.name", want: "Ann"},
		{src: "input.customer.address.city", want: "Oslo"},
		{src: "has(input.customer.name)", want: true},
		{src: "has(input.customer.age)", want: false},
		{src: "has(input.customer.address.city)", want: true},
		{src: "input.customer.age", evalErr: "no such key: age"},
		{src: "'y' in input.tags", want: true},
		{src: "'z' in input.tags", want: false},
		{src: "size(input.tags)", want: int64(2)},
		{src: "size(input.attrs)", want: int64(1)},
		{src: "input.attrs.a", want: int64(1)},
		{src: "has(input.attrs.b)", want: false},
		{src: "input.people.exists(p, p.id == 'p2')", want: true},
		{src: "input.people[1].id", want: "p2"},
		{src: "input.customer == input.customer", want: true},
		{src: "input.customer.address", want: map[string]any{"city": "Oslo"}},
		{src: "has(data.collect)", want: false},
		{src: "data.collect.ok", evalErr: "no such key: collect"},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			x := mustCompile(t, env, tc.src, ValueKind)
			got, err := x.Eval(vars)
			if tc.evalErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.evalErr) {
					t.Fatalf("Eval = %v, %v; want error %q", got, err, tc.evalErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalJSON(got, tc.want) {
				t.Fatalf("Eval = %#v, want %#v", got, tc.want)
			}
		})
	}

	// A value of the wrong shape is not caught by the static types (the
	// schema layer validates values before they get here): equality across
	// types is false, ordering is an error.
	wrong := Vars{Input: map[string]any{"k": "zero"}}
	x := mustCompile(t, env, "input.k == 0", GuardKind)
	if ok, _, err := x.EvalBool(wrong); ok || err != nil {
		t.Fatalf("string k == 0: %v, %v; want false, nil", ok, err)
	}
	x = mustCompile(t, env, "input.k < 1", GuardKind)
	if _, _, err := x.EvalBool(wrong); err == nil || !strings.Contains(err.Error(), "no such overload") {
		t.Fatalf("string k < 1: %v; want no such overload", err)
	}
}

func TestSelectKeywordFieldNames(t *testing.T) {
	// Reserved words other than the lexer's keywords are field names.
	env := mustEnv(t, Decls{Input: objN(map[string]*schema.Node{"package": intN(), "as": intN()})}, Options{})
	x := mustCompile(t, env, "input.package == 1 && input.as == 2", GuardKind)
	ok, _, err := x.EvalBool(Vars{Input: map[string]any{"package": int64(1), "as": int64(2)}})
	if err != nil || !ok {
		t.Fatalf("EvalBool = %v, %v", ok, err)
	}
	// Non-identifier property names make the object a map, read by index.
	env = mustEnv(t, Decls{Input: objN(map[string]*schema.Node{"full-name": strN(10), "in": intN()})}, Options{})
	x = mustCompile(t, env, "input['full-name'] == 'x' && input['in'] == 1", GuardKind)
	ok, _, err = x.EvalBool(Vars{Input: map[string]any{"full-name": "x", "in": int64(1)}})
	if err != nil || !ok {
		t.Fatalf("EvalBool = %v, %v", ok, err)
	}
}

func TestTypeNamesAreNotIdentifiers(t *testing.T) {
	// The checker resolves a qualified name as a type before selecting
	// fields; the prefix keeps input.customer a field selection.
	env := testEnvs(t)["state"]
	ast, iss := env.cel.Compile("input.customer")
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	if got := ast.OutputType(); got.String() != "object:input.customer" {
		t.Fatalf("input.customer has type %v", got)
	}
}

func equalJSON(a, b any) bool {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, v := range av {
			if !equalJSON(v, bv[k]) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !equalJSON(av[i], bv[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}
