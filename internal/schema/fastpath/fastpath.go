package fastpath

import (
	"encoding/json"
	"maps"
	"math"
	"math/big"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A fastNode mirrors one compiled *jsonschema.Schema (see doc.go for the
// contract).

// Verdict is the fast path's answer. The order matters: conjunction is
// min, disjunction is max and negation is Valid-v.
type Verdict uint8

// Verdicts.
const (
	Invalid Verdict = iota // the library would report a violation
	Unknown                // cannot decide cheaply: ask the library
	Valid                  // the library would accept the value
)

// Checker is the fast checker of one compiled schema. It is immutable and
// safe for concurrent use, like the compiled schema it mirrors.
type Checker struct{ root *fastNode }

// New builds the checker that mirrors root, the library's compiled form of
// a schema. It returns nil when some schema reachable from root uses a
// keyword the checker does not implement, or a number it cannot represent
// exactly: every value must then go to the library.
func New(root *jsonschema.Schema) *Checker {
	n := newFastChecker(root)
	if n == nil {
		return nil
	}
	return &Checker{root: n}
}

// Check decides whether the library would accept v, a decoded JSON value
// (json.Number, float64 or Go integer numbers). Valid and Invalid are the
// library's verdict; Unknown means it cannot be decided cheaply. Only the
// library reports violations, so a caller asks it for anything but Valid.
func (c *Checker) Check(v any) Verdict { return c.root.check(v) }

// fastType is a JSON type as a bit; a schema's "type" is a set of them.
type fastType uint8

const (
	ftNull fastType = 1 << iota
	ftBoolean
	ftNumber
	ftInteger // only in sets: a number with an integral value
	ftString
	ftArray
	ftObject
)

var fastTypeNames = map[string]fastType{
	"null": ftNull, "boolean": ftBoolean, "number": ftNumber, "integer": ftInteger,
	"string": ftString, "array": ftArray, "object": ftObject,
}

// valueType mirrors the library's typeOf; 0 means the value is not JSON
// (the library reports it as invalid; the fast path says Unknown).
func valueType(v any) fastType {
	switch x := v.(type) {
	case nil:
		return ftNull
	case bool:
		return ftBoolean
	case string:
		return ftString
	case map[string]any:
		return ftObject
	case []any:
		return ftArray
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0
		}
		return ftNumber
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return 0
		}
		return ftNumber
	case json.Number, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return ftNumber
	}
	return 0
}

// fastNode is the fast checker for one compiled schema. Nodes are
// immutable once built and shared like the compiled schemas they mirror.
// Size limits are the library's own *int values (nil: absent), so that its
// reading of odd limits (1e21 does not fit an int) is mirrored too.
type fastNode struct {
	isBool, boolVal bool // a boolean schema

	types   fastType // "type"; 0 when absent
	needNum bool     // a number value must be parsed to check this node
	konst   *fastEnum
	enum    *fastEnum
	format  *jsonschema.Format

	obj *fastObject // nil: no object keywords
	arr *fastArray  // nil: no array keywords
	str *fastString // nil: no string keywords
	num *fastNumber // nil: no number keywords

	// In-place applicators: they validate the same value.
	ref                 *fastNode
	allOf, anyOf, oneOf []*fastNode
	not, ifs, then, els *fastNode
}

type fastObject struct {
	minProps, maxProps *int
	required           []string
	requiredUndeclared []string          // required names not in props
	depRequired        []fastDepRequired // dependentRequired and array "dependencies"
	depSchemas         []fastDepSchema   // dependentSchemas and schema "dependencies"
	props              map[string]*fastNode
	propList           []fastProp // props, for walking the declared names
	patterns           []fastPattern
	addlFalse          bool      // additionalProperties: false
	addl               *fastNode // additionalProperties: {schema}
	propertyNames      *fastNode
	eachProperty       bool // some keyword looks at every property
}

type fastProp struct {
	name     string
	node     *fastNode
	required bool
}

type fastDepRequired struct {
	name     string
	required []string
}

type fastDepSchema struct {
	name string
	node *fastNode
}

type fastPattern struct {
	re   jsonschema.Regexp
	node *fastNode
}

