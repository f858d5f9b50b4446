package lab

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// One-place variants of a synthesised value: what the exploration tries
// at each task to reach states the generated value does not.

// variants lists values for s that differ from base in one place; they
// are validated by the caller.
func (g *generator) variants(s any, base any, depth int) []any {
	m, err := g.resolve(s, depth)
	if err != nil || depth > maxDepth {
		return nil
	}
	if _, ok := m["const"]; ok {
		return nil
	}
	if e, ok := m["enum"].([]any); ok {
		var out []any
		for _, v := range e {
			if canonical(v) != canonical(base) {
				out = append(out, jsonvalue.Clone(v))
			}
		}
		return out
	}
	out := g.variantsOf(m, base, depth)
	// Bounded at every level, so that nested schemas cannot multiply.
	if len(out) > 4*maxVariants {
		out = out[:4*maxVariants]
	}
	return out
}

func (g *generator) variantsOf(m map[string]any, base any, depth int) []any {
	switch x := base.(type) {
	case bool:
		return []any{!x}
	case json.Number:
		return g.numberVariants(m, typeOf(m) == "integer", base)
	case string:
		var out []any
		for _, v := range g.stringVariants(m) {
			if v != x {
				out = append(out, v)
			}
		}
		return out
	case []any:
		return g.arrayVariants(m, x, depth)
	case map[string]any:
		return g.objectVariants(m, x, depth)
	}
	return nil
}

// arrayVariants: one item more (each of its variants too), one fewer, or
// the first item varied, in turn.
func (g *generator) arrayVariants(m map[string]any, base []any, depth int) []any {
	var more, fewer, varied []any
	if s, ok := g.itemSchema(m, len(base)); ok {
		if item, err := g.value(s, "", depth+1); err == nil {
			for _, it := range append([]any{item}, g.variants(s, item, depth+1)...) {
				more = append(more, append(jsonvalue.Clone(base).([]any), it))
			}
		}
	}
	if len(base) > 0 {
		fewer = append(fewer, jsonvalue.Clone(base[:len(base)-1]).([]any))
		if s, ok := g.itemSchema(m, 0); ok {
			for _, it := range g.variants(s, base[0], depth+1) {
				c := jsonvalue.Clone(base).([]any)
				c[0] = it
				varied = append(varied, c)
			}
		}
	}
	return interleave([][]any{more, fewer, varied})
}

// objectVariants: each property varied, and each absent optional
// property added (with its variants), taken in turn from every property,
// so that the bound on variants never starves a property of its share.
func (g *generator) objectVariants(m map[string]any, base map[string]any, depth int) []any {
	props, _ := m["properties"].(map[string]any)
	var lists [][]any
	for _, k := range slices.Sorted(maps.Keys(base)) {
		s, ok := props[k]
		if !ok {
			continue
		}
		var l []any
		for _, v := range g.variants(s, base[k], depth+1) {
			c := jsonvalue.Clone(base).(map[string]any)
			c[k] = v
			l = append(l, c)
		}
		lists = append(lists, l)
	}
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if _, present := base[k]; present {
			continue
		}
		v, err := g.value(props[k], "", depth+1)
		if err != nil {
			continue
		}
		var l []any
		for _, w := range append([]any{v}, g.variants(props[k], v, depth+1)...) {
			c := jsonvalue.Clone(base).(map[string]any)
			c[k] = w
			l = append(l, c)
		}
		lists = append(lists, l)
	}
	return interleave(lists)
}

// interleave takes one from each list in turn.
func interleave(lists [][]any) []any {
	var out []any
	for i := 0; ; i++ {
		took := false
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
				took = true
			}
		}
		if !took {
			return out
		}
	}
}

// numberVariants: the guards' literals with their neighbours, the
// bounds, and small numbers.
func (g *generator) numberVariants(m map[string]any, integer bool, base any) []any {
	b := numberBounds(m, integer)
	// The guards' literals first: a guard compares some field with them.
	var cands []float64
	for _, n := range g.hints.numbers {
		cands = append(cands, n, n+1, n-1)
		if !integer {
			cands = append(cands, n+0.01, n-0.01)
		}
	}
	cands = append(cands, b.preferred()...)
	cands = append(cands, 1, -1)
	var out []any
	seen := map[string]bool{canonical(base): true}
	for _, x := range cands {
		y, ok := b.fit(x)
		if !ok {
			continue
		}
		n := b.format(y)
		if c := canonical(n); !seen[c] {
			seen[c] = true
			out = append(out, n)
		}
	}
	return out
}

// stringVariants: the guards' string literals that fit, the pattern's
// other alternatives, and the empty string where allowed.
func (g *generator) stringVariants(m map[string]any) []any {
	var cands []string
	cands = append(cands, g.hints.strings...)
	if p, ok := m["pattern"].(string); ok {
		lo, _ := lengths(m)
		cands = append(cands, fromPattern(p, lo)...)
	}
	cands = append(cands, "")
	var out []any
	for _, s := range cands {
		if fits(m, s) {
			out = append(out, s)
		}
	}
	return out
}
