package jsonvalue

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// sameAsReference fails unless Canonical(v) and canonicalReference(v) give
// the same bytes, or both fail.
func sameAsReference(t testing.TB, name string, v any) {
	t.Helper()
	got, err := Canonical(v)
	want, wantErr := canonicalReference(v)
	switch {
	case (err != nil) != (wantErr != nil):
		t.Errorf("%s: Canonical error %v, reference error %v (got %q, want %q)", name, err, wantErr, got, want)
	case !bytes.Equal(got, want):
		t.Errorf("%s: Canonical differs from the reference\ngot  %q\nwant %q", name, got, want)
	}
}

// Types exercising encoding/json rules the fast path hands to the general
// path, or follows itself.

type embeddedInner struct {
	A string `json:"a"`
	Z int    `json:"z,omitempty"`
}

type withEmbedded struct {
	embeddedInner
	B string `json:"b"`
}

type withStringOpt struct {
	N int  `json:"n,string"`
	B bool `json:"b,string"`
}

type withOmitZero struct {
	T time.Time `json:"t,omitzero"`
	N int       `json:"n,omitzero"`
}

type ptrMarshaler struct{ X int }

func (p *ptrMarshaler) MarshalJSON() ([]byte, error) { return []byte(`{"b":2, "a":1}`), nil }

type valMarshaler struct{ out string }

func (v valMarshaler) MarshalJSON() ([]byte, error) {
	if v.out == "error" {
		return nil, errors.New("refused")
	}
	return []byte(v.out), nil
}

type textKey string

func (k textKey) MarshalText() ([]byte, error) { return []byte("text:" + string(k)), nil }

type withTags struct {
	Space    string  `json:"a b"`
	Unicode  string  `json:"é"`
	Bad      string  `json:"a\"b"`
	Dash     string  `json:"-,"`
	Skipped  string  `json:"-"`
	Untagged string  ``
	Empty    string  `json:",omitempty"`
	F32      float32 `json:"f32"`
	unexp    string
}

// dupNames returns a struct with two fields named "x", built at run time
// (go vet rightly rejects such a type in source).
func dupNames() any {
	str := reflect.TypeFor[string]()
	t := reflect.StructOf([]reflect.StructField{
		{Name: "A", Type: str, Tag: `json:"x"`},
		{Name: "B", Type: str, Tag: `json:"x"`},
		{Name: "C", Type: str, Tag: `json:"y"`},
	})
	v := reflect.New(t).Elem()
	for i, s := range []string{"a", "b", "c"} {
		v.Field(i).SetString(s)
	}
	return v.Interface()
}

type list struct {
	V    int   `json:"v"`
	Next *list `json:"next,omitempty"`
}

type omitAll struct {
	S  string         `json:"s,omitempty"`
	I  int            `json:"i,omitempty"`
	U  uint8          `json:"u,omitempty"`
	F  float64        `json:"f,omitempty"`
	B  bool           `json:"b,omitempty"`
	P  *int           `json:"p,omitempty"`
	A  any            `json:"a,omitempty"`
	M  map[string]int `json:"m,omitempty"`
	L  []int          `json:"l,omitempty"`
	R  [0]int         `json:"r,omitempty"`
	St struct{}       `json:"st,omitempty"`
}

type namedBytes []byte

type myByte uint8

type allKinds struct {
	I8    int8              `json:"i8"`
	I64   int64             `json:"i64"`
	U64   uint64            `json:"u64"`
	Uptr  uintptr           `json:"uptr"`
	F32   float32           `json:"f32"`
	F64   float64           `json:"f64"`
	Bytes []byte            `json:"bytes"`
	NB    namedBytes        `json:"nb"`
	MB    []myByte          `json:"mb"`
	Arr   [3]byte           `json:"arr"`
	Num   json.Number       `json:"num"`
	Raw   json.RawMessage   `json:"raw"`
	RawP  *json.RawMessage  `json:"rawp"`
	IM    map[string]int    `json:"im"`
	NM    map[textKey]int   `json:"nm"`
	KM    map[int]string    `json:"km"`
	Err   error             `json:"err"`
	Iface any               `json:"iface"`
	PP    **int             `json:"pp"`
	SS    []string          `json:"ss"`
	SM    map[string]string `json:"sm"`
}

