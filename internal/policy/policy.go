// Package policy is the guard language: a restricted, schema-typed profile
// of CEL in which programs write transition guards and tool-argument
// expressions.
//
// An expression sees three variables. input is the run input, typed by the
// program's input schema. data holds one optional field per state that
// produces output: data.<state> is the accepted output of that state, typed
// by its output schema. output is the submission being judged, typed by the
// current state's output schema; decision states have none.
//
// Compile type-checks an expression against those schemas and rejects, with
// a position, everything outside the profile: functions that read a clock,
// escape type checking or allocate in proportion to the input, division,
// expressions whose estimated worst-case cost exceeds the budget, and guards
// that read personal data. It reports every data.<state> reference and
// whether a has() test guards it, so that a program validator can reject
// references to states that may not have run.
//
// Evaluation can still fail (an absent optional field, an index out of
// range, integer overflow, a malformed string converted to a number); an
// erroring guard does not hold.
package policy

import (
	"fmt"
	"runtime/debug"
	"sort"
	"sync"

	"cel.dev/cel-go/cel"

	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// Limits on an expression's text. The byte limit is checked before parsing;
// the parser enforces the same number in code points and bounds nesting, so
// neither the parser nor the walks in this package recurse without bound.
const (
	MaxExpressionBytes = 4096
	maxRecursionDepth  = 64
	maxExpressionNodes = 10_000
)

// Defaults for Options fields left zero.
const (
	DefaultMaxDocumentBytes int64  = 1 << 20
	DefaultCostLimit        uint64 = 1_000_000
)

// celGoVersion is the cel-go release this package is written against,
// reported when the binary carries no build information.
const celGoVersion = "v0.33.2"

// Root variable names.
const (
	varInput  = "input"
	varData   = "data"
	varOutput = "output"
)

// Decls declares what an expression can see.
//
// PII lists personal-data paths: a variable name followed by property
// names, e.g. {"input", "customer", "name"}. Array elements share their
// array's path, so {"input", "customers", "name"} covers the name of every
// element of input.customers.
type Decls struct {
	Input  *schema.Node            // run input
	Data   map[string]*schema.Node // state name → that state's output schema
	Output *schema.Node            // nil in decision states
	PII    [][]string
}

// Options bound documents and evaluation. Zero fields take the defaults.
type Options struct {
	// MaxDocumentBytes is the largest serialized input or output document.
	// Cost estimation derives size bounds from it where a schema declares
	// none.
	MaxDocumentBytes int64
	// CostLimit is the budget for the estimated worst-case cost, enforced
	// again at runtime on the actual cost.
	CostLimit uint64
}

// Kind is what an expression is for.
type Kind int

const (
	// GuardKind expressions decide a transition: they must be bool and may
	// not read personal data.
	GuardKind Kind = iota
	// ValueKind expressions compute tool arguments: any type, personal data
	// allowed.
	ValueKind
)

// String names k for messages.
func (k Kind) String() string {
	if k == GuardKind {
		return "guard"
	}
	return "expression"
}

// Problem is one reason an expression does not compile. Line and Column are
// 1-based, Column counting Unicode code points; both are 0 when unknown.
type Problem struct {
	Line, Column int
	Message      string
}

// String formats p as line:column: message.
func (p Problem) String() string {
	if p.Line == 0 {
		return p.Message
	}
	return fmt.Sprintf("%d:%d: %s", p.Line, p.Column, p.Message)
}

// Env compiles expressions against one set of declarations. It is safe for
// concurrent use.
type Env struct {
	cel       *cel.Env
	opts      Options
	hasOutput bool
	pii       [][]string
	estimator *sizeEstimator
}

// NewEnv declares input, data and (unless d.Output is nil) output with CEL
// types derived from the schemas.
func NewEnv(d Decls, opts Options) (*Env, error) {
	if opts.MaxDocumentBytes < 0 {
		return nil, fmt.Errorf("policy: MaxDocumentBytes %d is negative", opts.MaxDocumentBytes)
	}
	if opts.MaxDocumentBytes == 0 {
		opts.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	if opts.CostLimit == 0 {
		opts.CostLimit = DefaultCostLimit
	}
	states := make([]string, 0, len(d.Data))
	for s := range d.Data {
		if !isSelectable(s) {
			return nil, fmt.Errorf("policy: state name %q cannot be selected as data.%s: it is not a CEL identifier", s, s)
		}
		states = append(states, s)
	}
	sort.Strings(states)
	pii, err := normalizePII(d.PII)
	if err != nil {
		return nil, err
	}

	base, err := cel.NewEnv(
		// has, all, exists and exists_one are the only macros: map, filter
		// and the like build values whose size depends on the input.
		cel.ClearMacros(),
		cel.Macros(cel.HasMacro, cel.AllMacro, cel.ExistsMacro, cel.ExistsOneMacro),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxExpressionBytes),
		cel.ParserRecursionLimit(maxRecursionDepth),
		cel.ExpressionNodeLimit(maxExpressionNodes),
	)
	if err != nil {
		return nil, fmt.Errorf("policy: base CEL environment: %w", err)
	}
	p := newSchemaProvider(base.CELTypeProvider())
	vars := []cel.EnvOption{
		cel.CustomTypeProvider(p),
		cel.Variable(varInput, p.declare(d.Input, varInput)),
		cel.Variable(varData, p.declareData(d.Data, states)),
	}
	if d.Output != nil {
		vars = append(vars, cel.Variable(varOutput, p.declare(d.Output, varOutput)))
	}
	env, err := base.Extend(vars...)
	if err != nil {
		return nil, fmt.Errorf("policy: declare variables: %w", err)
	}
	return &Env{
		cel:       env,
		opts:      opts,
		hasOutput: d.Output != nil,
		pii:       pii,
		estimator: newSizeEstimator(d, opts.MaxDocumentBytes),
	}, nil
}

// Options returns the effective options, defaults filled in.
func (e *Env) Options() Options { return e.opts }

// normalizePII validates and copies the personal-data paths.
func normalizePII(paths [][]string) ([][]string, error) {
	out := make([][]string, 0, len(paths))
	for _, p := range paths {
		if len(p) == 0 {
			return nil, fmt.Errorf("policy: empty personal-data path")
		}
		switch p[0] {
		case varInput, varData, varOutput:
		default:
			return nil, fmt.Errorf("policy: personal-data path %v does not start with input, data or output", p)
		}
		out = append(out, append([]string(nil), p...))
	}
	return out, nil
}

// Version returns the version of the cel-go module linked into the binary.
func Version() string { return celVersion() }

// celVersion reads the build info once: every run start records it.
var celVersion = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path != "cel.dev/cel-go" {
				continue
			}
			if dep.Replace != nil && dep.Replace.Version != "" {
				return dep.Replace.Version
			}
			if dep.Version != "" && dep.Version != "(devel)" {
				return dep.Version
			}
		}
	}
	return celGoVersion
})
