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
	var rawView, rawArgs any
	if raw != nil {
		rawView = anyOf(raw.View)
		if raw.Tool != nil {
			rawArgs = anyOf(raw.Tool.Arguments)
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
		st := p.States[task.State]
		reads := map[string]bool{}
		declared := map[string]bool{}
		if st != nil {
			for _, a := range st.Args {
				declared[a.Name] = true
				reads[a.Name] = a.Expr != nil && len(a.Expr.PII) > 0
			}
		}
		args := make(map[string]any, len(task.Tool.Arguments))
		for k, v := range task.Tool.Arguments {
			if reads[k] || !declared[k] {
				v = redactWhole(v)
			}
			args[k] = v
		}
		out.Tool = &ToolCall{Name: task.Tool.Name, Arguments: maskSealed(rawArgs, args).(map[string]any)}
	}
	return &out
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
