package program

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/policy"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// MaxFileBytes bounds a program file.
const MaxFileBytes = 4 << 20

// LoadFile reads and loads the program at path.
func LoadFile(path string) (*Program, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read program: %w", err)
	}
	return Load(path, data)
}

// Load parses, validates and compiles a program. name labels the problems
// (a file path, or the name of an embedded example). The error is an
// *Error listing every problem found.
func Load(name string, data []byte) (*Program, error) {
	l := &loader{file: name}
	p := l.load(data)
	if len(l.problems) > 0 {
		for i := range l.problems {
			l.problems[i].File = name
		}
		return nil, &Error{File: name, Problems: SortProblems(l.problems)}
	}
	return p, nil
}

type loader struct {
	file     string
	problems []Problem
	where    map[string]pos
}

// problem records msg at the JSON Pointer ptr of the program document.
func (l *loader) problem(ptr string, format string, args ...any) {
	l.problems = append(l.problems, l.at(ptr, fmt.Sprintf(format, args...)))
}

// at builds a problem located at ptr: file position (of ptr or its nearest
// known ancestor), state and field.
func (l *loader) at(ptr, msg string) Problem {
	pr := Problem{Message: msg}
	for p := ptr; ; {
		if w, ok := l.where[p]; ok {
			pr.Line, pr.Column = w.Line, w.Column
			break
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i := range parts {
		parts[i] = unescapePointer(parts[i])
	}
	if len(parts) >= 2 && parts[0] == "states" {
		pr.State = parts[1]
		parts = parts[2:]
	} else if ptr == "" {
		parts = nil
	}
	var f strings.Builder
	for _, s := range parts {
		if _, err := strconv.Atoi(s); err == nil && f.Len() > 0 {
			fmt.Fprintf(&f, "[%s]", s)
			continue
		}
		if f.Len() > 0 {
			f.WriteByte('.')
		}
		f.WriteString(s)
	}
	pr.Field = f.String()
	return pr
}

func (l *loader) load(data []byte) *Program {
	if len(data) > MaxFileBytes {
		l.problem("", "file is %d bytes; the limit is %d", len(data), MaxFileBytes)
		return nil
	}
	ps, problems := parse(data)
	l.problems = append(l.problems, problems...)
	if ps == nil {
		return nil
	}
	l.where = ps.where
	if _, ok := ps.tree.(map[string]any); !ok {
		l.problem("", "a program must be a mapping (YAML) or an object (JSON)")
		return nil
	}
	for _, v := range formatSchema().Validate(ps.tree) {
		l.problem(v.Path, "%s", v.Message)
	}
	raw, err := json.Marshal(ps.tree)
	if err != nil {
		l.problem("", "cannot encode program: %v", err)
		return nil
	}
	var doc Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		// The format schema has already named the mistyped fields.
		if len(l.problems) == 0 {
			l.problem("", "%v", err)
		}
		return nil
	}
	if len(l.problems) > 0 {
		return nil
	}
	return l.compile(doc, ps.order)
}

func (l *loader) compile(doc Document, order []string) *Program {
	p := &Program{
		Name:        doc.Name,
		Version:     doc.Version,
		Description: doc.Description,
		States:      make(map[string]*State, len(doc.States)),
		Order:       order,
		source:      l.file,
		execAt:      map[string]pos{},
		argsAt:      map[string]pos{},
	}
	p.Limits = resolveLimits(doc.Limits)

	// Schemas first: everything else is typed by them.
	inputDoc := doc.InputSchema
	if inputDoc == nil {
		inputDoc = SchemaDoc{"type": "object"}
	}
	p.Input = l.compileSchema("/input_schema", inputDoc)

	norm := doc
	norm.Limits = p.Limits.document()
	norm.InputSchema = inputDoc
	norm.States = make(map[string]StateSpec, len(doc.States))

	for _, name := range order {
		spec := doc.States[name]
		st := &State{
			Name:         name,
			Kind:         Kind(spec.Kind),
			Description:  spec.Description,
			Instructions: spec.Instructions,
			Tool:         spec.Tool,
			Role:         spec.Role,
			Outcome:      spec.Outcome,
			MaxVisits:    spec.MaxVisits,
			Execution:    spec.Execution,
		}
		if w, ok := l.where[statePtr(name, "execution")]; ok {
			p.execAt[name] = w
		}
		if w, ok := l.where[statePtr(name, "arguments")]; ok {
			p.argsAt[name] = w
		} else if w, ok := l.where[statePtr(name, "tool")]; ok {
			p.argsAt[name] = w
		}
		p.States[name] = st
		l.checkKindFields(name, spec)
		if spec.OutputSchema != nil && st.Kind.TakesSubmission() {
			closed, _ := schema.CloseObjects(map[string]any(spec.OutputSchema)).(map[string]any)
			spec.OutputSchema = closed
			st.Output = l.compileSchema(statePtr(name, "output_schema"), closed)
			if st.Output != nil && st.Kind == KindApproval {
				l.checkDecisionForm(name, st.Output.Root)
			}
		}
		if st.Kind.TakesSubmission() {
			st.MaxAttempts = p.Limits.MaxAttempts
			if spec.MaxAttempts > 0 {
				st.MaxAttempts = spec.MaxAttempts
			}
			st.RejectNoMatch = spec.OnNoMatch == "reject"
		}
		if st.Kind == KindApproval {
			st.Elicitation = spec.Elicitation
			st.Approvals = 1
			switch {
			case spec.Approvals == 0 || spec.Approvals == 1:
				// The default, written or not: normalised away, so that both
				// spellings (and every program written before the field
				// existed) keep one definition hash.
				spec.Approvals = 0
			case spec.Approvals < 1 || spec.Approvals > MaxApprovals:
				l.problem(statePtr(name, "approvals"), "approvals %d is out of range: a decision needs 1 to %d distinct approvers", spec.Approvals, MaxApprovals)
			default:
				st.Approvals = spec.Approvals
			}
		}
		if spec.Timeout != "" {
			d, err := time.ParseDuration(spec.Timeout)
			if err != nil || d <= 0 {
				l.problem(statePtr(name, "timeout"), "timeout %q is not a positive duration such as 30m or 72h", spec.Timeout)
			}
			st.Timeout = d
		}
		if st.Kind == KindTerminal && (spec.Outcome == OutcomeFailed || spec.Outcome == OutcomeCancelled) {
			l.problem(statePtr(name, "outcome"), "outcome %s is reserved for the runtime", spec.Outcome)
		}
		norm.States[name] = spec
	}
	p.normalized = norm
	if _, ok := p.States[doc.Initial]; !ok {
		l.problem("/initial", "initial state %q is not defined", doc.Initial)
	} else {
		p.Initial = p.States[doc.Initial]
	}

	// Wire transitions before any graph analysis.
	for _, name := range order {
		spec, st := doc.States[name], p.States[name]
		for i, t := range spec.Transitions {
			ptr := statePtr(name, "transitions/"+strconv.Itoa(i))
			target, ok := p.States[t.To]
			if !ok {
				l.problem(ptr+"/to", "target state %q is not defined", t.To)
			}
			st.Transitions = append(st.Transitions, &Transition{Index: i, To: target, When: t.When, Rollback: t.Rollback, Description: t.Description})
			if t.When == "" && i != len(spec.Transitions)-1 {
				l.problem(ptr, "the default transition (no when) must be the last one")
			}
		}
		if spec.OnTimeout != "" {
			if target, ok := p.States[spec.OnTimeout]; ok {
				st.OnTimeout = target
			} else {
				l.problem(statePtr(name, "on_timeout"), "target state %q is not defined", spec.OnTimeout)
			}
		}
		if spec.OnError != "" {
			if target, ok := p.States[spec.OnError]; ok {
				st.OnError = target
			} else {
				l.problem(statePtr(name, "on_error"), "target state %q is not defined", spec.OnError)
			}
		}
		if st.Kind != KindTerminal && len(st.Transitions) > 0 {
			hasDefault := st.Transitions[len(st.Transitions)-1].When == ""
			switch {
			case hasDefault && st.RejectNoMatch:
				l.problem(statePtr(name, "on_no_match"), "on_no_match: reject has no effect: the state has a default transition")
			case !hasDefault && !st.RejectNoMatch && st.Kind == KindDecision:
				l.problem(statePtr(name, "transitions"), "a decision state needs a default transition (no when) last")
			case !hasDefault && !st.RejectNoMatch:
				l.problem(statePtr(name, "transitions"), "no default transition: add one (no when) last, or declare on_no_match: reject")
			}
		}
	}
	p.Subjects, p.PII = l.subjects(doc, p)
	// A missing target or initial state is already a problem; the graph
	// checks run on what is there, so that one load reports everything.
	var g *graph
	if p.Initial != nil {
		g = newGraph(p)
		l.checkGraph(p, g)
	}
	l.compileExpressions(doc, p, g)
	l.checkPaths(doc, p)
	if len(l.problems) > 0 {
		return nil
	}
	sum, err := definitionHash(norm)
	if err != nil {
		l.problem("", "cannot hash program: %v", err)
		return nil
	}
	p.Hash = sum
	return p
}

func statePtr(name, field string) string {
	return "/states/" + escapePointer(name) + "/" + field
}

// resolveLimits applies the defaults to the fields left out. The format
// schema has already checked the bounds of the fields written.
func resolveLimits(in *Limits) RunLimits {
	l := RunLimits{MaxSteps: DefaultMaxSteps, MaxAttempts: DefaultMaxAttempts, MaxRollbacks: DefaultMaxRollbacks, MaxDocumentBytes: DefaultMaxDocumentBytes,
		MaxUncountedRejections: DefaultMaxUncountedRejections}
	if in == nil {
		return l
	}
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&l.MaxSteps, in.MaxSteps)
	set(&l.MaxAttempts, in.MaxAttempts)
	set(&l.MaxRollbacks, in.MaxRollbacks)
	set(&l.MaxDocumentBytes, in.MaxDocumentBytes)
	set(&l.MaxUncountedRejections, in.MaxUncountedRejections)
	return l
}

