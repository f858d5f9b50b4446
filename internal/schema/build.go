package schema

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// shape is the working form of a Node while a document is read. Unlike
// Node it keeps object facts on nodes of any kind, because "properties"
// without "type" still constrains the value once another part of the
// schema (a $ref, an allOf branch) says it is an object.
//
// Every shape over-approximates the values its schema admits: when the
// model cannot follow a keyword (anyOf, if, a recursive $ref...) it admits
// more, never less. Shapes are immutable once built and may be shared.
type shape struct {
	kind      Kind
	nullable  bool
	enum      []any             // nil: unrestricted
	props     map[string]*shape // declared properties
	required  map[string]bool
	addl      *shape // undeclared properties; nil: anything
	closed    bool   // undeclared properties are forbidden
	items     *shape // nil: anything
	maxLength int64
	maxItems  int64
	maxProps  int64

	// evaluatesAll: for "unevaluatedProperties" every property must count
	// as evaluated, either truly (additionalProperties) or because the
	// model cannot tell (anyOf, if, patternProperties...).
	evaluatesAll bool
}

var (
	top     = newShape()                            // admits everything
	topOpen = &shape{kind: Any, evaluatesAll: true, // admits everything, evaluation unknown
		maxLength: Unbounded, maxItems: Unbounded, maxProps: Unbounded}
)

func newShape() *shape {
	return &shape{kind: Any, maxLength: Unbounded, maxItems: Unbounded, maxProps: Unbounded}
}

// isTop reports whether s admits every value (ignoring evaluatesAll).
func (s *shape) isTop() bool {
	return s.kind == Any && s.enum == nil && len(s.props) == 0 && len(s.required) == 0 &&
		s.addl == nil && !s.closed && s.items == nil &&
		s.maxLength == Unbounded && s.maxItems == Unbounded && s.maxProps == Unbounded
}

func (s *shape) withEvaluatesAll(v bool) *shape {
	if !v || s.evaluatesAll {
		return s
	}
	c := *s
	c.evaluatesAll = true
	return &c
}

// prop returns the shape of property name; ok is false when s forbids it.
func (s *shape) prop(name string) (p *shape, ok bool) {
	if p, ok := s.props[name]; ok {
		return p, true
	}
	if s.closed {
		return nil, false
	}
	if s.addl != nil {
		return s.addl, true
	}
	return top, true
}

// builder reads a schema document into shapes, then into Nodes.
type builder struct {
	root   any
	active map[string]bool   // $refs being expanded: a repeat is a cycle
	refs   map[string]*shape // finished $refs
	nodes  map[*shape]*Node  // shapes already turned into nodes
	meets  map[[2]*shape]*shape
}

// buildNode returns the structural model of a (normalized, prechecked)
// schema document.
func buildNode(doc any) *Node {
	b := &builder{root: doc, active: map[string]bool{}, refs: map[string]*shape{}, nodes: map[*shape]*Node{}, meets: map[[2]*shape]*shape{}}
	return b.node(b.build(doc, false))
}

// sub builds a subschema; nested is true inside an embedded resource (a
// subschema with its own "$id"), where "#..." no longer means the document.
func (b *builder) sub(v any, nested bool) *shape {
	if obj, ok := v.(map[string]any); ok {
		if _, ok := obj["$id"].(string); ok {
			nested = true
		}
	}
	return b.build(v, nested)
}

func (b *builder) build(v any, nested bool) *shape {
	obj, ok := v.(map[string]any)
	if !ok {
		// Boolean schemas: true admits everything; false admits nothing,
		// which no Node can say, so it is modelled as Any too.
		return top
	}
	own := b.own(obj, nested)
	parts := []*shape{own}
	if ref, ok := obj["$ref"].(string); ok {
		parts = append(parts, b.ref(ref, nested))
	}
	if all, ok := obj["allOf"].([]any); ok {
		for _, e := range all {
			parts = append(parts, b.sub(e, nested))
		}
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		alts, ok := obj[kw].([]any)
		if !ok {
			continue
		}
		own.evaluatesAll = true
		if n := b.nullableAlternative(alts, nested); n != nil {
			parts = append(parts, n)
		}
	}
	for _, kw := range []string{"$dynamicRef", "if", "dependentSchemas", "dependencies"} {
		if _, ok := obj[kw]; ok {
			own.evaluatesAll = true
		}
	}
	s := parts[0]
	for _, p := range parts[1:] {
		s = b.meet(s, p)
	}
	if u, ok := obj["unevaluatedProperties"]; ok && isSchema(u) {
		// Applied after the in-place parts are merged: it sees the
		// properties they evaluate, which additionalProperties would not.
		if !s.evaluatesAll {
			c := *s
			switch u := u.(type) {
			case bool:
				if !u {
					c.closed, c.addl = true, nil
				}
			default:
				c.addl = b.sub(u, nested)
			}
			s = &c
		}
		s = s.withEvaluatesAll(true)
	}
	return s
}

