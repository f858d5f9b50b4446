// Package program loads, validates and compiles governed programs: declared
// finite-state machines whose transitions are guarded by CEL expressions
// type-checked against the program's JSON Schemas.
//
// A program is rejected at load with every problem found, each naming the
// file, the state, the field and, for an expression, the position inside it.
// A loaded Program is immutable and safe for concurrent use.
package program

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/policy"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// Kind is what computes a state.
type Kind string

// State kinds.
const (
	KindLLM      Kind = "llm"
	KindTool     Kind = "tool"
	KindDecision Kind = "decision"
	KindApproval Kind = "approval"
	KindTerminal Kind = "terminal"
)

// TakesSubmission reports whether the state waits for an external answer.
func (k Kind) TakesSubmission() bool { return k == KindLLM || k == KindTool || k == KindApproval }

// Defaults for Limits.
const (
	DefaultMaxSteps         = 100
	DefaultMaxAttempts      = 3
	DefaultMaxRollbacks     = 3
	DefaultMaxDocumentBytes = 1 << 20
	// DefaultMaxUncountedRejections bounds the rejections that use no
	// attempt recorded for one task: enough for every loser of a wide
	// race, too few for an agent to grow the trace by replaying them.
	DefaultMaxUncountedRejections = 32
)

// MaxApprovals bounds an approval state's approvals: how many distinct
// approvers a four-eyes decision may need.
const MaxApprovals = 9

// Reserved outcomes, set by the runtime and never declared by a terminal.
const (
	OutcomeFailed    = "FAILED"
	OutcomeCancelled = "CANCELLED"
)

// Program is a loaded, validated and compiled program.
type Program struct {
	Name        string
	Version     string
	Description string
	Hash        string    // definition hash: "sha256:" + hex over the canonical normalised program
	Limits      RunLimits // with defaults applied
	Input       *schema.Schema
	Initial     *State
	States      map[string]*State
	Order       []string // state names in declaration order
	Subjects    []*Subject
	PII         []Path // every personal-data path: subject ids and pii lists

	source     string
	normalized Document
	// execAt is where each state's execution field is written, so that a
	// registry check after loading (CheckExecution) can point at it.
	execAt map[string]pos
	// argsAt is where each tool state's arguments (else its tool) are
	// written, for problems with the arguments a registry's tool takes.
	argsAt map[string]pos
}

// Source is the file (or embedded name) the program was loaded from.
func (p *Program) Source() string { return p.source }

// Normalized is the program with defaults applied and output schemas
// closed: the document the definition hash is computed over.
func (p *Program) Normalized() Document { return p.normalized }

// IsPII reports whether path is, or lies below, a personal-data path.
func (p *Program) IsPII(path Path) bool {
	for _, q := range p.PII {
		if q.Covers(path) {
			return true
		}
	}
	return false
}

// RunLimits are a program's limits with the defaults applied: what the
// runtime enforces.
type RunLimits struct {
	MaxSteps         int
	MaxAttempts      int
	MaxRollbacks     int // 0: no rollback at all
	MaxDocumentBytes int
	// MaxUncountedRejections bounds the rejections that use no attempt
	// recorded for one task (seq); past it the core throttles them.
	MaxUncountedRejections int
}

// document is l as the normalised program writes it: every field present,
// so that an explicit value and a default hash alike only when they are
// equal.
//
// max_uncounted_rejections came later: it is written only when it differs
// from its default, so that no program loaded before it changes its hash.
func (l RunLimits) document() *Limits {
	d := &Limits{MaxSteps: &l.MaxSteps, MaxAttempts: &l.MaxAttempts, MaxRollbacks: &l.MaxRollbacks, MaxDocumentBytes: &l.MaxDocumentBytes}
	if l.MaxUncountedRejections != DefaultMaxUncountedRejections {
		d.MaxUncountedRejections = &l.MaxUncountedRejections
	}
	return d
}

// Subject is a data subject whose personal data a run holds.
type Subject struct {
	Name string
	ID   Path
	PII  []Path
}

// State is a compiled state.
type State struct {
	Name          string
	Kind          Kind
	Description   string
	Instructions  string
	View          []Path
	Output        *schema.Schema // nil for decision and terminal states
	Tool          string
	Args          []Arg // sorted by name
	Role          string
	Approvals     int  // approval states: distinct approvers the decision needs (1..9); 0 elsewhere
	Elicitation   bool // approval states: the human at the MCP client may decide (await_approval)
	Outcome       string
	Transitions   []*Transition
	RejectNoMatch bool
	MaxAttempts   int // resolved: the state's own or the program's
	MaxVisits     int // 0: unbounded
	Timeout       time.Duration
	OnTimeout     *State
	// Execution is the tool state's declared execution: ExecutionRuntime,
	// ExecutionCaller, or "" (the runtime when the server's tool registry
	// has the tool). Which applies to a run is fixed when it starts
	// (runtime.Started.Executors).
	Execution string
	// OnError is where a runtime-executed tool's run goes when the call
	// failed and its attempts are exhausted; nil: the run fails (tool_failed).
	OnError *State
}

// Tool execution as a tool state declares it.
const (
	ExecutionRuntime = "runtime"
	ExecutionCaller  = "caller"
)

// Transition is a compiled transition.
type Transition struct {
	Index       int
	To          *State
	Guard       *policy.Expr // nil for the default transition
	When        string
	Rollback    bool
	Description string
}

