package schema

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// describe renders a node compactly, e.g. `object {a*: string?, b: integer} closed`
// (* marks required properties, "+T" the schema of undeclared properties).
func describe(t *testing.T, n *Node) string {
	t.Helper()
	if n == nil {
		return "<nil>"
	}
	var b strings.Builder
	b.WriteString(n.Kind.String())
	if n.Nullable {
		b.WriteString("?")
	}
	if n.Enum != nil {
		c, err := jsonvalue.Canonical(n.Enum)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, " enum%s", c)
	}
	if n.MaxLength != Unbounded {
		fmt.Fprintf(&b, " maxLength=%d", n.MaxLength)
	}
	if n.MaxItems != Unbounded {
		fmt.Fprintf(&b, " maxItems=%d", n.MaxItems)
	}
	if n.MaxProperties != Unbounded {
		fmt.Fprintf(&b, " maxProperties=%d", n.MaxProperties)
	}
	switch n.Kind {
	case Object:
		if !slices.IsSorted(n.Order) || len(n.Order) != len(n.Properties) {
			t.Fatalf("Order %q does not list the properties sorted", n.Order)
		}
		b.WriteString(" {")
		for i, name := range n.Order {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(name)
			if n.Required[name] {
				b.WriteString("*")
			}
			b.WriteString(": ")
			b.WriteString(describe(t, n.Properties[name]))
		}
		b.WriteString("}")
		var extra []string
		for name := range n.Required {
			if _, ok := n.Properties[name]; !ok {
				extra = append(extra, name)
			}
		}
		if len(extra) > 0 {
			slices.Sort(extra)
			fmt.Fprintf(&b, " req%q", extra)
		}
		if n.Additional == nil {
			b.WriteString(" closed")
		} else {
			b.WriteString(" +" + describe(t, n.Additional))
		}
	case Array:
		b.WriteString(" [" + describe(t, n.Items) + "]")
	default:
		if n.Properties != nil || n.Required != nil || n.Additional != nil || n.Items != nil {
			t.Fatalf("%v node carries object or array facts", n.Kind)
		}
	}
	return b.String()
}

