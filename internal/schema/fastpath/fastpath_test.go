package fastpath

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compiled is one schema as the library compiles it, with its checker.
type compiled struct {
	lib  *jsonschema.Schema
	fast *Checker // nil: no fast checker
}

// compile compiles doc with the settings package schema uses (draft
// 2020-12 by default, formats asserted, no loader). ok is false when the
// library refuses the document or panics on it.
func compile(doc any) (c compiled, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	const location = "mem:///schema.json"
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	comp.AssertFormat()
	comp.UseLoader(refuseLoader{})
	if err := comp.AddResource(location, doc); err != nil {
		return c, false
	}
	lib, err := comp.Compile(location)
	if err != nil {
		return c, false
	}
	return compiled{lib: lib, fast: New(lib)}, true
}

type refuseLoader struct{}

func (refuseLoader) Load(u string) (any, error) { return nil, fmt.Errorf("no loader: %s", u) }

func decode(t testing.TB, src string) any {
	t.Helper()
	v, err := jsonvalue.Decode([]byte(src))
	if err != nil {
		t.Fatalf("decode %s: %v", src, err)
	}
	return v
}

func mustCompile(t testing.TB, src string) compiled {
	t.Helper()
	c, ok := compile(decode(t, src))
	if !ok {
		t.Fatalf("the library refuses %s", src)
	}
	return c
}

// libraryValidate is the library's verdict on v: nil when valid. A panic
// counts as a violation, as package schema reports it.
func libraryValidate(c compiled, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("validator failed: %v", r)
		}
	}()
	return c.lib.Validate(v)
}

// checkAgainstLibrary fails when the fast checker's verdict on v
// contradicts the library's.
func checkAgainstLibrary(t testing.TB, c compiled, v any, desc string) Verdict {
	t.Helper()
	got := c.fast.Check(v)
	lib := libraryValidate(c, v)
	switch {
	case got == Valid && lib != nil:
		t.Fatalf("%s: fast path says valid, library says %q", desc, lib)
	case got == Invalid && lib == nil:
		t.Fatalf("%s: fast path says invalid, library says valid", desc)
	}
	return got
}