func (l *loader) compileSchema(ptr string, doc map[string]any) *schema.Schema {
	if unknown := schema.UnknownKeywords(doc); len(unknown) > 0 {
		for _, pr := range unknown {
			l.problem(ptr+pr.Pointer, "invalid JSON Schema: %s", pr.Message)
		}
		return nil
	}
	s, err := schema.Compile(doc)
	if err != nil {
		if ce, ok := err.(*schema.CompileError); ok {
			for _, pr := range ce.Problems {
				l.problem(ptr+pr.Pointer, "invalid JSON Schema: %s", pr.Message)
			}
			return nil
		}
		l.problem(ptr, "invalid JSON Schema: %v", err)
		return nil
	}
	return s
}

// kindFields lists, for each kind, the optional fields it may carry
// (kind, description and the required fields are always allowed).
var kindFields = map[Kind][]string{
	KindLLM:      {"instructions", "view", "output_schema", "transitions", "on_no_match", "max_attempts", "max_visits", "timeout", "on_timeout"},
	KindTool:     {"instructions", "output_schema", "tool", "arguments", "transitions", "on_no_match", "max_attempts", "max_visits", "timeout", "on_timeout", "execution", "on_error"},
	KindDecision: {"transitions", "max_visits"},
	KindApproval: {"instructions", "view", "output_schema", "role", "approvals", "elicitation", "transitions", "on_no_match", "max_attempts", "max_visits", "timeout", "on_timeout"},
	KindTerminal: {"outcome"},
}