type fastArray struct {
	minItems, maxItems       *int
	unique                   bool
	prefix                   []*fastNode
	items                    *fastNode
	contains                 *fastNode
	minContains, maxContains *int
}

type fastString struct {
	minLength, maxLength *int
	pattern              jsonschema.Regexp
}

type fastNumber struct {
	minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf *decimal
}

// newFastChecker builds the fast checker of a compiled schema, or returns
// nil when some reachable schema uses a keyword the fast path does not
// implement, or a number it cannot represent exactly.
func newFastChecker(root *jsonschema.Schema) *fastNode {
	b := &fastBuilder{nodes: map[*jsonschema.Schema]*fastNode{}}
	n := b.node(root)
	if b.failed || b.inPlaceCycle() {
		return nil
	}
	return n
}

type fastBuilder struct {
	nodes  map[*jsonschema.Schema]*fastNode
	failed bool
}

// fastSupported reports whether the fast path implements every keyword s
// uses. The fields not named here are supported or annotations; the test
// TestFastSchemaFields fails when the library grows a new field.
func fastSupported(s *jsonschema.Schema) bool {
	return s.DraftVersion == 2020 &&
		s.RecursiveRef == nil && s.DynamicRef == nil &&
		s.UnevaluatedProperties == nil && s.UnevaluatedItems == nil &&
		s.Items == nil && s.AdditionalItems == nil && // pre-2020 forms
		s.ContentEncoding == nil && s.ContentMediaType == nil && s.ContentSchema == nil &&
		len(s.Extensions) == 0
}

func (b *fastBuilder) node(s *jsonschema.Schema) *fastNode {
	if s == nil {
		b.failed = true
		return nil
	}
	if n, ok := b.nodes[s]; ok {
		return n
	}
	n := &fastNode{}
	b.nodes[s] = n // before descending: $ref may lead back here
	if s.Bool != nil {
		n.isBool, n.boolVal = true, *s.Bool
		return n
	}
	if !fastSupported(s) {
		b.failed = true
		return n
	}

	if s.Types != nil {
		for _, name := range s.Types.ToStrings() {
			n.types |= fastTypeNames[name]
		}
	}
	if s.Const != nil {
		n.konst = b.enum([]any{*s.Const})
	}
	if s.Enum != nil {
		n.enum = b.enum(s.Enum.Values)
	}
	n.format = s.Format

	n.ref = b.optional(s.Ref)
	n.allOf, n.anyOf, n.oneOf = b.nodeList(s.AllOf), b.nodeList(s.AnyOf), b.nodeList(s.OneOf)
	n.not, n.ifs = b.optional(s.Not), b.optional(s.If)
	n.then, n.els = b.optional(s.Then), b.optional(s.Else)

	b.object(n, s)
	if s.MinItems != nil || s.MaxItems != nil || s.UniqueItems || s.PrefixItems != nil || s.Items2020 != nil || s.Contains != nil {
		n.arr = &fastArray{
			minItems: s.MinItems, maxItems: s.MaxItems, unique: s.UniqueItems,
			prefix: b.nodeList(s.PrefixItems), items: b.optional(s.Items2020),
			contains: b.optional(s.Contains), minContains: s.MinContains, maxContains: s.MaxContains,
		}
	}
	if s.MinLength != nil || s.MaxLength != nil || s.Pattern != nil {
		n.str = &fastString{minLength: s.MinLength, maxLength: s.MaxLength, pattern: s.Pattern}
	}
	if s.Minimum != nil || s.Maximum != nil || s.ExclusiveMinimum != nil || s.ExclusiveMaximum != nil || s.MultipleOf != nil {
		n.num = &fastNumber{
			minimum: b.bound(s.Minimum), maximum: b.bound(s.Maximum),
			exclusiveMinimum: b.bound(s.ExclusiveMinimum), exclusiveMaximum: b.bound(s.ExclusiveMaximum),
			multipleOf: b.bound(s.MultipleOf),
		}
	}

	integerOnly := n.types&ftInteger != 0 && n.types&ftNumber == 0
	n.needNum = n.num != nil || integerOnly ||
		n.konst != nil && len(n.konst.nums) > 0 || n.enum != nil && len(n.enum.nums) > 0
	return n
}

