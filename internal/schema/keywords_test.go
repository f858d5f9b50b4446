package schema

import (
	"reflect"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

func TestUnknownKeywords(t *testing.T) {
	tests := []struct {
		doc  string
		want []string
	}{
		{`{"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}, "required": ["a"]}`, nil},
		{`{"type": "object", "requried": ["a"]}`, []string{"/requried"}},
		{`{"properties": {"a": {"type": "string", "maxlength": 3}}}`, []string{"/properties/a/maxlength"}},
		{`{"items": {"enum": [1], "x-ui": "radio"}, "allOf": [{"minimum": 1, "mininum": 2}]}`, []string{"/allOf/0/mininum"}},
		{`{"$defs": {"d": {"tpye": "string"}}, "const": {"anything": "goes"}, "default": {"nope": 1}}`, []string{"/$defs/d/tpye"}},
		{`true`, nil},
	}
	for _, tt := range tests {
		doc, err := jsonvalue.Decode([]byte(tt.doc))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range UnknownKeywords(doc) {
			got = append(got, p.Pointer)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.doc, got, tt.want)
		}
	}
}