func TestNode(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"empty", `{}`, "any"},
		{"true", `true`, "any"},
		{"false", `false`, "any"},
		{"string with maxLength", `{"type":"string","maxLength":5}`, "string maxLength=5"},
		{"integral maxLength literal", `{"type":"string","maxLength":5.0}`, "string maxLength=5"},
		{"nullable string", `{"type":["string","null"]}`, "string?"},
		{"nullable integer, null first", `{"type":["null","integer"]}`, "integer?"},
		{"other union", `{"type":["string","integer"]}`, "any"},
		{"integer or number", `{"type":["integer","number"]}`, "number"},
		{"single-element union", `{"type":["boolean"]}`, "boolean"},
		{"null", `{"type":"null"}`, "null"},
		{"integral number stays number", `{"type":"number","const":3}`, "number enum[3]"},
		{"object", `{"type":"object","properties":{"b":{"type":"integer"},"a":{"type":"number"}},"required":["a","zz"],"maxProperties":4}`,
			`object maxProperties=4 {a*: number, b: integer} req["zz"] +any`},
		{"additionalProperties false", `{"type":"object","properties":{"a":{}},"additionalProperties":false}`, "object {a: any} closed"},
		{"additionalProperties true", `{"type":"object","additionalProperties":true}`, "object {} +any"},
		{"additionalProperties schema", `{"type":"object","additionalProperties":{"type":"string"}}`, "object {} +string"},
		{"unevaluatedProperties false", `{"type":"object","properties":{"a":{}},"unevaluatedProperties":false}`, "object {a: any} closed"},
		{"unevaluatedProperties schema", `{"type":"object","unevaluatedProperties":{"type":"boolean"}}`, "object {} +boolean"},
		{"patternProperties keep extras open", `{"type":"object","patternProperties":{"^x":{}},"additionalProperties":false}`, "object {} +any"},
		{"properties without type", `{"properties":{"a":{"type":"string"}}}`, "any"},
		{"array", `{"type":"array","items":{"type":"string"},"maxItems":3}`, "array maxItems=3 [string]"},
		{"array without items", `{"type":"array"}`, "array [any]"},
		{"prefixItems", `{"type":"array","prefixItems":[{"type":"string"}],"items":{"type":"integer"}}`, "array [any]"},
		{"enum of strings", `{"enum":["a","b"]}`, `string enum["a","b"]`},
		{"enum of integers", `{"enum":[1,2]}`, "integer enum[1,2]"},
		{"enum of numbers", `{"enum":[1,2.5]}`, "number enum[1,2.5]"},
		{"enum with null", `{"enum":["a",null]}`, `string? enum["a",null]`},
		{"enum of null", `{"enum":[null]}`, `null enum[null]`},
		{"mixed enum", `{"enum":["a",1]}`, `any enum["a",1]`},
		{"const", `{"const":true}`, "boolean enum[true]"},
		{"const object", `{"const":{"a":1}}`, `object enum[{"a":1}] {} +any`},
		{"type and enum", `{"type":"string","enum":["a"]}`, `string enum["a"]`},
		{"$ref to $defs", `{"$defs":{"name":{"type":"string","maxLength":9}},"type":"object","properties":{"n":{"$ref":"#/$defs/name"}}}`,
			"object {n: string maxLength=9} +any"},
		{"$ref to definitions", `{"definitions":{"n":{"type":"integer"}},"$ref":"#/definitions/n"}`, "integer"},
		{"$ref chain", `{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"type":"boolean"}},"$ref":"#/$defs/a"}`, "boolean"},
		{"escaped $ref", `{"$defs":{"a/b":{"type":"integer"},"c d":{"type":"string"}},"type":"object","properties":{"x":{"$ref":"#/$defs/a~1b"},"y":{"$ref":"#/$defs/c%20d"}}}`,
			"object {x: integer, y: string} +any"},
		{"recursive $ref", `{"$defs":{"node":{"type":"object","properties":{"next":{"$ref":"#/$defs/node"},"v":{"type":"integer"}}}},"$ref":"#/$defs/node"}`,
			"object {next: any, v: integer} +any"},
		{"mutually recursive $refs", `{"$defs":{"a":{"type":"array","items":{"$ref":"#/$defs/b"}},"b":{"type":"object","properties":{"a":{"$ref":"#/$defs/a"}}}},"$ref":"#/$defs/a"}`,
			"array [object {a: any} +any]"},
		{"root recursion", `{"type":"object","properties":{"self":{"$ref":"#"}}}`, "object {self: object {self: any} +any} +any"},
		{"anchor $ref", `{"$defs":{"a":{"$anchor":"x","type":"string"}},"$ref":"#x"}`, "any"},
		{"$ref inside embedded resource", `{"$defs":{"e":{"$id":"urn:e","$defs":{"s":{"type":"string"}},"$ref":"#/$defs/s"}},"$ref":"#/$defs/e"}`, "any"},
		{"$ref into embedded resource", `{"$defs":{"e":{"$id":"urn:e","$defs":{"s":{"type":"object","properties":{"x":{"$ref":"#/$defs/s"}}}}}},"$ref":"#/$defs/e/$defs/s"}`,
			"object {x: any} +any"},
		{"allOf single", `{"allOf":[{"type":"string","maxLength":2}]}`, "string maxLength=2"},
		{"allOf merges objects", `{"allOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]},{"properties":{"b":{"type":"integer"}}}]}`,
			"object {a*: string, b: integer} +any"},
		{"allOf with a closed branch", `{"allOf":[{"type":"object","properties":{"a":{}},"additionalProperties":false},{"properties":{"b":{}}}]}`,
			"object {a: any} closed"},
		{"allOf same property", `{"allOf":[{"properties":{"a":{"type":"number"}}},{"type":"object","properties":{"a":{"type":"integer","maxLength":3}}}]}`,
			"object {a: integer maxLength=3} +any"},
		{"allOf limits", `{"allOf":[{"type":"string","maxLength":5},{"maxLength":3},{"maxLength":4}]}`, "string maxLength=3"},
		{"allOf integer and number", `{"allOf":[{"type":"number"},{"type":"integer"}]}`, "integer"},
		{"allOf nullable and not", `{"allOf":[{"type":["string","null"]},{"type":"string"}]}`, "string"},
		{"allOf null and nullable", `{"allOf":[{"type":["string","null"]},{"type":"null"}]}`, "null"},
		{"allOf contradiction", `{"allOf":[{"type":"string"},{"type":"integer"}]}`, "string"},
		{"allOf enums intersect", `{"allOf":[{"enum":[1,2,3]},{"enum":[2.0,3,4]}]}`, "integer enum[2,3]"},
		{"allOf items", `{"allOf":[{"type":"array","items":{"type":"number"}},{"items":{"type":"integer"}}]}`, "array [integer]"},
		{"$ref with siblings", `{"$defs":{"o":{"properties":{"x":{"type":"string"}}}},"type":"object","$ref":"#/$defs/o","required":["x"]}`,
			"object {x*: string} +any"},
		{"$ref with unevaluatedProperties", `{"$defs":{"o":{"type":"object","properties":{"x":{"type":"string"}}}},"$ref":"#/$defs/o","properties":{"y":{"type":"boolean"}},"unevaluatedProperties":false}`,
			"object {x: string, y: boolean} closed"},
		{"unevaluated after declared additionalProperties", `{"$defs":{"o":{"type":"object","additionalProperties":{"type":"string"}}},"$ref":"#/$defs/o","unevaluatedProperties":false}`,
			"object {} +string"},
		{"anyOf nullable", `{"anyOf":[{"type":"string","maxLength":3},{"type":"null"}]}`, "string? maxLength=3"},
		{"oneOf nullable, null first", `{"oneOf":[{"type":"null"},{"$ref":"#/$defs/i"}],"$defs":{"i":{"type":"integer"}}}`, "integer?"},
		{"anyOf", `{"anyOf":[{"type":"string"},{"type":"integer"}]}`, "any"},
		{"oneOf", `{"oneOf":[{"type":"object"},{"type":"array"}]}`, "any"},
		{"not", `{"not":{"type":"string"}}`, "any"},
		{"if", `{"if":{"type":"string"},"then":{"maxLength":3}}`, "any"},
		{"anyOf keeps sibling facts, stays open", `{"type":"object","properties":{"a":{}},"anyOf":[{"required":["a"]},{"required":["b"]}],"unevaluatedProperties":false}`,
			"object {a: any} +any"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustCompile(t, tt.doc)
			if got := describe(t, s.Root); got != tt.want {
				t.Fatalf("Root = %s\n want  %s", got, tt.want)
			}
		})
	}
}

