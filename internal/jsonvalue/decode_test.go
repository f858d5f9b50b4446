package jsonvalue

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want any
	}{
		{"null", `null`, nil},
		{"true", ` true `, true},
		{"false", "\n\tfalse\r\n", false},
		{"string", `"héllo"`, "héllo"},
		{"escapes", `"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t"},
		{"unicode escape", `"\u20ac\u00e9"`, "€é"},
		{"surrogate pair", `"\ud83d\ude00"`, "😀"},
		{"escape after plain text", `"abc\u0041def"`, "abcAdef"},
		{"integer", `42`, json.Number("42")},
		{"negative zero", `-0`, json.Number("-0")},
		{"max safe integer", `9007199254740992`, json.Number("9007199254740992")},
		{"min safe integer", `-9007199254740992`, json.Number("-9007199254740992")},
		{"fraction keeps literal", `1.50`, json.Number("1.50")},
		{"exponent", `1E-7`, json.Number("1E-7")},
		{"large float beyond 1e21", `1e300`, json.Number("1e300")},
		{"float rounding to 2^53", `9007199254740993.0`, json.Number("9007199254740993.0")},
		{"denormal", `5e-324`, json.Number("5e-324")},
		{"zero with big exponent", `0e999999999`, json.Number("0e999999999")},
		{"empty object", `{}`, map[string]any{}},
		{"empty array", `[]`, []any{}},
		{"nested", `{"a":[1,{"b":null}],"c":"d"}`, map[string]any{
			"a": []any{json.Number("1"), map[string]any{"b": nil}},
			"c": "d",
		}},
		{"depth 128", strings.Repeat("[", 128) + strings.Repeat("]", 128), nest(128)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			if !Equal(got, tt.want) {
				t.Fatalf("Decode(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func nest(n int) any {
	v := []any{}
	for i := 1; i < n; i++ {
		v = []any{v}
	}
	return v
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		pointer string
		offset  int64
		message string // substring of Error.Message
	}{
		{"empty", ``, "", 0, "unexpected end of input"},
		{"only space", `   `, "", 3, "unexpected end of input"},
		{"trailing value", `1 2`, "", 2, "after top-level value"},
		{"trailing garbage", `{} x`, "", 3, "after top-level value"},
		{"duplicate key", `{"a":1,"a":2}`, "", 7, `duplicate object key "a"`},
		{"nested duplicate key", `{"x":[{"k":1,"k":2}]}`, "/x/0", 13, `duplicate object key "k"`},
		{"duplicate key via escape", `{"a":1,"\u0061":2}`, "", 7, `duplicate object key "a"`},
		{"pointer escaping", `{"a/b":{"~":{"k":1,"k":1}}}`, "/a~1b/~0", 19, "duplicate"},
		{"integer too large", `9007199254740993`, "", 0, "beyond ±2^53"},
		{"negative integer too large", `{"n":-9007199254740993}`, "/n", 5, "beyond ±2^53"},
		{"integer with 17 digits", `[0,12345678901234567]`, "/1", 3, "beyond ±2^53"},
		{"float canonicalizing to unsafe integer", `1e20`, "", 0, "unsafe integer"},
		{"float overflow", `1e400`, "", 0, "overflows"},
		{"float underflow", `1e-400`, "", 0, "underflows"},
		{"huge negative exponent", `1e-999999999`, "", 0, "underflows"},
		{"too deep", strings.Repeat("[", 129) + strings.Repeat("]", 129), strings.Repeat("/0", 128), 128, "nesting deeper than 128"},
		{"invalid utf8 in string", "\"ab\xffc\"", "", 3, "invalid UTF-8 byte 0xff in string"},
		{"invalid utf8 outside string", "[1,\xc3]", "/1", 3, "invalid UTF-8 byte 0xc3"},
		{"invalid utf8 in key", "{\"a\":{\"\xed\xa0\x80\":1}}", "/a", 7, "invalid UTF-8 byte 0xed in string"},
		{"invalid utf8 after escape", "{\"k\":\"\\n\xc0\xaf\"}", "/k", 8, "invalid UTF-8 byte 0xc0 in string"},
		{"truncated utf8", "\"\xe2\x82\"", "", 1, "invalid UTF-8"},
		{"unpaired high surrogate", `"\ud800"`, "", 1, "unpaired surrogate"},
		{"unpaired low surrogate", `"\udc00x"`, "", 1, "unpaired surrogate"},
		{"high surrogate then non-low", `"\ud800\u0041"`, "", 1, "unpaired surrogate"},
		{"bad escape", `"\x"`, "", 1, "invalid escape"},
		{"bad unicode escape", `"\u12G4"`, "", 1, "invalid \\u escape"},
		{"short unicode escape", `"\u12`, "", 1, "invalid \\u escape"},
		{"control char", "\"a\nb\"", "", 2, "control character"},
		{"unterminated string", `"abc`, "", 0, "unterminated string"},
		{"unterminated escape", `"abc\`, "", 0, "unterminated string"},
		{"leading zero", `01`, "", 1, "after top-level value"},
		{"plus sign", `+1`, "", 0, "want a value"},
		{"bare minus", `-`, "", 1, "invalid number"},
		{"dot without digits", `1.`, "", 2, "after '.'"},
		{"exponent without digits", `1e+`, "", 3, "exponent"},
		{"NaN", `NaN`, "", 0, "want a value"},
		{"bad literal", `nul`, "", 0, "want null"},
		{"truthy", `tru`, "", 0, "want true"},
		{"trailing comma in array", `[1,]`, "/1", 3, "want a value"},
		{"trailing comma in object", `{"a":1,}`, "", 7, "want an object key"},
		{"missing colon", `{"a" 1}`, "", 5, "want ':'"},
		{"unquoted key", `{a:1}`, "", 1, "want an object key"},
		{"unclosed array", `[1`, "", 2, "want ',' or ']'"},
		{"unclosed object", `{"a":1`, "", 6, "want ',' or '}'"},
		{"missing value", `{"a":}`, "/a", 5, "want a value"},
		{"single quotes", `'a'`, "", 0, "want a value"},
		{"comment", `[1 /* c */]`, "", 3, "want ',' or ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%q) = %#v, want error", tt.in, v)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode(%q) error %T, want *Error", tt.in, err)
			}
			if e.Pointer != tt.pointer || e.Offset != tt.offset || !strings.Contains(e.Message, tt.message) {
				t.Fatalf("Decode(%q) = {Pointer:%q Offset:%d Message:%q}, want {%q %d ~%q}",
					tt.in, e.Pointer, e.Offset, e.Message, tt.pointer, tt.offset, tt.message)
			}
			if !strings.Contains(err.Error(), e.Message) {
				t.Fatalf("Error() = %q does not contain message", err.Error())
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	_, err := Decode([]byte(`{"a":{"b":1,"b":2}}`))
	want := `jsonvalue: duplicate object key "b" (at offset 12, pointer "/a")`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestEscapePointerToken(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"a/b", "a~1b"},
		{"~", "~0"},
		{"~1/", "~01~1"},
	}
	for _, tt := range tests {
		if got := EscapePointerToken(tt.in); got != tt.want {
			t.Errorf("EscapePointerToken(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkDecodeSmallObject(b *testing.B) {
	data := []byte(`{"name":"Ada Lovelace","age":36,"tags":["math","poetry"],"score":9.5}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