func TestFastPath(t *testing.T) {
	tests := []struct {
		name   string
		schema string
		value  any // JSON text (string, decoded) or a Go value (wrapped by goValue)
		want   Verdict
	}{
		// type
		{"integer literal", `{"type":"integer"}`, `5`, Valid},
		{"integer 5.0", `{"type":"integer"}`, `5.0`, Valid},
		{"integer 1e2", `{"type":"integer"}`, `1e2`, Valid},
		{"integer 1.5e1", `{"type":"integer"}`, `1.5e1`, Valid},
		{"integer 1.5", `{"type":"integer"}`, `1.5`, Invalid},
		{"integer 1e-2", `{"type":"integer"}`, `1e-2`, Invalid},
		{"integer -0", `{"type":"integer"}`, `-0`, Valid},
		{"integer 1e300", `{"type":"integer"}`, `1e300`, Valid},
		{"integer 0.5e1", `{"type":"integer"}`, `0.5e1`, Valid},
		{"integer of string", `{"type":"integer"}`, `"1"`, Invalid},
		{"number of integer", `{"type":"number"}`, `7`, Valid},
		{"union", `{"type":["string","null"]}`, `null`, Valid},
		{"union miss", `{"type":["string","null"]}`, `1`, Invalid},
		{"union integer", `{"type":["integer","boolean"]}`, `2.0`, Valid},
		{"union integer miss", `{"type":["integer","boolean"]}`, `2.5`, Invalid},
		{"integer float64", `{"type":"integer"}`, goValue{3.0}, Valid},
		{"integer float64 fraction", `{"type":"integer"}`, goValue{3.25}, Invalid},
		{"integer float64 huge", `{"type":"integer"}`, goValue{1e300}, Valid},
		{"integer float32", `{"type":"integer"}`, goValue{float32(16777216)}, Valid},
		{"integer float32 big", `{"type":"integer"}`, goValue{float32(1 << 30)}, Valid},
		{"integer uint64", `{"type":"integer"}`, goValue{uint64(math.MaxUint64)}, Unknown},
		{"integer int64 min", `{"type":"integer"}`, goValue{int64(math.MinInt64)}, Valid},
		{"NaN", `{"type":"number"}`, goValue{math.NaN()}, Unknown},
		{"not JSON", `{"type":"array"}`, goValue{[]string{"x"}}, Unknown},
		{"not JSON under true", `true`, goValue{[]string{"x"}}, Valid},
		{"garbage number", `{"type":"integer"}`, goValue{json.Number("0x10")}, Unknown},
		{"garbage number, type number", `{"type":"number"}`, goValue{json.Number("0x10")}, Valid},
		{"huge exponent", `{"minimum":0}`, goValue{json.Number("1e-999999999")}, Unknown},

		// numeric bounds
		{"minimum equal", `{"minimum":0.1}`, `0.1`, Valid},
		{"minimum below", `{"minimum":0.1}`, `0.09999999999999999`, Invalid},
		{"minimum above, too many digits", `{"minimum":0.1}`, `0.1000000000000000055511151231257827`, Unknown},
		{"minimum float64 0.1", `{"minimum":0.1}`, goValue{0.1}, Valid},
		{"minimum float32 0.1", `{"minimum":0.1}`, goValue{float32(0.1)}, Valid},
		{"maximum float32 0.1", `{"maximum":0.1}`, goValue{float32(0.1)}, Valid},
		{"maximum", `{"maximum":-5}`, `-5.0`, Valid},
		{"maximum over", `{"maximum":-5}`, `-4.999`, Invalid},
		{"exclusiveMinimum", `{"exclusiveMinimum":0}`, `0`, Invalid},
		{"exclusiveMinimum -0", `{"exclusiveMinimum":-1e-9}`, `-0`, Valid},
		{"exclusiveMaximum", `{"exclusiveMaximum":1e10}`, `1e10`, Invalid},
		{"exclusiveMaximum below", `{"exclusiveMaximum":1e10}`, `9999999999.999`, Valid},
		{"maximum large exponents", `{"maximum":1.5e300}`, `15e299`, Valid},
		{"maximum large exponents over", `{"maximum":1.5e300}`, `1.5000001e300`, Invalid},
		{"minimum tiny", `{"minimum":1e-300}`, `1.0e-300`, Valid},
		{"minimum tiny under", `{"minimum":1e-300}`, `9.99e-301`, Invalid},
		{"bounds on strings", `{"minimum":5}`, `"1"`, Valid},
		{"multipleOf 0.1", `{"multipleOf":0.1}`, `0.3`, Valid},
		{"multipleOf 0.1 float64", `{"multipleOf":0.1}`, goValue{0.3}, Valid},
		{"multipleOf 0.1 miss", `{"multipleOf":0.1}`, `0.35`, Invalid},
		{"multipleOf 2.5", `{"multipleOf":2.5}`, `7.5`, Valid},
		{"multipleOf 2.5 1e2", `{"multipleOf":2.5}`, `1e2`, Valid},
		{"multipleOf 3 big power", `{"multipleOf":3}`, `3e200`, Valid},
		{"multipleOf 7 big power", `{"multipleOf":7}`, `1e200`, Invalid},
		{"multipleOf 1024", `{"multipleOf":1024}`, `1e10`, Valid},
		{"multipleOf 0.0001 of 0", `{"multipleOf":0.0001}`, `0`, Valid},
		{"multipleOf 0.02 of 0.001", `{"multipleOf":0.02}`, `0.001`, Invalid},

		// strings
		{"maxLength code points", `{"maxLength":3}`, `"héé"`, Valid},
		{"maxLength emoji", `{"maxLength":3}`, `"😀😀😀😀"`, Invalid},
		{"minLength emoji", `{"minLength":2}`, `"😀"`, Invalid},
		{"minLength invalid UTF-8", `{"minLength":2}`, goValue{"\xff\xfe"}, Valid},
		{"pattern", `{"pattern":"^[A-Z]{3}$"}`, `"EUR"`, Valid},
		{"pattern miss", `{"pattern":"^[A-Z]{3}$"}`, `"EURO"`, Invalid},
		{"pattern unanchored", `{"pattern":"a"}`, `"bab"`, Valid},
		{"pattern non-string", `{"pattern":"^a$"}`, `1`, Valid},
		{"format date", `{"format":"date"}`, `"2020-01-31"`, Valid},
		{"format date bad", `{"format":"date"}`, `"2020-02-30"`, Invalid},
		{"format unknown", `{"format":"colour"}`, `"x"`, Valid},
		{"format regex", `{"format":"regex"}`, `"(?=x)"`, Invalid},

		// enum and const
		{"enum number by value", `{"enum":[1,"1",null]}`, `1.0`, Valid},
		{"enum 1e0", `{"enum":[1,"1",null]}`, `1e0`, Valid},
		{"enum string", `{"enum":[1,"1",null]}`, `"1"`, Valid},
		{"enum null", `{"enum":[1,"1",null]}`, `null`, Valid},
		{"enum miss", `{"enum":[1,"1",null]}`, `true`, Invalid},
		{"enum int", `{"enum":[100]}`, goValue{100}, Valid},
		{"enum many strings", `{"enum":["a","b","c","d","e","f","g","h","i","j"]}`, `"j"`, Valid},
		{"enum many strings miss", `{"enum":["a","b","c","d","e","f","g","h","i","j"]}`, `"k"`, Invalid},
		{"enum empty", `{"enum":[]}`, `1`, Invalid},
		{"enum false", `{"enum":[false]}`, `false`, Valid},
		{"enum true miss", `{"enum":[false]}`, `true`, Invalid},
		{"const object", `{"const":{"a":[1,2]}}`, `{"a":[1.0,2e0]}`, Valid},
		{"const object miss", `{"const":{"a":[1,2]}}`, `{"a":[1,2,3]}`, Invalid},
		{"const object extra key", `{"const":{"a":1}}`, `{"a":1,"b":1}`, Invalid},
		{"const null", `{"const":null}`, `null`, Valid},
		{"const null miss", `{"const":null}`, `0`, Invalid},
		{"const object with non-JSON", `{"const":{"a":1}}`, goValue{map[string]any{"a": []string{}}}, Unknown},

		// objects
		{"required", `{"required":["a","b"]}`, `{"a":1}`, Invalid},
		{"required non-object", `{"required":["a"]}`, `[]`, Valid},
		{"additionalProperties false", `{"properties":{"a":{}},"additionalProperties":false}`, `{"a":1,"b":2}`, Invalid},
		{"additionalProperties schema", `{"properties":{"a":{}},"additionalProperties":{"type":"string"}}`, `{"a":1,"b":"x"}`, Valid},
		{"additionalProperties schema miss", `{"properties":{"a":{}},"additionalProperties":{"type":"string"}}`, `{"a":1,"b":2}`, Invalid},
		{"patternProperties", `{"patternProperties":{"^x-":{"type":"string"}},"additionalProperties":false}`, `{"x-a":"s"}`, Valid},
		{"patternProperties miss", `{"patternProperties":{"^x-":{"type":"string"}},"additionalProperties":false}`, `{"x-a":1}`, Invalid},
		{"patternProperties and properties", `{"properties":{"x-a":{"minLength":2}},"patternProperties":{"^x-":{"maxLength":2}}}`, `{"x-a":"abc"}`, Invalid},
		{"property false", `{"properties":{"a":false}}`, `{"a":null}`, Invalid},
		{"min/maxProperties", `{"minProperties":1,"maxProperties":2}`, `{"a":1,"b":2,"c":3}`, Invalid},
		{"dependentRequired", `{"dependentRequired":{"a":["b"]}}`, `{"a":1}`, Invalid},
		{"dependentRequired absent", `{"dependentRequired":{"a":["b"]}}`, `{"c":1}`, Valid},
		{"dependentSchemas", `{"dependentSchemas":{"a":{"required":["b"]}}}`, `{"a":1,"b":2}`, Valid},
		{"dependencies (old)", `{"dependencies":{"a":["b"]}}`, `{"a":1}`, Invalid},
		{"propertyNames", `{"propertyNames":{"maxLength":2}}`, `{"ab":1,"abc":2}`, Invalid},

		// arrays
		{"items", `{"items":{"type":"integer"}}`, `[1,2.0,3e0]`, Valid},
		{"items miss", `{"items":{"type":"integer"}}`, `[1,2.5]`, Invalid},
		{"prefixItems", `{"prefixItems":[{"type":"string"}],"items":false}`, `["a"]`, Valid},
		{"prefixItems extra", `{"prefixItems":[{"type":"string"}],"items":false}`, `["a",1]`, Invalid},
		{"min/maxItems", `{"minItems":2,"maxItems":3}`, `[1]`, Invalid},
		{"uniqueItems numbers", `{"uniqueItems":true}`, `[1,1.0]`, Invalid},
		{"uniqueItems objects", `{"uniqueItems":true}`, `[{"a":1},{"a":1.0}]`, Invalid},
		{"uniqueItems distinct", `{"uniqueItems":true}`, `[1,"1",[1],{"1":1},true,null]`, Valid},
		{"contains", `{"contains":{"type":"string"}}`, `[1,"a"]`, Valid},
		{"contains none", `{"contains":{"type":"string"}}`, `[1,2]`, Invalid},
		{"minContains 0", `{"contains":{"type":"string"},"minContains":0}`, `[1]`, Valid},
		{"maxContains", `{"contains":{"type":"string"},"maxContains":1}`, `["a","b"]`, Invalid},

		// applicators and references
		{"ref recursion", `{"properties":{"next":{"$ref":"#"},"v":{"type":"integer"}}}`, `{"next":{"next":{"v":1}}}`, Valid},
		{"ref recursion miss", `{"properties":{"next":{"$ref":"#"},"v":{"type":"integer"}}}`, `{"next":{"next":{"v":"x"}}}`, Invalid},
		{"defs ref", `{"$defs":{"c":{"type":"string","pattern":"^[A-Z]{3}$"}},"properties":{"c":{"$ref":"#/$defs/c"}}}`, `{"c":"EUR"}`, Valid},
		{"anchor ref", `{"$defs":{"a":{"$anchor":"node","type":"string"}},"$ref":"#node"}`, `"x"`, Valid},
		{"anyOf", `{"anyOf":[{"type":"string"},{"minimum":5}]}`, `4`, Invalid},
		{"anyOf match", `{"anyOf":[{"type":"string"},{"minimum":5}]}`, `5`, Valid},
		{"oneOf both", `{"oneOf":[{"type":"integer"},{"minimum":0}]}`, `1`, Invalid},
		{"oneOf one", `{"oneOf":[{"type":"integer"},{"minimum":0}]}`, `1.5`, Valid},
		{"not", `{"not":{"type":"string"}}`, `"x"`, Invalid},
		{"if then", `{"if":{"properties":{"k":{"const":"a"}}},"then":{"required":["a"]},"else":{"required":["b"]}}`, `{"k":"a","b":1}`, Invalid},
		{"if else", `{"if":{"properties":{"k":{"const":"a"}}},"then":{"required":["a"]},"else":{"required":["b"]}}`, `{"k":"c","b":1}`, Valid},
		{"if without then", `{"if":{"type":"string"},"else":{"type":"integer"}}`, `"x"`, Valid},
		{"false", `false`, `null`, Invalid},
		{"annotations", `{"title":"t","description":"d","default":1,"examples":[1],"$comment":"c","deprecated":true,"readOnly":true,"writeOnly":false,"type":"integer"}`, `1`, Valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, tt.schema)
			if c.fast == nil {
				t.Fatal("no fast checker")
			}
			var v any
			switch x := tt.value.(type) {
			case string:
				v = decode(t, x)
			case goValue:
				v = x.v
			}
			if got := checkAgainstLibrary(t, c, v, tt.name); got != tt.want {
				t.Fatalf("verdict %d, want %d (library: %v)", got, tt.want, libraryValidate(c, v))
			}
		})
	}
}

