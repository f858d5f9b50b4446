package jsonvalue

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"unicode/utf8"
)

func TestCanonicalDecoded(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		// RFC 8785 §3.2.2 (the "numbers", "string" and "literals" example).
		{"rfc8785 example",
			`{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
			  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
			  "literals": [null, true, false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		// RFC 8785 §3.2.3: members sorted by UTF-16 code units, so the
		// surrogate pair of U+1F600 sorts before U+FB33.
		{"rfc8785 sorting",
			`{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh",
			  "1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control",
			  "\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{"1e21", `1e21`, `1e+21`},
		{"1E-7", `1E-7`, `1e-7`},
		{"0.000001 stays plain", `0.000001`, `0.000001`},
		{"negative zero", `-0`, `0`},
		{"negative zero float", `-0.0`, `0`},
		{"trailing zeros", `[1.0, 100, 1.5e2]`, `[1,100,150]`},
		{"no html escaping", `"<a href='x'>&</a>"`, `"<a href='x'>&</a>"`},
		{"line separators raw", `"\u2028\u2029"`, "\"\u2028\u2029\""},
		{"control chars escaped", `"\u0001\u001f\u007f"`, "\"\\u0001\\u001f\u007f\""},
		{"nested whitespace removed", "{ \"b\" : [ 1 , { \"d\":2, \"c\":3 } ] , \"a\" : { } }", `{"a":{},"b":[1,{"c":3,"d":2}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Canonical(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("Canonical = %s\nwant        %s", got, tt.want)
			}
		})
	}
}

// TestCanonicalNumbers uses the IEEE-754 samples of RFC 8785 Appendix B.
func TestCanonicalNumbers(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	for _, tt := range tests {
		got, err := Canonical(math.Float64frombits(tt.bits))
		if err != nil {
			t.Errorf("%#016x: %v", tt.bits, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%#016x: got %s, want %s", tt.bits, got, tt.want)
		}
	}
}

func TestCanonicalGoValues(t *testing.T) {
	type inner struct {
		B string `json:"b"`
		A int    `json:"a"`
	}
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"int", 42, `42`},
		{"int64", int64(-7), `-7`},
		{"uint64", uint64(1 << 53), `9007199254740992`},
		{"float64", 2.5, `2.5`},
		{"json.Number", json.Number("1E3"), `1000`},
		{"struct", struct {
			Z  []int  `json:"z"`
			In inner  `json:"in"`
			P  *inner `json:"p"`
		}{Z: []int{3, 1}, In: inner{B: "<&>", A: 1}}, `{"in":{"a":1,"b":"<&>"},"p":null,"z":[3,1]}`},
		{"map of strings", map[string]string{"b": "1", "a": "2"}, `{"a":"2","b":"1"}`},
		{"nil", nil, `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCanonicalErrors(t *testing.T) {
	for _, v := range []any{math.NaN(), math.Inf(1), make(chan int), map[string]any{"f": func() {}}} {
		if got, err := Canonical(v); err == nil {
			t.Errorf("Canonical(%T) = %s, want error", v, got)
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	orig, err := Decode([]byte(`{"a":[1,{"b":"c"}],"d":null}`))
	if err != nil {
		t.Fatal(err)
	}
	c := Clone(orig)
	if !Equal(orig, c) {
		t.Fatalf("clone differs: %#v", c)
	}
	c.(map[string]any)["a"].([]any)[1].(map[string]any)["b"] = "changed"
	c.(map[string]any)["new"] = true
	want, _ := Decode([]byte(`{"a":[1,{"b":"c"}],"d":null}`))
	if !Equal(orig, want) {
		t.Fatalf("mutating the clone changed the original: %#v", orig)
	}
	for _, scalar := range []any{nil, true, "s", json.Number("1.5"), 3} {
		if got := Clone(scalar); got != scalar {
			t.Errorf("Clone(%#v) = %#v", scalar, got)
		}
	}
}

func TestEqual(t *testing.T) {
	dec := func(s string) any {
		v, err := Decode([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		a, b any
		want bool
	}{
		{"same object, other order", dec(`{"a":1,"b":[true,null]}`), dec(`{"b":[true,null],"a":1}`), true},
		{"number literals differ", dec(`1`), dec(`1.0`), false},
		{"number literal same", dec(`1.0`), dec(`1.0`), true},
		{"exponent case differs", dec(`1e2`), dec(`1E2`), false},
		{"null vs missing", dec(`{"a":null}`), dec(`{}`), false},
		{"array order", dec(`[1,2]`), dec(`[2,1]`), false},
		{"array length", dec(`[1]`), dec(`[1,1]`), false},
		{"string vs number", dec(`"1"`), dec(`1`), false},
		{"bool", dec(`true`), dec(`false`), false},
		{"null", nil, nil, true},
		{"null vs false", nil, false, false},
		{"empty object vs array", dec(`{}`), dec(`[]`), false},
		{"other go types", []int{1}, []int{1}, true},
		{"number vs float64", json.Number("1"), 1.0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Equal(tt.a, tt.b); got != tt.want {
				t.Fatalf("Equal = %v, want %v", got, tt.want)
			}
			if got := Equal(tt.b, tt.a); got != tt.want {
				t.Fatalf("Equal (swapped) = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`,
		`{"a":1,"a":2}`,
		`{"\u20ac":1,"\r":2,"\ud83d\ude00":3,"\ufb33":4}`,
		`[9007199254740992,-9007199254740992,9007199254740993]`,
		`[1e21,1E-7,333333333.33333329,4.50,-0,1e20]`,
		`[1e400,1e-400,5e-324,0e99999]`,
		`"\ud800\udc00\ud800"`,
		"\"\xff\"",
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		`{"a":"\u0000\u001f\u2028<>&"}`,
		`  null  `,
		`{"":{"":{"":[]}}} x`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if !json.Valid(data) || !utf8.Valid(data) {
			t.Fatalf("Decode accepted invalid JSON %q", data)
		}
		if !Equal(v, Clone(v)) {
			t.Fatalf("clone differs")
		}
		c1, err := Canonical(v)
		if err != nil {
			t.Fatalf("Canonical(Decode(%q)): %v", data, err)
		}
		v2, err := Decode(c1)
		if err != nil {
			t.Fatalf("Decode(Canonical) of %q = %q: %v", data, c1, err)
		}
		c2, err := Canonical(v2)
		if err != nil {
			t.Fatalf("Canonical(Decode(Canonical)) of %q: %v", data, err)
		}
		if !bytes.Equal(c1, c2) {
			t.Fatalf("canonical form not stable for %q: %q then %q", data, c1, c2)
		}
	})
}
