package schema

// Kind is the JSON type a schema node admits.
type Kind uint8

// Kinds, in the order JSON Schema names them. Any means the schema does not
// pin a single type (no "type", a union other than T|null, anyOf/oneOf, ...).
const (
	Any Kind = iota
	Null
	Boolean
	Integer
	Number
	String
	Array
	Object
)

// String returns the JSON Schema type name of k ("any" for Any).
func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Boolean:
		return "boolean"
	case Integer:
		return "integer"
	case Number:
		return "number"
	case String:
		return "string"
	case Array:
		return "array"
	case Object:
		return "object"
	}
	return "any"
}

// Unbounded marks a size limit the schema does not declare.
const Unbounded int64 = -1

// Node is the structural model of one JSON Schema: the part of it that types
// a value. Validation uses the compiled schema; typing (CEL declarations,
// path checks, value conversion) uses Node.
type Node struct {
	Kind     Kind
	Nullable bool // the type also admits null ("type": ["string", "null"])

	// Object.
	Properties map[string]*Node
	Order      []string        // property names, sorted: deterministic iteration
	Required   map[string]bool // required property names
	Additional *Node           // schema of undeclared properties; nil when they are forbidden

	// Array.
	Items *Node // element schema; an Any node when undeclared

	Enum []any // allowed values (decoded JSON), nil when unrestricted

	MaxLength     int64 // String: Unbounded when undeclared
	MaxItems      int64 // Array: Unbounded when undeclared
	MaxProperties int64 // Object: Unbounded when undeclared
}

// AnyNode returns a node that admits every JSON value.
func AnyNode() *Node {
	return &Node{Kind: Any, MaxLength: Unbounded, MaxItems: Unbounded, MaxProperties: Unbounded}
}

// LookupElements is Lookup that also steps into array elements: in
// input.people.name, people may be an array of objects with a name. The
// elements of an array share its path, as personal-data paths do.
func (n *Node) LookupElements(path []string) (*Node, bool) {
	cur := n
	for _, p := range path {
		for cur.Kind == Array {
			cur = cur.Items
		}
		next, ok := cur.Lookup([]string{p})
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// Lookup walks path (property names) from n. It reports false when the
// schema says the path cannot exist: a property an object forbids, or a step
// into a scalar or an array. Undeclared properties of an object that admits
// them, and anything under an Any node, resolve to an Any node.
func (n *Node) Lookup(path []string) (*Node, bool) {
	cur := n
	for _, p := range path {
		switch cur.Kind {
		case Any:
			return AnyNode(), true
		case Object:
			if c, ok := cur.Properties[p]; ok {
				cur = c
				continue
			}
			if cur.Additional == nil {
				return nil, false
			}
			cur = cur.Additional
		default:
			return nil, false
		}
	}
	return cur, true
}