func (l *loader) checkKindFields(name string, s StateSpec) {
	set := map[string]bool{
		"instructions":  s.Instructions != "",
		"view":          len(s.View) > 0,
		"output_schema": s.OutputSchema != nil,
		"tool":          s.Tool != "",
		"arguments":     len(s.Arguments) > 0,
		"role":          s.Role != "",
		"approvals":     s.Approvals != 0,
		"elicitation":   s.Elicitation,
		"outcome":       s.Outcome != "",
		"transitions":   len(s.Transitions) > 0,
		"on_no_match":   s.OnNoMatch != "",
		"max_attempts":  s.MaxAttempts != 0,
		"max_visits":    s.MaxVisits != 0,
		"timeout":       s.Timeout != "",
		"on_timeout":    s.OnTimeout != "",
		"execution":     s.Execution != "",
		"on_error":      s.OnError != "",
	}
	allowed := kindFields[Kind(s.Kind)]
	for _, f := range sortedKeys(set) {
		if set[f] && !slices.Contains(allowed, f) {
			l.problem(statePtr(name, f), "field %s does not apply to a %s state", f, s.Kind)
		}
	}
	if s.OnTimeout != "" && s.Timeout == "" {
		l.problem(statePtr(name, "on_timeout"), "on_timeout needs a timeout")
	}
}