// own reads the keywords of obj that apply to the value itself.
func (b *builder) own(obj map[string]any, nested bool) *shape {
	s := newShape()
	typ, hasType := obj["type"]
	switch t := typ.(type) {
	case string:
		s.kind = kindOf(t)
	case []any:
		s.kind, s.nullable = unionKind(t)
	}
	var enum []any
	if c, ok := obj["const"]; ok {
		enum = []any{c}
	} else if e, ok := obj["enum"].([]any); ok {
		enum = e
	}
	if enum != nil {
		s.enum = enum
		if !hasType {
			s.kind, s.nullable = inferKind(enum)
		}
	}

	if props, ok := obj["properties"].(map[string]any); ok {
		s.props = make(map[string]*shape, len(props))
		for _, name := range sortedKeys(props) {
			s.props[name] = b.sub(props[name], nested)
		}
	}
	if req, ok := obj["required"].([]any); ok {
		s.required = make(map[string]bool, len(req))
		for _, r := range req {
			if name, ok := r.(string); ok {
				s.required[name] = true
			}
		}
	}
	if ap, ok := obj["additionalProperties"]; ok {
		s.evaluatesAll = true
		switch ap := ap.(type) {
		case bool:
			s.closed = !ap
		case map[string]any:
			s.addl = b.sub(ap, nested)
		}
	}
	if pp, ok := obj["patternProperties"].(map[string]any); ok && len(pp) > 0 {
		// Undeclared names may match a pattern: model them as Any.
		s.evaluatesAll = true
		s.closed, s.addl = false, nil
	}
	if _, ok := obj["prefixItems"]; !ok {
		if items, ok := obj["items"].(map[string]any); ok {
			s.items = b.sub(items, nested)
		}
	}
	s.maxLength = limit(obj["maxLength"])
	s.maxItems = limit(obj["maxItems"])
	s.maxProps = limit(obj["maxProperties"])
	return s
}

// ref resolves a local $ref. Cycles, anchors and references inside
// embedded resources are modelled as Any.
func (b *builder) ref(ref string, nested bool) *shape {
	if nested {
		return topOpen
	}
	if s, ok := b.refs[ref]; ok {
		return s
	}
	if b.active[ref] {
		return topOpen
	}
	target, found, isPtr := resolveLocal(b.root, ref)
	if !found || !isPtr {
		return topOpen
	}
	b.active[ref] = true
	s := b.sub(target, embedded(b.root, ref))
	delete(b.active, ref)
	b.refs[ref] = s
	return s
}

// embedded reports whether the pointer ref passes through (or ends at) a
// subschema with its own "$id", below the document root.
func embedded(root any, ref string) bool {
	for {
		i := len(ref) - 1
		for i >= 0 && ref[i] != '/' {
			i--
		}
		if i <= 1 { // "#" or "#/x": only the root is above
			return false
		}
		ref = ref[:i]
		if v, found, _ := resolveLocal(root, ref); found {
			if obj, ok := v.(map[string]any); ok {
				if _, ok := obj["$id"].(string); ok {
					return true
				}
			}
		}
	}
}

// nullableAlternative models anyOf/oneOf [T, {"type": "null"}] as a
// nullable T; other alternatives return nil (no information).
func (b *builder) nullableAlternative(alts []any, nested bool) *shape {
	if len(alts) != 2 {
		return nil
	}
	shapes := [2]*shape{b.sub(alts[0], nested), b.sub(alts[1], nested)}
	for i, n := range shapes {
		if n.kind != Null || n.enum != nil {
			continue
		}
		o := shapes[1-i]
		if o.kind == Any || o.kind == Null {
			return nil
		}
		c := *o
		c.nullable = true
		return &c
	}
	return nil
}

func kindOf(name string) Kind {
	switch name {
	case "null":
		return Null
	case "boolean":
		return Boolean
	case "integer":
		return Integer
	case "number":
		return Number
	case "string":
		return String
	case "array":
		return Array
	case "object":
		return Object
	}
	return Any
}

// unionKind models a "type" array: [T] and [T, "null"] give T, the latter
// nullable; ["integer", "number"] is number; other unions are Any.
func unionKind(names []any) (Kind, bool) {
	set := map[Kind]bool{}
	for _, n := range names {
		if s, ok := n.(string); ok {
			set[kindOf(s)] = true
		}
	}
	return kindOfSet(set)
}

// inferKind finds the common JSON type of enum values.
func inferKind(values []any) (Kind, bool) {
	set := map[Kind]bool{}
	for _, v := range values {
		set[kindOf(jsonType(v))] = true
	}
	return kindOfSet(set)
}

func kindOfSet(set map[Kind]bool) (Kind, bool) {
	if set[Any] {
		return Any, false
	}
	nullable := set[Null]
	delete(set, Null)
	if set[Integer] && set[Number] {
		delete(set, Integer)
	}
	switch len(set) {
	case 0:
		if nullable {
			return Null, false
		}
		return Any, false
	case 1:
		for k := range set {
			return k, nullable
		}
	}
	return Any, false
}