func (b *fastBuilder) object(n *fastNode, s *jsonschema.Schema) {
	if s.MinProperties == nil && s.MaxProperties == nil && len(s.Required) == 0 &&
		s.Properties == nil && s.PatternProperties == nil && s.AdditionalProperties == nil &&
		s.PropertyNames == nil && s.Dependencies == nil && s.DependentRequired == nil && s.DependentSchemas == nil {
		return
	}
	o := &fastObject{minProps: s.MinProperties, maxProps: s.MaxProperties, required: s.Required}
	for _, name := range slices.Sorted(maps.Keys(s.Dependencies)) {
		switch dep := s.Dependencies[name].(type) {
		case []string:
			o.depRequired = append(o.depRequired, fastDepRequired{name, dep})
		case *jsonschema.Schema:
			o.depSchemas = append(o.depSchemas, fastDepSchema{name, b.node(dep)})
		default:
			b.failed = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.DependentRequired)) {
		o.depRequired = append(o.depRequired, fastDepRequired{name, s.DependentRequired[name]})
	}
	for _, name := range slices.Sorted(maps.Keys(s.DependentSchemas)) {
		o.depSchemas = append(o.depSchemas, fastDepSchema{name, b.node(s.DependentSchemas[name])})
	}
	if s.Properties != nil {
		o.props = make(map[string]*fastNode, len(s.Properties))
		for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
			n := b.node(s.Properties[name])
			o.props[name] = n
			o.propList = append(o.propList, fastProp{name, n, slices.Contains(s.Required, name)})
		}
	}
	for _, name := range s.Required {
		if _, ok := o.props[name]; !ok {
			o.requiredUndeclared = append(o.requiredUndeclared, name)
		}
	}
	for re, p := range s.PatternProperties {
		o.patterns = append(o.patterns, fastPattern{re, b.node(p)})
	}
	switch a := s.AdditionalProperties.(type) {
	case nil:
	case bool:
		o.addlFalse = !a
	case *jsonschema.Schema:
		o.addl = b.node(a)
	default:
		b.failed = true
	}
	o.propertyNames = b.optional(s.PropertyNames)
	o.eachProperty = len(o.props) > 0 || len(o.patterns) > 0 || o.addlFalse || o.addl != nil || o.propertyNames != nil
	n.obj = o
}

func (b *fastBuilder) optional(s *jsonschema.Schema) *fastNode {
	if s == nil {
		return nil
	}
	return b.node(s)
}

func (b *fastBuilder) nodeList(list []*jsonschema.Schema) []*fastNode {
	if list == nil {
		return nil
	}
	out := make([]*fastNode, len(list))
	for i, s := range list {
		out[i] = b.node(s)
	}
	return out
}

func (b *fastBuilder) bound(r *big.Rat) *decimal {
	if r == nil {
		return nil
	}
	d, ok := ratDecimal(r)
	if !ok {
		b.failed = true
		return nil
	}
	return &d
}

func (b *fastBuilder) enum(values []any) *fastEnum {
	e := &fastEnum{}
	for _, w := range values {
		switch x := w.(type) {
		case nil:
			e.null = true
		case bool:
			if x {
				e.yes = true
			} else {
				e.no = true
			}
		case string:
			e.strs = append(e.strs, x)
		case map[string]any, []any:
			e.composite = append(e.composite, x)
		default:
			d, ok := toDecimal(x)
			if !ok {
				b.failed = true
				return e
			}
			e.nums = append(e.nums, d)
		}
	}
	if len(e.strs) > 8 {
		e.strSet = make(map[string]struct{}, len(e.strs))
		for _, s := range e.strs {
			e.strSet[s] = struct{}{}
		}
	}
	return e
}

