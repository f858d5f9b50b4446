package lab

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// The generator synthesises JSON values from schema documents, for
// programs that come without example inputs and answers. It is small and
// deterministic: the same schema and hints give the same values, with no
// randomness. It reads the keywords programs use (type, enum, const,
// properties/required, items/prefixItems, minItems, minProperties, the
// string keywords minLength/maxLength/pattern/format, the number keywords
// minimum/maximum/exclusive*/multipleOf, local $ref, allOf, anyOf/oneOf)
// and ignores the rest: every value it hands out has passed the real
// validator (schema.Schema.Validate), so an ignored keyword can only make
// it give up, never make it lie.

// maxVariants bounds the variants of one value: exploration stays small.
const maxVariants = 48

// hints are literals taken from a program's guards: values worth trying,
// because some guard compares a field with them.
type hints struct {
	strings []string
	numbers []float64
}

var (
	stringLiteral = regexp.MustCompile(`'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"`)
	numberLiteral = regexp.MustCompile(`(?:^|[^A-Za-z0-9_.])(-?[0-9]+(?:\.[0-9]+)?)`)
)

// guardHints collects the string and number literals of p's guards, sorted.
func guardHints(p *program.Program) hints {
	strs, nums := map[string]bool{}, map[float64]bool{}
	for _, name := range p.Order {
		for _, t := range p.States[name].Transitions {
			for _, m := range stringLiteral.FindAllStringSubmatch(t.When, -1) {
				strs[m[1]+m[2]] = true
			}
			rest := stringLiteral.ReplaceAllString(t.When, "''")
			for _, m := range numberLiteral.FindAllStringSubmatch(rest, -1) {
				if f, err := strconv.ParseFloat(m[1], 64); err == nil {
					nums[f] = true
				}
			}
		}
	}
	var h hints
	for s := range strs {
		h.strings = append(h.strings, s)
	}
	for n := range nums {
		h.numbers = append(h.numbers, n)
	}
	sort.Strings(h.strings)
	sort.Float64s(h.numbers)
	return h
}

// generator works on one schema document.
type generator struct {
	root  any
	hints hints
}

// synthValue returns a value that s validates, or an error naming the JSON
// Pointer of the part that could not be satisfied.
func synthValue(s *schema.Schema, h hints) (any, error) {
	g := &generator{root: s.Doc(), hints: h}
	v, err := g.value(s.Doc(), "", 0)
	if err != nil {
		return nil, err
	}
	if vs := s.Validate(v); len(vs) > 0 {
		return nil, fmt.Errorf("%s: the synthesised value does not validate: %s", where(vs[0].Path), vs[0].Message)
	}
	return v, nil
}

// synthVariants returns values that s validates and that differ from base
// in one place each: another enum value, a flipped boolean, a bound or a
// guard literal for a number or a string, an optional property added, an
// array with an item more or less. Deterministic, at most maxVariants.
func synthVariants(s *schema.Schema, h hints, base any) []any {
	g := &generator{root: s.Doc(), hints: h}
	var out []any
	seen := map[string]bool{canonical(base): true}
	for _, v := range g.variants(s.Doc(), base, 0) {
		if c := canonical(v); !seen[c] && len(s.Validate(v)) == 0 {
			seen[c] = true
			out = append(out, v)
			if len(out) == maxVariants {
				break
			}
		}
	}
	return out
}

func where(ptr string) string {
	if ptr == "" {
		return "(root)"
	}
	return ptr
}

// maxDepth stops recursive schemas.
const maxDepth = 32

// resolve flattens the keywords that merely combine schemas: a local
// $ref and allOf are merged into one keyword map (properties and required
// united, bounds tightened, otherwise the first word wins).
func (g *generator) resolve(s any, depth int) (map[string]any, error) {
	switch x := s.(type) {
	case bool:
		if !x {
			return nil, fmt.Errorf("the schema is false: no value is allowed")
		}
		return map[string]any{}, nil
	case map[string]any:
		if depth > maxDepth {
			return nil, fmt.Errorf("the schema nests deeper than %d (a recursive $ref?)", maxDepth)
		}
		out := map[string]any{}
		for k, v := range x {
			if k != "$ref" && k != "allOf" {
				out[k] = v
			}
		}
		var parts []any
		if ref, ok := x["$ref"].(string); ok {
			target, found := resolvePointer(g.root, ref)
			if !found {
				return nil, fmt.Errorf("$ref %q: not a location in this document", ref)
			}
			parts = append(parts, target)
		}
		if all, ok := x["allOf"].([]any); ok {
			parts = append(parts, all...)
		}
		for _, p := range parts {
			m, err := g.resolve(p, depth+1)
			if err != nil {
				return nil, err
			}
			merge(out, m)
		}
		return out, nil
	case nil:
		return map[string]any{}, nil
	}
	return nil, fmt.Errorf("not a schema: %T", s)
}