func deepSlice(depth int) any {
	var v any = []any{}
	for i := 1; i < depth; i++ {
		v = []any{v}
	}
	return v
}

func deepText(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// unsortedDeep nests objects whose members are all out of order, the case
// that would make the one-pass canonicaliser quadratic.
func unsortedDeep(depth int) string {
	var b strings.Builder
	for i := 0; i < depth; i++ {
		b.WriteString(`{"b":`)
	}
	b.WriteString(`0`)
	for i := 0; i < depth; i++ {
		b.WriteString(`,"a":0}`)
	}
	return b.String()
}

func TestCanonicalMatchesReference(t *testing.T) {
	one := 1
	pOne := &one
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	raw := json.RawMessage(`{"z": [1, 2.50, "\u00e9"], "a": null}`)
	events := testEvents(t)

	tests := []struct {
		name string
		v    any
	}{
		// numbers
		{"1e21", json.Number("1e21")},
		{"1e20", json.Number("1e20")},
		{"1e-7", json.Number("1e-7")},
		{"1e-6", json.Number("0.000001")},
		{"0.1", json.Number("0.1")},
		{"big integer literal", json.Number("123456789012345678")},
		{"2^53+1 literal", json.Number("9007199254740993")},
		{"15 digits", json.Number("-999999999999999")},
		{"16 digits", json.Number("9999999999999999")},
		{"-0", json.Number("-0")},
		{"-0.0", json.Number("-0.0")},
		{"-0e5", json.Number("-0e5")},
		{"5e-324", json.Number("5e-324")},
		{"underflow", json.Number("1e-400")},
		{"max double", json.Number("1.7976931348623157e308")},
		{"overflow", json.Number("1.8e308")},
		{"exponent forms", []any{json.Number("1E+2"), json.Number("1e-2"), json.Number("12.5E3"), json.Number("-1.5e-9")}},
		{"empty Number", json.Number("")},
		{"invalid Numbers", []any{json.Number("abc")}},
		{"plus", json.Number("+1")},
		{"leading zero", json.Number("01")},
		{"bare dot", json.Number("1.")},
		{"hex", json.Number("0x10")},
		{"underscore", json.Number("1_000")},
		{"inf", json.Number("Inf")},
		{"space", json.Number(" 1")},
		{"float64s", []any{0.1, -0.0, 1e21, 1e-7, 5e-324, math.MaxFloat64, -math.SmallestNonzeroFloat64, 123456789012345678.0, 1.0 / 3}},
		{"NaN", math.NaN()},
		{"-Inf", math.Inf(-1)},
		{"float32s", []float32{0.1, 1e-7, 3.4028235e38, 16777217, -0, 1.0 / 3, 1e21, 1e-45}},
		{"float32 NaN", float32(math.NaN())},
		{"ints", []any{math.MaxInt64, math.MinInt64, int64(1<<53 + 1), int64(-(1 << 53) - 1), int64(1 << 53), int8(-128), int32(7)}},
		{"uints", []any{uint64(math.MaxUint64), uint64(1<<53 + 1), uint64(1<<63 + 1025), uint8(255), uint(3)}},
		{"all kinds", allKinds{
			I8: -5, I64: math.MaxInt64, U64: math.MaxUint64, Uptr: 9, F32: 0.1, F64: 0.1,
			Bytes: []byte("hi\x00"), NB: namedBytes("x"), MB: []myByte{1, 2}, Arr: [3]byte{1, 2, 3},
			Num: "1.50", Raw: raw, RawP: &raw, IM: map[string]int{"b": 1, "a": 2},
			NM: map[textKey]int{"k": 1}, KM: map[int]string{2: "b", 10: "a"},
			Err: errors.New("e"), Iface: allKinds{}, PP: &pOne,
			SS: []string{"b", "a"}, SM: map[string]string{"\U0001F600": "x", "\uFB33": "y"},
		}},
		{"zero all kinds", allKinds{}},
		{"pointer to all kinds", &allKinds{Num: "2"}},

		// strings
		{"control characters", func() string {
			var b []byte
			for c := 0; c < 0x20; c++ {
				b = append(b, byte(c))
			}
			return string(b) + "\x7f"
		}()},
		{"escapes", `"\/<>&'` + "\t"},
		{"line separators", "\u2028\u2029"},
		{"surrogate pairs", "\U0001F600\U00010000\U0010FFFF"},
		{"invalid UTF-8", "a\xffb\xc3(\xed\xa0\x80\xf4\x90\x80\x80"},
		{"U+FFFD", "\uFFFD"},
		{"invalid UTF-8 key", map[string]any{"\xff": 1}},
		{"colliding invalid keys", map[string]any{"\xff": 1, "\xfe": 2}},
		{"invalid key colliding with U+FFFD", map[string]any{"\xff": 1, "\uFFFD": 2}},
		{"invalid key in a string map", map[string]string{"\xff": "a", "\xfe": "b"}},
		{"invalid key in an int map", map[string]int{"\xff": 1, "\xfe": 2}},

		// member order
		{"UTF-16 order", map[string]any{
			"\uFB33": 1, "\U0001F600": 2, "\uE000": 3, "\uFFFF": 4, "\U00010000": 5,
			"\uD7FF": 6, "a": 7, "": 8, "\u0080": 9, "ab": 10, "\r": 11, "\U0010FFFF": 12,
		}},
		{"UTF-16 order in a struct's map", map[string]int{"\uE000": 1, "\U0001F600": 2}},
		{"UTF-16 order in text", json.RawMessage(`{"\ue000":1,"\ud83d\ude00":2,"\uD800\uDC00":3,"\u00e9":4,"e\u0301":5}`)},

		// empties
		{"nested empties", map[string]any{"a": map[string]any{}, "b": []any{}, "c": []any{map[string]any{}, []any{}}, "d": ""}},
		{"nil containers", map[string]any{"m": map[string]any(nil), "s": []any(nil), "ss": []string(nil), "sm": map[string]string(nil)}},
		{"nil map", map[string]any(nil)},
		{"nil slice", []any(nil)},
		{"nil pointer", (*list)(nil)},
		{"nil", nil},

		// structs
		{"event pointers", []any{&events[0], &events[1], &events[3], &events[5], &events[6], &events[7]}},
		{"event values", []any{events[0], events[2], events[4]}},
		{"omitempty, empty", omitAll{}},
		{"omitempty, negative zero", omitAll{F: math.Copysign(0, -1)}},
		{"omitempty, set", omitAll{S: "s", I: -1, U: 1, F: 0.5, B: true, P: new(int), A: false, M: map[string]int{}, L: []int{}}},
		{"recursive type", &list{V: 1, Next: &list{V: 2, Next: &list{V: 3}}}},
		{"embedded", withEmbedded{embeddedInner{"x", 1}, "y"}},
		{"string option", withStringOpt{N: 5, B: true}},
		{"omitzero", withOmitZero{}},
		{"pointer marshaler, addressable", &struct{ P ptrMarshaler }{}},
		{"pointer marshaler, not addressable", struct{ P ptrMarshaler }{}},
		{"pointer marshaler, pointer", &ptrMarshaler{}},
		{"value marshaler", valMarshaler{` { "b" : [1.0, {"d":1,"c":2}], "a":"\u0041" } `}},
		{"value marshaler, nil pointer", (*valMarshaler)(nil)},
		{"value marshaler, invalid output", valMarshaler{`{"a":}`}},
		{"value marshaler, empty output", valMarshaler{``}},
		{"value marshaler, error", valMarshaler{"error"}},
		{"value marshaler, duplicate names", valMarshaler{`{"a":1,"a":2}`}},
		{"value marshaler, escaped duplicate", valMarshaler{`{"a":1,"\u0061":2}`}},
		{"value marshaler, lone surrogate", valMarshaler{`"\ud800"`}},
		{"value marshaler, invalid UTF-8", valMarshaler{"\"\xff\""}},
		{"value marshaler, huge number", valMarshaler{`1e400`}},
		{"text marshaler", textKey("a")},
		{"time", time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)},
		{"tags", withTags{Space: "1", Unicode: "2", Bad: "3", Dash: "4", Skipped: "5", Untagged: "6", F32: 0.1}},
		{"duplicate names", dupNames()},
		{"raw nil", json.RawMessage(nil)},
		{"raw empty", json.RawMessage{}},
		{"raw", raw},
		{"interface holding a struct", map[string]any{"s": &list{V: 1}, "t": list{V: 2}}},

		// failures and limits
		{"channel", make(chan int)},
		{"func in a map", map[string]any{"f": func() {}}},
		{"complex", complex(1, 2)},
		{"cycle", cyclic},
		{"deep, fast path limit", deepSlice(maxFastDepth + 5)},
		{"deep, at jcs's limit", deepSlice(maxTextDepth)},
		{"deep, beyond jcs's limit", deepSlice(maxTextDepth + 1)},
		{"deep text, at jcs's limit", json.RawMessage(deepText(maxTextDepth))},
		{"deep text, beyond", json.RawMessage(deepText(maxTextDepth + 1))},
		{"deep text inside values", []any{[]any{json.RawMessage(deepText(maxTextDepth - 2))}}},
		{"deep text inside values, beyond", []any{[]any{json.RawMessage(deepText(maxTextDepth - 1))}}},
		{"deep unsorted text (reorder budget)", json.RawMessage(unsortedDeep(3000))},
	}
	for _, tt := range tests {
		sameAsReference(t, tt.name, tt.v)
	}
}