// inPlaceCycle reports whether a node reaches itself through in-place
// applicators only. The library reports such a cycle as an error when it
// runs into it, which depends on the value; the fast path stays out.
// (precheck refuses most of them, but not inside embedded resources.)
func (b *fastBuilder) inPlaceCycle() bool {
	const onStack, done = 1, 2
	state := make(map[*fastNode]uint8, len(b.nodes))
	var visit func(n *fastNode) bool
	visit = func(n *fastNode) bool {
		if n == nil || state[n] == done {
			return false
		}
		if state[n] == onStack {
			return true
		}
		state[n] = onStack
		next := []*fastNode{n.ref, n.not, n.ifs, n.then, n.els}
		next = append(next, n.allOf...)
		next = append(next, n.anyOf...)
		next = append(next, n.oneOf...)
		if n.obj != nil {
			for _, d := range n.obj.depSchemas {
				next = append(next, d.node)
			}
		}
		for _, m := range next {
			if visit(m) {
				return true
			}
		}
		state[n] = done
		return false
	}
	for _, n := range b.nodes {
		if visit(n) {
			return true
		}
	}
	return false
}

// check decides whether the library would accept v. It never allocates
// on its own; only the library's format checkers and propertyNames (which
// boxes each name) may.
func (n *fastNode) check(v any) Verdict {
	if n.isBool {
		if n.boolVal {
			return Valid
		}
		return Invalid
	}
	t := valueType(v)
	if t == 0 {
		return Unknown
	}
	var d decimal
	if t == ftNumber && n.needNum {
		var ok bool
		if d, ok = toDecimal(v); !ok {
			return Unknown
		}
	}
	if n.types != 0 && n.types&t == 0 && (t != ftNumber || n.types&ftInteger == 0 || !d.isInteger()) {
		return Invalid
	}
	res := Valid
	if n.konst != nil {
		if res = min(res, n.konst.match(v, t, d)); res == Invalid {
			return Invalid
		}
	}
	if n.enum != nil {
		if res = min(res, n.enum.match(v, t, d)); res == Invalid {
			return Invalid
		}
	}
	switch {
	case t == ftObject && n.obj != nil:
		res = min(res, n.obj.check(v, v.(map[string]any)))
	case t == ftArray && n.arr != nil:
		res = min(res, n.arr.check(v.([]any)))
	case t == ftString && n.str != nil:
		res = min(res, n.str.check(v.(string)))
	case t == ftNumber && n.num != nil:
		res = min(res, n.num.check(d))
	}
	if res == Invalid {
		return Invalid
	}
	if n.ref != nil {
		if res = min(res, n.ref.check(v)); res == Invalid {
			return Invalid
		}
	}
	for _, m := range n.allOf {
		if res = min(res, m.check(v)); res == Invalid {
			return Invalid
		}
	}
	if n.anyOf != nil {
		alt := Invalid
		for _, m := range n.anyOf {
			if alt = max(alt, m.check(v)); alt == Valid {
				break
			}
		}
		if res = min(res, alt); res == Invalid {
			return Invalid
		}
	}
	if n.oneOf != nil {
		if res = min(res, oneOf(n.oneOf, v)); res == Invalid {
			return Invalid
		}
	}
	if n.not != nil {
		if res = min(res, Valid-n.not.check(v)); res == Invalid {
			return Invalid
		}
	}
	if n.ifs != nil {
		var branch Verdict
		switch n.ifs.check(v) {
		case Valid:
			branch = Valid
			if n.then != nil {
				branch = n.then.check(v)
			}
		case Invalid:
			branch = Valid
			if n.els != nil {
				branch = n.els.check(v)
			}
		default:
			branch = Unknown
		}
		if res = min(res, branch); res == Invalid {
			return Invalid
		}
	}
	// Last: the library's format checkers are the most expensive checks.
	if n.format != nil && n.format.Validate(v) != nil {
		return Invalid
	}
	return res
}

func oneOf(nodes []*fastNode, v any) Verdict {
	valids, unknowns := 0, 0
	for _, m := range nodes {
		switch m.check(v) {
		case Valid:
			if valids++; valids > 1 {
				return Invalid
			}
		case Unknown:
			unknowns++
		}
	}
	switch {
	case unknowns > 0 && valids+unknowns > 1:
		return Unknown
	case valids == 1:
		return Valid
	case unknowns == 1:
		return Unknown
	}
	return Invalid
}

