package tools

import (
	"encoding/json"

	"github.com/invopop/jsonschema"

	"github.com/nano-vm/nano-vm-mcp/internal/analyzer"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// This file is the public contract: every tool's arguments and structured
// result as Go types. The JSON Schemas under schemas/tools/ are generated
// from them (TestToolSchemasUpToDate), and the server advertises exactly
// those files. Keep names and fields; add fields freely.

// Value is a free-form JSON value (a run input, a step output), kept as the
// bytes that arrived. Its schema is {} rather than invopop's `true`, which
// several clients reject.
type Value json.RawMessage

// JSONSchema makes the schema of a Value the empty schema.
func (Value) JSONSchema() *jsonschema.Schema { return &jsonschema.Schema{} }

// MarshalJSON writes the value as it is.
func (v Value) MarshalJSON() ([]byte, error) {
	if len(v) == 0 {
		return []byte("null"), nil
	}
	return v, nil
}

// UnmarshalJSON keeps a copy of the bytes.
func (v *Value) UnmarshalJSON(b []byte) error {
	*v = append((*v)[:0], b...)
	return nil
}

// RawObject is a JSON object kept as the bytes that arrived, where they
// matter: a receipt to verify is checked byte for byte, a decision keeps
// its numbers' digits.
type RawObject json.RawMessage

// JSONSchema makes the schema of a RawObject a plain object schema.
func (RawObject) JSONSchema() *jsonschema.Schema { return &jsonschema.Schema{Type: "object"} }

// MarshalJSON writes the object as it is.
func (v RawObject) MarshalJSON() ([]byte, error) { return Value(v).MarshalJSON() }

// UnmarshalJSON keeps a copy of the bytes.
func (v *RawObject) UnmarshalJSON(b []byte) error {
	*v = append((*v)[:0], b...)
	return nil
}

// Object is a free-form JSON object.
type Object map[string]any

// JSONSchema makes the schema of an Object a plain object schema.
func (Object) JSONSchema() *jsonschema.Schema { return &jsonschema.Schema{Type: "object"} }

// ListProgramsArgs takes nothing.
type ListProgramsArgs struct{}

// ProgramInfo is what an agent may know of a program: never its guards.
type ProgramInfo struct {
	Name           string `json:"name" jsonschema_description:"The name start_run takes."`
	Version        string `json:"version"`
	DefinitionHash string `json:"definition_hash" jsonschema_description:"SHA-256 of the program definition; step may claim it."`
	Description    string `json:"description"`
	InputSchema    Object `json:"input_schema" jsonschema_description:"JSON Schema of start_run's input for this program."`
}

// ListProgramsResult lists the programs a run can be started with.
type ListProgramsResult struct {
	Programs []ProgramInfo `json:"programs"`
}

// StartRunArgs start a run.
type StartRunArgs struct {
	Program        string `json:"program" jsonschema:"minLength=1,maxLength=128" jsonschema_description:"Name of the program (see list_programs)."`
	Input          Value  `json:"input" jsonschema_description:"The run input; must match the program's input_schema."`
	IdempotencyKey string `json:"idempotency_key,omitempty" jsonschema:"minLength=1,maxLength=128,pattern=^[A-Za-z0-9._:-]+$" jsonschema_description:"Repeating a start with the same key returns the original run instead of a second one."`
	Lab            bool   `json:"lab,omitempty" jsonschema_description:"Start a failure-laboratory run that inject_fault may attack."`
}

// Hop is one transition.
type Hop = service.Hop

// Task is the one bounded step the runtime hands out.
type Task = projection.Task

// RunResult is what start_run, step, await_approval and approve answer.
type RunResult struct {
	RunID       string `json:"run_id"`
	Status      string `json:"status" jsonschema:"enum=running,enum=waiting_approval,enum=waiting_operator,enum=completed,enum=failed,enum=cancelled"`
	Transition  *Hop   `json:"transition,omitempty" jsonschema_description:"The first hop taken from the answered state."`
	Transitions []Hop  `json:"transitions" jsonschema_description:"Every hop taken, decision states included."`
	Task        *Task  `json:"task,omitempty" jsonschema_description:"The open task: the next one to compute, or the approval a human must give (status waiting_approval). Absent once the run has ended."`
	Outcome     string `json:"outcome,omitempty" jsonschema_description:"The terminal state's outcome once the run has ended."`
	Reason      string `json:"reason,omitempty" jsonschema_description:"Why the runtime ended the run, when it failed."`
	Duplicate   bool   `json:"duplicate,omitempty" jsonschema_description:"This repeated an earlier call; the original answer is returned and nothing changed."`
	// Four-eyes approval states: how many distinct approvers have decided
	// and how many the decision needs.
	ApprovalsGiven  int    `json:"approvals_given,omitempty"`
	ApprovalsNeeded int    `json:"approvals_needed,omitempty"`
	WaitingFor      string `json:"waiting_for,omitempty" jsonschema:"enum=tool" jsonschema_description:"tool: the run is running a tool the runtime itself executes; there is no task to answer. Continue with await_run (or get_run)."`
}

// StepToolClaim names the tool a tool task's result comes from.
type StepToolClaim struct {
	Name string `json:"name" jsonschema:"minLength=1,maxLength=128"`
}

// StepArgs answer the current task.
type StepArgs struct {
	RunID          string         `json:"run_id" jsonschema:"minLength=1,maxLength=128"`
	Seq            uint64         `json:"seq" jsonschema:"minimum=1" jsonschema_description:"The seq of the task being answered."`
	Output         Value          `json:"output" jsonschema_description:"The answer; must match the task's output_schema. For a tool task: the named tool's result, unchanged."`
	State          string         `json:"state,omitempty" jsonschema:"maxLength=128" jsonschema_description:"The state you believe you are answering; checked."`
	Tool           *StepToolClaim `json:"tool,omitempty" jsonschema_description:"For a tool task: the tool whose result this is; checked."`
	DefinitionHash string         `json:"definition_hash,omitempty" jsonschema:"maxLength=128" jsonschema_description:"The program definition you believe you run; checked."`
}

// RunRef names a run.
type RunRef struct {
	RunID string `json:"run_id" jsonschema:"minLength=1,maxLength=128"`
}

// GetRunResult is a run as an agent may see it.
type GetRunResult struct {
	RunID          string   `json:"run_id"`
	Program        string   `json:"program"`
	Version        string   `json:"version"`
	DefinitionHash string   `json:"definition_hash"`
	Status         string   `json:"status" jsonschema:"enum=running,enum=waiting_approval,enum=waiting_operator,enum=completed,enum=failed,enum=cancelled"`
	State          string   `json:"state"`
	Seq            uint64   `json:"seq" jsonschema_description:"The current (or last) task's seq."`
	Path           []string `json:"path" jsonschema_description:"Every state entered, in order."`
	Task           *Task    `json:"task,omitempty"`
	Outcome        string   `json:"outcome,omitempty"`
	Reason         string   `json:"reason,omitempty"`
	Lab            bool     `json:"lab,omitempty"`
	WaitingFor     string   `json:"waiting_for,omitempty" jsonschema:"enum=tool" jsonschema_description:"tool: the runtime is running a tool itself; there is no task to answer. Continue with await_run."`
}

// AwaitRunArgs long-poll a run that waits on a runtime-executed tool.
type AwaitRunArgs struct {
	RunID   string `json:"run_id" jsonschema:"minLength=1,maxLength=128"`
	Timeout int    `json:"timeout,omitempty" jsonschema:"minimum=1,maximum=30" jsonschema_description:"Seconds to wait at most; default 25."`
}

// ResolveToolCallArgs settle a runtime tool call whose outcome is unknown.
type ResolveToolCallArgs struct {
	RunID  string `json:"run_id" jsonschema:"minLength=1,maxLength=128"`
	CallID string `json:"call_id" jsonschema:"minLength=1,maxLength=128" jsonschema_description:"The open call's id (the run's tool_call_unknown event names it)."`
	Result Value  `json:"result,omitempty" jsonschema_description:"The call's result, as the tool would have answered; it must match the state's output_schema. Give either result or failed."`
	Failed bool   `json:"failed,omitempty" jsonschema_description:"The call did not take effect: the run takes the state's on_error edge, or fails with tool_failed."`
	Detail string `json:"detail,omitempty" jsonschema:"maxLength=1000" jsonschema_description:"What the operator found. Sealed under the run's data subjects when it has any (erasing one makes it unreadable), in clear otherwise: put no personal data in it."`
}

// ReceiptResult is a signed receipt with what a verifier needs.
type ReceiptResult struct {
	Receipt   Object `json:"receipt" jsonschema_description:"The receipt body (docs/receipt-format.md); signed as RFC 8785 canonical JSON."`
	Signature string `json:"signature" jsonschema_description:"Base64 Ed25519 signature over the receipt's canonical bytes."`
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key" jsonschema_description:"The signer's public key as 'nano-vm-mcp-ed25519 <base64>'."`
}

// VerifyReceiptArgs check a receipt.
type VerifyReceiptArgs struct {
	Receipt   RawObject `json:"receipt"`
	Signature string    `json:"signature" jsonschema:"minLength=1,maxLength=256"`
	KeyID     string    `json:"key_id,omitempty" jsonschema:"maxLength=128" jsonschema_description:"Default: this server's key."`
	PublicKey string    `json:"public_key,omitempty" jsonschema:"maxLength=256" jsonschema_description:"Verify with this key instead of this server's."`
	Trace     string    `json:"trace,omitempty" jsonschema_description:"An exported trace (JSON Lines). Default: the run's stored trace."`
}

// VerifyReceiptResult is the verification report.
type VerifyReceiptResult struct {
	Valid    bool     `json:"valid"`
	Problems []string `json:"problems" jsonschema_description:"Empty when valid; the first names the first failure."`
	Covered  uint64   `json:"covered" jsonschema_description:"Events the receipt covers."`
	Later    uint64   `json:"later" jsonschema_description:"Events after them that continue the chain."`
}

// Divergence is where a replay first differs from the trace.
type Divergence = runtime.Divergence

// ReplayResult says whether refolding the recorded inputs gave the same
// events.
type ReplayResult struct {
	Identical  bool        `json:"identical"`
	Divergence *Divergence `json:"divergence,omitempty"`
	// Transitions re-derived: by re-applying their input, or, where the
	// input's values were erased, by re-evaluating the guards.
	Transitions int `json:"transitions" jsonschema:"minimum=0"`
	// Erased lists the events, by index, holding erased values: checked by
	// the guards instead of re-applied (docs/erasure.md).
	Erased []uint64 `json:"erased,omitempty"`
}

// InjectFaultArgs name an attack on a lab run.
type InjectFaultArgs struct {
	RunID  string `json:"run_id" jsonschema:"minLength=1,maxLength=128"`
	Fault  string `json:"fault" jsonschema:"enum=tool_injection,enum=policy_bypass,enum=skip_step,enum=reorder_steps,enum=corrupt_receipt,enum=gdpr_erase,enum=tool_failure,enum=invalid_program"`
	Params Object `json:"params,omitempty"`
}

// InjectFaultResult is the attack's outcome.
type InjectFaultResult struct {
	Fault        string `json:"fault"`
	Outcome      string `json:"outcome"`
	Detail       string `json:"detail"`
	RunUnchanged bool   `json:"run_unchanged"`
}

// CancelRunArgs end a run.
type CancelRunArgs struct {
	RunID  string `json:"run_id" jsonschema:"minLength=1,maxLength=128"`
	Reason string `json:"reason" jsonschema:"minLength=1,maxLength=1000"`
}

// CancelRunResult is the run after the cancellation.
type CancelRunResult struct {
	RunID  string `json:"run_id"`
	Status string `json:"status" jsonschema:"enum=running,enum=waiting_approval,enum=waiting_operator,enum=completed,enum=failed,enum=cancelled"`
}

// AwaitApprovalArgs wait for the human decision on an approval task.
type AwaitApprovalArgs struct {
	RunID string `json:"run_id" jsonschema:"minLength=1,maxLength=128"`
	Seq   uint64 `json:"seq" jsonschema:"minimum=1"`
}

// ApproveArgs record an approver's decision.
type ApproveArgs struct {
	RunID         string    `json:"run_id" jsonschema:"minLength=1,maxLength=128"`
	Seq           uint64    `json:"seq" jsonschema:"minimum=1"`
	Decision      RawObject `json:"decision" jsonschema_description:"The approval task's decision form (its output_schema)."`
	ApproverToken string    `json:"approver_token,omitempty" jsonschema:"maxLength=512" jsonschema_description:"The approver's own token; not needed over HTTP when the bearer token is the approver's."`
}

// ListRunsArgs filter and page the caller's runs.
type ListRunsArgs struct {
	Program string `json:"program,omitempty" jsonschema:"maxLength=128"`
	Status  string `json:"status,omitempty" jsonschema:"enum=running,enum=waiting_operator,enum=completed,enum=failed,enum=cancelled" jsonschema_description:"Stored status; running includes runs waiting for approval."`
	Cursor  string `json:"cursor,omitempty" jsonschema:"maxLength=512" jsonschema_description:"next_cursor from the previous page."`
}

// RunSummary is one row of list_runs.
type RunSummary struct {
	RunID          string `json:"run_id"`
	Program        string `json:"program"`
	DefinitionHash string `json:"definition_hash"`
	Status         string `json:"status"`
	Outcome        string `json:"outcome,omitempty"`
	StartedAt      string `json:"started_at"`
	UpdatedAt      string `json:"updated_at"`
	Events         uint64 `json:"events"`
}

// ListRunsResult is one page of runs.
type ListRunsResult struct {
	Runs       []RunSummary `json:"runs"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// ListApprovalsArgs page the approver's inbox.
type ListApprovalsArgs struct {
	ApproverToken string `json:"approver_token,omitempty" jsonschema:"maxLength=512" jsonschema_description:"An approver's own token: list that approver's inbox. Not needed over HTTP when the bearer token is the approver's; an operator without it sees every role's pending approvals."`
	IncludeLab    bool   `json:"include_lab,omitempty" jsonschema_description:"Also list failure-laboratory runs (left out by default)."`
	Cursor        string `json:"cursor,omitempty" jsonschema:"maxLength=512" jsonschema_description:"next_cursor from the previous page."`
}

// PendingApproval is one decision waiting in the inbox.
type PendingApproval struct {
	RunID              string `json:"run_id"`
	Program            string `json:"program"`
	State              string `json:"state"`
	Role               string `json:"role" jsonschema_description:"The role whose approver decides."`
	Seq                uint64 `json:"seq" jsonschema_description:"The approval task's seq: pass it to approve."`
	Since              string `json:"since" jsonschema_description:"When the run began waiting for this decision (RFC 3339)."`
	Deadline           string `json:"deadline,omitempty" jsonschema_description:"When the task times out (RFC 3339); absent when it has no timeout."`
	ApprovalsRemaining int    `json:"approvals_remaining" jsonschema:"minimum=1" jsonschema_description:"How many more distinct approvers must approve: 1 on a single-approver state, N minus approvals_given on an approvals: N state."`
	ApprovalsGiven     int    `json:"approvals_given" jsonschema:"minimum=0" jsonschema_description:"How many distinct approvers have given the pending decision so far."`
	ApprovedByYou      bool   `json:"approved_by_you,omitempty" jsonschema_description:"You already approved the pending decision; it waits for other approvers of the role."`
	Lab                bool   `json:"lab,omitempty"`
}

// ListApprovalsResult is one page of the inbox.
type ListApprovalsResult struct {
	Scope     string            `json:"scope" jsonschema:"enum=approver,enum=all" jsonschema_description:"approver: the decisions of this approver's role; all: every role's pending approvals (an operator without an approver token)."`
	Approver  string            `json:"approver,omitempty" jsonschema_description:"The approver whose inbox this is."`
	Role      string            `json:"role,omitempty" jsonschema_description:"The approver's role."`
	Approvals []PendingApproval `json:"approvals" jsonschema_description:"Soonest deadline first, those without a deadline last. A page may hold fewer than the page size."`
	// NextCursor pages on; absent on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// AnalyzeArgs choose the window of runs the analyze tool measures.
type AnalyzeArgs struct {
	Program        string  `json:"program" jsonschema:"minLength=1,maxLength=128" jsonschema_description:"The program's name, as its runs record it."`
	Window         int     `json:"window,omitempty" jsonschema:"minimum=1,maximum=10000" jsonschema_description:"How many of the program's newest runs to measure. Default 100."`
	DefinitionHash string  `json:"definition_hash,omitempty" jsonschema:"maxLength=128" jsonschema_description:"Measure the runs of this definition. Default: the definition of the program's newest run."`
	ThresholdBits  float64 `json:"threshold_bits,omitempty" jsonschema:"exclusiveMinimum=0,maximum=64" jsonschema_description:"Transition-entropy alert threshold in bits. Default 2.5."`
	IncludeLab     bool    `json:"include_lab,omitempty" jsonschema_description:"Count fault-laboratory runs too. Default false: they are fault experiments, left out so that they do not drive the alerts."`
}

// AnalyzeResult is the analyzer's report (docs/metrics.md §6).
type AnalyzeResult struct {
	analyzer.Report
}

// JSONSchemaExtend lets drift be null, without a "null" type that some
// clients refuse: the object schema loses its type, so its properties
// constrain an object and anything else (null) passes.
func (AnalyzeResult) JSONSchemaExtend(s *jsonschema.Schema) {
	if d, ok := s.Properties.Get("drift"); ok {
		d.Type = ""
		d.Description = "Divergence from the saved baseline; null until one is saved (nano-vm-mcp analyze --save-baseline) or when the window has no transitions."
	}
}

// EraseSubjectArgs name the data subject to erase.
type EraseSubjectArgs struct {
	SubjectID string `json:"subject_id" jsonschema:"minLength=1,maxLength=1000" jsonschema_description:"The subject's id as run inputs hold it at the subject's id path (a customer id, say); an id that is not a string is given as its canonical JSON. Only its keyed hash is stored."`
	Reason    string `json:"reason" jsonschema:"minLength=1,maxLength=1000" jsonschema_description:"Why, recorded in clear in each affected run's trace: no personal data here."`
	Subject   string `json:"subject,omitempty" jsonschema:"maxLength=128" jsonschema_description:"Erase only under this subject name of the programs (customer, say). Default: every subject name a stored program declares."`
}

// EraseSubjectResult is what the erasure did.
type EraseSubjectResult struct {
	Status   string   `json:"status" jsonschema:"enum=erased,enum=already_erased,enum=unknown_subject" jsonschema_description:"erased: the subject's key existed and is destroyed now; already_erased: it was destroyed before; unknown_subject: no run and no key belong to the subject."`
	Subjects []string `json:"subjects" jsonschema_description:"The keyed subject ids whose keys this call destroyed."`
	Runs     []string `json:"runs" jsonschema_description:"Every run that holds the subject's data, sorted."`
	Recorded []string `json:"recorded" jsonschema_description:"The runs that got a subject_erased event from this call: all of runs on a first erasure, those an interrupted one missed after."`
}

// ErrorBody is the first text content of every isError result.
type ErrorBody struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
	Task    *Task    `json:"task,omitempty"`
}