func TestNodeSharesNothingWithDoc(t *testing.T) {
	s := mustCompile(t, `{"enum":["a","b"]}`)
	s.Root.Enum[0] = "changed"
	if s.Doc().(map[string]any)["enum"].([]any)[0] != "a" {
		t.Fatal("Node.Enum aliases the document")
	}
}

func TestLookup(t *testing.T) {
	s := mustCompile(t, `{
		"type": "object",
		"properties": {
			"name": {"type": "string"},
			"open": {"type": "object", "properties": {"x": {"type": "integer"}}},
			"typed": {"type": "object", "additionalProperties": {"type": "boolean"}},
			"list": {"type": "array", "items": {"type": "object"}},
			"free": {}
		},
		"additionalProperties": false
	}`)
	tests := []struct {
		path []string
		want string // describe of the node, "" when not found
	}{
		{nil, s.Root.Kind.String()},
		{[]string{"name"}, "string"},
		{[]string{"nope"}, ""},
		{[]string{"name", "x"}, ""},
		{[]string{"open", "x"}, "integer"},
		{[]string{"open", "undeclared"}, "any"},
		{[]string{"open", "undeclared", "deeper"}, "any"},
		{[]string{"typed", "k"}, "boolean"},
		{[]string{"typed", "k", "x"}, ""},
		{[]string{"list", "0"}, ""},
		{[]string{"free", "a", "b"}, "any"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.path, "."), func(t *testing.T) {
			n, ok := s.Root.Lookup(tt.path)
			if tt.want == "" {
				if ok {
					t.Fatalf("Lookup(%q) = %s, want not found", tt.path, describe(t, n))
				}
				return
			}
			if !ok {
				t.Fatalf("Lookup(%q) not found", tt.path)
			}
			if got := describe(t, n); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("Lookup(%q) = %s, want %s", tt.path, got, tt.want)
			}
		})
	}
}
