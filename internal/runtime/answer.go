package runtime

import (
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
)

// AnswerOptions is what a driver adds to an answer besides the task and
// the answer itself.
type AnswerOptions struct {
	Principal      string
	DefinitionHash string    // an optional claim, checked by the core
	AllowSelf      bool      // for a decision: an exempt channel (Decide.AllowSelf)
	At             time.Time // the service sets its own; Apply's callers pass one
}

// InputFor is the input that answers task t with answer: a Decide by the
// task's role for an approval, a Submit by the tool runner claiming the
// task's tool for a tool task, and a Submit by the model for an llm task.
// It is the one place that maps a task's kind to its input, for the
// drivers that answer whatever task is open (the CLI run, the console
// demo, the laboratory). t is the run's open task; nil gives nil.
func InputFor(t *projection.Task, answer any, o AnswerOptions) Input {
	if t == nil {
		return nil
	}
	switch t.Kind {
	case string(program.KindApproval):
		return Decide{Seq: t.Seq, State: t.State, DefinitionHash: o.DefinitionHash, Role: t.Role,
			Principal: o.Principal, Decision: answer, AllowSelf: o.AllowSelf, At: o.At}
	case string(program.KindTool):
		in := Submit{Seq: t.Seq, State: t.State, DefinitionHash: o.DefinitionHash, Actor: ActorTool,
			Principal: o.Principal, Output: answer, At: o.At}
		if t.Tool != nil {
			in.Tool = t.Tool.Name
		}
		return in
	}
	return Submit{Seq: t.Seq, State: t.State, DefinitionHash: o.DefinitionHash, Actor: ActorModel,
		Principal: o.Principal, Output: answer, At: o.At}
}
