package policy

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"
)

// Expr is a compiled expression. It is safe for concurrent use.
type Expr struct {
	Source   string
	Kind     Kind
	Cost     uint64     // estimated worst-case cost
	DataRefs []DataRef  // every data.<state> reference, by position
	PII      [][]string // personal-data paths a value expression reads (never a guard's)
	// JSONType is the JSON type of the expression's value as the checker
	// typed it ("string", "integer", "number", "boolean", "array",
	// "object", "null"), or "" where its type does not say (dyn).
	JSONType string

	prg   cel.Program
	limit uint64
}

// Vars are the values of an evaluation, converted per schema: objects
// map[string]any, arrays []any, integers int64, numbers float64, strings,
// bools, nil. Data maps state names to their accepted outputs; a nil Data
// is empty.
type Vars struct {
	Input, Data, Output any
}

// Result describes an evaluation.
type Result struct {
	Cost uint64 // actual cost, in the units of Expr.Cost
}

// EvalBool evaluates a guard. An error (an absent field, a failed
// conversion, the cost limit) means the guard does not hold; the error
// says why and wraps the CEL error.
func (x *Expr) EvalBool(vars Vars) (bool, Result, error) {
	v, res, err := x.eval(vars)
	if err != nil {
		return false, res, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, res, fmt.Errorf("guard evaluated to %s, not bool", v.Type().TypeName())
	}
	return bool(b), res, nil
}

// Eval evaluates an expression and returns its value as JSON-compatible Go
// values: map[string]any, []any, int64, float64, string, bool or nil.
func (x *Expr) Eval(vars Vars) (any, error) {
	v, _, err := x.eval(vars)
	if err != nil {
		return nil, err
	}
	out, err := toJSON(v, 0)
	if err != nil {
		return nil, fmt.Errorf("policy: result: %w", err)
	}
	return out, nil
}

func (x *Expr) eval(vars Vars) (ref.Val, Result, error) {
	act := activationPool.Get().(*activation)
	act.vars = vars
	if act.vars.Data == nil {
		act.vars.Data = noData
	}
	v, det, err := x.prg.Eval(act)
	act.vars = Vars{}
	activationPool.Put(act)

	var res Result
	if det != nil {
		if c := det.ActualCost(); c != nil {
			res.Cost = *c
		}
	}
	if err != nil {
		var cancelled interpreter.EvalCancelledError
		if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
			return nil, res, fmt.Errorf("policy: runtime cost limit %d exceeded: %w", x.limit, err)
		}
		return nil, res, fmt.Errorf("policy: evaluate: %w", err)
	}
	return v, res, nil
}

// noData stands for an empty data object. It is never written.
var noData = map[string]any{}

// activation binds the three variables without building a map per call.
type activation struct{ vars Vars }

var activationPool = sync.Pool{New: func() any { return new(activation) }}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varInput:
		return a.vars.Input, true
	case varData:
		return a.vars.Data, true
	case varOutput:
		return a.vars.Output, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// maxValueDepth bounds the nesting of a converted result. Values built by
// an expression are shallow; deep ones come from the input, which the
// schema layer bounds already.
const maxValueDepth = 256

// toJSON converts a CEL value to JSON-compatible Go values.
func toJSON(v ref.Val, depth int) (any, error) {
	if depth > maxValueDepth {
		return nil, fmt.Errorf("value nested deeper than %d levels", maxValueDepth)
	}
	switch t := v.(type) {
	case *types.Err:
		return nil, t
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(t), nil
	case types.Int:
		return int64(t), nil
	case types.Double:
		f := float64(t)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%v is not a JSON number", f)
		}
		return f, nil
	case types.String:
		return string(t), nil
	case traits.Mapper:
		out := make(map[string]any, int(t.Size().(types.Int)))
		for it := t.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("map key %v is %s, not string", k, k.Type().TypeName())
			}
			ev, err := toJSON(t.Get(k), depth+1)
			if err != nil {
				return nil, err
			}
			out[string(ks)] = ev
		}
		return out, nil
	case traits.Lister:
		n := int(t.Size().(types.Int))
		out := make([]any, n)
		for i := range n {
			ev, err := toJSON(t.Get(types.Int(i)), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = ev
		}
		return out, nil
	}
	return nil, fmt.Errorf("value of type %s is not JSON", v.Type().TypeName())
}
