package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
)

// Compile parses, type-checks and vets src as an expression of kind k. On
// failure it returns every problem found, sorted by position.
func (e *Env) Compile(src string, k Kind) (*Expr, []Problem) {
	if len(src) > MaxExpressionBytes {
		return nil, []Problem{{Line: 1, Column: 1, Message: fmt.Sprintf("expression is %d bytes; the limit is %d", len(src), MaxExpressionBytes)}}
	}
	if !utf8.ValidString(src) {
		return nil, []Problem{invalidUTF8(src)}
	}
	if strings.TrimSpace(src) == "" {
		return nil, []Problem{{Line: 1, Column: 1, Message: "expression is empty"}}
	}
	parsed, iss := e.cel.Parse(src)
	if iss.Err() != nil {
		return nil, sortProblems(issueProblems(iss, nil))
	}
	c := &compiler{
		env:   e,
		kind:  k,
		src:   []rune(src),
		info:  parsed.NativeRep().SourceInfo(),
		skip:  map[int64]bool{},
		scope: map[string]int{},
	}
	c.vetParsed(parsed.NativeRep().Expr())

	checked, iss := e.cel.Check(parsed)
	if iss.Err() != nil {
		c.problems = append(c.problems, issueProblems(iss, c.skip)...)
		return nil, sortProblems(c.problems)
	}
	native := checked.NativeRep()
	c.checked = native
	c.vetChecked(native.Expr(), false)
	if k == GuardKind {
		if t := checked.OutputType(); !t.IsExactType(types.BoolType) {
			c.problems = append(c.problems, Problem{Line: 1, Column: 1, Message: fmt.Sprintf("guard must be bool, got %s", typeName(t))})
		}
		c.problems = append(c.problems, e.piiProblems(c)...)
	}
	var reads [][]string
	if k == ValueKind {
		reads = e.piiReads(c)
	}
	if len(c.problems) > 0 {
		return nil, sortProblems(c.problems)
	}

	est, err := e.cel.EstimateCost(checked, e.estimator)
	if err != nil {
		return nil, []Problem{{Message: fmt.Sprintf("estimate cost: %v", err)}}
	}
	if est.Max > e.opts.CostLimit {
		return nil, []Problem{{Message: fmt.Sprintf("estimated cost %d exceeds the budget %d; declare maxItems/maxLength", est.Max, e.opts.CostLimit)}}
	}
	prg, err := e.cel.Program(checked,
		cel.CostLimit(e.opts.CostLimit),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, []Problem{{Message: fmt.Sprintf("plan: %v", err)}}
	}
	return &Expr{
		PII:      reads,
		JSONType: jsonType(checked.OutputType()),
		Source:   src,
		Kind:     k,
		Cost:     est.Max,
		DataRefs: dataRefs(c),
		prg:      prg,
		limit:    e.opts.CostLimit,
	}, nil
}

// compiler holds the state of one Compile call.
type compiler struct {
	env      *Env
	kind     Kind
	src      []rune
	info     *ast.SourceInfo
	checked  *ast.AST
	problems []Problem
	// skip holds the ids of expressions under a rejected construct: check
	// errors there are consequences of the problem already reported.
	skip map[int64]bool
	// scope counts the comprehension variables in scope by name.
	scope map[string]int
}

