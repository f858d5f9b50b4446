package runtime

import (
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
)

// Inspect is run r of program p as audience a sees it (projection.RunView),
// from r as the shell folds it (sealed values opened, erased ones as the
// erased marker) and its events: the model's data is the last task issued,
// the same projection the model was handed (or, when the runtime's own tool
// call came later, projection.ForModelCall of it), and every
// subject_erased event is listed.
func Inspect(r *Run, p *program.Program, events []Event, a projection.Audience) projection.RunView {
	v := projection.RunView{
		RunID: r.ID, Program: p.Name, Version: p.Version, DefinitionHash: p.Hash,
		View: a, Status: string(r.Status), Reason: r.Reason, State: r.State, Seq: r.Seq,
		Erasures: []projection.Erasure{},
	}
	if r.Finished() {
		v.Outcome = r.Outcome
	}
	var issued *projection.Task
	for _, e := range events {
		switch {
		case e.Type == EventTaskIssued && e.Task != nil:
			issued = e.Task
		case e.Type == EventToolCallStarted && e.Call != nil && e.Call.Attempt == 1 && p.States[e.State] != nil:
			// A call the runtime made: the model is shown that it waits
			// on it, never the call's arguments or result.
			issued = projection.ForModelCall(p.States[e.State], e.Seq)
		case e.Call != nil && a != projection.Model && (e.Type == EventToolCallCompleted || e.Type == EventToolCallFailed ||
			e.Type == EventToolCallUnknown || e.Type == EventToolCallResolved):
			o := projection.ToolCallOutcome{Index: e.Index, At: e.At, Event: string(e.Type), CallID: e.Call.CallID, State: e.State,
				Attempt: e.Call.Attempt, Class: e.Call.Class, Detail: e.Call.Detail, Principal: e.Call.Principal}
			if a == projection.Auditor {
				// A run with data subjects stores every detail sealed.
				o.Detail = projection.ForAuditorDetail(p, e.State, e.Call.Class, e.Call.Detail, len(p.Subjects) > 0)
			}
			v.ToolCalls = append(v.ToolCalls, o)
		case e.Type == EventSubjectErased && e.Erasure != nil:
			v.Erasures = append(v.Erasures, projection.Erasure{Index: e.Index, At: e.At, Subject: e.Erasure.Subject, Reason: e.Erasure.Reason, Principal: e.Erasure.Principal})
		}
	}
	v.Data = projection.ForAudience(a, p, projection.State{Input: r.Input, Data: r.Data}, issued)
	return v
}
