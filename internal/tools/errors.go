package tools

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// Error codes the tools add to the runtime's rejection codes. Every code is
// stable; docs/mcp.md lists them all.
const (
	CodeInvalidArguments      = "invalid_arguments"       // the arguments do not match the tool's input schema
	CodeUnknownRun            = "unknown_run"             // no such run, or not the caller's
	CodeUnknownProgram        = "unknown_program"         // no such program
	CodeForbidden             = "forbidden"               // the caller's profile or credentials do not allow this
	CodeNotImplemented        = "not_implemented"         // reserved for a later release
	CodeApprovalChannelClosed = "approval_channel_closed" // await_approval on a run whose approvals do not go through the client
	CodeInvalidRequestState   = "invalid_request_state"   // an elicitation answer that does not belong to this run and seq
	CodeErasureIncomplete     = "erasure_incomplete"      // erase_subject destroyed the key but did not record it in every run
	CodeInternal              = "internal"                // the server failed; nothing was changed
)

// toolError is a domain error a handler reports as an isError result.
type toolError struct {
	body  ErrorBody
	ended bool // the rejection ended the run: no advice to retry
	// advice replaces the code's advice where the handler knows the
	// precise remedy (which credential or configuration is missing).
	advice string
	// cause is the failure an internal error stands for: logged, never
	// shown to the client.
	cause error
}

func (e *toolError) Error() string { return e.body.Code + ": " + e.body.Message }

