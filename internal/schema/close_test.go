package schema

import (
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

func TestCloseObjects(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"nested objects",
			`{"type":"object","properties":{"a":{"type":"object","properties":{"b":{}}}}}`,
			`{"type":"object","properties":{"a":{"type":"object","properties":{"b":{}},"additionalProperties":false}},"additionalProperties":false}`},
		{"properties without type",
			`{"properties":{"a":{}}}`,
			`{"properties":{"a":{}},"additionalProperties":false}`},
		{"nullable object",
			`{"type":["object","null"]}`,
			`{"type":["object","null"],"additionalProperties":false}`},
		{"declared additionalProperties kept, its schema closed",
			`{"type":"object","additionalProperties":{"type":"object"}}`,
			`{"type":"object","additionalProperties":{"type":"object","additionalProperties":false}}`},
		{"additionalProperties true kept",
			`{"type":"object","additionalProperties":true}`,
			`{"type":"object","additionalProperties":true}`},
		{"unevaluatedProperties kept",
			`{"type":"object","unevaluatedProperties":{"type":"string"}}`,
			`{"type":"object","unevaluatedProperties":{"type":"string"}}`},
		{"non-objects untouched",
			`{"type":"string","maxLength":3}`,
			`{"type":"string","maxLength":3}`},
		{"items and prefixItems",
			`{"type":"array","prefixItems":[{"type":"object"}],"items":{"properties":{"a":{}}}}`,
			`{"type":"array","prefixItems":[{"type":"object","additionalProperties":false}],"items":{"properties":{"a":{}},"additionalProperties":false}}`},
		{"$ref owner closed with unevaluatedProperties, $defs left open",
			`{"$defs":{"o":{"type":"object","properties":{"x":{}}}},"$ref":"#/$defs/o"}`,
			`{"$defs":{"o":{"type":"object","properties":{"x":{}}}},"$ref":"#/$defs/o","unevaluatedProperties":false}`},
		{"property using a $ref",
			`{"type":"object","properties":{"p":{"$ref":"#/$defs/o"},"s":{"$ref":"#/$defs/s"}},"$defs":{"o":{"properties":{"x":{"type":"object"}}},"s":{"type":"string"}}}`,
			`{"type":"object","properties":{"p":{"$ref":"#/$defs/o","unevaluatedProperties":false},"s":{"$ref":"#/$defs/s"}},"additionalProperties":false,
			  "$defs":{"o":{"properties":{"x":{"type":"object","additionalProperties":false}}},"s":{"type":"string"}}}`},
		{"allOf branches left open, owner closed",
			`{"allOf":[{"type":"object","properties":{"a":{}}},{"properties":{"b":{}}}]}`,
			`{"allOf":[{"type":"object","properties":{"a":{}}},{"properties":{"b":{}}}],"unevaluatedProperties":false}`},
		{"object with allOf",
			`{"type":"object","properties":{"a":{}},"allOf":[{"required":["a"]}]}`,
			`{"type":"object","properties":{"a":{}},"allOf":[{"required":["a"]}],"unevaluatedProperties":false}`},
		{"anyOf of objects",
			`{"anyOf":[{"properties":{"k":{"const":"a"},"x":{}}},{"properties":{"k":{"const":"b"},"y":{}}}]}`,
			`{"anyOf":[{"properties":{"k":{"const":"a"},"x":{}}},{"properties":{"k":{"const":"b"},"y":{}}}],"unevaluatedProperties":false}`},
		{"anyOf of scalars untouched",
			`{"anyOf":[{"type":"string"},{"type":"null"}]}`,
			`{"anyOf":[{"type":"string"},{"type":"null"}]}`},
		{"then branch makes an object",
			`{"if":{"required":["a"]},"then":{"properties":{"a":{}}}}`,
			`{"if":{"required":["a"]},"then":{"properties":{"a":{}}},"unevaluatedProperties":false}`},
		{"not and if left alone",
			`{"not":{"type":"object"},"if":{"properties":{"a":{"type":"object"}}}}`,
			`{"not":{"type":"object"},"if":{"properties":{"a":{"type":"object"}}}}`},
		{"$ref cycle terminates",
			`{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"properties":{"x":{"$ref":"#/$defs/a"}}}`,
			`{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"properties":{"x":{"$ref":"#/$defs/a"}},"additionalProperties":false}`},
		{"recursive object type",
			`{"$defs":{"n":{"type":"object","properties":{"next":{"$ref":"#/$defs/n"}}}},"$ref":"#/$defs/n"}`,
			`{"$defs":{"n":{"type":"object","properties":{"next":{"$ref":"#/$defs/n","unevaluatedProperties":false}}}},"$ref":"#/$defs/n","unevaluatedProperties":false}`},
		{"boolean schema", `true`, `true`},
		{"not a schema", `[1]`, `[1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := decode(t, tt.in)
			got := CloseObjects(in)
			if want := decode(t, tt.want); !jsonvalue.Equal(got, want) {
				c, _ := jsonvalue.Canonical(got)
				w, _ := jsonvalue.Canonical(want)
				t.Fatalf("CloseObjects:\n got %s\nwant %s", c, w)
			}
			if !jsonvalue.Equal(in, decode(t, tt.in)) {
				t.Fatal("CloseObjects modified its input")
			}
		})
	}
}

// TestCloseObjectsSemantics checks what closing means for validation: the
// declared properties, including those reached through $ref and allOf,
// stay valid; anything else is rejected.
func TestCloseObjectsSemantics(t *testing.T) {
	doc := decode(t, `{
		"$defs": {
			"base": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
			"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}
		},
		"allOf": [{"$ref": "#/$defs/base"}],
		"properties": {
			"where": {"$ref": "#/$defs/point"},
			"meta": {"type": "object", "additionalProperties": true},
			"kind": {"anyOf": [
				{"properties": {"t": {"const": "a"}, "a": {}}, "required": ["t"]},
				{"properties": {"t": {"const": "b"}, "b": {}}, "required": ["t"]}
			]}
		}
	}`)
	s, err := Compile(CloseObjects(doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		value string
		want  []Violation
	}{
		{`{"id":1,"where":{"x":1,"y":2},"meta":{"anything":true},"kind":{"t":"a","a":1}}`, nil},
		{`{"id":1,"extra":1}`, []Violation{{"/extra", "unevaluatedProperties", `property "extra" not allowed (unevaluated)`}}},
		{`{"id":1,"where":{"x":1,"z":3}}`, []Violation{{"/where/z", "unevaluatedProperties", `property "z" not allowed (unevaluated)`}}},
		{`{"id":1,"kind":{"t":"a","b":1}}`, []Violation{{"/kind/b", "unevaluatedProperties", `property "b" not allowed (unevaluated)`}}},
	}
	for _, tt := range tests {
		got := s.Validate(decode(t, tt.value))
		if !equalViolations(got, tt.want) {
			t.Errorf("Validate(%s):\n got %q\nwant %q", tt.value, got, tt.want)
		}
	}
	want := "object {id*: integer, kind: any, meta: object {} +any, where: object {x: number, y: number} closed} closed"
	if got := describe(t, s.Root); got != want {
		t.Errorf("Root = %s\n want  %s", got, want)
	}
}

func equalViolations(a, b []Violation) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