// goValue marks a test value that is used as is, not decoded.
type goValue struct{ v any }

func TestFastPathRefused(t *testing.T) {
	for _, src := range []string{
		`{"properties":{"a":{}},"unevaluatedProperties":false}`,
		`{"prefixItems":[{}],"unevaluatedItems":false}`,
		`{"$dynamicAnchor":"m","properties":{"c":{"items":{"$dynamicRef":"#m"}}}}`,
		`{"properties":{"a":{"minimum":0.1000000000000000055511151231257827}}}`,
		`{"enum":[1,1.2345678901234567890123]}`,
		// An in-place cycle inside an embedded resource: precheck cannot
		// see it, the library reports it on every value.
		`{"$defs":{"e":{"$id":"urn:e","allOf":[{"$ref":"#"}]}},"$ref":"#/$defs/e"}`,
	} {
		if c := mustCompile(t, src); c.fast != nil {
			t.Errorf("%s: has a fast checker", src)
		}
	}
}

// TestFastSchemaFields fails when the library's compiled Schema gains or
// loses a field: fastSupported and fastBuilder.node must be reviewed.
func TestFastSchemaFields(t *testing.T) {
	want := []string{
		"DraftVersion", "Location", "Bool", "ID", "Ref", "Anchor", "RecursiveRef", "RecursiveAnchor",
		"DynamicRef", "DynamicAnchor", "Types", "Enum", "Const", "Not", "AllOf", "AnyOf", "OneOf",
		"If", "Then", "Else", "Format", "MaxProperties", "MinProperties", "Required", "PropertyNames",
		"Properties", "PatternProperties", "AdditionalProperties", "Dependencies", "DependentRequired",
		"DependentSchemas", "UnevaluatedProperties", "MinItems", "MaxItems", "UniqueItems", "Contains",
		"MinContains", "MaxContains", "Items", "AdditionalItems", "PrefixItems", "Items2020",
		"UnevaluatedItems", "MinLength", "MaxLength", "Pattern", "ContentEncoding", "ContentMediaType",
		"ContentSchema", "Maximum", "Minimum", "ExclusiveMaximum", "ExclusiveMinimum", "MultipleOf",
		"Extensions", "Title", "Description", "Default", "Comment", "ReadOnly", "WriteOnly", "Examples",
		"Deprecated",
	}
	var got []string
	typ := reflect.TypeFor[jsonschema.Schema]()
	for i := range typ.NumField() {
		if f := typ.Field(i); f.IsExported() {
			got = append(got, f.Name)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("jsonschema.Schema fields changed:\n got %q\nwant %q", got, want)
	}
}

func TestDecimal(t *testing.T) {
	for _, lit := range []string{
		"0", "-0", "1", "-1", "10", "100e-2", "0.5", "0.05", "1.50", "10.05", "123456789012345678",
		"1234567890123456789", "-9007199254740992", "1e300", "1E-300", "2.5e+3", "0.000e10", "9.99e-301",
	} {
		d, ok := parseDecimal(lit)
		if !ok {
			t.Errorf("parseDecimal(%s) failed", lit)
			continue
		}
		want, _ := new(big.Rat).SetString(lit)
		if got := d.rat(); got.Cmp(want) != 0 {
			t.Errorf("parseDecimal(%s) = %v, want %v", lit, got, want)
		}
	}
	for _, lit := range []string{
		"", "-", "+1", "01", ".5", "1.", "1e", "1e+", "0x10", "1_0", " 1", "1 ", "NaN", "Infinity",
		"12345678901234567891", // 20 significant digits
		"1e100001", "1e-100001",
	} {
		if d, ok := parseDecimal(lit); ok {
			t.Errorf("parseDecimal(%q) = %v, want failure", lit, d)
		}
	}
	// Floats read as the library reads them: their shortest decimal form.
	for _, f := range []float64{0.1, 1e21, 1 << 53, 1<<53 + 2, 1 << 60, 123.456, 5e-324, math.MaxFloat64, -2.5} {
		d, ok := toDecimal(f)
		want, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
		if !ok || d.rat().Cmp(want) != 0 {
			t.Errorf("toDecimal(%v) = %v %v, want %v", f, d.rat(), ok, want)
		}
	}
	// Integers below 2^53 print as themselves.
	for i := int64(1); i < 1<<53; i = i*3 + 1 {
		for _, f := range []float64{float64(i), float64(-i), float64(i) * 8} {
			if math.Abs(f) >= 1<<53 {
				continue
			}
			if s := strconv.FormatFloat(f, 'f', -1, 64); s != strconv.FormatInt(int64(f), 10) {
				t.Fatalf("%v prints as %s", f, s)
			}
		}
	}
}

// rat is d as a big.Rat, for tests.
func (d decimal) rat() *big.Rat {
	r := new(big.Rat).SetUint64(d.m)
	p := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(max(d.e, -d.e))), nil))
	if d.e >= 0 {
		r.Mul(r, p)
	} else {
		r.Quo(r, p)
	}
	if d.neg {
		r.Neg(r)
	}
	return r
}

