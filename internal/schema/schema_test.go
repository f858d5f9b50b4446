package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// decode parses JSON test input strictly.
func decode(t testing.TB, src string) any {
	t.Helper()
	v, err := jsonvalue.Decode([]byte(src))
	if err != nil {
		t.Fatalf("decode %s: %v", src, err)
	}
	return v
}

func mustCompile(t testing.TB, src string) *Schema {
	t.Helper()
	s, err := Compile(decode(t, src))
	if err != nil {
		t.Fatalf("Compile(%s): %v", src, err)
	}
	return s
}

func TestCompileAccepts(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"true", `true`},
		{"false", `false`},
		{"empty", `{}`},
		{"explicit 2020-12", `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"string"}`},
		{"explicit 2020-12 with #", `{"$schema":"https://json-schema.org/draft/2020-12/schema#"}`},
		{"local refs", `{"$defs":{"a":{"type":"string"},"b":{"$ref":"#/$defs/a"}},"properties":{"x":{"$ref":"#/$defs/b"},"y":{"$ref":"#"}}}`},
		{"definitions", `{"definitions":{"a":{"type":"integer"}},"$ref":"#/definitions/a"}`},
		{"escaped pointer", `{"$defs":{"a/b~":{"type":"integer"},"c d":{}},"allOf":[{"$ref":"#/$defs/a~1b~0"},{"$ref":"#/$defs/c%20d"}]}`},
		{"anchor", `{"$defs":{"a":{"$anchor":"node","type":"string"}},"$ref":"#node"}`},
		{"root $id", `{"$id":"https://example.com/s.json","$defs":{"a":{}},"$ref":"#/$defs/a"}`},
		{"embedded resource", `{"$defs":{"e":{"$id":"urn:example:e","$defs":{"x":{"type":"string"}},"$ref":"#/$defs/x"}},"$ref":"#/$defs/e"}`},
		{"dynamic ref", `{"$dynamicAnchor":"meta","properties":{"kids":{"items":{"$dynamicRef":"#meta"}}}}`},
		{"every keyword family", `{"type":"object","properties":{"a":{"type":"integer","minimum":0,"multipleOf":2},
			"b":{"type":"string","pattern":"^x","format":"date","minLength":1,"maxLength":3},
			"c":{"type":"array","prefixItems":[{}],"items":{"type":"null"},"uniqueItems":true,"contains":{},"maxContains":2}},
			"patternProperties":{"^p":{}},"dependentRequired":{"a":["b"]},"propertyNames":{"maxLength":9},
			"if":{"required":["a"]},"then":{},"else":{},"not":{"required":["z"]},"unevaluatedProperties":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, tt.doc)
			if s.Root == nil {
				t.Fatal("nil Root")
			}
			if !jsonvalue.Equal(s.Doc(), decode(t, tt.doc)) {
				t.Fatalf("Doc() = %#v", s.Doc())
			}
		})
	}
}

func TestCompileGoValues(t *testing.T) {
	// Documents built in Go rather than decoded: numbers may be float64/int.
	doc := map[string]any{
		"type":          "object",
		"properties":    map[string]any{"n": map[string]any{"type": "integer", "maximum": 10.5, "minimum": int64(-3)}},
		"maxProperties": 2,
	}
	s, err := Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Root.MaxProperties; got != 2 {
		t.Fatalf("MaxProperties = %d", got)
	}
	if v := s.Validate(map[string]any{"n": 11}); len(v) != 1 || v[0].Keyword != "maximum" {
		t.Fatalf("Validate = %v", v)
	}
	if v := s.Validate(map[string]any{"n": 3.0}); v != nil {
		t.Fatalf("Validate(3.0) = %v", v)
	}
	// The caller's document is copied, not kept.
	doc["type"] = "string"
	if s.Doc().(map[string]any)["type"] != "object" {
		t.Fatal("Compile kept a reference to the caller's document")
	}
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name string
		doc  any // JSON text (string) or a Go value
		want []Problem
	}{
		{"bad type name", `{"properties":{"a":{"type":"strng"}}}`, []Problem{
			{"/properties/a/type", `unknown type "strng" (want one of array, boolean, integer, null, number, object, string)`}}},
		{"bad type in union", `{"type":["string","nil"]}`, []Problem{
			{"/type/1", `unknown type "nil" (want one of array, boolean, integer, null, number, object, string)`}}},
		{"external relative $ref", `{"$ref":"other.json#/a"}`, []Problem{
			{"/$ref", `external $ref not allowed: "other.json#/a" (only references into this document, "#...")`}}},
		{"external absolute $ref", `{"items":{"$ref":"https://example.com/s.json"}}`, []Problem{
			{"/items/$ref", `external $ref not allowed: "https://example.com/s.json" (only references into this document, "#...")`}}},
		{"metaschema $ref", `{"$ref":"https://json-schema.org/draft/2020-12/schema"}`, []Problem{
			{"/$ref", `external $ref not allowed: "https://json-schema.org/draft/2020-12/schema" (only references into this document, "#...")`}}},
		{"file $ref in $defs", `{"$defs":{"x":{"$ref":"file:///etc/passwd"}}}`, []Problem{
			{"/$defs/x/$ref", `external $ref not allowed: "file:///etc/passwd" (only references into this document, "#...")`}}},
		{"external $dynamicRef", `{"$dynamicRef":"https://example.com/s#meta"}`, []Problem{
			{"/$dynamicRef", `external $ref not allowed: "https://example.com/s#meta" (only references into this document, "#...")`}}},
		{"draft-07", `{"$schema":"http://json-schema.org/draft-07/schema#"}`, []Problem{
			{"/$schema", `unsupported $schema "http://json-schema.org/draft-07/schema#": only "https://json-schema.org/draft/2020-12/schema" is accepted`}}},
		{"nested draft-2019", `{"$defs":{"a":{"$id":"urn:a","$schema":"https://json-schema.org/draft/2019-09/schema"}}}`, []Problem{
			{"/$defs/a/$schema", `unsupported $schema "https://json-schema.org/draft/2019-09/schema": only "https://json-schema.org/draft/2020-12/schema" is accepted`}}},
		{"array doc", `[{"type":"string"}]`, []Problem{{"", "a schema must be an object or a boolean, got array"}}},
		{"string doc", `"string"`, []Problem{{"", "a schema must be an object or a boolean, got string"}}},
		{"number doc", `1`, []Problem{{"", "a schema must be an object or a boolean, got integer"}}},
		{"null doc", `null`, []Problem{{"", "a schema must be an object or a boolean, got null"}}},
		{"missing local target", `{"properties":{"a":{"$ref":"#/$defs/nope"}}}`, []Problem{
			{"/properties/a/$ref", `$ref target "#/$defs/nope" not found in the document`}}},
		{"$ref cycle", `{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"allOf":[{"$ref":"#/$defs/a"}]}},"$ref":"#/$defs/a"}`, []Problem{
			{"/$defs/b/allOf/0/$ref", `$ref "#/$defs/a" leads back here without entering a property or item: reference cycle`}}},
		{"self $ref through anyOf", `{"anyOf":[{"$ref":"#"},{"type":"string"}]}`, []Problem{
			{"/anyOf/0/$ref", `$ref "#" leads back here without entering a property or item: reference cycle`}}},
		{"missing anchor", `{"$ref":"#nope"}`, []Problem{{"", `$ref anchor "#nope" not found`}}},
		{"metaschema violations", `{"properties":{"a":{"minimum":"x"}},"required":"a","maxLength":-1}`, []Problem{
			{"/maxLength", "minimum: got -1, want 0"},
			{"/properties/a/minimum", "got string, want number"},
			{"/required", "got string, want array"}}},
		{"invalid regex", `{"pattern":"(?=x)"}`, []Problem{
			{"/pattern", "'(?=x)' is not valid regex: error parsing regexp: invalid or unsupported Perl syntax: `(?=`"}}},
		{"items array is not 2020-12", `{"items":[{}]}`, []Problem{{"/items", "got array, want boolean or object"}}},
		{"NaN in Go doc", map[string]any{"maximum": math.NaN()}, []Problem{{"/maximum", "number NaN is not JSON"}}},
		{"Go type", map[string]any{"enum": []string{"a"}}, []Problem{{"/enum", "value of Go type []string is not JSON"}}},
		{"several problems sorted", `{"type":"nope","properties":{"b":{"$ref":"x.json"},"a":{"type":"nah"}}}`, []Problem{
			{"/properties/a/type", `unknown type "nah" (want one of array, boolean, integer, null, number, object, string)`},
			{"/properties/b/$ref", `external $ref not allowed: "x.json" (only references into this document, "#...")`},
			{"/type", `unknown type "nope" (want one of array, boolean, integer, null, number, object, string)`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := tt.doc
			if src, ok := doc.(string); ok {
				doc = decode(t, src)
			}
			s, err := Compile(doc)
			if err == nil {
				t.Fatalf("Compile succeeded: %#v", s.Doc())
			}
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T (%v), want *CompileError", err, err)
			}
			if !reflect.DeepEqual(ce.Problems, tt.want) {
				t.Fatalf("problems:\n got %q\nwant %q", ce.Problems, tt.want)
			}
			if strings.Contains(err.Error(), location) {
				t.Fatalf("message leaks internal location: %v", err)
			}
		})
	}
}

func TestCompileErrorString(t *testing.T) {
	err := &CompileError{Problems: []Problem{{"", "root problem"}, {"/a", "a problem"}}}
	want := "schema: invalid document: (root): root problem; /a: a problem"
	if err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestValidate(t *testing.T) {
	const person = `{
		"type": "object",
		"properties": {
			"name": {"type": "string", "maxLength": 5},
			"age": {"type": "integer", "minimum": 0},
			"email": {"type": "string", "format": "email"},
			"born": {"type": "string", "format": "date"},
			"tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
			"a/b": {"type": "boolean"},
			"kind": {"enum": ["x", "y"]},
			"id": {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 3}]},
			"gone": false
		},
		"required": ["name", "age"],
		"additionalProperties": false
	}`
	s := mustCompile(t, person)
	tests := []struct {
		name  string
		value string
		want  []Violation
	}{
		{"valid", `{"name":"Ada","age":36}`, nil},
		{"valid integral float for integer", `{"name":"Ada","age":36.0,"born":"1815-12-10"}`, nil},
		{"missing required", `{"name":"Ada"}`, []Violation{{"", "required", "missing property 'age'"}}},
		{"wrong types", `{"name":1,"age":"x"}`, []Violation{
			{"/age", "type", "got string, want integer"},
			{"/name", "type", "got number, want string"}}},
		{"fraction for integer", `{"name":"A","age":1.5}`, []Violation{{"/age", "type", "got number, want integer"}}},
		{"maxLength and minimum", `{"name":"Adalovelace","age":-1}`, []Violation{
			{"/age", "minimum", "minimum: got -1, want 0"},
			{"/name", "maxLength", "maxLength: got 11, want 5"}}},
		{"additional property", `{"name":"A","age":1,"extra":true}`, []Violation{
			{"", "additionalProperties", "additional properties 'extra' not allowed"}}},
		{"false property", `{"name":"A","age":1,"gone":1}`, []Violation{{"/gone", "properties", `property "gone" not allowed`}}},
		{"array items and maxItems", `{"name":"A","age":1,"tags":["a",2,"c"]}`, []Violation{
			{"/tags", "maxItems", "maxItems: got 3, want 2"},
			{"/tags/1", "type", "got number, want string"}}},
		{"pointer escaping", `{"name":"A","age":1,"a/b":"no"}`, []Violation{{"/a~1b", "type", "got string, want boolean"}}},
		{"formats asserted", `{"name":"A","age":1,"email":"nope","born":"2020-13-01"}`, []Violation{
			{"/born", "format", "'2020-13-01' is not valid date: parsing time \"2020-13-01\": month out of range"},
			{"/email", "format", "'nope' is not valid email: missing @"}}},
		{"enum", `{"name":"A","age":1,"kind":"z"}`, []Violation{{"/kind", "enum", "value must be one of 'x', 'y'"}}},
		{"anyOf reasons", `{"name":"A","age":1,"id":"ab"}`, []Violation{
			{"/id", "anyOf", "'anyOf' failed: got string, want integer; minLength: got 2, want 3"}}},
		{"not an object", `[1]`, []Violation{{"", "type", "got array, want object"}}},
		{"root null", `null`, []Violation{{"", "type", "got null, want object"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Validate(decode(t, tt.value))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Validate(%s):\n got %q\nwant %q", tt.value, got, tt.want)
			}
		})
	}
}

func TestValidateKeywords(t *testing.T) {
	tests := []struct {
		name   string
		schema string
		value  string
		want   []Violation
	}{
		{"unevaluatedProperties false", `{"properties":{"a":{}},"unevaluatedProperties":false}`, `{"a":1,"b":2}`,
			[]Violation{{"/b", "unevaluatedProperties", `property "b" not allowed (unevaluated)`}}},
		{"unevaluated sees $ref", `{"$defs":{"base":{"properties":{"a":{}}}},"$ref":"#/$defs/base","properties":{"b":{}},"unevaluatedProperties":false}`,
			`{"a":1,"b":2,"c":3}`, []Violation{{"/c", "unevaluatedProperties", `property "c" not allowed (unevaluated)`}}},
		{"false root", `false`, `1`, []Violation{{"", "", "no value allowed here (false schema)"}}},
		{"false items", `{"prefixItems":[{}],"items":false}`, `[1,2]`, []Violation{{"/1", "items", "array item not allowed"}}},
		{"ref errors are flattened", `{"$defs":{"n":{"type":"integer"}},"properties":{"a":{"$ref":"#/$defs/n"}}}`, `{"a":"x"}`,
			[]Violation{{"/a", "type", "got string, want integer"}}},
		{"allOf errors are flattened", `{"allOf":[{"type":"integer"},{"minimum":5}]}`, `1.5`, []Violation{
			{"", "type", "got number, want integer"},
			{"", "minimum", "minimum: got 1.5, want 5"}}},
		{"oneOf none", `{"oneOf":[{"type":"string"},{"type":"null"}]}`, `1`, []Violation{
			{"", "oneOf", "'oneOf' failed, none matched: got number, want string; got number, want null"}}},
		{"oneOf many", `{"oneOf":[{"type":"integer"},{"minimum":0}]}`, `1`, []Violation{
			{"", "oneOf", "'oneOf' failed, subschemas 0, 1 matched"}}},
		{"anyOf nested path", `{"anyOf":[{"properties":{"a":{"type":"string"}}},{"required":["b"]}]}`, `{"a":1}`, []Violation{
			{"", "anyOf", "'anyOf' failed: /a: got number, want string; missing property 'b'"}}},
		{"dependentRequired", `{"dependentRequired":{"a":["b"]}}`, `{"a":1}`, []Violation{
			{"", "dependentRequired", "properties 'b' required, if 'a' exists"}}},
		{"not", `{"not":{"type":"string"}}`, `"x"`, []Violation{{"", "", "'not' failed"}}},
		{"const object", `{"const":{"a":[1]}}`, `{"a":[1.0]}`, nil},
		{"uniqueItems", `{"uniqueItems":true}`, `[1,1.0]`, []Violation{{"", "uniqueItems", "items at 0 and 1 are equal"}}},
		{"recursive ref", `{"properties":{"next":{"$ref":"#"},"v":{"type":"integer"}}}`, `{"next":{"next":{"v":"x"}}}`,
			[]Violation{{"/next/next/v", "type", "got string, want integer"}}},
		{"Go value of unknown type", `{"type":"array"}`, ``, []Violation{{"", "", "invalid jsonType []string"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, tt.schema)
			var v any = []string{"x"}
			if tt.value != "" {
				v = decode(t, tt.value)
			}
			got := s.Validate(v)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Validate(%s):\n got %q\nwant %q", tt.value, got, tt.want)
			}
		})
	}
}

func TestValidateRecoversFromLibraryPanic(t *testing.T) {
	// big.Rat cannot parse this literal (Decode never produces it), and the
	// library then dereferences nil.
	s := mustCompile(t, `{"minimum":0}`)
	got := s.Validate(json.Number("1e-999999999"))
	if len(got) != 1 || !strings.HasPrefix(got[0].Message, "validator failed:") {
		t.Fatalf("Validate = %q", got)
	}
}

func TestValidateConcurrent(t *testing.T) {
	s := mustCompile(t, `{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}`)
	good, bad := decode(t, `{"a":1}`), decode(t, `{"a":"x"}`)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if v := s.Validate(good); v != nil {
					t.Errorf("goroutine %d: %v", i, v)
				}
				if v := s.Validate(bad); len(v) != 1 {
					t.Errorf("goroutine %d: %v", i, v)
				}
			}
		}()
	}
	wg.Wait()
}

func TestViolationString(t *testing.T) {
	tests := []struct {
		v    Violation
		want string
	}{
		{Violation{Path: "", Message: "m"}, "(root): m"},
		{Violation{Path: "/a/0", Keyword: "type", Message: "m"}, "/a/0: m"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestHoldingKeyword(t *testing.T) {
	tests := []struct{ url, want string }{
		{location + "#", ""},
		{location, ""},
		{location + "#/unevaluatedProperties", "unevaluatedProperties"},
		{location + "#/properties/items", "properties"},
		{location + "#/items/properties/a", "properties"},
		{location + "#/prefixItems/0", "prefixItems"},
		{location + "#/items", "items"},
		{location + "#/$defs/a~1b/properties/%24x", "properties"},
		{location + "#/allOf/1/additionalProperties", "additionalProperties"},
	}
	for _, tt := range tests {
		if got := holdingKeyword(tt.url); got != tt.want {
			t.Errorf("holdingKeyword(%q) = %q, want %q", tt.url, got, tt.want)
		}
	}
}

func TestDAGDocumentsStayFast(t *testing.T) {
	// 40 definitions, each using the next twice: a tree walk would visit
	// 2^40 nodes.
	var b strings.Builder
	b.WriteString(`{"$defs":{`)
	for i := range 40 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"d%d":{"type":"object","properties":{"l":{"$ref":"#/$defs/d%d"},"r":{"$ref":"#/$defs/d%d"}},"allOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d"}]}`, i, i+1, i+1, i+1, i+1)
	}
	b.WriteString(`,"d40":{"type":"string"}},"$ref":"#/$defs/d0"}`)
	doc := decode(t, b.String())
	closed := CloseObjects(doc)
	s, err := Compile(closed)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Kind != Object {
		t.Fatalf("Root.Kind = %v", s.Root.Kind)
	}
}

