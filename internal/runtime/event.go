package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
)

// EventType names what an event records.
type EventType string

// Event types. Every input to a run and every outcome of it is an event.
const (
	EventRunStarted         EventType = "run_started"
	EventInputReceived      EventType = "input_received"
	EventTaskIssued         EventType = "task_issued"
	EventGuardEvaluated     EventType = "guard_evaluated"
	EventSubmissionAccepted EventType = "submission_accepted"
	EventApprovalRecorded   EventType = "approval_recorded"
	EventSubmissionRejected EventType = "submission_rejected"
	EventTaskExpired        EventType = "task_expired"
	EventTransitioned       EventType = "transitioned"
	EventRunFinished        EventType = "run_finished"
	EventFaultInjected      EventType = "fault_injected"
	EventSubjectErased      EventType = "subject_erased"
)

// Event is one entry of a run's trace. Exactly one of the payload pointers
// is set, matching Type. Field names are a public contract: receipts and
// independent verifiers read them.
type Event struct {
	RunID string    `json:"run_id"`
	Index uint64    `json:"index"` // position in the run's trace, from 0
	Type  EventType `json:"type"`
	At    string    `json:"at"`              // RFC 3339 UTC, from the injected clock
	Seq   uint64    `json:"seq,omitempty"`   // the task this event belongs to
	State string    `json:"state,omitempty"` // the state the run was in
	// Prev is the hex hash of the previous event (absent on the first). The
	// core leaves it empty; the shell sets it when it seals the event.
	Prev string `json:"prev,omitempty"`

	Started    *Started          `json:"started,omitempty"`
	Input      *InputRecord      `json:"input,omitempty"`
	Task       *projection.Task  `json:"task,omitempty"`
	Guard      *GuardEvaluation  `json:"guard,omitempty"`
	Submission *Submission       `json:"submission,omitempty"`
	Approval   *ApprovalRecord   `json:"approval,omitempty"`
	Rejection  *RejectionRecord  `json:"rejection,omitempty"`
	Expiry     *Expiry           `json:"expiry,omitempty"`
	Transition *TransitionRecord `json:"transition,omitempty"`
	Finished   *Finished         `json:"finished,omitempty"`
	Fault      *FaultRecord      `json:"fault,omitempty"`
	Erasure    *ErasureRecord    `json:"erasure,omitempty"`
	Call       *ToolCallRecord   `json:"call,omitempty"` // the tool_call_* events

	// converted caches, inside one Apply, the accepted output already
	// converted for the guards, so that folding does not convert it again.
	// Events read back from a store do not have it.
	converted any
}

// ProgramRef identifies the exact program a run is pinned to.
type ProgramRef struct {
	Name           string `json:"name"`
	Version        string `json:"version"`
	DefinitionHash string `json:"definition_hash"`
}

// Started records a run's start.
type Started struct {
	Program ProgramRef `json:"program"`
	// TraceFormat is the trace format version (trace.Format). Runs started
	// before it was recorded lack it; they are read as the first version.
	TraceFormat string `json:"trace_format,omitempty"`
	Runtime     string `json:"runtime_version"`
	CEL         string `json:"cel_version"`
	Principal   string `json:"principal,omitempty"`
	// Lab marks a laboratory run: started for testing (the failure
	// laboratory may attack it), not for production work. The core runs it
	// like any other run.
	Lab bool `json:"lab,omitempty"`
	// Executors names the run's runtime-executed tool states and the kind
	// of executor that runs each (mcp, exec, http, builtin), as the server's
	// registry resolved them when the run started; the other tool states
	// are the caller's. Absent: every tool state is the caller's.
	Executors map[string]string `json:"executors,omitempty"`
	Input     any               `json:"input"`
	// Subjects names the run's data subjects by keyed id (HMAC), never by
	// their ids. The shell sets it when it seals the event.
	Subjects map[string]string `json:"subjects,omitempty"`
}