func (o *fastObject) check(v any, obj map[string]any) Verdict {
	if o.minProps != nil && len(obj) < *o.minProps || o.maxProps != nil && len(obj) > *o.maxProps {
		return Invalid
	}
	// With few declared properties and nothing matching names otherwise,
	// look each declared name up rather than iterate over the object: map
	// iteration costs more than a lookup, and the lookups double as the
	// "required" check.
	lookup := o.eachProperty && len(o.patterns) == 0 && o.propertyNames == nil && len(o.propList) <= 2*len(obj)+4
	required := o.required
	if lookup {
		required = o.requiredUndeclared
	}
	for _, name := range required {
		if _, ok := obj[name]; !ok {
			return Invalid
		}
	}
	for _, dep := range o.depRequired {
		if _, ok := obj[dep.name]; ok {
			for _, name := range dep.required {
				if _, ok := obj[name]; !ok {
					return Invalid
				}
			}
		}
	}
	res := Valid
	for _, dep := range o.depSchemas {
		if _, ok := obj[dep.name]; ok {
			if res = min(res, dep.node.check(v)); res == Invalid {
				return Invalid
			}
		}
	}
	switch {
	case !o.eachProperty:
		return res
	case lookup:
		return min(res, o.lookupProperties(obj))
	}
	for name, value := range obj {
		evaluated := false
		if p, ok := o.props[name]; ok {
			evaluated = true
			if res = min(res, p.check(value)); res == Invalid {
				return Invalid
			}
		}
		for _, pp := range o.patterns {
			if pp.re.MatchString(name) {
				evaluated = true
				if res = min(res, pp.node.check(value)); res == Invalid {
					return Invalid
				}
			}
		}
		if !evaluated {
			if o.addlFalse {
				return Invalid
			}
			if o.addl != nil {
				if res = min(res, o.addl.check(value)); res == Invalid {
					return Invalid
				}
			}
		}
		if o.propertyNames != nil {
			if res = min(res, o.propertyNames.check(name)); res == Invalid {
				return Invalid
			}
		}
	}
	return res
}

// lookupProperties checks properties, required (declared names) and
// additionalProperties of an object; o has no patternProperties and no
// propertyNames.
func (o *fastObject) lookupProperties(obj map[string]any) Verdict {
	res := Valid
	found := 0
	for _, p := range o.propList {
		value, ok := obj[p.name]
		if !ok {
			if p.required {
				return Invalid
			}
			continue
		}
		found++
		if res = min(res, p.node.check(value)); res == Invalid {
			return Invalid
		}
	}
	switch {
	case found == len(obj):
		return res
	case o.addlFalse:
		return Invalid
	case o.addl == nil:
		return res
	}
	for name, value := range obj {
		if _, ok := o.props[name]; !ok {
			if res = min(res, o.addl.check(value)); res == Invalid {
				return Invalid
			}
		}
	}
	return res
}

// maxUniquePairwise bounds the quadratic uniqueItems check; longer arrays
// go to the library.
const maxUniquePairwise = 64

func (a *fastArray) check(arr []any) Verdict {
	if a.minItems != nil && len(arr) < *a.minItems || a.maxItems != nil && len(arr) > *a.maxItems {
		return Invalid
	}
	res := Valid
	for i, item := range arr {
		var r Verdict
		switch {
		case i < len(a.prefix):
			r = a.prefix[i].check(item)
		case a.items != nil:
			r = a.items.check(item)
		default:
			continue
		}
		if res = min(res, r); res == Invalid {
			return Invalid
		}
	}
	if a.contains != nil {
		matched, unknown := 0, 0
		for _, item := range arr {
			switch a.contains.check(item) {
			case Valid:
				matched++
			case Unknown:
				unknown++
			}
		}
		lo := 1
		if a.minContains != nil {
			lo = *a.minContains
		}
		switch {
		case matched+unknown < lo, a.maxContains != nil && matched > *a.maxContains:
			return Invalid
		case unknown > 0 && (matched < lo || a.maxContains != nil && matched+unknown > *a.maxContains):
			res = Unknown
		}
	}
	if a.unique && len(arr) > 1 {
		if len(arr) > maxUniquePairwise {
			return Unknown
		}
		for i := 1; i < len(arr); i++ {
			for j := 0; j < i; j++ {
				switch fastEqual(arr[i], arr[j]) {
				case Valid:
					return Invalid
				case Unknown:
					res = Unknown
				}
			}
		}
	}
	return res
}

