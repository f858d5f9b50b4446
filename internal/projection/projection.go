// Package projection builds the views that each target may see of a run.
//
// Every view is built from an allowlist, never by deleting keys from a full
// document: a field reaches a target only because a rule names it. The
// model's task holds only the current state's view paths, its own
// instructions and output schema, and the one counter it may see
// (attempts_left). Guards, other states, limits, metrics, hashes and
// governance data never reach it: that is evaluator blindness.
package projection

import (
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// Task is what the model (or the tool runner, or the approver) is asked to
// compute for one bounded step. It is a public contract: the MCP step tool
// returns it as is.
type Task struct {
	Seq          uint64         `json:"seq"`
	State        string         `json:"state"`
	Kind         string         `json:"kind"`
	Instructions string         `json:"instructions,omitempty"`
	Role         string         `json:"role,omitempty"`
	View         map[string]any `json:"view"`
	OutputSchema map[string]any `json:"output_schema"`
	AttemptsLeft int            `json:"attempts_left"`
	Tool         *ToolCall      `json:"tool,omitempty"`
	// ExecutedBy says who runs a tool state's tool: ExecutedByCaller on a
	// tool task handed to the caller, ExecutedByRuntime on the view of a
	// call the runtime makes (ForModelCall). Absent on other kinds, and on
	// tool tasks recorded before runtime execution existed (trace format 1),
	// which were all the caller's.
	ExecutedBy string `json:"executed_by,omitempty" jsonschema:"enum=caller,enum=runtime"`
}

// Who runs a tool state's tool (Task.ExecutedBy).
const (
	ExecutedByCaller  = "caller"
	ExecutedByRuntime = "runtime"
)

// ToolCall is the tool target's view: the tool to run and the declared
// arguments, nothing else.
type ToolCall struct {
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

// Redacted is the marker an auditor sees in place of personal data.
var Redacted = map[string]any{"$redacted": "personal_data"}

// ErasedKey is the member of the erased marker, {"$erased": "<subject
// id>"}, which stands in for personal data whose subject was erased: the
// runtime opens a sealed value whose key is destroyed as this marker
// (docs/trace-format.md §4.5).
const ErasedKey = "$erased"

// IsErased reports whether v is the erased marker: an object whose only
// member is ErasedKey, with a string value.
func IsErased(v any) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false
	}
	_, ok = m[ErasedKey].(string)
	return ok
}

// State is the part of a run the projections read.
type State struct {
	Input any            // the run input (decoded JSON)
	Data  map[string]any // accepted outputs by state
}

// ForModel builds the task for state st. args are the evaluated tool
// arguments (tool states only).
func ForModel(p *program.Program, st *program.State, seq uint64, attemptsLeft int, s State, args map[string]any) *Task {
	t := &Task{
		Seq:          seq,
		State:        st.Name,
		Kind:         string(st.Kind),
		Instructions: st.Instructions,
		View:         View(p, st.View, s),
		AttemptsLeft: attemptsLeft,
	}
	if st.Kind == program.KindApproval {
		t.Role = st.Role
	}
	if st.Output != nil {
		t.OutputSchema, _ = st.Output.Doc().(map[string]any)
	}
	if st.Kind == program.KindTool {
		t.Tool = ForTool(st, args)
		t.ExecutedBy = ExecutedByCaller
	}
	return t
}

// ForModelCall is what the model is shown of a run waiting on a tool call
// the runtime makes at st (task seq seq): which state and tool, and that
// the runtime runs it. Nothing it was not granted: no instructions and no
// view (the state's
// view list is for those who answer it), no arguments, no result, no
// output schema to answer with, and no attempts to spend.
func ForModelCall(st *program.State, seq uint64) *Task {
	return &Task{
		Seq:        seq,
		State:      st.Name,
		Kind:       string(st.Kind),
		View:       map[string]any{},
		ExecutedBy: ExecutedByRuntime,
	}
}

// ForTool builds the tool target's view: only the declared arguments.
func ForTool(st *program.State, args map[string]any) *ToolCall {
	c := &ToolCall{Name: st.Tool, Arguments: make(map[string]any, len(st.Args))}
	for _, a := range st.Args {
		if v, ok := args[a.Name]; ok {
			c.Arguments[a.Name] = v
		}
	}
	return c
}

