package jsonvalue

import (
	"encoding/json"
	"reflect"
)

// Clone returns a deep copy of a decoded value: maps and slices are copied,
// scalars (including json.Number) are immutable and shared. Values of other
// types are returned as they are.
func Clone(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = Clone(e)
		}
		return m
	case []any:
		if v == nil {
			return []any(nil)
		}
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = Clone(e)
		}
		return s
	}
	return v
}

// Equal reports whether two decoded values are structurally equal. Numbers
// compare by literal text, so 1 and 1.0 differ: Equal answers "is this the
// same document", not "is this the same number". Values of other types
// compare with reflect.DeepEqual.
func Equal(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case json.Number:
		bn, ok := b.(json.Number)
		return ok && a == bn
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, av := range a {
			bv, ok := bm[k]
			if !ok || !Equal(av, bv) {
				return false
			}
		}
		return true
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !Equal(a[i], bs[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