func (s *fastString) check(str string) Verdict {
	if s.minLength != nil || s.maxLength != nil {
		n := utf8.RuneCountInString(str) // the library counts code points too
		if s.minLength != nil && n < *s.minLength || s.maxLength != nil && n > *s.maxLength {
			return Invalid
		}
	}
	if s.pattern != nil && !s.pattern.MatchString(str) {
		return Invalid
	}
	return Valid
}

func (f *fastNumber) check(d decimal) Verdict {
	switch {
	case f.minimum != nil && d.cmp(*f.minimum) < 0,
		f.maximum != nil && d.cmp(*f.maximum) > 0,
		f.exclusiveMinimum != nil && d.cmp(*f.exclusiveMinimum) <= 0,
		f.exclusiveMaximum != nil && d.cmp(*f.exclusiveMaximum) >= 0,
		f.multipleOf != nil && !d.isMultipleOf(*f.multipleOf):
		return Invalid
	}
	return Valid
}

// fastEnum holds the values of "enum" (or the one of "const"), sorted by
// type so that a scalar is matched without the library's big.Rat.
type fastEnum struct {
	null, yes, no bool
	strs          []string
	strSet        map[string]struct{} // strs as a set, when there are many
	nums          []decimal
	composite     []any // objects and arrays
}

// match mirrors the library: the value must equal one of the values, with
// numbers compared by value (1 == 1.0 == 1e0). d is v as a decimal when v
// is a number and e holds numbers.
func (e *fastEnum) match(v any, t fastType, d decimal) Verdict {
	switch t {
	case ftNull:
		return verdictOf(e.null)
	case ftBoolean:
		if v.(bool) {
			return verdictOf(e.yes)
		}
		return verdictOf(e.no)
	case ftString:
		s := v.(string)
		if e.strSet != nil {
			_, ok := e.strSet[s]
			return verdictOf(ok)
		}
		for _, w := range e.strs {
			if s == w {
				return Valid
			}
		}
		return Invalid
	case ftNumber:
		for _, w := range e.nums {
			if d.cmp(w) == 0 {
				return Valid
			}
		}
		return Invalid
	}
	res := Invalid
	for _, w := range e.composite {
		if res = max(res, fastEqual(v, w)); res == Valid {
			break
		}
	}
	return res
}

func verdictOf(ok bool) Verdict {
	if ok {
		return Valid
	}
	return Invalid
}

// fastEqual mirrors the library's equality of JSON values (util.go
// equals): Valid when equal, Invalid when not, Unknown when a value is
// not JSON or a number cannot be compared exactly here.
func fastEqual(a, b any) Verdict {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return Invalid
		}
		res := Valid
		for k, xv := range x {
			yv, ok := y[k]
			if !ok {
				return Invalid
			}
			if res = min(res, fastEqual(xv, yv)); res == Invalid {
				return Invalid
			}
		}
		return res
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return Invalid
		}
		res := Valid
		for i := range x {
			if res = min(res, fastEqual(x[i], y[i])); res == Invalid {
				return Invalid
			}
		}
		return res
	case nil:
		return verdictOf(b == nil)
	case bool:
		y, ok := b.(bool)
		return verdictOf(ok && x == y)
	case string:
		y, ok := b.(string)
		return verdictOf(ok && x == y)
	}
	if valueType(a) != ftNumber {
		return Unknown
	}
	switch valueType(b) {
	case ftNumber:
	case 0:
		return Unknown
	default:
		return Invalid
	}
	da, ok1 := toDecimal(a)
	db, ok2 := toDecimal(b)
	if !ok1 || !ok2 {
		return Unknown
	}
	return verdictOf(da.cmp(db) == 0)
}

// decimal is an exact JSON number m·10^e with at most 19 significant
// digits: enough for every integer Decode accepts and every double's
// shortest form. m has no trailing zeros; zero is {false, 0, 0}.
type decimal struct {
	neg bool
	m   uint64
	e   int
}