// fastSeeds are (schema, value) pairs as JSON text.
var fastSeeds = [][2]string{
	{`{"type":"object","properties":{"name":{"type":"string","maxLength":64},"age":{"type":"integer","minimum":0}},"required":["name","age"],"additionalProperties":false}`, `{"name":"Ada","age":36}`},
	{`{"type":"object","properties":{"order":{"type":"object","properties":{"id":{"type":"string"},"currency":{"type":"string","pattern":"^[A-Z]{3}$"}},"required":["id"],"additionalProperties":false}},"required":["order"]}`, `{"order":{"id":"ORD-1","currency":"EUR"}}`},
	{`{"type":"integer","minimum":0,"maximum":100}`, `5.0`},
	{`{"type":"integer"}`, `1e2`},
	{`{"type":"number","exclusiveMinimum":0.1,"multipleOf":0.05}`, `0.15`},
	{`{"minimum":0.1}`, `0.1000000000000000055511151231257827`},
	{`{"type":"string","minLength":2,"maxLength":3,"pattern":"^[a-zé😀]+$"}`, `"é😀"`},
	{`{"type":"string","format":"date-time"}`, `"2024-02-29T12:00:00Z"`},
	{`{"enum":[1,"1",null,{"a":[1]},[2.0]]}`, `{"a":[1.0]}`},
	{`{"const":[1,{"b":null}]}`, `[1e0,{"b":null}]`},
	{`{"type":"array","items":{"type":["integer","null"]},"uniqueItems":true,"maxItems":4}`, `[1,null,2.0]`},
	{`{"prefixItems":[{"type":"string"},{"type":"number"}],"items":false,"contains":{"type":"number"},"maxContains":1}`, `["a",1]`},
	{`{"type":"object","properties":{"a":{"type":"integer"}},"patternProperties":{"^x-":{"type":"string"}},"additionalProperties":false}`, `{"a":1,"x-b":"c"}`},
	{`{"required":["a"],"minProperties":1,"maxProperties":2,"dependentRequired":{"a":["b"]},"propertyNames":{"pattern":"^[a-z]$"}}`, `{"a":1,"b":2}`},
	{`{"$defs":{"n":{"type":"object","properties":{"next":{"$ref":"#/$defs/n"},"v":{"const":1}}}},"$ref":"#/$defs/n"}`, `{"next":{"next":{"v":1.0}}}`},
	{`{"anyOf":[{"type":"string"},{"type":"null"}],"oneOf":[{"minLength":1},{"maxLength":0}]}`, `""`},
	{`{"if":{"properties":{"k":{"const":"a"}}},"then":{"required":["a"]},"else":{"not":{"required":["a"]}}}`, `{"k":"a","a":1}`},
	{`{"allOf":[{"type":"object"},{"dependentSchemas":{"a":{"properties":{"b":{"enum":[true]}}}}}]}`, `{"a":0,"b":true}`},
	{`{"properties":{"a":{"unevaluatedProperties":false}}}`, `{"a":{}}`},
	{`{"type":"number","maximum":9007199254740992,"minimum":-9007199254740992}`, `-9007199254740992`},
	{`{"multipleOf":1e-3}`, `123.456`},
}

