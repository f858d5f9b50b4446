package console

import (
	"encoding/json"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// taskView is one issued task as the run page shows it: what the model
// (or tool runner, or approver) was given, with personal data redacted as
// the auditor sees it.
type taskView struct {
	Index        uint64 // the task_issued event
	At           string
	Seq          uint64
	State        string
	Kind         string
	Role         string
	Instructions string
	AttemptsLeft int
	Tool         string
	View         string // pretty JSON
	Args         string // pretty JSON; "" for no tool
	Full         string // the whole task, pretty JSON
}

// auditorTasks lists the run's issued tasks in the auditor's view. events
// are opened (personal data in clear, or the erased marker where its
// subject was erased); recs are the same events as stored, sealed.
func auditorTasks(p *program.Program, events []runtime.Event, recs []tracestore.Record) ([]taskView, error) {
	var out []taskView
	for i := range events {
		e := &events[i]
		if e.Type != runtime.EventTaskIssued || e.Task == nil {
			continue
		}
		var raw *projection.Task
		if i < len(recs) && recs[i].Index == e.Index {
			// Only the tasks' records: decoding the whole trace twice
			// would cost the page a tenth of its time.
			stored, err := runtime.DecodeEvents(recs[i : i+1])
			if err != nil {
				return nil, err
			}
			raw = stored[0].Task
		}
		t := auditorTask(p, e.Task, raw)
		v := taskView{Index: e.Index, At: e.At, Seq: t.Seq, State: t.State, Kind: t.Kind, Role: t.Role,
			Instructions: t.Instructions, AttemptsLeft: t.AttemptsLeft, View: pretty(t.View), Full: pretty(t)}
		if t.Tool != nil {
			v.Tool, v.Args = t.Tool.Name, pretty(t.Tool.Arguments)
		}
		out = append(out, v)
	}
	return out, nil
}

// auditorTask is task (opened) with every personal-data value replaced by
// the redaction marker, or by the erased marker where it was erased:
//
//   - the view ({"input": ..., "data": ...}) goes through
//     projection.ForAuditor, which redacts the program's personal-data
//     paths; a member of any other name is redacted whole;
//   - a tool argument is redacted when its expression reads personal data;
//   - in either, anything the trace stored sealed (raw, the stored task) is
//     redacted too, whatever the paths say.
func auditorTask(p *program.Program, task, raw *projection.Task) *projection.Task {
	out := *task
	var rawView, rawArgs any
	if raw != nil {
		rawView = anyOf(raw.View)
		if raw.Tool != nil {
			rawArgs = anyOf(raw.Tool.Arguments)
		}
	}
	out.View = map[string]any{}
	var s projection.State
	s.Input = task.View["input"]
	data, dataOK := task.View["data"].(map[string]any)
	s.Data = data
	audited := projection.ForAuditor(p, s)
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
		out.Tool = &projection.ToolCall{Name: task.Tool.Name, Arguments: maskSealed(rawArgs, args).(map[string]any)}
	}
	return &out
}

// redactWhole is the marker that stands for v: the erased marker as it
// is, the redaction marker otherwise.
func redactWhole(v any) any {
	if projection.IsErased(v) {
		return v
	}
	return projection.Redacted
}

// maskSealed returns shown with every value that raw (the same document as
// stored) holds sealed replaced by its marker, unless shown already has a
// marker there.
func maskSealed(raw, shown any) any {
	if raw == nil {
		return shown
	}
	if isSealed(raw) {
		if projection.IsErased(shown) || isRedacted(shown) {
			return shown
		}
		return projection.Redacted
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

// isSealed reports whether v is a sealed value as the trace stores it:
// {"$sealed": {...}} (docs/trace-format.md).
func isSealed(v any) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false
	}
	_, ok = m["$sealed"]
	return ok
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

// pretty is v as indented JSON for a <pre>.
func pretty(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "(cannot show: " + err.Error() + ")"
	}
	return string(b)
}