// InputRecord records an input other than a start, as it arrived, before
// the events it caused: with them (the submission's output is in the
// submission event that follows), it is what replay feeds the core again.
// An exact duplicate, which changes nothing, and a tick with nothing due
// leave no record.
type InputRecord struct {
	Kind           string `json:"kind"` // submit, decide, cancel, tick, or a refused tool call outcome (see CallID)
	Seq            uint64 `json:"seq,omitempty"`
	State          string `json:"state,omitempty"`
	Tool           string `json:"tool,omitempty"`
	Role           string `json:"role,omitempty"`
	DefinitionHash string `json:"definition_hash,omitempty"`
	Actor          Actor  `json:"actor,omitempty"`
	Principal      string `json:"principal,omitempty"`
	Size           int    `json:"size,omitempty"`
	Reason         string `json:"reason,omitempty"`
	// SeparateDuties marks a decision under separation of duties: refused
	// when its principal started the run or submitted one of its answers.
	// Absent for the channels exempt from it (Decide.AllowSelf).
	SeparateDuties bool `json:"separate_duties,omitempty"`
	// CallID and Attempt name the runtime tool call a refused outcome
	// (kind tool_result, tool_failure, tool_unknown or resolve_tool)
	// claimed to report. Accepted outcomes begin with their tool_call_*
	// event instead, and record no input.
	CallID  string `json:"call_id,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
}

// GuardEvaluation records one guard evaluated while choosing a transition.
type GuardEvaluation struct {
	Transition int    `json:"transition"` // index in the state's transitions
	To         string `json:"to"`
	Expression string `json:"expression"`
	Result     bool   `json:"result"`
	Cost       uint64 `json:"cost"`
	Error      string `json:"error,omitempty"` // an erroring guard does not hold
}

// Actor says who submitted.
type Actor string

// Actors.
const (
	ActorModel Actor = "model"
	ActorTool  Actor = "tool"
	ActorHuman Actor = "human"
)

// Submission records an accepted submission.
type Submission struct {
	Actor     Actor  `json:"actor"`
	Principal string `json:"principal,omitempty"`
	Role      string `json:"role,omitempty"` // the approver's role, for decisions
	Tool      string `json:"tool,omitempty"` // the tool the submitter claimed to run
	Output    any    `json:"output"`
	// Approvers are, for a decision that needed several distinct approvers
	// (approvals > 1), every principal who submitted it, in order; the last
	// is Principal. Absent for a decision one approver makes.
	Approvers []string `json:"approvers,omitempty"`
}

// ApprovalRecord records one approver's decision on a state that needs
// several distinct approvers, while fewer than needed have submitted it:
// the decision is pending, the task stays open, nothing moves. The
// submission_accepted event of the last approver records the decision
// taking effect.
type ApprovalRecord struct {
	Actor     Actor  `json:"actor"`     // always human
	Principal string `json:"principal"` // the approver
	Role      string `json:"role"`
	// Count is how many distinct approvers have now submitted this exact
	// decision (canonical JSON); 1 starts a new count.
	Count int `json:"count"`
	// Needed is how many the decision needs: the state's approvals.
	Needed int `json:"needed"`
	// Discarded is how many approvals of a different pending decision
	// this one discarded (absent when it discarded none).
	Discarded int `json:"discarded,omitempty"`
	Output    any `json:"output"` // the decision, as submitted
}

// RejectionRecord records a refused input.
type RejectionRecord struct {
	Code         Code     `json:"code"`
	Message      string   `json:"message"`
	Details      []string `json:"details,omitempty"`
	Counted      bool     `json:"counted"`  // it used up an attempt
	Attempts     int      `json:"attempts"` // attempts used in this visit, after it
	Actor        Actor    `json:"actor,omitempty"`
	Principal    string   `json:"principal,omitempty"`
	ClaimedSeq   uint64   `json:"claimed_seq,omitempty"`
	ClaimedState string   `json:"claimed_state,omitempty"`
	ClaimedTool  string   `json:"claimed_tool,omitempty"`
	// Output is the refused answer, for a counted rejection (bounded by
	// max_attempts). An uncounted one keeps only its Digest.
	Output any `json:"output,omitempty"`
	// Digest stands for the refused output of an uncounted rejection of a
	// submission or decision. Traces recorded before it keep Output.
	Digest *OutputDigest `json:"digest,omitempty"`
	// Uncounted is, for an uncounted rejection, how many uncounted
	// rejections the task (Seq) has recorded, this one included; past the
	// program's max_uncounted_rejections the core throttles. Absent on
	// counted rejections and on those recorded before it existed, which
	// count toward nothing.
	Uncounted int `json:"uncounted,omitempty"`
}

// Expiry records a task whose timeout passed.
type Expiry struct {
	Deadline string `json:"deadline"`
}

// TransitionRecord records a hop between states.
type TransitionRecord struct {
	From       string   `json:"from"`
	To         string   `json:"to"`
	Transition int      `json:"transition"` // index in From's transitions; -1 for a timeout edge, -2 for an on_error edge
	Cause      string   `json:"cause"`      // guard, default, timeout or on_error
	Rollback   bool     `json:"rollback,omitempty"`
	Cleared    []string `json:"cleared,omitempty"` // states whose data a rollback cleared
}

// Finished records the end of a run.
type Finished struct {
	Status  Status `json:"status"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

// FaultRecord records one attack of the failure laboratory (internal/lab)
// on the run and how the runtime answered it. The attack itself went
// through the public entry points and left its own events (a rejection,
// say) before this one; the record is evidence only and changes nothing
// in the run. It never holds submitted values: only names, codes and the
// runtime's messages.
type FaultRecord struct {
	Fault     string `json:"fault"`      // e.g. tool_injection
	SubAttack string `json:"sub_attack"` // e.g. undeclared_tool
	Expected  string `json:"expected"`   // the typed outcome the attack must meet, e.g. capability_denied
	Observed  string `json:"observed"`   // the outcome the runtime gave
	Detail    string `json:"detail,omitempty"`
}

// ErasureRecord records that a data subject of the run was erased: its key
// was destroyed, so every value sealed under it reads as erased from then
// on. It holds the subject's keyed id only, never the id itself.
type ErasureRecord struct {
	Subject   string `json:"subject"`             // the keyed subject id
	Reason    string `json:"reason,omitempty"`    // as the operator gave it
	Principal string `json:"principal,omitempty"` // who erased
}

// EncodeEvent is an event's bytes in a trace: canonical JSON (RFC 8785).
func EncodeEvent(e *Event) ([]byte, error) {
	body, err := jsonvalue.Canonical(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %d: %w", e.Index, err)
	}
	return body, nil
}

// DecodeEvent reads an event back from its bytes. Numbers inside inputs
// and outputs stay json.Number, exactly as they were submitted; a field
// the format does not define is an error.
func DecodeEvent(body []byte) (Event, error) {
	var e Event
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Event{}, err
	}
	return e, nil
}