// merge adds the keywords of from to into, as allOf means them.
func merge(into, from map[string]any) {
	for k, v := range from {
		cur, has := into[k]
		switch {
		case !has:
			into[k] = v
		case k == "properties":
			props := map[string]any{}
			for n, s := range cur.(map[string]any) {
				props[n] = s
			}
			for n, s := range v.(map[string]any) {
				if c, ok := props[n]; ok {
					props[n] = map[string]any{"allOf": []any{c, s}}
				} else {
					props[n] = s
				}
			}
			into[k] = props
		case k == "required":
			into[k] = append(append([]any(nil), cur.([]any)...), v.([]any)...)
		case k == "minimum" || k == "exclusiveMinimum" || k == "minLength" || k == "minItems" || k == "minProperties":
			if num(v) > num(cur) {
				into[k] = v
			}
		case k == "maximum" || k == "exclusiveMaximum" || k == "maxLength" || k == "maxItems" || k == "maxProperties":
			if num(v) < num(cur) {
				into[k] = v
			}
		}
	}
}

// resolvePointer finds a "#/a/b" location in doc.
func resolvePointer(doc any, ref string) (any, bool) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, false
	}
	if frag == "" {
		return doc, true
	}
	cur := doc
	for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch c := cur.(type) {
		case map[string]any:
			if cur, ok = c[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// typeOf is the type the generator makes for s: the first non-null
// "type", else what its keywords suggest, else null.
func typeOf(s map[string]any) string {
	switch t := s["type"].(type) {
	case string:
		return t
	case []any:
		for _, e := range t {
			if n, ok := e.(string); ok && n != "null" {
				return n
			}
		}
		return "null"
	}
	has := func(keys ...string) bool {
		for _, k := range keys {
			if _, ok := s[k]; ok {
				return true
			}
		}
		return false
	}
	switch {
	case has("properties", "required", "additionalProperties", "minProperties"):
		return "object"
	case has("items", "prefixItems", "minItems", "contains"):
		return "array"
	case has("minLength", "maxLength", "pattern", "format"):
		return "string"
	case has("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
		return "number"
	}
	return "null"
}

// value makes one value for the schema s at ptr.
func (g *generator) value(s any, ptr string, depth int) (any, error) {
	m, err := g.resolve(s, depth)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where(ptr), err)
	}
	if c, ok := m["const"]; ok {
		return jsonvalue.Clone(c), nil
	}
	if e, ok := m["enum"].([]any); ok {
		if len(e) == 0 {
			return nil, fmt.Errorf("%s: the enum is empty", where(ptr))
		}
		return jsonvalue.Clone(e[0]), nil
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if alts, ok := m[kw].([]any); ok {
			return g.alternative(m, kw, alts, ptr, depth)
		}
	}
	switch typeOf(m) {
	case "null":
		return nil, nil
	case "boolean":
		return true, nil
	case "integer":
		return g.number(m, true, ptr)
	case "number":
		return g.number(m, false, ptr)
	case "string":
		return g.str(m, ptr)
	case "array":
		return g.array(m, ptr, depth)
	case "object":
		return g.object(m, ptr, depth)
	}
	return nil, fmt.Errorf("%s: unknown type %v", where(ptr), m["type"])
}

// alternative makes a value for the first branch of anyOf/oneOf whose
// value the whole schema (siblings included) accepts.
func (g *generator) alternative(m map[string]any, kw string, alts []any, ptr string, depth int) (any, error) {
	rest := map[string]any{}
	for k, v := range m {
		if k != kw {
			rest[k] = v
		}
	}
	check := g.checker(m)
	var first error
	for i, alt := range alts {
		branch := map[string]any{"allOf": []any{rest, alt}}
		v, err := g.value(branch, ptr, depth+1)
		if err == nil && (check == nil || len(check.Validate(v)) == 0) {
			return v, nil
		}
		if err == nil {
			err = fmt.Errorf("%s: %s[%d]: the value does not validate", where(ptr), kw, i)
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// checker compiles a subschema on its own, with the document's
// definitions, to check a branch; nil when it cannot stand alone (the
// whole value is validated at the end anyway).
func (g *generator) checker(m map[string]any) *schema.Schema {
	doc := map[string]any{}
	for k, v := range m {
		doc[k] = v
	}
	if root, ok := g.root.(map[string]any); ok {
		for _, k := range []string{"$defs", "definitions"} {
			if d, ok := root[k]; ok {
				if _, own := doc[k]; !own {
					doc[k] = d
				}
			}
		}
	}
	s, err := schema.Compile(doc)
	if err != nil {
		return nil
	}
	return s
}

// bounds are a number schema's limits.
type bounds struct {
	lo, hi     float64 // ±Inf when none
	loEx, hiEx bool    // exclusive
	multipleOf float64
	integer    bool
}

func numberBounds(m map[string]any, integer bool) bounds {
	b := bounds{lo: math.Inf(-1), hi: math.Inf(1), integer: integer}
	if v, ok := m["minimum"]; ok {
		b.lo = num(v)
	}
	if v, ok := m["maximum"]; ok {
		b.hi = num(v)
	}
	if v, ok := m["exclusiveMinimum"]; ok && num(v) >= b.lo {
		b.lo, b.loEx = num(v), true
	}
	if v, ok := m["exclusiveMaximum"]; ok && num(v) <= b.hi {
		b.hi, b.hiEx = num(v), true
	}
	if integer {
		// Integers have a next one: every bound becomes inclusive.
		lo, hi := math.Ceil(b.lo), math.Floor(b.hi)
		if b.loEx && lo == b.lo {
			lo++
		}
		if b.hiEx && hi == b.hi {
			hi--
		}
		b.lo, b.hi, b.loEx, b.hiEx = lo, hi, false, false
	}
	if v, ok := m["multipleOf"]; ok && num(v) > 0 {
		b.multipleOf = num(v)
	}
	return b
}

// fit moves x onto the grid (an integer, a multiple) and reports whether
// it is then within the bounds.
func (b bounds) fit(x float64) (float64, bool) {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return x, false
	}
	if b.integer {
		x = math.Round(x)
	}
	if b.multipleOf > 0 {
		x = math.Ceil(x/b.multipleOf) * b.multipleOf
	}
	above := x > b.lo || !b.loEx && x == b.lo
	below := x < b.hi || !b.hiEx && x == b.hi
	return x, above && below
}

// preferred are the numbers tried for a value, in order: zero, the
// bounds, whole numbers next to them, the middle, and just inside an
// exclusive bound.
func (b bounds) preferred() []float64 {
	return []float64{0, b.lo, b.lo + 1, b.hi, b.hi - 1, (b.lo + b.hi) / 2, b.lo + 1e-6, b.hi - 1e-6}
}

func (b bounds) format(x float64) json.Number {
	if b.integer || x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return json.Number(strconv.FormatFloat(x, 'f', -1, 64))
	}
	return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
}

// number makes the first preferred number that fits the bounds.
func (g *generator) number(m map[string]any, integer bool, ptr string) (any, error) {
	b := numberBounds(m, integer)
	for _, x := range b.preferred() {
		if y, ok := b.fit(x); ok {
			return b.format(y), nil
		}
	}
	return nil, fmt.Errorf("%s: no number in [%v, %v] (multipleOf %v)", where(ptr), b.lo, b.hi, b.multipleOf)
}

// formats are sample values for the formats the validator asserts.
var formats = map[string]string{
	"date":                  "2026-01-01",
	"date-time":             "2026-01-01T00:00:00Z",
	"time":                  "00:00:00Z",
	"duration":              "P1D",
	"email":                 "lab@example.com",
	"idn-email":             "lab@example.com",
	"hostname":              "example.com",
	"idn-hostname":          "example.com",
	"ipv4":                  "192.0.2.1",
	"ipv6":                  "2001:db8::1",
	"uri":                   "https://example.com/lab",
	"iri":                   "https://example.com/lab",
	"uri-reference":         "https://example.com/lab",
	"iri-reference":         "https://example.com/lab",
	"uri-template":          "https://example.com/{lab}",
	"uuid":                  "00000000-0000-4000-8000-000000000000",
	"regex":                 "^lab$",
	"json-pointer":          "/lab",
	"relative-json-pointer": "0/lab",
	"semver":                "1.0.0",
	"period":                "2026-01-01T00:00:00Z/P1D",
}

// lengths are a string schema's length limits, in code points.
func lengths(m map[string]any) (lo, hi int) {
	lo, hi = 0, math.MaxInt
	if v, ok := m["minLength"]; ok {
		lo = int(num(v))
	}
	if v, ok := m["maxLength"]; ok {
		hi = int(num(v))
	}
	return lo, hi
}

// fits reports whether s meets the length and pattern of m (format is
// left to the validator).
func fits(m map[string]any, s string) bool {
	lo, hi := lengths(m)
	if n := utf8.RuneCountInString(s); n < lo || n > hi {
		return false
	}
	if p, ok := m["pattern"].(string); ok {
		re, err := regexp.Compile(p)
		return err == nil && re.MatchString(s)
	}
	return true
}

// str makes a string: the format's sample, a string the pattern
// generates, or "lab" cut or padded to the length limits.
func (g *generator) str(m map[string]any, ptr string) (any, error) {
	lo, hi := lengths(m)
	if f, ok := m["format"].(string); ok {
		if s, known := formats[f]; known {
			if fits(m, s) {
				return s, nil
			}
			return nil, fmt.Errorf("%s: the %s sample %q does not meet the length or pattern", where(ptr), f, s)
		}
	}
	if p, ok := m["pattern"].(string); ok {
		for _, s := range fromPattern(p, lo) {
			if fits(m, s) {
				return s, nil
			}
		}
		return nil, fmt.Errorf("%s: no string of length %d..%d matching pattern %q found", where(ptr), lo, hi, p)
	}
	if lo > hi {
		return nil, fmt.Errorf("%s: minLength %d exceeds maxLength %d", where(ptr), lo, hi)
	}
	s := "lab"
	if n := utf8.RuneCountInString(s); n < lo {
		s += strings.Repeat("x", lo-n)
	}
	if hi < len(s) {
		s = s[:hi]
	}
	return s, nil
}

// array makes minItems items (prefixItems first, then items).
func (g *generator) array(m map[string]any, ptr string, depth int) (any, error) {
	n := 0
	if v, ok := m["minItems"]; ok {
		n = int(num(v))
	}
	if _, ok := m["contains"]; ok {
		n = max(n, 1)
	}
	out := make([]any, 0, n)
	for i := 0; i < n; i++ {
		v, err := g.item(m, i, ptr, depth)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if unique, _ := m["uniqueItems"].(bool); unique && n > 1 {
		// Distinct items: the first, then its variants.
		s, _ := g.itemSchema(m, 0)
		cands := append([]any{out[0]}, g.variants(s, out[0], depth+1)...)
		seen := map[string]bool{}
		out = out[:0]
		for _, c := range cands {
			if k := canonical(c); !seen[k] {
				seen[k] = true
				out = append(out, c)
			}
			if len(out) == n {
				break
			}
		}
		if len(out) < n {
			return nil, fmt.Errorf("%s: found %d distinct items of the %d uniqueItems needs", where(ptr), len(out), n)
		}
	}
	return out, nil
}

// itemSchema is the schema of item i; ok is false when items: false
// forbids it.
func (g *generator) itemSchema(m map[string]any, i int) (any, bool) {
	if prefix, ok := m["prefixItems"].([]any); ok && i < len(prefix) {
		return prefix[i], true
	}
	if _, ok := m["contains"]; ok && i == 0 {
		if _, hasItems := m["items"]; !hasItems {
			return m["contains"], true
		}
	}
	s, ok := m["items"]
	if !ok {
		return true, true
	}
	if b, isBool := s.(bool); isBool && !b {
		return nil, false
	}
	return s, true
}

func (g *generator) item(m map[string]any, i int, ptr string, depth int) (any, error) {
	s, ok := g.itemSchema(m, i)
	if !ok {
		return nil, fmt.Errorf("%s: minItems needs item %d, which the schema forbids", where(ptr), i)
	}
	return g.value(s, ptr+"/"+strconv.Itoa(i), depth+1)
}

// object makes the required properties, then optional ones in name order
// until minProperties is met.
func (g *generator) object(m map[string]any, ptr string, depth int) (any, error) {
	props, _ := m["properties"].(map[string]any)
	out := map[string]any{}
	var names []string
	if req, ok := m["required"].([]any); ok {
		for _, r := range req {
			if n, ok := r.(string); ok {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	add := func(name string) error {
		if _, done := out[name]; done {
			return nil
		}
		s, declared := props[name]
		if !declared {
			ap, has := m["additionalProperties"]
			if b, isBool := ap.(bool); has && isBool && !b {
				return fmt.Errorf("%s: property %s is required but not allowed", where(ptr), name)
			}
			s = ap
			if !has {
				s = true
			}
		}
		v, err := g.value(s, ptr+"/"+jsonvalue.EscapePointerToken(name), depth+1)
		if err != nil {
			return err
		}
		out[name] = v
		return nil
	}
	for _, n := range names {
		if err := add(n); err != nil {
			return nil, err
		}
	}
	if v, ok := m["minProperties"]; ok {
		for _, n := range slices.Sorted(maps.Keys(props)) {
			if len(out) >= int(num(v)) {
				break
			}
			if err := add(n); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// num reads a schema number keyword.
func num(v any) float64 {
	switch n := v.(type) {
	case json.Number:
		f, _ := n.Float64()
		return f
	case float64:
		return n
	case int:
		return float64(n)
	case int64:
		return float64(n)
	}
	return 0
}