func errorf(code, format string, args ...any) *toolError {
	return &toolError{body: ErrorBody{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// advice says what to do next, by code: the message is read by a model.
var advice = map[string]string{
	string(runtime.CodeStaleSeq):            "Answer the task in `task` with its seq, or call get_run to see where the run is.",
	string(runtime.CodeWrongState):          "Answer the task in `task`: it names the state the run is in.",
	string(runtime.CodeSchemaViolation):     "Fix the output so it matches the task's output_schema and call step again with the same seq.",
	string(runtime.CodeGuardDenied):         "No transition accepts this output. Re-read the task's instructions and submit an output the policy allows.",
	string(runtime.CodeCapabilityDenied):    "Submit only what the task grants: the task's own tool and output fields.",
	string(runtime.CodeDefinitionMismatch):  "The program changed or you named the wrong one. Call get_run and continue under its definition_hash, or leave the claim out.",
	string(runtime.CodeApprovalRequired):    "This task needs a human decision, which step cannot give. Call await_approval: it asks the human at the client, or says who decides instead and what the user must be told.",
	string(runtime.CodeRunFinished):         "The run has ended. Call get_run for its outcome, or start_run for a new run.",
	string(runtime.CodeDeadlineExceeded):    "The task timed out. Call get_run to see where the run went.",
	string(runtime.CodeInvalidInput):        "Fix the input and try again.",
	string(runtime.CodeIdempotencyConflict): "Use a new idempotency_key for a different input, or repeat the original input.",
	string(runtime.CodeThrottled):           "Stop repeating answers the run refuses: they are no longer recorded. Answer the task in `task` once, with its seq and state, or call get_run to see where the run is.",
	CodeInvalidArguments:                    "Fix the arguments so they match the tool's input schema.",
	CodeUnknownRun:                          "Check the run_id, or call start_run to begin a new run.",
	CodeUnknownProgram:                      "Call list_programs for the programs this server runs.",
	CodeForbidden:                           "This is not allowed for your credentials; do not retry.",
	CodeNotImplemented:                      "This server does not do this yet; do not retry.",
	CodeApprovalChannelClosed:               "Stop and tell the user the run waits for a human decision.",
	CodeInvalidRequestState:                 "Call await_approval again without input responses.",
	CodeErasureIncomplete:                   "The personal data is already unreadable. Call erase_subject again with the same arguments to record the erasure in the remaining runs.",
	CodeInternal:                            "Nothing was changed. Retry later.",
}

// toolTaskRule ends every error that carries a tool task. A tool task's
// output is the tool's result: the only way forward is to call the tool,
// never to write, edit or guess a result, and an agent without the tool
// must stop instead of inventing one.
const toolTaskRule = "This is a tool task: " + toolTaskGuide

// toolTaskAdvice replaces the attempt codes' advice on a tool task, where
// "fix the output" would read as "edit the tool's result until it passes".
var toolTaskAdvice = map[string]string{
	string(runtime.CodeSchemaViolation):  "Submit exactly the JSON the tool returned, not a summary or an edited copy. If the tool's own result does not match, do not change it: stop and tell the user.",
	string(runtime.CodeGuardDenied):      "No transition accepts this result, and changing it to pass the policy is not allowed. If it is what the tool returned, stop, or call cancel_run, and tell the user the policy refused the tool's result.",
	string(runtime.CodeCapabilityDenied): "Claim only the tool the task grants (task.tool.name), or leave tool out.",
}

// decisionAdvice is the attempt codes' advice for the approval tools: the
// decision is resubmitted with the same tool, never with step.
var decisionAdvice = map[string]string{
	string(runtime.CodeSchemaViolation): "Fix the decision so it matches the task's output_schema and call %s again with the same seq.",
	string(runtime.CodeGuardDenied):     "No transition accepts this decision. Re-read the task's instructions and call %s again with a decision the policy allows.",
}

// attemptNote says that an attempt code used up an attempt, and how many
// remain: capability_denied costs one as much as the other two, which a
// client probing claims would not otherwise know.
func attemptNote(t *Task) string {
	note := "This used up an attempt (schema_violation, guard_denied and capability_denied each use one)"
	if t != nil {
		return fmt.Sprintf("%s: %d left.", note, t.AttemptsLeft)
	}
	return note + "."
}

// adviceFor is what to do next after this error from tool.
func (e *toolError) adviceFor(tool string) string {
	if e.advice != "" {
		return e.advice
	}
	code, t := e.body.Code, e.body.Task
	a := advice[code]
	if d, ok := decisionAdvice[code]; ok && (tool == "approve" || tool == "await_approval") {
		a = fmt.Sprintf(d, tool)
	}
	if t != nil && t.Kind == string(program.KindTool) {
		if ta, ok := toolTaskAdvice[code]; ok {
			a = ta
		}
		a += " " + toolTaskRule
	}
	if runtime.Code(code).CountsAsAttempt() {
		a += " " + attemptNote(t)
	}
	return a
}

// fromRuntime maps a service error to a tool error. Rejections keep their
// code and details; unknown runs and programs get the tool codes; anything
// else is an internal failure, whose text stays in the log (cause).
func fromRuntime(err error, task *Task) *toolError {
	var te *toolError
	if errors.As(err, &te) {
		return te
	}
	var rej *runtime.Rejection
	if !errors.As(err, &rej) {
		return internalError(err)
	}
	code := string(rej.Code)
	switch rej.Code {
	case runtime.CodeNoSuchRun:
		code = CodeUnknownRun
		task = nil
	case runtime.CodeNoSuchProgram:
		code = CodeUnknownProgram
		task = nil
	}
	return &toolError{body: ErrorBody{Code: code, Message: rej.Message, Details: rej.Details, Task: task}}
}

// internalError replaces a failure with the generic internal error; the
// dispatcher logs the failure.
func internalError(err error) *toolError {
	te := errorf(CodeInternal, "the server could not complete the call")
	te.cause = err
	return te
}

// rejection maps a service error with the answer that came with it. A
// rejection that used up the last attempt ends the run: the client is told
// so, instead of being asked to try again.
func rejection(err error, a service.Answer) *toolError {
	te := fromRuntime(err, a.Task)
	if a.RunID != "" && a.Status != "" && a.Status != runtime.StatusRunning && te.body.Code != string(runtime.CodeRunFinished) {
		te.body.Message += fmt.Sprintf(". The run has ended: %s", a.Status)
		if a.Reason != "" {
			te.body.Message += " (" + a.Reason + ")"
		}
		te.body.Task = nil
		te.ended = true
	}
	return te
}

// result renders a tool's error as an isError result: the error JSON as the
// only text content and no structuredContent, which strict clients would
// validate against the success schema.
func (e *toolError) result(tool string) *mcp.CallToolResult {
	b := e.body
	if e.ended {
		b.Message += ". Call get_run for its outcome, or start_run for a new run."
	} else if a := e.adviceFor(tool); a != "" {
		b.Message += ". " + a
	}
	text, err := json.Marshal(b)
	if err != nil {
		text = []byte(`{"code":"internal","message":"the server could not encode its error"}`)
	}
	return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewTextContent(string(text))}, IsError: true}
}