// fastSamples are values every fuzzed schema is also checked against.
var fastSamples = []string{
	`null`, `true`, `false`, `0`, `-1`, `1.5`, `1e2`, `-0.0`, `0.1`, `9007199254740992`, `1e300`,
	`""`, `"a"`, `"EUR"`, `"2020-01-01"`, `"😀é"`, `[]`, `[1,1.0]`, `[1,"a",null,{}]`,
	`{}`, `{"a":1}`, `{"a":"x","b":[1,2],"x-y":"z"}`, `{"next":{"next":{"v":1}}}`,
}

func FuzzFastPath(f *testing.F) {
	for _, seed := range fastSeeds {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	samples := make([]any, len(fastSamples))
	for i, src := range fastSamples {
		samples[i] = decode(f, src)
	}
	f.Fuzz(func(t *testing.T, schemaText, valueText []byte) {
		doc, err := jsonvalue.Decode(schemaText)
		if err != nil {
			return
		}
		c, ok := compile(doc)
		if !ok || c.fast == nil {
			return
		}
		values := append([]any{doc}, samples...)
		if v, err := jsonvalue.Decode(valueText); err == nil {
			// The value as decoded, and its numbers as float64 and as Go
			// integers (Validate is lenient).
			values = append(values, v, goNumbers(v, false), goNumbers(v, true))
		}
		for i, v := range values {
			checkAgainstLibrary(t, c, v, "schema "+string(schemaText)+" value "+string(valueText)+" variant "+strconv.Itoa(i))
		}
	})
}

// goNumbers copies v with its json.Numbers converted to float64, or (ints)
// integer literals to int64 and the rest to float64.
func goNumbers(v any, ints bool) any {
	switch x := v.(type) {
	case json.Number:
		if ints {
			if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				return i
			}
		}
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			return f
		}
		return x
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = goNumbers(e, ints)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = goNumbers(e, ints)
		}
		return a
	}
	return v
}