const (
	maxMantissa = 1e19 // m < maxMantissa
	mulLimit    = 1e18 // m < mulLimit can take one more digit
	// maxExponent bounds the exponent and the fraction length of a
	// literal. big.Rat refuses literals whose scale exceeds 1e6 (the
	// library then fails); those and their neighbours go to the library.
	maxExponent = 100_000
	float64Safe = 1 << 53 // float64 integers below this print as themselves
	float32Safe = 1 << 24 // likewise for float32
)

var pow10 = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// toDecimal converts a number value as the library reads it: through its
// fmt.Sprint form (the shortest round-trip digits for floats).
func toDecimal(v any) (decimal, bool) {
	switch x := v.(type) {
	case json.Number:
		return parseDecimal(string(x))
	case float64:
		return floatDecimal(x, 64)
	case float32:
		return floatDecimal(float64(x), 32)
	case int:
		return intDecimal(int64(x))
	case int8:
		return intDecimal(int64(x))
	case int16:
		return intDecimal(int64(x))
	case int32:
		return intDecimal(int64(x))
	case int64:
		return intDecimal(x)
	case uint:
		return decimal{m: uint64(x)}.normalize()
	case uint8:
		return decimal{m: uint64(x)}.normalize()
	case uint16:
		return decimal{m: uint64(x)}.normalize()
	case uint32:
		return decimal{m: uint64(x)}.normalize()
	case uint64:
		return decimal{m: x}.normalize()
	}
	return decimal{}, false
}

func intDecimal(i int64) (decimal, bool) {
	if i < 0 {
		return decimal{neg: true, m: uint64(-(i + 1)) + 1}.normalize()
	}
	return decimal{m: uint64(i)}.normalize()
}

func floatDecimal(f float64, bitSize int) (decimal, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return decimal{}, false
	}
	if f == math.Trunc(f) && (bitSize == 64 && math.Abs(f) < float64Safe || bitSize == 32 && math.Abs(f) < float32Safe) {
		return intDecimal(int64(f))
	}
	var buf [32]byte // room for any 'e' form
	return parseDecimal(strconv.AppendFloat(buf[:0], f, 'e', -1, bitSize))
}

// normalize strips trailing zeros into the exponent.
func (d decimal) normalize() (decimal, bool) {
	if d.m == 0 {
		return decimal{}, true
	}
	for d.m%10 == 0 {
		d.m /= 10
		d.e++
	}
	return d, d.m < maxMantissa
}

// parseDecimal reads an RFC 8259 number literal; anything else (and more
// than 19 significant digits, or a huge exponent) is refused.
func parseDecimal[T string | []byte](s T) (decimal, bool) {
	var d decimal
	i, n := 0, len(s)
	if i < n && s[i] == '-' {
		d.neg = true
		i++
	}
	zeros := 0 // zeros seen after a significant digit, not yet in m
	push := func(c byte) bool {
		if c == '0' {
			if d.m != 0 {
				zeros++
			}
			return true
		}
		for ; zeros > 0; zeros-- {
			if d.m >= mulLimit {
				return false
			}
			d.m *= 10
		}
		if d.m >= mulLimit {
			return false
		}
		d.m = d.m*10 + uint64(c-'0')
		return true
	}
	switch {
	case i < n && s[i] == '0':
		i++
	case i < n && '1' <= s[i] && s[i] <= '9':
		for ; i < n && '0' <= s[i] && s[i] <= '9'; i++ {
			if !push(s[i]) {
				return decimal{}, false
			}
		}
	default:
		return decimal{}, false
	}
	frac := 0
	if i < n && s[i] == '.' {
		i++
		start := i
		for ; i < n && '0' <= s[i] && s[i] <= '9'; i++ {
			if !push(s[i]) {
				return decimal{}, false
			}
		}
		if frac = i - start; frac == 0 {
			return decimal{}, false
		}
	}
	exp := 0
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		i++
		negExp := false
		if i < n && (s[i] == '+' || s[i] == '-') {
			negExp = s[i] == '-'
			i++
		}
		start := i
		for ; i < n && '0' <= s[i] && s[i] <= '9'; i++ {
			if exp = exp*10 + int(s[i]-'0'); exp > maxExponent {
				return decimal{}, false
			}
		}
		if i == start {
			return decimal{}, false
		}
		if negExp {
			exp = -exp
		}
	}
	if i != n || frac > maxExponent {
		return decimal{}, false
	}
	if d.m == 0 {
		return decimal{}, true
	}
	d.e = exp - frac + zeros
	return d, true
}

