package schema

import (
	"fmt"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// JSON Schema calls 1e300 an integer, but guards type an integer field as a
// CEL int and canonical JSON cannot carry integers beyond ±2^53 exactly.
// So, beyond the schema, a value the structural model types as an integer
// must be an integer within ±2^53; anything else would reach a guard as a
// double where the type checker promised an int.

func hasInteger(n *Node, seen map[*Node]bool) bool {
	if n == nil || seen[n] {
		return false
	}
	seen[n] = true
	if n.Kind == Integer {
		return true
	}
	for _, c := range n.Properties {
		if hasInteger(c, seen) {
			return true
		}
	}
	return hasInteger(n.Additional, seen) || hasInteger(n.Items, seen)
}

// integersSafe reports whether every integer-typed value of v is an
// integer within ±2^53. It is the allocation-free check for valid values;
// unsafeIntegers explains a failure.
func integersSafe(n *Node, v any) bool {
	if n == nil {
		return true
	}
	switch n.Kind {
	case Integer:
		if v == nil {
			return true
		}
		i, ok := toInt64(v)
		return ok && i <= jsonvalue.MaxSafeInteger && i >= -jsonvalue.MaxSafeInteger
	case Object:
		obj, _ := v.(map[string]any)
		for k, e := range obj {
			c := n.Properties[k]
			if c == nil {
				c = n.Additional
			}
			if !integersSafe(c, e) {
				return false
			}
		}
	case Array:
		list, _ := v.([]any)
		for _, e := range list {
			if !integersSafe(n.Items, e) {
				return false
			}
		}
	}
	return true
}

// unsafeIntegers appends a violation for every integer-typed value of v
// that is not an integer within ±2^53, in map order: the caller sorts.
func unsafeIntegers(n *Node, v any, ptr string, out []Violation) []Violation {
	if n == nil {
		return out
	}
	switch n.Kind {
	case Integer:
		if v == nil {
			return out // a nullable integer
		}
		if i, ok := toInt64(v); !ok || i > jsonvalue.MaxSafeInteger || i < -jsonvalue.MaxSafeInteger {
			out = append(out, Violation{Path: ptr, Keyword: "type",
				Message: fmt.Sprintf("integer %v is beyond ±2^53 and cannot be represented exactly", v)})
		}
	case Object:
		obj, _ := v.(map[string]any)
		for k, e := range obj {
			c := n.Properties[k]
			if c == nil {
				c = n.Additional
			}
			out = unsafeIntegers(c, e, ptr+"/"+jsonvalue.EscapePointerToken(k), out)
		}
	case Array:
		list, _ := v.([]any)
		for i, e := range list {
			out = unsafeIntegers(n.Items, e, fmt.Sprintf("%s/%d", ptr, i), out)
		}
	}
	return out
}
