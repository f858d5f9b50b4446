package policy

import (
	"slices"
	"strings"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
)

// A guard must not depend on personal data: its outcome is recorded and
// replayed, and a decision about a person belongs in a step whose output
// says what was decided. piiProblems finds every read of a personal-data
// path in a checked guard:
//
//   - a path equal to or below a declared path (input.customer.name, and
//     has(input.customer.name), when input.customer.name is declared);
//   - an ancestor object used as a whole value (size(input.customer),
//     input.customer == x, a comprehension variable bound to an element
//     compared whole), since the value includes the personal field.
//
// Navigating through an ancestor (input.customer.id) and testing its
// presence (has(input.customer)) read nothing personal. Array elements
// share their array's path; a map entry selected by a literal key extends
// the path by the key, one selected by a computed key reads the whole map.
func (e *Env) piiProblems(c *compiler) []Problem {
	if len(e.pii) == 0 {
		return nil
	}
	w := &piiWalker{c: c, pii: e.pii, bound: map[string][]boundPath{}}
	w.walk(c.checked.Expr())
	return w.problems
}

// piiReads lists the personal-data paths an expression reads, by the same
// analysis, sorted and without duplicates. Tool arguments may read personal
// data; the trace then protects their values with the subjects' keys.
func (e *Env) piiReads(c *compiler) [][]string {
	if len(e.pii) == 0 {
		return nil
	}
	w := &piiWalker{c: c, pii: e.pii, bound: map[string][]boundPath{}}
	w.walk(c.checked.Expr())
	slices.SortFunc(w.reads, func(a, b []string) int { return slices.Compare(a, b) })
	return slices.CompactFunc(w.reads, func(a, b []string) bool { return slices.Equal(a, b) })
}

type piiWalker struct {
	c        *compiler
	pii      [][]string
	bound    map[string][]boundPath // comprehension variables, innermost last
	problems []Problem
	reads    [][]string // the personal-data paths behind the problems
}

// boundPath is what a comprehension variable stands for: an element of the
// value at path, or an untracked computed value when ok is false.
type boundPath struct {
	path []string
	ok   bool
}

// chain resolves e as a path into a variable. It returns the path, and the
// index arguments met on the way, which are expressions in their own right.
func (w *piiWalker) chain(e ast.Expr) (path []string, indexArgs []ast.Expr, ok bool) {
	switch e.Kind() {
	case ast.IdentKind:
		name := e.AsIdent()
		if stack := w.bound[name]; len(stack) > 0 {
			b := stack[len(stack)-1]
			return b.path, nil, b.ok
		}
		switch name {
		case varInput, varData, varOutput:
			return []string{name}, nil, true
		}
		return nil, nil, false
	case ast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return nil, nil, false
		}
		p, idx, ok := w.chain(sel.Operand())
		if !ok {
			return nil, nil, false
		}
		return appendPath(p, sel.FieldName()), idx, true
	case ast.CallKind:
		call := e.AsCall()
		if call.FunctionName() != "_[_]" || len(call.Args()) != 2 {
			return nil, nil, false
		}
		target, key := call.Args()[0], call.Args()[1]
		p, idx, ok := w.chain(target)
		if !ok {
			return nil, nil, false
		}
		if key.Kind() == ast.LiteralKind {
			switch k := key.AsLiteral().(type) {
			case types.String:
				return appendPath(p, string(k)), idx, true
			case types.Int:
				return p, idx, true
			}
		}
		if t := w.c.checked.GetType(target.ID()); t != nil && t.Kind() == types.ListKind {
			// Elements share the list's path, whatever the index.
			return p, append(idx, key), true
		}
		// A computed key may select any entry: the map is read whole.
		return nil, nil, false
	}
	return nil, nil, false
}

