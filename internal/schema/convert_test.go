package schema

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestConvert(t *testing.T) {
	const doc = `{
		"type": "object",
		"properties": {
			"i": {"type": "integer"},
			"ni": {"type": ["integer", "null"]},
			"n": {"type": "number"},
			"s": {"type": "string"},
			"b": {"type": "boolean"},
			"z": {"type": "null"},
			"nums": {"type": "array", "items": {"type": "number"}},
			"typed": {"type": "object", "additionalProperties": {"type": "number"}},
			"closed": {"type": "object", "properties": {"k": {"type": "integer"}}, "additionalProperties": false},
			"free": {}
		}
	}`
	root := mustCompile(t, doc).Root
	tests := []struct {
		name  string
		node  *Node
		value any // JSON text (string) or a Go value
		want  any
	}{
		{"integer", root.Properties["i"], `3`, int64(3)},
		{"integer from 3.0", root.Properties["i"], `3.0`, int64(3)},
		{"integer from exponent", root.Properties["i"], `1e2`, int64(100)},
		{"negative integer", root.Properties["i"], `-9007199254740992`, int64(-9007199254740992)},
		{"integer too big for int64", root.Properties["i"], `1e300`, 1e300},
		{"fraction under integer (mismatch)", root.Properties["i"], `1.5`, 1.5},
		{"string under integer (mismatch)", root.Properties["i"], `"x"`, "x"},
		{"nullable integer null", root.Properties["ni"], `null`, nil},
		{"nullable integer", root.Properties["ni"], `7`, int64(7)},
		{"number from integer literal", root.Properties["n"], `3`, float64(3)},
		{"number", root.Properties["n"], `2.5`, 2.5},
		{"string", root.Properties["s"], `"hi"`, "hi"},
		{"boolean", root.Properties["b"], `false`, false},
		{"boolean mismatch", root.Properties["b"], `1`, int64(1)},
		{"null", root.Properties["z"], `null`, nil},
		{"array of numbers", root.Properties["nums"], `[1, 2.5]`, []any{float64(1), 2.5}},
		{"additional properties typed", root.Properties["typed"], `{"a":1}`, map[string]any{"a": float64(1)}},
		{"forbidden property converted as any", root.Properties["closed"], `{"k":1.0,"x":2}`, map[string]any{"k": int64(1), "x": int64(2)}},
		{"any", root.Properties["free"], `{"a":[1,1.5,1e3,-0,"s",true,null]}`,
			map[string]any{"a": []any{int64(1), 1.5, float64(1000), int64(0), "s", true, nil}}},
		{"any: integer literal beyond int64", root.Properties["free"], json.Number("99999999999999999999"), 1e20},
		{"object mismatch converted as any", root.Properties["typed"], `[1]`, []any{int64(1)}},
		{"nil node", nil, `{"a":1}`, map[string]any{"a": int64(1)}},
		{"whole object", root, `{"i":1,"n":1,"s":"x","free":2.0,"undeclared":3}`,
			map[string]any{"i": int64(1), "n": float64(1), "s": "x", "free": 2.0, "undeclared": int64(3)}},
		{"go float64 under integer", root.Properties["i"], 4.0, int64(4)},
		{"go int under number", root.Properties["n"], 4, float64(4)},
		{"go uint64 under integer", root.Properties["i"], uint64(1 << 63), float64(1 << 63)},
		{"go ints under any", root.Properties["free"], []any{int32(1), uint8(2), float32(0.5)}, []any{int64(1), int64(2), 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.value
			if src, ok := v.(string); ok {
				v = decode(t, src)
			}
			got := tt.node.Convert(v)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Convert = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestConvertDoesNotModifyInput(t *testing.T) {
	root := mustCompile(t, `{"type":"object","properties":{"a":{"type":"integer"}}}`).Root
	in := decode(t, `{"a":1,"b":[2]}`)
	_ = root.Convert(in)
	m := in.(map[string]any)
	if m["a"] != json.Number("1") || m["b"].([]any)[0] != json.Number("2") {
		t.Fatalf("input changed: %#v", in)
	}
}

func BenchmarkConvertSmallObject(b *testing.B) {
	root := mustCompile(b, `{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"score":{"type":"number"}}}`).Root
	v := decode(b, `{"name":"Ada","age":36,"score":9.5}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = root.Convert(v)
	}
}
