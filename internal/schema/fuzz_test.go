package schema

import (
	"errors"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

func FuzzCompile(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`true`,
		`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":["string","null"],"maxLength":3}},"required":["a"],"additionalProperties":false}`,
		`{"type":"array","items":{"enum":[1,2.5,"x",null]},"maxItems":2,"uniqueItems":true}`,
		`{"$defs":{"n":{"type":"object","properties":{"next":{"$ref":"#/$defs/n"},"v":{"const":1}}}},"$ref":"#/$defs/n"}`,
		`{"allOf":[{"type":"object","properties":{"a":{}}},{"properties":{"b":{"type":"number"}},"unevaluatedProperties":false}]}`,
		`{"anyOf":[{"type":"string","format":"date"},{"type":"null"}],"oneOf":[{"minLength":1},{"maxLength":0}]}`,
		`{"if":{"properties":{"k":{"const":"a"}}},"then":{"required":["a"]},"else":{"not":{"required":["a"]}}}`,
		`{"prefixItems":[{"type":"integer"}],"items":false,"contains":{"type":"integer"},"minContains":1}`,
		`{"patternProperties":{"^x-":{"type":"string"}},"propertyNames":{"pattern":"^[a-z-]+$"},"dependentRequired":{"a":["b"]}}`,
		`{"$id":"https://example.com/s","$defs":{"e":{"$id":"urn:e","$anchor":"x","type":"integer"}},"$ref":"#/$defs/e"}`,
		`{"$dynamicAnchor":"m","type":"object","properties":{"c":{"type":"array","items":{"$dynamicRef":"#m"}}}}`,
		`{"$ref":"other.json","type":"strng","$schema":"http://json-schema.org/draft-07/schema#"}`,
		`{"type":"number","minimum":0,"exclusiveMaximum":1e10,"multipleOf":0.5}`,
	} {
		f.Add([]byte(seed))
	}
	samples := []string{
		`null`, `true`, `0`, `-1.5`, `1e300`, `"s"`, `"2020-01-01"`, `[]`, `[1,"a",null]`,
		`{}`, `{"a":1,"b":"xyz","next":{"next":{}},"k":"a","x-y":"z"}`,
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := jsonvalue.Decode(data)
		if err != nil {
			return
		}
		s, err := Compile(doc)
		if err != nil {
			var ce *CompileError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("Compile(%s): error %T %v", data, err, err)
			}
			if strings.Contains(err.Error(), "schema compiler failed") {
				t.Fatalf("Compile(%s): library panicked: %v", data, err)
			}
			if strings.Contains(err.Error(), location) {
				t.Fatalf("Compile(%s): message leaks internal location: %v", data, err)
			}
			return
		}
		if s.Root == nil {
			t.Fatalf("Compile(%s): nil Root", data)
		}
		values := []any{doc}
		for _, src := range samples {
			v, err := jsonvalue.Decode([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			values = append(values, v)
		}
		for _, v := range values {
			for _, viol := range s.Validate(v) {
				if strings.HasPrefix(viol.Message, "validator failed") || strings.Contains(viol.Message, location) {
					t.Fatalf("Compile(%s).Validate: %v", data, viol)
				}
			}
			_ = s.Root.Convert(v)
		}
		for _, path := range [][]string{{"a"}, {"next", "next", "v"}, {"0"}} {
			if n, ok := s.Root.Lookup(path); ok && n == nil {
				t.Fatalf("Compile(%s): Lookup(%q) found a nil node", data, path)
			}
		}
		// Closing objects keeps a valid schema valid.
		if _, err := Compile(CloseObjects(doc)); err != nil {
			t.Fatalf("Compile(CloseObjects(%s)): %v", data, err)
		}
	})
}