func (w *piiWalker) walk(e ast.Expr) {
	if e.Kind() == ast.SelectKind && e.AsSelect().IsTestOnly() {
		sel := e.AsSelect()
		if p, idx, ok := w.chain(sel.Operand()); ok {
			w.check(e, appendPath(p, sel.FieldName()), false)
			w.walkAll(idx)
			return
		}
		w.walk(sel.Operand())
		return
	}
	if w.walkMapMembership(e) {
		return
	}
	if p, idx, ok := w.chain(e); ok {
		w.check(e, p, true)
		w.walkAll(idx)
		return
	}
	if e.Kind() == ast.ComprehensionKind {
		w.walkComprehension(e)
		return
	}
	w.walkAll(children(e))
}

// walkMapMembership handles key in map, which tests the presence of an
// entry like has() does, rather than reading the map whole.
func (w *piiWalker) walkMapMembership(e ast.Expr) bool {
	if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != "@in" || len(e.AsCall().Args()) != 2 {
		return false
	}
	key, m := e.AsCall().Args()[0], e.AsCall().Args()[1]
	if t := w.c.checked.GetType(m.ID()); t == nil || t.Kind() != types.MapKind {
		return false
	}
	p, idx, ok := w.chain(m)
	if !ok {
		return false
	}
	if lit, isStr := key.AsLiteral().(types.String); key.Kind() == ast.LiteralKind && isStr {
		w.check(m, appendPath(p, string(lit)), false)
	} else {
		w.check(m, p, true)
		w.walk(key)
	}
	w.walkAll(idx)
	return true
}

func (w *piiWalker) walkAll(es []ast.Expr) {
	for _, x := range es {
		w.walk(x)
	}
}

func (w *piiWalker) walkComprehension(e ast.Expr) {
	comp := e.AsComprehension()
	rng := comp.IterRange()
	elem := boundPath{}
	if p, idx, ok := w.chain(rng); ok {
		// Iterating navigates into the range; it reads personal data only
		// when the range itself is personal.
		w.check(rng, p, false)
		w.walkAll(idx)
		elem = boundPath{path: p, ok: true}
	} else {
		w.walk(rng)
	}
	w.walk(comp.AccuInit())
	vars := []string{comp.IterVar()}
	if comp.HasIterVar2() {
		vars = append(vars, comp.IterVar2())
	}
	for _, v := range vars {
		w.bound[v] = append(w.bound[v], elem)
	}
	w.bound[comp.AccuVar()] = append(w.bound[comp.AccuVar()], boundPath{})
	w.walk(comp.LoopCondition())
	w.walk(comp.LoopStep())
	w.walk(comp.Result())
	for _, v := range append(vars, comp.AccuVar()) {
		w.bound[v] = w.bound[v][:len(w.bound[v])-1]
	}
}

// check reports e if path reads personal data: it is equal to or below a
// personal-data path or, when the value is used whole, above one.
func (w *piiWalker) check(e ast.Expr, path []string, whole bool) {
	reported := false
	for _, q := range w.pii {
		if !hasPrefix(path, q) && !(whole && hasPrefix(q, path)) {
			continue
		}
		// Every path matched: a value read whole may hold the personal
		// data of several subjects.
		w.reads = append(w.reads, q)
		if reported {
			continue
		}
		reported = true
		if e.Kind() == ast.SelectKind && e.AsSelect().IsTestOnly() {
			e = e.AsSelect().Operand()
		}
		line, col := w.c.start(e)
		w.problems = append(w.problems, Problem{Line: line, Column: col,
			Message: "guard reads personal data " + strings.Join(q, ".") + "; decide on a step output instead"})
	}
}

func hasPrefix(path, prefix []string) bool {
	if len(prefix) > len(path) {
		return false
	}
	for i := range prefix {
		if path[i] != prefix[i] {
			return false
		}
	}
	return true
}

// appendPath returns p extended by s without sharing p's backing array.
func appendPath(p []string, s string) []string {
	out := make([]string, len(p)+1)
	copy(out, p)
	out[len(p)] = s
	return out
}