// checkDecisionForm enforces what an MCP elicitation form can carry: a flat
// object of strings, numbers, integers and booleans (optionally enums).
func (l *loader) checkDecisionForm(name string, root *schema.Node) {
	ptr := statePtr(name, "output_schema")
	if root.Kind != schema.Object || len(root.Properties) == 0 {
		l.problem(ptr, "an approval's output_schema must be an object with declared properties (a decision form)")
		return
	}
	if root.Additional != nil {
		l.problem(ptr, "an approval's decision form cannot admit undeclared properties")
	}
	for _, k := range root.Order {
		n := root.Properties[k]
		switch n.Kind {
		case schema.String, schema.Integer, schema.Number, schema.Boolean:
			if n.Nullable {
				l.problem(ptr+"/properties/"+escapePointer(k), "decision form field %s cannot be nullable", k)
			}
		default:
			l.problem(ptr+"/properties/"+escapePointer(k), "decision form field %s must be a string, number, integer or boolean (got %s)", k, n.Kind)
		}
	}
}

// subjects compiles the data subjects and collects every personal-data path.
func (l *loader) subjects(doc Document, p *Program) ([]*Subject, []Path) {
	var subs []*Subject
	var pii []Path
	for _, name := range sortedKeys(doc.Subjects) {
		spec := doc.Subjects[name]
		s := &Subject{Name: name, ID: ParsePath(spec.ID)}
		pii = append(pii, s.ID)
		for i, raw := range spec.PII {
			path := ParsePath(raw)
			if !validPath(path) {
				l.problem("/subjects/"+escapePointer(name)+"/pii/"+strconv.Itoa(i), "path %q must be input[.<field>...] or data.<state>[.<field>...]", raw)
				continue
			}
			s.PII = append(s.PII, path)
			pii = append(pii, path)
		}
		subs = append(subs, s)
	}
	return subs, pii
}

// validPath accepts input[.<field>...] and data.<state>[.<field>...].
func validPath(p Path) bool {
	for _, s := range p {
		if !isIdent(s) {
			return false
		}
	}
	return (len(p) >= 1 && p[0] == "input") || (len(p) >= 2 && p[0] == "data")
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		return false
	}
	return true
}

// lookup resolves a data path against the program's schemas. It reports a
// message when the schemas say the path cannot exist. With elements, the
// path may step into array elements (personal-data paths may; view paths,
// which copy values out, may not).
func lookup(p *Program, path Path, elements bool) (*schema.Node, string) {
	if !validPath(path) {
		return nil, "must be input[.<field>...] or data.<state>[.<field>...]"
	}
	var root *schema.Node
	rest, owner := path[1:], "the input_schema"
	if path[0] == "input" {
		if p.Input == nil {
			return nil, ""
		}
		root = p.Input.Root
	} else {
		st, ok := p.States[path[1]]
		switch {
		case !ok:
			return nil, fmt.Sprintf("there is no state %q", path[1])
		case st.Output == nil && st.Kind.TakesSubmission():
			return nil, "" // its schema is invalid, and reported
		case st.Output == nil:
			return nil, fmt.Sprintf("state %s (%s) produces no data", st.Name, st.Kind)
		}
		root, rest, owner = st.Output.Root, path[2:], "the output_schema of "+st.Name
	}
	find := root.Lookup
	if elements {
		find = root.LookupElements
	}
	n, ok := find(rest)
	if !ok {
		return nil, owner + " says it cannot exist"
	}
	return n, ""
}

// checkPaths checks that every view path and personal-data path can exist.
func (l *loader) checkPaths(doc Document, p *Program) {
	for _, name := range p.Order {
		spec, st := doc.States[name], p.States[name]
		for i, raw := range spec.View {
			path := ParsePath(raw)
			if _, msg := lookup(p, path, false); msg != "" {
				l.problem(statePtr(name, "view/"+strconv.Itoa(i)), "view path %s: %s", raw, msg)
				continue
			}
			st.View = append(st.View, path)
		}
	}
	for _, name := range sortedKeys(doc.Subjects) {
		spec := doc.Subjects[name]
		if _, msg := lookup(p, ParsePath(spec.ID), false); msg != "" {
			l.problem("/subjects/"+escapePointer(name)+"/id", "subject id path %s: %s", spec.ID, msg)
		}
		for i, raw := range spec.PII {
			if path := ParsePath(raw); validPath(path) {
				if _, msg := lookup(p, path, true); msg != "" {
					l.problem("/subjects/"+escapePointer(name)+"/pii/"+strconv.Itoa(i), "pii path %s: %s", raw, msg)
				}
			}
		}
	}
}