// View copies the allowlisted paths out of the run state into a new
// document shaped like {"input": {...}, "data": {"state": {...}}}; values
// without personal data below them are shared with the run, which never
// mutates them, so callers must treat views as read-only. A path
// that is absent in the run is absent in the view. Personal data below a
// listed path is copied only when the list names that personal-data path
// itself.
func View(p *program.Program, paths []program.Path, s State) map[string]any {
	view := map[string]any{}
	for i, path := range paths {
		if coveredByOther(paths, i) {
			// An ancestor's copy already holds it (personal data included,
			// when named), and writing into that copy could write into the
			// run's own values, which views share.
			continue
		}
		v, ok := get(s, path)
		if !ok {
			continue
		}
		v = copyAllowed(p, paths, path, v)
		put(view, path, v)
	}
	return view
}

// ForAuditor is the auditor's view of a run: everything the run holds, with
// every personal-data value replaced by the Redacted marker, except where
// the value is the erased marker: the data is gone rather than hidden, and
// the auditor is shown so.
func ForAuditor(p *program.Program, s State) map[string]any {
	root := map[string]any{"input": s.Input, "data": anyMap(s.Data)}
	return redactCopy(p, nil, root).(map[string]any)
}

func anyMap(m map[string]any) any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// get finds the value at path (input.<...> or data.<state>.<...>).
func get(s State, path program.Path) (any, bool) {
	var cur any
	switch path[0] {
	case "input":
		cur = s.Input
	case "data":
		cur = s.Data
	default:
		return nil, false
	}
	for _, seg := range path[1:] {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func put(root map[string]any, path program.Path, v any) {
	cur := root
	for _, seg := range path[:len(path)-1] {
		next, ok := cur[seg].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[seg] = next
		}
		cur = next
	}
	cur[path[len(path)-1]] = v
}

// copyAllowed returns v (found at path) without the personal data that the
// view does not name explicitly. Run values are never mutated once stored,
// so a subtree with no personal data below it is shared, not copied; only
// the objects on the way to a left-out field are rebuilt.
func copyAllowed(p *program.Program, named []program.Path, path program.Path, v any) any {
	if p.IsPII(path) && !contains(named, path) && !coveredByNamedPII(p, named, path) {
		return nil
	}
	if !piiBelow(p, path) || coveredByNamedPII(p, named, path) {
		return v
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			child := append(path[:len(path):len(path)], k)
			if p.IsPII(child) && !contains(named, child) && !coveredByNamedPII(p, named, child) {
				continue
			}
			out[k] = copyAllowed(p, named, child, c)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = copyAllowed(p, named, path, c)
		}
		return out
	}
	return v
}

// coveredByOther reports whether another listed path is a strict ancestor
// of paths[i].
func coveredByOther(paths []program.Path, i int) bool {
	for j, q := range paths {
		if j != i && len(q) < len(paths[i]) && q.Covers(paths[i]) {
			return true
		}
	}
	return false
}

// piiBelow reports whether a personal-data path lies strictly below path.
func piiBelow(p *program.Program, path program.Path) bool {
	for _, q := range p.PII {
		if len(q) > len(path) && path.Covers(q) {
			return true
		}
	}
	return false
}

// coveredByNamedPII: a view that names a personal-data path explicitly
// grants everything below it.
func coveredByNamedPII(p *program.Program, named []program.Path, path program.Path) bool {
	for _, n := range named {
		if n.Covers(path) && p.IsPII(n) {
			return true
		}
	}
	return false
}

func contains(list []program.Path, p program.Path) bool {
	for _, q := range list {
		if len(q) == len(p) && q.Covers(p) {
			return true
		}
	}
	return false
}

func redactCopy(p *program.Program, path program.Path, v any) any {
	if len(path) > 0 && p.IsPII(path) {
		if IsErased(v) {
			return map[string]any{ErasedKey: v.(map[string]any)[ErasedKey]}
		}
		return Redacted
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			out[k] = redactCopy(p, append(path[:len(path):len(path)], k), c)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = redactCopy(p, path, c)
		}
		return out
	}
	return v
}