// Arg is a compiled tool argument.
type Arg struct {
	Name string
	Expr *policy.Expr
}

// Path is a dotted data path such as input.customer.name, split.
type Path []string

// ParsePath splits a dotted path; it does not validate it.
func ParsePath(s string) Path { return strings.Split(s, ".") }

func (p Path) String() string { return strings.Join(p, ".") }

// Below reports whether p lies under prefix (ignoring an empty root; "*"
// matches any segment), and returns the rest of p.
func (p Path) Below(prefix []string) ([]string, bool) {
	if len(prefix) > 0 && prefix[0] == "" {
		prefix = prefix[1:]
	}
	if len(p) < len(prefix) {
		return nil, false
	}
	for i := range prefix {
		if p[i] != prefix[i] && prefix[i] != "*" {
			return nil, false
		}
	}
	return p[len(prefix):], true
}

// Covers reports whether q equals p or lies below it.
func (p Path) Covers(q Path) bool {
	if len(q) < len(p) {
		return false
	}
	for i := range p {
		if p[i] != q[i] {
			return false
		}
	}
	return true
}

// Problem is one reason a program was rejected.
type Problem struct {
	File   string
	Line   int // position in the file; 0 when unknown
	Column int
	State  string // the state concerned, if any
	Field  string // the field inside the state (or the program), e.g. transitions[1].when
	// ExprLine and ExprColumn locate the problem inside an expression (1-based).
	ExprLine   int
	ExprColumn int
	Message    string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	b.WriteString(": ")
	if p.State != "" {
		fmt.Fprintf(&b, "state %s: ", p.State)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		if p.ExprLine > 0 {
			fmt.Fprintf(&b, " (expression %d:%d)", p.ExprLine, p.ExprColumn)
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error is returned when a program is invalid. It carries every problem,
// sorted and stable.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "invalid program: " + e.Problems[0].String()
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  " + p.String()
	}
	return fmt.Sprintf("invalid program %s: %d problems:\n%s", e.File, len(e.Problems), strings.Join(lines, "\n"))
}

// Code is the stable error code for an invalid program.
func (e *Error) Code() string { return "invalid_program" }

// SortProblems orders problems by file, position, state, field and
// message, and drops exact duplicates: the stable order every report uses.
func SortProblems(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		if a.State != b.State {
			return a.State < b.State
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		if a.ExprLine != b.ExprLine {
			return a.ExprLine < b.ExprLine
		}
		if a.ExprColumn != b.ExprColumn {
			return a.ExprColumn < b.ExprColumn
		}
		return a.Message < b.Message
	})
	// Drop exact duplicates: two checks may notice the same fault.
	return slices.Compact(ps)
}

// CheckExecution finds the tool states that require runtime execution
// (execution: runtime) of a tool the server's registry lacks: has reports
// whether the registry has a tool. Each problem is positioned at the
// state's execution field.
func CheckExecution(p *Program, has func(tool string) bool) []Problem {
	var out []Problem
	for _, name := range p.Order {
		st := p.States[name]
		if st.Kind != KindTool || st.Execution != ExecutionRuntime || has(st.Tool) {
			continue
		}
		pr := Problem{File: p.source, State: name, Field: "execution",
			Message: fmt.Sprintf("execution: runtime, but the server's tool registry has no tool %s", st.Tool)}
		if w, ok := p.execAt[name]; ok {
			pr.Line, pr.Column = w.Line, w.Column
		}
		out = append(out, pr)
	}
	return SortProblems(out)
}

// ArgumentShape is a tool state's arguments as their types are known at
// load: each argument's name and the JSON type its expression gives
// ("string", "integer", …), or nil where the type does not say.
func (st *State) ArgumentShape() map[string]any {
	shape := make(map[string]any, len(st.Args))
	for _, a := range st.Args {
		if a.Expr.JSONType != "" {
			shape[a.Name] = a.Expr.JSONType
		} else {
			shape[a.Name] = nil
		}
	}
	return shape
}

// CheckArguments is a positioned problem for every tool state that the
// runtime executes (executed: state → executor kind, as Executed gives)
// whose arguments the registry's tool would refuse, as check says (one
// message per problem; the mcp executor checks the downstream tool's input
// schema against ArgumentShape).
func CheckArguments(p *Program, executed map[string]string, check func(st *State) []string) []Problem {
	var out []Problem
	for _, name := range p.Order {
		st := p.States[name]
		if _, ok := executed[name]; !ok || st.Kind != KindTool {
			continue
		}
		for _, msg := range check(st) {
			pr := Problem{File: p.source, State: name, Field: "arguments", Message: "tool " + st.Tool + ": " + msg}
			if w, ok := p.argsAt[name]; ok {
				pr.Line, pr.Column = w.Line, w.Column
			}
			out = append(out, pr)
		}
	}
	return SortProblems(out)
}

// Executed is the map of tool states a run of p starts with the runtime
// executing (runtime.Start.Executors), each with its executor kind: every
// tool state whose tool the registry has (has gives its kind), unless the
// state says execution: caller.
func Executed(p *Program, has func(tool string) (kind string, ok bool)) map[string]string {
	out := map[string]string{}
	for _, name := range p.Order {
		st := p.States[name]
		if st.Kind != KindTool || st.Execution == ExecutionCaller {
			continue
		}
		if kind, ok := has(st.Tool); ok {
			out[name] = kind
		}
	}
	return out
}
