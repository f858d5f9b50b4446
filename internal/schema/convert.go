package schema

import (
	"encoding/json"
	"math"
	"strconv"
)

// Convert turns a decoded JSON value into the Go values CEL expects, typed
// by n: Integer gives int64 (3.0 too), Number gives float64 (3 too),
// objects and arrays are converted member by member with their property and
// item nodes. Under Any, integer literals (no '.', 'e' or 'E') give int64
// and other numbers float64. A value whose JSON type does not match n (it
// should have been validated first) is converted as under Any. Integers
// that do not fit in int64 become float64. v is not modified.
func (n *Node) Convert(v any) any {
	if n == nil {
		return convertAny(v)
	}
	switch n.Kind {
	case Integer:
		if i, ok := toInt64(v); ok {
			return i
		}
	case Number:
		if f, ok := toFloat64(v); ok {
			return f
		}
	case String:
		if _, ok := v.(string); ok {
			return v
		}
	case Boolean:
		if _, ok := v.(bool); ok {
			return v
		}
	case Object:
		if m, ok := v.(map[string]any); ok {
			out := make(map[string]any, len(m))
			for k, e := range m {
				child, ok := n.Properties[k]
				if !ok {
					child = n.Additional // nil (forbidden) converts as Any
				}
				out[k] = child.Convert(e)
			}
			return out
		}
	case Array:
		if a, ok := v.([]any); ok {
			out := make([]any, len(a))
			for i, e := range a {
				out[i] = n.Items.Convert(e)
			}
			return out
		}
	}
	return convertAny(v)
}

// convertAny converts without a schema: the literal decides int or double.
func convertAny(v any) any {
	switch x := v.(type) {
	case json.Number:
		if isIntegerLiteral(string(x)) {
			if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				return i
			}
		}
		f, _ := strconv.ParseFloat(string(x), 64)
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = convertAny(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = convertAny(e)
		}
		return out
	case float32:
		return float64(x)
	case int:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint:
		return toFloatIfHuge(uint64(x))
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return toFloatIfHuge(x)
	}
	return v
}

func toFloatIfHuge(u uint64) any {
	if u > math.MaxInt64 {
		return float64(u)
	}
	return int64(u)
}

// toInt64 converts an integral number to int64; ok is false for
// non-numbers, fractions and values outside int64.
func toInt64(v any) (int64, bool) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, true
		}
		var err error
		if f, err = strconv.ParseFloat(string(x), 64); err != nil {
			return 0, false
		}
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint:
		return int64(x), uint64(x) <= math.MaxInt64
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), x <= math.MaxInt64
	default:
		return 0, false
	}
	// -2^63 is exact in float64; 2^63 is the first value out of range.
	if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// toFloat64 converts any number to float64.
func toFloat64(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return f, err == nil
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}
