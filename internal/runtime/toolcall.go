package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Runtime-executed tools (docs/tools.md). A tool state the run's
// Started.Executors names is not handed to the caller: entering it emits
// tool_call_started, the intent, which the shell persists before it invokes
// the tool, and the shell reports the outcome back as an input (ToolResult,
// ToolFailure, ToolUnknown after a crash, ResolveTool from an operator).
// The core never invokes anything; the shell never decides what an outcome
// does to the run.

// Event types of runtime-executed tool calls (trace format 2).
const (
	EventToolCallStarted   EventType = "tool_call_started"
	EventToolCallCompleted EventType = "tool_call_completed"
	EventToolCallFailed    EventType = "tool_call_failed"
	EventToolCallUnknown   EventType = "tool_call_unknown"
	EventToolCallResolved  EventType = "tool_call_resolved"
)

// StatusWaitingOperator is a run whose non-idempotent tool call's outcome
// is unknown (the server died while it ran): only an operator's
// resolve_tool_call moves it on.
const StatusWaitingOperator Status = "waiting_operator"

// Reasons of runtime tool calls.
const (
	ReasonToolFailed         = "tool_failed"          // a call failed, its attempts are exhausted, and the state has no on_error
	ReasonToolOutcomeUnknown = "tool_outcome_unknown" // why a run waits for the operator
)

// ToolCallRecord is the payload of the tool_call_* events. Which fields
// are set depends on the event:
//   - started: CallID, Tool, Executor, Arguments, Attempt, IdempotencyKey;
//   - completed: CallID, Attempt, Result;
//   - failed: CallID, Attempt, Class, Detail, Retry;
//   - unknown: CallID, Attempt, Detail;
//   - resolved: CallID, Principal, and Result or Failed with Detail.
type ToolCallRecord struct {
	CallID         string         `json:"call_id"`
	Tool           string         `json:"tool,omitempty"`
	Executor       string         `json:"executor,omitempty"` // mcp, exec, http or builtin
	Arguments      map[string]any `json:"arguments,omitempty"`
	Attempt        int            `json:"attempt,omitempty"`
	IdempotencyKey string         `json:"idempotency_key,omitempty"`
	Result         any            `json:"result,omitempty"`
	Class          string         `json:"class,omitempty"` // executor.Class
	Detail         string         `json:"detail,omitempty"`
	Retry          bool           `json:"retry,omitempty"` // failed: another attempt follows
	Principal      string         `json:"principal,omitempty"`
	Failed         bool           `json:"failed,omitempty"` // resolved as a failure
}

// OpenCall is the runtime tool call a run waits on: started, not ended.
type OpenCall struct {
	Seq            uint64
	State          string
	CallID         string
	Tool           string
	Executor       string
	Arguments      map[string]any
	Attempt        int
	IdempotencyKey string
}

// ToolResult reports a runtime tool call's result document. The core
// validates it against the state's output_schema like a submission.
type ToolResult struct {
	Seq     uint64
	CallID  string
	Attempt int
	Output  any // decoded JSON
	Size    int // bytes of its canonical JSON, checked against max_document_bytes
	// Retry is the registry's word that another attempt is allowed should
	// this result be refused (it violates the output schema).
	Retry bool
	At    time.Time
	// Digest is for replay only, as Submit's: a result an uncounted
	// rejection recorded by its digest alone (Output is then nil).
	Digest *OutputDigest
}

// ToolFailure reports a failed attempt of a runtime tool call. Retry is the
// registry's word that another attempt is allowed; the core also bounds the
// attempts by the state's max_attempts.
type ToolFailure struct {
	Seq     uint64
	CallID  string
	Attempt int
	Class   string
	Detail  string
	Retry   bool
	At      time.Time
}

// ToolUnknown reports a call started before a crash whose outcome cannot be
// known and which may not be invoked again (a non-idempotent tool): the
// run waits for the operator (StatusWaitingOperator).
type ToolUnknown struct {
	Seq     uint64
	CallID  string
	Attempt int
	Detail  string
	At      time.Time
}

// ResolveTool is an operator's settlement of a call whose outcome is
// unknown: its result, or that it failed.
type ResolveTool struct {
	CallID    string
	Principal string
	Output    any // the result, when !Failed
	Size      int
	Failed    bool
	Detail    string
	At        time.Time
	Digest    *OutputDigest // replay only, as ToolResult's
}

func (ToolResult) isInput()  {}
func (ToolFailure) isInput() {}
func (ToolUnknown) isInput() {}
func (ResolveTool) isInput() {}

// CallID names the call of a tool state's visit: the task seq of that visit.
// Every attempt of the visit shares it.
func CallID(seq uint64) string { return "call-" + strconv.FormatUint(seq, 10) }

// IdempotencyKey is the key a runtime tool call hands its executor: stable
// across the attempts of one visit and across restarts, different between
// visits and runs. Hex SHA-256 of "nano-vm/tool-call/1", the run id, the
// state, the visit number and the call id, each followed by a NUL byte.
func IdempotencyKey(runID, state string, visit int, callID string) string {
	h := sha256.New()
	for _, part := range []string{"nano-vm/tool-call/1", runID, state, strconv.Itoa(visit), callID} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