func TestFastSeeds(t *testing.T) {
	// The seeds must exercise the fast path, not just the library.
	withFast := 0
	for _, seed := range fastSeeds {
		c := mustCompile(t, seed[0])
		if c.fast == nil {
			continue
		}
		withFast++
		checkAgainstLibrary(t, c, decode(t, seed[1]), seed[0])
	}
	if withFast < len(fastSeeds)-2 {
		t.Fatalf("only %d of %d seeds have a fast checker", withFast, len(fastSeeds))
	}
}

// TestFastPathRandom is a differential test over generated schemas and
// values: denser in keyword combinations than byte-level fuzzing.
func TestFastPathRandom(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	g := &jsonGen{r: rand.New(rand.NewPCG(1, 2))}
	fastCount := 0
	verdicts := map[Verdict]int{}
	for range n {
		src := g.schema(0)
		doc, err := jsonvalue.Decode([]byte(src))
		if err != nil {
			t.Fatalf("generated schema %s: %v", src, err)
		}
		c, ok := compile(doc)
		if !ok || c.fast == nil {
			continue
		}
		fastCount++
		for range 8 {
			vsrc := g.value(0)
			v, err := jsonvalue.Decode([]byte(vsrc))
			if err != nil {
				t.Fatalf("generated value %s: %v", vsrc, err)
			}
			for i, w := range []any{v, goNumbers(v, false), goNumbers(v, true)} {
				verdicts[checkAgainstLibrary(t, c, w, "schema "+src+" value "+vsrc+" variant "+strconv.Itoa(i))]++
			}
		}
	}
	t.Logf("%d of %d schemas with a fast checker; verdicts: %d valid, %d invalid, %d unknown",
		fastCount, n, verdicts[Valid], verdicts[Invalid], verdicts[Unknown])
	if fastCount < n/2 || verdicts[Valid] < fastCount || verdicts[Invalid] < fastCount {
		t.Fatal("the generator no longer exercises the fast path")
	}
}