// ratDecimal converts a schema bound. Bounds come from JSON literals, so
// their denominators are products of 2s and 5s; m must fit 19 digits.
func ratDecimal(r *big.Rat) (decimal, bool) {
	num := new(big.Int).Abs(r.Num())
	den := new(big.Int).Set(r.Denom())
	twos := den.TrailingZeroBits()
	den.Rsh(den, twos)
	fives := uint(0)
	five, q, rem := big.NewInt(5), new(big.Int), new(big.Int)
	for {
		q.QuoRem(den, five, rem)
		if rem.Sign() != 0 {
			break
		}
		den.Set(q)
		fives++
	}
	if !den.IsInt64() || den.Int64() != 1 {
		return decimal{}, false
	}
	// num / (2^twos · 5^fives) = num · 2^(k-twos) · 5^(k-fives) / 10^k
	k := max(twos, fives)
	num.Lsh(num, k-twos)
	num.Mul(num, new(big.Int).Exp(five, big.NewInt(int64(k-fives)), nil))
	e := -int(k)
	ten := big.NewInt(10)
	for num.Sign() != 0 {
		q.QuoRem(num, ten, rem)
		if rem.Sign() != 0 {
			break
		}
		num.Set(q)
		e++
	}
	if !num.IsUint64() {
		return decimal{}, false
	}
	if num.Sign() == 0 {
		return decimal{}, true
	}
	d := decimal{neg: r.Sign() < 0, m: num.Uint64(), e: e}
	return d, d.m < maxMantissa
}

func (d decimal) sign() int {
	switch {
	case d.m == 0:
		return 0
	case d.neg:
		return -1
	}
	return 1
}

// isInteger: m has no trailing zeros, so a negative exponent is a fraction.
func (d decimal) isInteger() bool { return d.m == 0 || d.e >= 0 }

func digits(m uint64) int {
	n := 1
	for n < len(pow10) && m >= pow10[n] {
		n++
	}
	return n
}

// cmp compares exactly.
func (d decimal) cmp(o decimal) int {
	ds, os := d.sign(), o.sign()
	if ds != os || ds == 0 {
		return cmpInt(ds, os)
	}
	// Same sign, both non-zero: compare magnitudes, first by the position
	// of the leading digit, then digit by digit after aligning exponents
	// (equal leading positions keep both within 19 digits).
	c := cmpInt(digits(d.m)+d.e, digits(o.m)+o.e)
	if c == 0 {
		dm, om := d.m, o.m
		if d.e > o.e {
			dm *= pow10[d.e-o.e]
		} else {
			om *= pow10[o.e-d.e]
		}
		c = cmpInt(dm, om)
	}
	return c * ds
}

func cmpInt[T int | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// isMultipleOf reports whether d/o is an integer (o > 0), as the library's
// big.Rat quotient would.
func (d decimal) isMultipleOf(o decimal) bool {
	if d.m == 0 {
		return true
	}
	if d.e < o.e {
		// d.m·10^d.e / (o.m·10^o.e) is whole only if o.m·10^(o.e-d.e)
		// divides d.m, impossible: d.m has no trailing zero.
		return false
	}
	// Whether o.m divides d.m·10^k. With o.m = 2^a·5^b·c (a < 64, b < 28),
	// the answer is the same for every k >= 64: stop there.
	k := min(d.e-o.e, 64)
	r := d.m % o.m
	for ; k > 0 && r != 0; k-- {
		hi, lo := bits.Mul64(r, 10)
		_, r = bits.Div64(hi, lo, o.m) // hi < o.m since r < o.m
	}
	return r == 0
}
