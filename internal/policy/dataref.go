package policy

import (
	"slices"
	"sort"

	"cel.dev/cel-go/common/ast"
)

// DataRef is one reference to data.<State> in an expression, at the
// position of its data identifier.
//
// Guarded reports that evaluation cannot reach the reference with the state
// absent: the reference is itself the test has(data.State), or it sits in
// the right operand of && whose left operand has a has(data.State...) test
// among its top-level conjuncts, in the true branch of c ? t : f whose
// condition does, or (dually) in the right operand of || or the false
// branch of ?: after a top-level !has(data.State...) disjunct. A deeper test
// has(data.State.field) guards what follows it, but is itself an
// unguarded reference: selecting field of an absent state is an error, not
// false.
type DataRef struct {
	State        string
	Guarded      bool
	Line, Column int
}

func dataRefs(c *compiler) []DataRef {
	w := &refWalker{c: c}
	w.walk(c.checked.Expr(), nil)
	sort.SliceStable(w.refs, func(i, j int) bool {
		a, b := w.refs[i], w.refs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return w.refs
}

type refWalker struct {
	c    *compiler
	refs []DataRef
}

// walk records the data references under e; guards are the states whose
// presence is established on every path to e.
func (w *refWalker) walk(e ast.Expr, guards []string) {
	switch e.Kind() {
	case ast.SelectKind:
		sel := e.AsSelect()
		if op := sel.Operand(); isDataIdent(op) {
			line, col := w.c.location(op.ID())
			state := sel.FieldName()
			w.refs = append(w.refs, DataRef{
				State:   state,
				Guarded: sel.IsTestOnly() || slices.Contains(guards, state),
				Line:    line,
				Column:  col,
			})
			return
		}
		w.walk(sel.Operand(), guards)
		return
	case ast.CallKind:
		call := e.AsCall()
		args := call.Args()
		switch fn := call.FunctionName(); {
		case fn == "_&&_" && len(args) == 2:
			w.walk(args[0], guards)
			w.walk(args[1], appendTests(guards, args[0], "_&&_", false))
			return
		case fn == "_||_" && len(args) == 2:
			w.walk(args[0], guards)
			w.walk(args[1], appendTests(guards, args[0], "_||_", true))
			return
		case fn == "_?_:_" && len(args) == 3:
			w.walk(args[0], guards)
			w.walk(args[1], appendTests(guards, args[0], "_&&_", false))
			w.walk(args[2], appendTests(guards, args[0], "_||_", true))
			return
		}
	}
	for _, ch := range children(e) {
		w.walk(ch, guards)
	}
}

// appendTests adds to guards the states tested by the top-level operands of
// the op chain at e: has(data.X...) tests, or with negated set,
// !has(data.X...) tests.
func appendTests(guards []string, e ast.Expr, op string, negated bool) []string {
	if e.Kind() == ast.CallKind && e.AsCall().FunctionName() == op {
		for _, a := range e.AsCall().Args() {
			guards = appendTests(guards, a, op, negated)
		}
		return guards
	}
	if negated {
		if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != "!_" || len(e.AsCall().Args()) != 1 {
			return guards
		}
		e = e.AsCall().Args()[0]
	}
	if s, ok := testedState(e); ok && !slices.Contains(guards, s) {
		// Copy: sibling branches share the caller's slice.
		return append(slices.Clip(guards), s)
	}
	return guards
}

// testedState returns X when e is has(data.X) or has(data.X.more...).
func testedState(e ast.Expr) (string, bool) {
	if e.Kind() != ast.SelectKind || !e.AsSelect().IsTestOnly() {
		return "", false
	}
	for {
		sel := e.AsSelect()
		if isDataIdent(sel.Operand()) {
			return sel.FieldName(), true
		}
		e = sel.Operand()
		for e.Kind() == ast.CallKind && e.AsCall().FunctionName() == "_[_]" && len(e.AsCall().Args()) == 2 {
			e = e.AsCall().Args()[0]
		}
		if e.Kind() != ast.SelectKind {
			return "", false
		}
	}
}

func isDataIdent(e ast.Expr) bool {
	return e.Kind() == ast.IdentKind && e.AsIdent() == varData
}