func BenchmarkValidateSmallObject(b *testing.B) {
	benchValidate(b, smallSchemaSrc, smallValueSrc)
}

func BenchmarkValidateSmallObjectInvalid(b *testing.B) {
	s := mustCompile(b, `{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"admin":{"type":"boolean"}},"required":["name","age"],"additionalProperties":false}`)
	v := decode(b, `{"name":1,"age":"x","extra":true}`)
	b.ReportAllocs()
	for b.Loop() {
		if vs := s.Validate(v); len(vs) != 3 {
			b.Fatal(vs)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	doc := decode(b, `{"type":"object","properties":{"name":{"type":"string","maxLength":64},"age":{"type":"integer","minimum":0},"tags":{"type":"array","items":{"type":"string"}}},"required":["name"]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// TestViolationMessagesAreDeterministic: traces record violation messages,
// so the same value must always give the same text.
func TestViolationMessagesAreDeterministic(t *testing.T) {
	s := mustCompile(t, `{"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}`)
	v := map[string]any{"a": "x", "z": 1, "y": 2, "x": 3, "w": 4, "v": 5, "u": 6}
	first := s.Validate(v)
	if len(first) != 1 || first[0].Message != `additional properties 'u', 'v', 'w', 'x', 'y', 'z' not allowed` {
		t.Fatalf("violations %v", first)
	}
	for i := 0; i < 50; i++ {
		if got := s.Validate(v); !reflect.DeepEqual(got, first) {
			t.Fatalf("run %d: %v, first %v", i, got, first)
		}
	}
}

func TestIntegerFieldsHoldSafeIntegers(t *testing.T) {
	s := mustCompile(t, `{"type": "object", "properties": {"k": {"type": "integer"}, "l": {"type": "array", "items": {"type": ["integer", "null"]}}, "n": {"type": "number"}}}`)
	tests := []struct {
		value string
		bad   []string
	}{
		{`{"k": 1, "l": [2, null], "n": 1e300}`, nil},
		{`{"k": 5.0}`, nil},
		{`{"k": 1e300}`, []string{"/k"}},
		{`{"k": 9007199254740992}`, nil},
		{`{"l": [1, 1e20, 3, 1e100]}`, []string{"/l/1", "/l/3"}},
	}
	for _, tt := range tests {
		v, err := jsonvalue.Decode([]byte(tt.value))
		if err != nil {
			// jsonvalue itself refuses some spellings; those never reach here.
			continue
		}
		var got []string
		for _, vi := range s.Validate(v) {
			got = append(got, vi.Path)
		}
		if !reflect.DeepEqual(got, tt.bad) {
			t.Errorf("%s: violations at %v, want %v", tt.value, got, tt.bad)
		}
	}
}