// jsonGen writes random schemas and values as JSON text, from small pools
// chosen to collide: numbers that are equal in different spellings,
// strings near patterns and formats, property names that schemas declare.
type jsonGen struct{ r *rand.Rand }

var (
	genNumbers = []string{"0", "-0", "1", "1.0", "1e0", "-1", "2", "2.5", "3", "0.1", "0.3", "0.30000000000000004",
		"1e2", "100", "1e-2", "0.01", "7", "1.5e1", "9007199254740992", "-9007199254740991", "1e300", "123.456"}
	genPositive = []string{"1", "2", "0.1", "0.5", "2.5", "3", "1e-2", "7", "1e2", "0.3"}
	genStrings  = []string{`""`, `"a"`, `"A"`, `"ab"`, `"EUR"`, `"eur"`, `"x-y"`, `"2020-01-01"`, `"2020-02-30"`,
		`"😀"`, `"é"`, `"a@b.c"`, `"1.2.3.4"`, `"b"`, `"c"`}
	genNames    = []string{"a", "b", "c", "x1"}
	genTypes    = []string{"null", "boolean", "integer", "number", "string", "array", "object"}
	genPatterns = []string{"^a", "a$", "^[A-Z]{3}$", ".", "é", "^x", "^$"}
	genFormats  = []string{"date", "email", "ipv4", "uuid", "colour"}
)

func (g *jsonGen) pick(list []string) string { return list[g.r.IntN(len(list))] }

func (g *jsonGen) value(depth int) string {
	k := g.r.IntN(10)
	if depth >= 3 {
		k %= 6
	}
	switch k {
	case 0:
		return g.pick([]string{"null", "true", "false"})
	case 1, 2, 3:
		return g.pick(genNumbers)
	case 4, 5:
		return g.pick(genStrings)
	case 6, 7:
		items := make([]string, g.r.IntN(4))
		for i := range items {
			items[i] = g.value(depth + 1)
		}
		return "[" + strings.Join(items, ",") + "]"
	}
	var members []string
	for _, name := range genNames {
		if g.r.IntN(2) == 0 {
			members = append(members, strconv.Quote(name)+":"+g.value(depth+1))
		}
	}
	return "{" + strings.Join(members, ",") + "}"
}

