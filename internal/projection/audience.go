package projection

import (
	"fmt"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// Audience is who looks at a run's data: the operator, an auditor or the
// model (nano-vm-mcp inspect --view).
type Audience string

// The audiences, in the order the CLI names them.
const (
	Operator Audience = "operator" // personal data in clear, until erased
	Auditor  Audience = "auditor"  // personal data redacted (ForAuditor)
	Model    Audience = "model"    // the last task issued, as issued
)

// UnknownAudienceError is a name that is none of the audiences.
type UnknownAudienceError struct{ Name string }

func (e *UnknownAudienceError) Error() string {
	return fmt.Sprintf("unknown audience %q: operator, auditor or model", e.Name)
}

// ParseAudience checks an audience's name.
func ParseAudience(name string) (Audience, error) {
	switch a := Audience(name); a {
	case Operator, Auditor, Model:
		return a, nil
	}
	return "", &UnknownAudienceError{Name: name}
}

// RunView is a run as one audience sees it: where it stands, its data,
// and its subject erasures. It is a public contract: inspect --json
// prints it.
type RunView struct {
	RunID          string   `json:"run_id"`
	Program        string   `json:"program"`
	Version        string   `json:"version"`
	DefinitionHash string   `json:"definition_hash"`
	View           Audience `json:"view"`
	Status         string   `json:"status"`
	Outcome        string   `json:"outcome,omitempty"`
	Reason         string   `json:"reason,omitempty"`
	State          string   `json:"state"`
	Seq            uint64   `json:"seq"`
	// Data is ForAudience's: {"input": …, "data": {<state>: …}} for the
	// operator and the auditor; for the model, the last task issued (null
	// when none was).
	Data     any       `json:"data"`
	Erasures []Erasure `json:"erasures"`
	// ToolCalls are the outcomes of the run's runtime-executed tool calls,
	// for the operator and the auditor (the model sees none); absent when
	// the runtime ran none.
	ToolCalls []ToolCallOutcome `json:"tool_calls,omitempty"`
}

// ToolCallOutcome is one recorded outcome of a runtime tool call attempt
// (a tool_call_completed, _failed, _unknown or _resolved event): what
// happened, never the call's arguments or result. Detail is the failure's
// or resolution's text: in clear for the operator; for the auditor as
// ForAuditorDetail gives it.
type ToolCallOutcome struct {
	Index     uint64 `json:"index"`
	At        string `json:"at"`
	Event     string `json:"event"`
	CallID    string `json:"call_id"`
	State     string `json:"state"`
	Attempt   int    `json:"attempt,omitempty"`
	Class     string `json:"class,omitempty"`
	Detail    string `json:"detail,omitempty"`
	Principal string `json:"principal,omitempty"`
}

// Erasure is one subject_erased event of a run: the keyed subject id, and
// the reason and principal recorded in clear.
type Erasure struct {
	Index     uint64 `json:"index"`
	At        string `json:"at"`
	Subject   string `json:"subject"`
	Reason    string `json:"reason,omitempty"`
	Principal string `json:"principal,omitempty"`
}

// ForAudience is a run's data as a sees it. s is the run as the shell
// opened it (sealed values in clear, erased ones as the erased marker);
// issued is the last task the run issued, as the trace recorded it (nil
// when none was). The operator sees s; the auditor sees ForAuditor(p, s);
// the model sees issued, which was built by ForModel from the same
// allowlist when it was handed out. An unknown audience sees nothing.
func ForAudience(a Audience, p *program.Program, s State, issued *Task) any {
	switch a {
	case Operator:
		return map[string]any{"input": s.Input, "data": anyMap(s.Data)}
	case Auditor:
		return ForAuditor(p, s)
	case Model:
		if issued != nil {
			return issued
		}
	}
	return nil
}