// TestCanonicalPinned pins outputs that the reference comparison alone
// would not explain to a reader.
func TestCanonicalPinned(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"supplementary before U+E000..U+FFFF", map[string]any{"\uFB33": 1, "\U0001F600": 2, "\uE000": 3, "z": 4},
			"{\"z\":4,\"\U0001F600\":2,\"\uE000\":3,\"\uFB33\":1}"},
		{"integer literal beyond 2^53", json.Number("123456789012345678"), `123456789012345680`},
		{"-0", json.Number("-0"), `0`},
		{"1e21", 1e21, `1e+21`},
		{"1e-7", 1e-7, `1e-7`},
		{"control characters", "\x00\x1f\b\x7f\u2028", "\"\\u0000\\u001f\\b\x7f\u2028\""},
		{"invalid UTF-8", "\xff", "\"\uFFFD\""},
		{"struct members sorted", struct {
			B int `json:"b"`
			A int `json:"a,omitempty"`
			C int
		}{B: 1, C: 2}, `{"C":2,"b":1}`},
		{"float32", float32(0.1), `0.1`},
		{"raw message re-canonicalised", json.RawMessage(` {"b": 1.0, "a" : "\u00e9\/"} `), `{"a":"é/","b":1}`},
	}
	for _, tt := range tests {
		got, err := Canonical(tt.v)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestCanonicalFastPath checks that the values the runtime hashes at every
// step are written without the general path, which the benchmarks would
// otherwise only hint at.
func TestCanonicalFastPath(t *testing.T) {
	events := testEvents(t)
	for i := range events {
		e := encPool.Get().(*encState)
		err := e.appendAny(&events[i])
		e.release()
		if err != nil {
			t.Errorf("event %d: fast path failed: %v", i, err)
		}
	}
}

func TestCompareUTF16(t *testing.T) {
	alphabet := []rune{0, 'A', 'a', 0x7f, 0x80, 0x7ff, 0x800, 0xD7FF, 0xE000, 0xFB33, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF}
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		rs := make([]rune, r.IntN(4))
		for i := range rs {
			rs[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(rs)
	}
	sign := func(n int) int { return min(max(n, -1), 1) }
	for range 100000 {
		a, b := str(), str()
		want := slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
		if got := sign(compareUTF16(a, b)); got != want {
			t.Fatalf("compareUTF16(%q, %q) = %d, want %d", a, b, got, want)
		}
		if got := sign(compareUTF16([]byte(a), []byte(b))); got != want {
			t.Fatalf("compareUTF16([]byte(%q), []byte(%q)) = %d, want %d", a, b, got, want)
		}
	}
}

// TestAppendES6 compares the number printer with jcs's over random
// doubles, bit patterns spread over every exponent.
func TestAppendES6(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200000 {
		bits := r.Uint64()
		if i%4 == 0 {
			bits &^= (1<<52 - 1) >> (r.UintN(53)) // short mantissas too
		}
		f := math.Float64frombits(bits)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		want, err := jcs.NumberToJSON(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendES6(nil, f); string(got) != want {
			t.Fatalf("%#016x: got %s, want %s", bits, got, want)
		}
	}
}

// FuzzCanonical holds Canonical to the original implementation
// (canonicalReference: encoding/json, then gowebpki/jcs) on the values
// Decode makes of the input, on the input as MarshalJSON text, as a
// string, as a map key and as a json.Number, and on numbers of every Go
// kind; and the text canonicaliser to jcs.Transform on any valid JSON.
func FuzzCanonical(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":[true,false,null],"c":{"d":"e"}}`,
		`{"\u20ac":1,"\r":2,"\ud83d\ude00":3,"\ufb33":4,"\ue000":5}`,
		`[9007199254740992,-9007199254740992,1e21,1E-7,333333333.33333329,4.50,-0,-0.0,5e-324,1.7976931348623157e308]`,
		`[1e400,1e-400,0e99999,123456789012345678]`,
		`"\u0000\u001f\u007f\u2028\u2029<>&\/\"\\"`,
		`"\ud800\udc00\ud800"`,
		"\"\xff\xfe\"",
		`{"b":{"d":[],"c":{}},"a":[[],{}]}`,
		`{"a":1,"\u0061":2}`,
		`  null  `,
		`1.0e+2`,
		`{"x":"` + strings.Repeat("é", 20) + `"}`,
	} {
		f.Add([]byte(seed), 0.1, int64(-1<<53-1), uint64(1<<53+1), float32(0.1))
	}
	f.Fuzz(func(t *testing.T, data []byte, fl float64, n int64, u uint64, f32 float32) {
		// The text canonicaliser against jcs, on valid JSON.
		e := encPool.Get().(*encState)
		textErr := e.appendText(data)
		got := bytes.Clone(e.buf)
		e.release()
		if json.Valid(data) {
			want, err := jcs.Transform(data)
			if (textErr != nil) != (err != nil) {
				t.Fatalf("text %q: error %v, jcs error %v", data, textErr, err)
			}
			if err == nil && !bytes.Equal(got, want) {
				t.Fatalf("text %q:\ngot  %q\njcs  %q", data, got, want)
			}
		} else if textErr == nil {
			t.Fatalf("text canonicaliser accepted invalid JSON %q", data)
		}

		sameAsReference(t, "raw", json.RawMessage(data))
		sameAsReference(t, "string and key", map[string]any{string(data): string(data), "k": []string{string(data)}})
		sameAsReference(t, "number", json.Number(data))
		sameAsReference(t, "numbers", []any{fl, n, u, f32, float32(fl), int32(n), uint8(u)})

		v, err := Decode(data)
		if err != nil {
			return
		}
		sameAsReference(t, "decoded", v)
		sameAsReference(t, "decoded in an event", &testEvent{
			RunID: "r", Type: "submission_accepted",
			Submission: &testSubmission{Actor: "model", Output: v},
			Task:       &testTask{View: map[string]any{"input": v}},
		})
		if !utf8.Valid(data) {
			t.Fatalf("Decode accepted invalid UTF-8")
		}
	})
}

// TestCanonicalConcurrent runs Canonical from several goroutines at once,
// on fresh types too, for the race detector: the pooled state and the
// encoder cache are shared.
func TestCanonicalConcurrent(t *testing.T) {
	events := testEvents(t)
	want := make([][]byte, len(events))
	for i := range events {
		var err error
		if want[i], err = canonicalReference(&events[i]); err != nil {
			t.Fatal(err)
		}
	}
	type fresh struct {
		L *list          `json:"l"`
		M map[string]int `json:"m"`
	}
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 50 {
				k := (g + i) % len(events)
				got, err := Canonical(&events[k])
				if err == nil && !bytes.Equal(got, want[k]) {
					err = errors.New("event " + string(got) + " differs")
				}
				if err == nil {
					_, err = Canonical(fresh{L: &list{V: i}, M: map[string]int{"a": g}})
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