// reject reports a problem at the start of e.
func (c *compiler) reject(e ast.Expr, format string, args ...any) {
	line, col := c.start(e)
	c.problems = append(c.problems, Problem{Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// start returns the position a problem with e points at: the start of a
// select or index chain, the name of a function or macro, otherwise where
// the parser placed e (an operator, a literal, an identifier).
func (c *compiler) start(e ast.Expr) (int, int) {
	switch e.Kind() {
	case ast.SelectKind:
		if e.AsSelect().IsTestOnly() {
			return c.callLocation(e.ID(), "has")
		}
		return c.start(e.AsSelect().Operand())
	case ast.CallKind:
		call := e.AsCall()
		if call.FunctionName() == "_[_]" && len(call.Args()) == 2 {
			return c.start(call.Args()[0])
		}
		return c.callLocation(e.ID(), call.FunctionName())
	}
	return c.location(e.ID())
}

// location returns the 1-based position of expression id.
func (c *compiler) location(id int64) (int, int) {
	return fromLocation(c.info.GetStartLocation(id))
}

// callLocation returns the position of the name of call id: the parser
// places calls at their opening parenthesis.
func (c *compiler) callLocation(id int64, name string) (int, int) {
	r, ok := c.info.GetOffsetRange(id)
	if !ok {
		return 0, 0
	}
	i := int(r.Start)
	if i < 0 || i >= len(c.src) || c.src[i] != '(' {
		return c.location(id)
	}
	for i > 0 && isSpace(c.src[i-1]) {
		i--
	}
	n := utf8.RuneCountInString(name)
	if i-n >= 0 && string(c.src[i-n:i]) == name {
		return fromLocation(c.info.GetLocationByOffset(int32(i - n)))
	}
	return c.location(id)
}

func (c *compiler) inScope(name string) bool { return c.scope[name] > 0 }

// markSkip records every id under e.
func (c *compiler) markSkip(e ast.Expr) {
	visit(e, func(x ast.Expr) { c.skip[x.ID()] = true })
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f'
}

func fromLocation(l common.Location) (int, int) {
	if l == nil || l.Line() <= 0 || l.Column() < 0 {
		return 0, 0
	}
	return l.Line(), l.Column() + 1
}

// issueProblems converts parse or check issues, leaving out errors at the
// ids in skip.
func issueProblems(iss *cel.Issues, skip map[int64]bool) []Problem {
	var out []Problem
	for _, err := range iss.Errors() {
		if err.ExprID != 0 && skip[err.ExprID] {
			continue
		}
		line, col := fromLocation(err.Location)
		out = append(out, Problem{Line: line, Column: col, Message: err.Message})
	}
	return out
}

// invalidUTF8 reports the position of the first invalid byte.
func invalidUTF8(src string) Problem {
	line, col := 1, 1
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRuneInString(src[i:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return Problem{Line: line, Column: col, Message: "expression is not valid UTF-8"}
}

// sortProblems orders problems by position and drops duplicates.
func sortProblems(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Column < ps[j].Column
	})
	return slices.Compact(ps)
}

// jsonType is the JSON type ("string", "integer", "number", "boolean",
// "array", "object", "null") of a value of CEL type t, as the runtime
// converts it to JSON; "" where the type does not say (dyn, or a type with
// no one JSON form).
func jsonType(t *types.Type) string {
	if t == nil {
		return ""
	}
	switch t.Kind() {
	case types.StringKind:
		return "string"
	case types.IntKind, types.UintKind:
		return "integer"
	case types.DoubleKind:
		return "number"
	case types.BoolKind:
		return "boolean"
	case types.ListKind:
		return "array"
	case types.MapKind, types.StructKind:
		return "object"
	case types.NullTypeKind:
		return "null"
	}
	return ""
}

// typeName renders a CEL type for messages, without the prefix that keeps
// object type names apart from identifiers.
func typeName(t *types.Type) string {
	if t == nil {
		return "unknown"
	}
	switch t.Kind() {
	case types.StructKind:
		return "object " + strings.TrimPrefix(t.TypeName(), typeNamePrefix)
	case types.DynKind:
		return "dyn"
	}
	return t.String()
}

// visit calls f on e and every expression below it, in pre-order.
func visit(e ast.Expr, f func(ast.Expr)) {
	if e == nil {
		return
	}
	f(e)
	for _, ch := range children(e) {
		visit(ch, f)
	}
}

// children returns the direct subexpressions of e.
func children(e ast.Expr) []ast.Expr {
	switch e.Kind() {
	case ast.SelectKind:
		return []ast.Expr{e.AsSelect().Operand()}
	case ast.CallKind:
		call := e.AsCall()
		if call.IsMemberFunction() {
			return append([]ast.Expr{call.Target()}, call.Args()...)
		}
		return call.Args()
	case ast.ListKind:
		return e.AsList().Elements()
	case ast.MapKind:
		var out []ast.Expr
		for _, ent := range e.AsMap().Entries() {
			me := ent.AsMapEntry()
			out = append(out, me.Key(), me.Value())
		}
		return out
	case ast.StructKind:
		var out []ast.Expr
		for _, f := range e.AsStruct().Fields() {
			out = append(out, f.AsStructField().Value())
		}
		return out
	case ast.ComprehensionKind:
		comp := e.AsComprehension()
		return []ast.Expr{comp.IterRange(), comp.AccuInit(), comp.LoopCondition(), comp.LoopStep(), comp.Result()}
	}
	return nil
}
