package executor

import (
	"slices"
	"testing"
)

func TestMCPCheckArgumentsAgainstTheDownstreamInputSchema(t *testing.T) {
	const lookup = `{"type":"object","properties":{"id":{"type":"string"},"amount":{"type":"number"},
		"count":{"type":"integer"},"note":{"type":["string","null"]},"any":{}},"required":["id","amount"]}`
	cases := []struct {
		name   string
		schema string
		shape  map[string]any
		want   []string
	}{
		{"the shape fits", lookup, map[string]any{"id": "string", "amount": "integer", "count": "number", "note": "null", "any": "array"}, nil},
		{"unknown types are not checked", lookup, map[string]any{"id": nil, "amount": nil}, nil},
		{"a required property is missing", lookup, map[string]any{"id": "string"},
			[]string{`the downstream tool requires argument "amount", which the program does not give`}},
		{"a type conflicts", lookup, map[string]any{"id": "number", "amount": "string", "note": "boolean"}, []string{
			`argument "amount": the program gives string, the downstream tool takes number`,
			`argument "id": the program gives number, the downstream tool takes string`,
			`argument "note": the program gives boolean, the downstream tool takes string or null`,
		}},
		{"a closed schema refuses an extra property", `{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}`,
			map[string]any{"a": "string", "b": "string"}, []string{`the downstream tool does not accept argument "b"`}},
		{"an open schema takes an extra property", `{"type":"object"}`, map[string]any{"b": "object"}, nil},
		{"a draft-07 schema is read without its $schema", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
			"properties":{"location":{"type":"string","enum":["Chicago"]}},"required":["location"]}`,
			map[string]any{}, []string{`the downstream tool requires argument "location", which the program does not give`}},
		{"a schema internal/schema cannot read is not checked", `{"type":"object","properties":{"a":{"$ref":"https://x/y"}}}`,
			map[string]any{"b": "string"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkArguments(mustDecode(t, tc.schema), tc.shape)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestMCPCheckArgumentsReadsTheSchemaTheExecutorListed(t *testing.T) {
	tool, o := stdioTool(t, "echo", nil)
	m := build(t, tool, o)
	if got := CheckArguments(m, map[string]any{"message": "string"}); got != nil {
		t.Fatalf("echo's own shape: %q", got)
	}
	want := []string{
		`the downstream tool requires argument "message", which the program does not give`,
		`the downstream tool does not accept argument "msg"`,
	}
	if got := CheckArguments(m, map[string]any{"msg": "string"}); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := CheckArguments(nil, map[string]any{"x": "string"}); got != nil {
		t.Fatalf("a non-mcp executor: %q", got)
	}
}