// limit reads a non-negative integer keyword value, Unbounded if absent.
func limit(v any) int64 {
	n, ok := v.(json.Number)
	if !ok {
		return Unbounded
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		if i < 0 {
			return Unbounded
		}
		return i
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f >= math.MaxInt64 {
		return Unbounded
	}
	return int64(f)
}

// meet returns the shape of values admitted by both a and b (or an
// over-approximation of it). Shapes are shared, so results are memoized:
// without that, meeting two DAG-shaped schemas would take exponential time.
func (b *builder) meet(x, y *shape) *shape {
	key := [2]*shape{x, y}
	if m, ok := b.meets[key]; ok {
		return m
	}
	m := b.doMeet(x, y)
	b.meets[key] = m
	return m
}

func (bd *builder) doMeet(a, b *shape) *shape {
	if a == b {
		return a
	}
	if a.isTop() {
		return b.withEvaluatesAll(a.evaluatesAll)
	}
	if b.isTop() {
		return a.withEvaluatesAll(b.evaluatesAll)
	}
	n := newShape()
	n.evaluatesAll = a.evaluatesAll || b.evaluatesAll
	switch {
	case a.kind == b.kind:
		n.kind, n.nullable = a.kind, a.nullable && b.nullable
	case a.kind == Any:
		n.kind, n.nullable = b.kind, b.nullable
	case b.kind == Any:
		n.kind, n.nullable = a.kind, a.nullable
	case a.kind == Integer && b.kind == Number || a.kind == Number && b.kind == Integer:
		n.kind, n.nullable = Integer, a.nullable && b.nullable
	case a.kind == Null && b.nullable || b.kind == Null && a.nullable:
		n.kind = Null
	default:
		// Contradictory types: the schema admits nothing and validation
		// says so; either side is a sound model.
		return a.withEvaluatesAll(n.evaluatesAll)
	}
	switch {
	case a.enum == nil:
		n.enum = b.enum
	case b.enum == nil:
		n.enum = a.enum
	default:
		n.enum = []any{}
		for _, v := range a.enum {
			if slices.ContainsFunc(b.enum, func(w any) bool { return sameValue(v, w) }) {
				n.enum = append(n.enum, v)
			}
		}
	}
	n.maxLength = minLimit(a.maxLength, b.maxLength)
	n.maxItems = minLimit(a.maxItems, b.maxItems)
	n.maxProps = minLimit(a.maxProps, b.maxProps)

	if len(a.props)+len(b.props) > 0 {
		n.props = map[string]*shape{}
		for _, names := range []map[string]*shape{a.props, b.props} {
			for name := range names {
				if _, done := n.props[name]; done {
					continue
				}
				pa, okA := a.prop(name)
				pb, okB := b.prop(name)
				if okA && okB {
					n.props[name] = bd.meet(pa, pb)
				}
			}
		}
	}
	if len(a.required)+len(b.required) > 0 {
		n.required = map[string]bool{}
		for name := range a.required {
			n.required[name] = true
		}
		for name := range b.required {
			n.required[name] = true
		}
	}
	n.closed = a.closed || b.closed
	if !n.closed {
		n.addl = bd.meetOptional(a.addl, b.addl)
	}
	n.items = bd.meetOptional(a.items, b.items)
	return n
}

// meetOptional is meet where nil stands for "anything".
func (bd *builder) meetOptional(a, b *shape) *shape {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return bd.meet(a, b)
}

func minLimit(a, b int64) int64 {
	switch {
	case a == Unbounded:
		return b
	case b == Unbounded:
		return a
	}
	return min(a, b)
}

// sameValue is JSON Schema equality: numbers compare by value (as float64,
// which can only over-approximate), everything else structurally.
func sameValue(a, b any) bool {
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok && bok {
		af, err1 := an.Float64()
		bf, err2 := bn.Float64()
		return err1 == nil && err2 == nil && af == bf
	}
	return jsonvalue.Equal(a, b)
}

// node turns a shape into a Node, keeping object facts only on objects and
// item facts only on arrays.
func (b *builder) node(s *shape) *Node {
	if n, ok := b.nodes[s]; ok {
		return n
	}
	n := &Node{
		Kind:          s.kind,
		Nullable:      s.nullable,
		MaxLength:     s.maxLength,
		MaxItems:      s.maxItems,
		MaxProperties: s.maxProps,
	}
	if s.enum != nil {
		n.Enum = jsonvalue.Clone(s.enum).([]any)
	}
	b.nodes[s] = n
	switch s.kind {
	case Object:
		n.Properties = make(map[string]*Node, len(s.props))
		n.Order = sortedKeys(s.props)
		for _, name := range n.Order {
			n.Properties[name] = b.node(s.props[name])
		}
		n.Required = make(map[string]bool, len(s.required))
		for name := range s.required {
			n.Required[name] = true
		}
		switch {
		case s.closed:
		case s.addl != nil:
			n.Additional = b.node(s.addl)
		default:
			n.Additional = AnyNode()
		}
	case Array:
		if s.items != nil {
			n.Items = b.node(s.items)
		} else {
			n.Items = AnyNode()
		}
	}
	return n
}