func (g *jsonGen) schema(depth int) string {
	if g.r.IntN(12) == 0 {
		return g.pick([]string{"true", "false"})
	}
	var kws []string
	add := func(kw, v string) { kws = append(kws, strconv.Quote(kw)+":"+v) }
	sub := func() string {
		if depth >= 3 {
			return g.pick([]string{"true", "false", `{"type":"string"}`, `{"minimum":1}`, `{"$ref":"#"}`})
		}
		return g.schema(depth + 1)
	}
	subs := func() string {
		list := make([]string, 1+g.r.IntN(3))
		for i := range list {
			list[i] = sub()
		}
		return "[" + strings.Join(list, ",") + "]"
	}
	names := func() string {
		var out []string
		for _, name := range genNames {
			if g.r.IntN(3) == 0 {
				out = append(out, strconv.Quote(name))
			}
		}
		return "[" + strings.Join(out, ",") + "]"
	}
	for range 1 + g.r.IntN(4) {
		switch g.r.IntN(30) {
		case 0:
			add("type", strconv.Quote(g.pick(genTypes)))
		case 1:
			add("type", `[`+strconv.Quote(g.pick(genTypes))+`,`+strconv.Quote(g.pick(genTypes))+`]`)
		case 2:
			add("enum", "["+g.value(1)+","+g.value(1)+"]")
		case 3:
			add("const", g.value(1))
		case 4:
			add(g.pick([]string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}), g.pick(genNumbers))
		case 5:
			add("multipleOf", g.pick(genPositive))
		case 6:
			add(g.pick([]string{"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"}), strconv.Itoa(g.r.IntN(4)))
		case 7:
			add("pattern", strconv.Quote(g.pick(genPatterns)))
		case 8:
			add("format", strconv.Quote(g.pick(genFormats)))
		case 9, 10:
			var props []string
			for _, name := range genNames {
				if g.r.IntN(2) == 0 {
					props = append(props, strconv.Quote(name)+":"+sub())
				}
			}
			add("properties", "{"+strings.Join(props, ",")+"}")
		case 11:
			add("required", names())
		case 12:
			add("additionalProperties", sub())
		case 13:
			add("patternProperties", `{`+strconv.Quote(g.pick(genPatterns))+`:`+sub()+`}`)
		case 14:
			add("propertyNames", sub())
		case 15:
			add("dependentRequired", `{`+strconv.Quote(g.pick(genNames))+`:`+names()+`}`)
		case 16:
			add("dependentSchemas", `{`+strconv.Quote(g.pick(genNames))+`:`+sub()+`}`)
		case 17:
			add("items", sub())
		case 18:
			add("prefixItems", subs())
		case 19:
			add("contains", sub())
			if g.r.IntN(2) == 0 {
				add(g.pick([]string{"minContains", "maxContains"}), strconv.Itoa(g.r.IntN(3)))
			}
		case 20:
			add("uniqueItems", "true")
		case 21:
			add(g.pick([]string{"allOf", "anyOf", "oneOf"}), subs())
		case 22:
			add("not", sub())
		case 23:
			add("if", sub())
			add("then", sub())
			if g.r.IntN(2) == 0 {
				add("else", sub())
			}
		case 24:
			if depth > 0 {
				add("$ref", `"#"`)
			}
		case 25:
			add("$ref", `"#/$defs/d"`)
		case 26:
			add("title", `"t"`)
		case 27:
			if depth > 0 {
				add("unevaluatedProperties", sub()) // no fast checker
			}
		default:
			add("type", strconv.Quote(g.pick(genTypes)))
		}
	}
	if depth == 0 {
		add("$defs", `{"d":`+g.schema(2)+`}`)
	}
	// Duplicate keys: keep the first of each.
	seen := map[string]bool{}
	var out []string
	for _, kw := range kws {
		key, _, _ := strings.Cut(kw, ":")
		if !seen[key] {
			seen[key] = true
			out = append(out, kw)
		}
	}
	return "{" + strings.Join(out, ",") + "}"
}