// compileExpressions compiles every guard and tool argument against the
// schemas, then checks that each data.X it reads is set on every path to
// the state, or is tested with has().
func (l *loader) compileExpressions(doc Document, p *Program, g *graph) {
	if p.Input == nil {
		return
	}
	data := map[string]*schema.Node{}
	for name, st := range p.States {
		if st.Output != nil {
			data[name] = st.Output.Root
		}
	}
	pii := make([][]string, len(p.PII))
	for i, q := range p.PII {
		pii[i] = q
	}
	opts := policy.Options{MaxDocumentBytes: int64(p.Limits.MaxDocumentBytes)}
	for _, name := range p.Order {
		spec, st := doc.States[name], p.States[name]
		if st.Kind == KindTerminal || (st.Kind.TakesSubmission() && st.Output == nil) {
			continue
		}
		d := policy.Decls{Input: p.Input.Root, Data: data, PII: withOutputPII(pii, name)}
		if st.Output != nil {
			d.Output = st.Output.Root
		}
		env, err := policy.NewEnv(d, opts)
		if err != nil {
			l.problem(statePtr(name, ""), "cannot build the guard environment: %v", err)
			continue
		}
		for i, t := range st.Transitions {
			if t.When == "" {
				continue
			}
			ptr := statePtr(name, "transitions/"+strconv.Itoa(i)+"/when")
			x, probs := env.Compile(t.When, policy.GuardKind)
			if l.exprProblems(ptr, probs) {
				continue
			}
			t.Guard = x
			l.checkDataRefs(ptr, p, g, st, x)
		}
		for _, arg := range sortedKeys(spec.Arguments) {
			ptr := statePtr(name, "arguments/"+escapePointer(arg))
			x, probs := env.Compile(spec.Arguments[arg], policy.ValueKind)
			if l.exprProblems(ptr, probs) {
				continue
			}
			st.Args = append(st.Args, Arg{Name: arg, Expr: x})
			l.checkDataRefs(ptr, p, g, st, x)
		}
	}
}

// withOutputPII adds, for the state that produces data.<state>, the same
// personal-data paths as seen through output: a guard must not read
// data.x.name later nor output.name in x itself.
func withOutputPII(pii [][]string, state string) [][]string {
	out := pii
	for _, q := range pii {
		if len(q) >= 2 && q[0] == "data" && q[1] == state {
			if len(out) == len(pii) {
				out = append([][]string(nil), pii...)
			}
			out = append(out, append([]string{"output"}, q[2:]...))
		}
	}
	return out
}

func (l *loader) exprProblems(ptr string, probs []policy.Problem) bool {
	for _, pr := range probs {
		x := l.at(ptr, pr.Message)
		x.ExprLine, x.ExprColumn = pr.Line, pr.Column
		l.problems = append(l.problems, x)
	}
	return len(probs) > 0
}

func (l *loader) checkDataRefs(ptr string, p *Program, g *graph, st *State, x *policy.Expr) {
	for _, ref := range x.DataRefs {
		if ref.Guarded {
			continue
		}
		src, ok := p.States[ref.State]
		if !ok {
			continue // the compiler has reported it
		}
		if src == st || (g != nil && !g.answered(src, st)) {
			pr := l.at(ptr, fmt.Sprintf("data.%s is not set on every path to %s; test it with has(data.%s) first", ref.State, st.Name, ref.State))
			pr.ExprLine, pr.ExprColumn = ref.Line, ref.Column
			l.problems = append(l.problems, pr)
		}
	}
}

// definitionHash is "sha256:" + hex of SHA-256 over the RFC 8785 form of the
// normalised program.
func definitionHash(norm Document) (string, error) {
	c, err := jsonvalue.Canonical(norm)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
