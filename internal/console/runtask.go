package console

import (
	"encoding/json"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
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
			stored, err := service.DecodeEvents(recs[i : i+1])
			if err != nil {
				return nil, err
			}
			raw = stored[0].Task
		}
		t := projection.ForAuditorTask(p, e.Task, raw)
		v := taskView{Index: e.Index, At: e.At, Seq: t.Seq, State: t.State, Kind: t.Kind, Role: t.Role,
			Instructions: t.Instructions, AttemptsLeft: t.AttemptsLeft, View: pretty(t.View), Full: pretty(t)}
		if t.Tool != nil {
			v.Tool, v.Args = t.Tool.Name, pretty(t.Tool.Arguments)
		}
		out = append(out, v)
	}
	return out, nil
}

// pretty is v as indented JSON for a <pre>.
func pretty(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "(cannot show: " + err.Error() + ")"
	}
	return string(b)
}
