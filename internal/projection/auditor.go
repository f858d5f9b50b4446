package projection

import "github.com/nano-vm/nano-vm-mcp/internal/program"

// SealedKey is the member of a sealed value as the trace stores it,
// {"$sealed": {...}} (docs/trace-format.md).
const SealedKey = "$sealed"

// IsSealed reports whether v is a sealed value as the trace stores it: an
// object whose only member is SealedKey.
func IsSealed(v any) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false
	}
	_, ok = m[SealedKey]
	return ok
}

// ForAuditorTask is the auditor's view of an issued task: task (opened,
// as the run folds it) with every personal-data value replaced by the
// Redacted marker, or by the erased marker where it was erased:
//
//   - the view ({"input": ..., "data": ...}) goes through ForAuditor,
//     which redacts the program's personal-data paths; a member of any
//     other name is redacted whole;
//   - a tool argument is redacted when its expression reads personal data,
//     and an argument the state does not declare is redacted whole;
//   - in either, anything the trace stored sealed (raw, the same task as
//     stored; nil when unknown) is redacted too, whatever the paths say.
func ForAuditorTask(p *program.Program, task, raw *Task) *Task {
	out := *task
	var rawView any
	var rawArgs map[string]any
	if raw != nil {
		rawView = anyOf(raw.View)
		if raw.Tool != nil {
			rawArgs = raw.Tool.Arguments
		}
	}
	out.View = map[string]any{}
	var s State
	s.Input = task.View["input"]
	data, dataOK := task.View["data"].(map[string]any)
	s.Data = data
	audited := ForAuditor(p, s)
	for k, v := range task.View {
		switch {
		case k == "input":
			out.View[k] = audited["input"]
		case k == "data" && dataOK:
			out.View[k] = audited["data"]
		default:
			out.View[k] = redactWhole(v)
		}
	}
	out.View = maskSealed(rawView, out.View).(map[string]any)
	if task.Tool != nil {
		out.Tool = &ToolCall{Name: task.Tool.Name, Arguments: ForAuditorArguments(p, task.State, task.Tool.Arguments, rawArgs)}
	}
	return &out
}

// ForAuditorArguments is the auditor's view of a tool's evaluated
// arguments at state, whether handed to the caller in a task or invoked by
// the runtime (tool_call_started): an argument whose expression reads
// personal data is redacted whole, as is one the state does not declare,
// and so is anything raw (the same arguments as the trace stored them; nil
// when unknown) holds sealed.
func ForAuditorArguments(p *program.Program, state string, args, raw map[string]any) map[string]any {
	reads := map[string]bool{}
	declared := map[string]bool{}
	if st := p.States[state]; st != nil {
		for _, a := range st.Args {
			declared[a.Name] = true
			reads[a.Name] = a.Expr != nil && len(a.Expr.PII) > 0
		}
	}
	out := make(map[string]any, len(args))
	for k, v := range args {
		if reads[k] || !declared[k] {
			v = redactWhole(v)
		}
		out[k] = v
	}
	return maskSealed(anyOf(raw), out).(map[string]any)
}

// ForAuditorResult is the auditor's view of a tool result at state: the
// document the run keeps as data.<state>, whether the runtime's executor
// returned it (tool_call_completed, tool_call_resolved) or the caller
// reported it (submission_accepted by the tool actor). Every
// personal-data path below data.<state> is redacted, and so is anything
// raw (the same result as stored; nil when unknown) holds sealed.
func ForAuditorResult(p *program.Program, state string, result, raw any) any {
	if result == nil {
		return nil
	}
	shown := redactCopy(p, program.Path{"data", state}, result)
	return maskSealed(raw, shown)
}

// ForAuditorDetail is the auditor's view of a tool call's failure detail
// at state. A detail is text the tool or a person wrote (a downstream
// tool's isError text may echo an argument), which the trace seals in a
// run with data subjects: a detail stored sealed (sealed) is redacted,
// and so is a schema violation's, which may quote the result, where the
// state's data holds personal data. The redacted detail is the marker's
// JSON text.
func ForAuditorDetail(p *program.Program, state, class, detail string, sealed bool) string {
	if detail == "" {
		return ""
	}
	if sealed || class == "schema_violation" && holdsPII(p, program.Path{"data", state}) {
		return RedactedText
	}
	return detail
}

// RedactedText is the Redacted marker as JSON text, for the places that
// show a string.
const RedactedText = `{"$redacted":"personal_data"}`

// holdsPII reports whether a personal-data path lies at or below path, or
// covers it.
func holdsPII(p *program.Program, path program.Path) bool {
	for _, q := range p.PII {
		if q.Covers(path) || path.Covers(q) {
			return true
		}
	}
	return false
}

// redactWhole is the marker that stands for v: the erased marker as it
// is, the redaction marker otherwise.
func redactWhole(v any) any {
	if IsErased(v) {
		return v
	}
	return Redacted
}

// maskSealed returns shown with every value that raw (the same document as
// stored) holds sealed replaced by its marker, unless shown already has a
// marker there.
func maskSealed(raw, shown any) any {
	if raw == nil {
		return shown
	}
	if IsSealed(raw) {
		if IsErased(shown) || isRedacted(shown) {
			return shown
		}
		return Redacted
	}
	switch s := shown.(type) {
	case map[string]any:
		r, ok := raw.(map[string]any)
		if !ok {
			return shown
		}
		out := make(map[string]any, len(s))
		for k, v := range s {
			out[k] = maskSealed(r[k], v)
		}
		return out
	case []any:
		r, ok := raw.([]any)
		if !ok {
			return shown
		}
		out := make([]any, len(s))
		for i, v := range s {
			if i < len(r) {
				v = maskSealed(r[i], v)
			}
			out[i] = v
		}
		return out
	}
	return shown
}

func isRedacted(v any) bool {
	m, ok := v.(map[string]any)
	return ok && len(m) == 1 && m["$redacted"] != nil
}

// anyOf makes a nil map a nil interface, so that maskSealed skips it.
func anyOf(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}
