package tools

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/lab"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// catalog is every tool, in the order tools/list shows them.
var catalog = []toolSpec{
	{
		name: "list_programs", title: "List programs",
		description: "Lists the programs this server can run: name, version, definition hash, description and the JSON Schema of the input start_run expects. Call it first to choose a program.",
		args:        ListProgramsArgs{}, result: ListProgramsResult{},
		readOnly: true, idempotent: true, approver: true,
		handle: (*handlers).listPrograms,
	},
	{
		name: "start_run", title: "Start a run",
		description: "Starts a run of a program with an input matching the program's input_schema. Returns the run_id (keep it: every other tool takes it), the status and the first task to compute. With an idempotency_key, repeating the call returns the original run instead of starting a second one. Runs are kept in the server's durable store.",
		args:        StartRunArgs{}, result: RunResult{},
		handle: (*handlers).startRun,
	},
	{
		name: "step", title: "Submit a task's output",
		description: "Submits the output of the current task of a run: run_id, the task's seq and an output matching the task's output_schema. For an llm task, compute it from the task's view and instructions only. For a tool task, " + toolTaskGuide + " The runtime checks the output, chooses the transition and returns the next task, or the outcome when the run ends. On an error the JSON says why (code) and what to do; stale_seq and wrong_state carry the current task. " + attemptsGuide + " " + runtimeToolGuide + " Repeating the last accepted step exactly returns the original answer.",
		args:        StepArgs{}, result: RunResult{},
		handle: (*handlers).step,
	},
	{
		name: "get_run", title: "Get a run",
		description: "Returns where a run stands: status, current state and seq, the path of states so far, the open task if any, and the outcome once it has ended. Use it to recover after an error or a lost answer.",
		args:        RunRef{}, result: GetRunResult{},
		readOnly: true, idempotent: true, approver: true,
		handle: (*handlers).getRun,
	},
	{
		name: "await_run", title: "Wait for a runtime tool",
		description: "For a run whose answer said waiting_for: \"tool\" (the runtime is running a tool itself): waits until that tool call and any that follow it are done, or timeout seconds pass (default 25, at most 30), then returns the run as get_run does. Call it again while waiting_for is still \"tool\". It changes nothing.",
		args:        AwaitRunArgs{}, result: GetRunResult{},
		readOnly: true, idempotent: true,
		handle: (*handlers).awaitRun,
	},
	{
		name: "get_receipt", title: "Get a signed receipt",
		description: "Returns the run's receipt, signed with the server's Ed25519 key: a deterministic summary of the run's trace (program, status, outcome, path, counts, Merkle root) that anyone can verify offline. Provisional while the run is going, final once it has ended.",
		args:        RunRef{}, result: ReceiptResult{},
		readOnly: true, idempotent: true, approver: true,
		handle: (*handlers).getReceipt,
	},
	{
		name: "verify_receipt", title: "Verify a receipt",
		description: "Verifies a signed receipt: recomputes it from the trace (the given exported trace, or the run's stored trace), compares it byte for byte and checks the signature. Returns valid and the problems found, the first failure first.",
		args:        VerifyReceiptArgs{}, result: VerifyReceiptResult{},
		readOnly: true, idempotent: true, approver: true,
		handle: (*handlers).verifyReceipt,
	},
	{
		name: "replay_run", title: "Replay a run",
		description: "Feeds the run's recorded inputs through the runtime again under its pinned program and compares every event with the trace. Returns identical, or the first divergence.",
		args:        RunRef{}, result: ReplayResult{},
		readOnly: true, idempotent: true,
		handle: (*handlers).replayRun,
	},
	{
		name: "inject_fault", title: "Inject a fault (failure laboratory)",
		description: "Attacks a failure-laboratory run (started with lab: true) with a named fault to show how the runtime answers it. Only for lab runs, or for an operator.",
		args:        InjectFaultArgs{}, result: InjectFaultResult{},
		destructive: true,
		handle:      (*handlers).injectFault,
	},
	{
		name: "cancel_run", title: "Cancel a run",
		description: "Cancels a running run with a reason. The run ends with status cancelled; its trace and receipt stay.",
		args:        CancelRunArgs{}, result: CancelRunResult{},
		destructive: true, idempotent: true,
		handle: (*handlers).cancelRun,
	},
	{
		name: "await_approval", title: "Ask for a human approval",
		description: "For a run waiting for approval (status waiting_approval): asks the human at the client for the decision, through the client's elicitation form, and submits it. Works only where the operator or the program opened this channel; otherwise it fails with approval_channel_closed, whose message says who decides instead, or which configuration is missing for anyone to decide.",
		args:        AwaitApprovalArgs{}, result: RunResult{},
		handle: (*handlers).awaitApproval,
	},
	{
		name: "list_runs", title: "List runs",
		description: "Lists your runs, newest first, optionally by program or stored status, one page at a time (pass next_cursor back as cursor).",
		args:        ListRunsArgs{}, result: ListRunsResult{},
		readOnly: true, idempotent: true,
		handle: (*handlers).listRuns,
	},
	{
		name: "approve", title: "Record an approver's decision",
		description: "Records a configured approver's decision on an approval task (operator profile, or a caller holding an approver token). The approver's role must be the state's role; the trace records the approver's id, never the token.",
		args:        ApproveArgs{}, result: RunResult{},
		operator: true, approver: true,
		handle: (*handlers).approve,
	},
	{
		name: "list_approvals", title: "List the approvals waiting for you",
		description: "Lists the approval tasks waiting for a decision by your role (a caller holding an approver token, or an operator passing one as approver_token), soonest deadline first, one page at a time (pass next_cursor back as cursor): run id, program, state, seq, since when, deadline and how many approvals are still needed; approved_by_you marks a decision you already approved that waits for other approvers. An operator without an approver token sees every role's pending approvals. Decide with get_run (the task's view) and approve.",
		args:        ListApprovalsArgs{}, result: ListApprovalsResult{},
		readOnly: true, idempotent: true, operator: true, approver: true,
		handle: (*handlers).listApprovals,
	},
	{
		name: "resolve_tool_call", title: "Settle a tool call whose outcome is unknown",
		description: "Settles a runtime-executed tool call whose outcome is unknown (operator profile): the server stopped while a tool that is not idempotent ran, and the run waits (status waiting_operator). Give the call's result (it must match the state's output_schema) or failed: true, with a detail; the trace records your principal. The run then continues as after the tool's own answer.",
		args:        ResolveToolCallArgs{}, result: RunResult{},
		operator: true,
		handle:   (*handlers).resolveToolCall,
	},
	{
		name: "analyze", title: "Analyze a program's runs",
		description: "Measures the execution topology of a program's recent runs (operator profile): transition entropy H(next | state) overall and per state, path entropy and variance, transition sequence variance, rollback density, rejection rate, retry density, drift from the saved baseline, and alerts above the entropy threshold. The window is the program's newest runs (window, default 100) under its newest definition unless definition_hash names another. Formulas: docs/metrics.md.",
		args:        AnalyzeArgs{}, result: AnalyzeResult{},
		readOnly: true, idempotent: true, operator: true,
		handle: (*handlers).analyze,
	},
	{
		name: "erase_subject", title: "Erase a data subject",
		description: "Erases a data subject's personal data from every run (operator profile): destroys the subject's key, so that everything sealed under it reads as {\"$erased\": <subject id>} from then on, records a subject_erased event in each affected run and cancels those still running. Traces and receipts still verify. Returns the status (erased, already_erased or unknown_subject: repeating an erasure, or naming a subject nobody knows, is a result, not an error) and the affected run ids. The reason is recorded in clear: put no personal data in it.",
		args:        EraseSubjectArgs{}, result: EraseSubjectResult{},
		destructive: true, idempotent: true, operator: true,
		handle: (*handlers).eraseSubject,
	},
}

// status is the status a client sees: a running run whose open task is an
// approval waits for a human.
func status(s runtime.Status, t *Task) string {
	if s == runtime.StatusRunning && t != nil && t.Kind == string(program.KindApproval) {
		return "waiting_approval"
	}
	return string(s)
}

func runResult(a service.Answer) RunResult {
	r := RunResult{
		RunID: a.RunID, Status: status(a.Status, a.Task), Transition: a.Transition,
		Transitions: a.Transitions, Task: a.Task, Outcome: a.Outcome, Reason: a.Reason,
		Duplicate: a.Duplicate, ApprovalsGiven: a.ApprovalsGiven, ApprovalsNeeded: a.ApprovalsNeeded,
		WaitingFor: a.WaitingFor,
	}
	if r.Transitions == nil {
		r.Transitions = []Hop{}
	}
	return r
}

func (h *handlers) listPrograms(_ context.Context, _ access.Principal, _ request) (any, error) {
	res := ListProgramsResult{Programs: []ProgramInfo{}}
	for _, p := range h.Service.Programs() {
		res.Programs = append(res.Programs, programInfo(p))
	}
	return res, nil
}

func programInfo(p *program.Program) ProgramInfo {
	in, _ := p.Input.Doc().(map[string]any)
	return ProgramInfo{Name: p.Name, Version: p.Version, DefinitionHash: p.Hash, Description: p.Description, InputSchema: in}
}

func (h *handlers) startRun(ctx context.Context, c access.Principal, req request) (any, error) {
	var args StartRunArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	input, err := req.value("input", args.Input)
	if err != nil {
		return nil, err
	}
	a, err := h.Service.StartRun(ctx, service.StartOptions{
		Program: args.Program, Input: input, Principal: c.ID,
		Lab: args.Lab, IdempotencyKey: args.IdempotencyKey,
	})
	if err != nil {
		return nil, fromRuntime(err, nil)
	}
	return runResult(a), nil
}

// caller is the service's view of the principal: who may see and drive
// which run is the service's rule (service.Caller).
func caller(c access.Principal) service.Caller {
	return service.Caller{ID: c.ID, Operator: c.Profile == access.ProfileOperator, ApproverRole: c.ApproverRole}
}

// ownRun loads a run the caller may act on: its own, or any for the
// operator; another's is unknown_run, as a run that does not exist.
func (h *handlers) ownRun(ctx context.Context, c access.Principal, runID string) (*runtime.Run, *program.Program, error) {
	r, p, err := h.Service.Own(ctx, runID, caller(c))
	if err != nil {
		return nil, nil, fromRuntime(err, nil)
	}
	return r, p, nil
}

// readRun loads a run the caller may look at (its own, or, for an
// approver, one that waits for a decision of their role) as it stands
// now, without writing: a task past its deadline shows as timed out.
func (h *handlers) readRun(ctx context.Context, c access.Principal, runID string) (*runtime.Run, *program.Program, error) {
	r, p, err := h.Service.Read(ctx, runID, caller(c))
	if err != nil {
		return nil, nil, fromRuntime(err, nil)
	}
	return r, p, nil
}

func (h *handlers) step(ctx context.Context, c access.Principal, req request) (any, error) {
	var args StepArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	if _, _, err := h.ownRun(ctx, c, args.RunID); err != nil {
		return nil, err
	}
	output, err := req.value("output", args.Output)
	if err != nil {
		return nil, err
	}
	// The actor is left to the core, which infers the model or the tool
	// runner from the run.
	in := runtime.Submit{
		Seq: args.Seq, State: args.State, DefinitionHash: args.DefinitionHash,
		Principal: c.ID, Output: output,
	}
	if args.Tool != nil {
		in.Tool = args.Tool.Name
	}
	a, err := h.Service.Submit(ctx, args.RunID, in)
	if err != nil {
		return nil, rejection(err, a)
	}
	return runResult(a), nil
}

func (h *handlers) getRun(ctx context.Context, c access.Principal, req request) (any, error) {
	var args RunRef
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	r, p, err := h.readRun(ctx, c, args.RunID)
	if err != nil {
		return nil, err
	}
	return runView(r, p), nil
}

// runView is a run as get_run and await_run show it.
func runView(r *runtime.Run, p *program.Program) GetRunResult {
	res := GetRunResult{
		RunID: r.ID, Program: p.Name, Version: p.Version, DefinitionHash: p.Hash,
		Status: status(r.Status, r.Task), State: r.State, Seq: r.Seq, Path: r.Path,
		Task: r.Task, Reason: r.Reason, Lab: r.Lab,
	}
	if r.Finished() {
		res.Outcome = r.Outcome
	}
	if res.Path == nil {
		res.Path = []string{}
	}
	if r.Status == runtime.StatusRunning && r.Call != nil {
		res.WaitingFor = "tool"
	}
	return res
}

func (h *handlers) awaitRun(ctx context.Context, c access.Principal, req request) (any, error) {
	var args AwaitRunArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	r, p, err := h.Service.AwaitRun(ctx, args.RunID, caller(c), time.Duration(args.Timeout)*time.Second)
	if err != nil {
		return nil, fromRuntime(err, nil)
	}
	return runView(r, p), nil
}

func (h *handlers) resolveToolCall(ctx context.Context, c access.Principal, req request) (any, error) {
	var args ResolveToolCallArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	res := service.Resolution{CallID: args.CallID, Failed: args.Failed, Detail: args.Detail}
	switch {
	case args.Failed && len(args.Result) > 0:
		return nil, errorf(CodeInvalidArguments, "give either result or failed: true, not both")
	case !args.Failed:
		v, err := req.value("result", args.Result)
		if err != nil {
			return nil, errorf(CodeInvalidArguments, "give the call's result, or failed: true")
		}
		res.Result = v
	}
	a, err := h.Service.ResolveToolCall(ctx, caller(c), args.RunID, res)
	if err != nil {
		return nil, rejection(err, a)
	}
	return runResult(a), nil
}

// signedReceipt derives and signs the receipt over the run's stored trace.
func (h *handlers) signedReceipt(ctx context.Context, runID string) (*ReceiptResult, error) {
	recs, err := h.Store.Load(ctx, runID)
	if errors.Is(err, tracestore.ErrNotFound) {
		return nil, errorf(CodeUnknownRun, "no run %s", runID)
	}
	if err != nil {
		return nil, err
	}
	_, signed, err := receipt.Issue(receipt.Slice(recs), 0, h.Keys.Signing)
	if err != nil {
		return nil, err
	}
	var obj Object
	if err := json.Unmarshal(signed.Receipt, &obj); err != nil {
		return nil, err
	}
	return &ReceiptResult{Receipt: obj, Signature: signed.Signature, KeyID: signed.KeyID, PublicKey: strings.TrimSpace(keyring.FormatPublicKey(h.Keys.Public()))}, nil
}

func (h *handlers) getReceipt(ctx context.Context, c access.Principal, req request) (any, error) {
	var args RunRef
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	if _, _, err := h.readRun(ctx, c, args.RunID); err != nil {
		return nil, err
	}
	return h.signedReceipt(ctx, args.RunID)
}

func (h *handlers) verifyReceipt(ctx context.Context, c access.Principal, req request) (any, error) {
	var args VerifyReceiptArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	// The receipt's canonical bytes are what was signed: they are rebuilt
	// from the strictly decoded argument, numbers and all.
	body, err := req.value("receipt", args.Receipt)
	if err != nil {
		return nil, err
	}
	canon, err := jsonvalue.Canonical(body)
	if err != nil {
		return nil, errorf(CodeInvalidArguments, "receipt: %v", err)
	}
	pub := h.Keys.Public()
	if args.PublicKey != "" {
		if pub, err = keyring.ParsePublicKey([]byte(args.PublicKey)); err != nil {
			return nil, errorf(CodeInvalidArguments, "public_key: %v", err)
		}
	}
	keyID := args.KeyID
	if keyID == "" {
		keyID = receipt.KeyID(pub)
	}
	signed := &receipt.Signed{Receipt: canon, Signature: args.Signature, KeyID: keyID}
	var rep receipt.Report
	if args.Trace != "" {
		rep = receipt.CheckTrace(signed, []byte(args.Trace), pub, receipt.Options{})
	} else {
		runID, _ := body.(map[string]any)["run_id"].(string)
		if runID == "" {
			return nil, errorf(CodeInvalidArguments, "the receipt names no run_id; pass the trace")
		}
		// Whoever may read the run's receipt may check it against the
		// stored trace: an approver, the run that waits for their role.
		if _, _, err := h.readRun(ctx, c, runID); err != nil {
			return nil, err
		}
		recs, err := h.Store.Load(ctx, runID)
		if err != nil {
			return nil, err
		}
		rep, _ = receipt.Check(signed, receipt.Slice(recs), pub, receipt.Options{}) // a slice has no reading error
	}
	return VerifyReceiptResult{Valid: rep.Valid, Problems: rep.Problems, Covered: rep.Covered, Later: rep.Later}, nil
}

func (h *handlers) replayRun(ctx context.Context, c access.Principal, req request) (any, error) {
	var args RunRef
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	_, p, err := h.ownRun(ctx, c, args.RunID)
	if err != nil {
		return nil, err
	}
	events, err := h.Service.Events(ctx, args.RunID)
	if err != nil {
		return nil, fromRuntime(err, nil)
	}
	rep, err := runtime.ReplayReport(p, events)
	if err != nil {
		return nil, err
	}
	return ReplayResult{Identical: rep.Divergence == nil, Divergence: rep.Divergence, Transitions: rep.Transitions, Erased: rep.Erased}, nil
}

func (h *handlers) injectFault(ctx context.Context, c access.Principal, req request) (any, error) {
	var args InjectFaultArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	r, _, err := h.ownRun(ctx, c, args.RunID)
	if err != nil {
		return nil, err
	}
	if !r.Lab && c.Profile != access.ProfileOperator {
		return nil, errorf(CodeForbidden, "run %s is not a lab run: faults are injected only into runs started with lab: true, or by an operator", args.RunID)
	}
	// The laboratory attacks through the service's public entry points
	// and records each attack in the run's trace; the handler only maps
	// its answer.
	var params lab.Params
	if out, ok := args.Params["output"]; ok {
		// Strictly, as a step's output is read: numbers keep their digits.
		b, _ := json.Marshal(out)
		if params.Output, err = jsonvalue.Decode(b); err != nil {
			return nil, errorf(CodeInvalidArguments, "params.output: %v", err)
		}
	}
	env := lab.Env{Service: h.Service, Store: h.Store, Signer: h.Keys.Signing, Principal: c.ID, Operator: c.Profile == access.ProfileOperator}
	results, err := lab.Inject(ctx, env, args.RunID, args.Fault, params)
	switch {
	case errors.Is(err, lab.ErrUnknownFault):
		return nil, errorf(CodeInvalidArguments, "%v", err)
	case err != nil:
		return nil, fromRuntime(err, nil)
	}
	outcome, detail, unchanged := lab.Summary(results)
	return InjectFaultResult{Fault: args.Fault, Outcome: outcome, Detail: detail, RunUnchanged: unchanged}, nil
}

func (h *handlers) cancelRun(ctx context.Context, c access.Principal, req request) (any, error) {
	var args CancelRunArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	if _, _, err := h.ownRun(ctx, c, args.RunID); err != nil {
		return nil, err
	}
	a, err := h.Service.Cancel(ctx, args.RunID, c.ID, args.Reason)
	if err != nil {
		return nil, rejection(err, a)
	}
	return CancelRunResult{RunID: a.RunID, Status: status(a.Status, a.Task)}, nil
}

func (h *handlers) listRuns(ctx context.Context, c access.Principal, req request) (any, error) {
	var args ListRunsArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	filter := tracestore.ListFilter{Program: args.Program, Status: args.Status, Cursor: args.Cursor, Limit: 50}
	infos, next, err := h.Service.Runs(ctx, caller(c), filter)
	if errors.Is(err, tracestore.ErrBadCursor) {
		return nil, errorf(CodeInvalidArguments, "cursor is not one this server handed out")
	}
	if err != nil {
		return nil, err
	}
	res := ListRunsResult{Runs: make([]RunSummary, 0, len(infos)), NextCursor: next}
	for _, i := range infos {
		res.Runs = append(res.Runs, RunSummary{
			RunID: i.RunID, Program: i.Program, DefinitionHash: i.DefinitionHash,
			Status: i.Status, Outcome: i.Outcome, Events: i.Events,
			StartedAt: i.StartedAt.UTC().Format(time.RFC3339Nano), UpdatedAt: i.UpdatedAt.UTC().Format(time.RFC3339Nano),
		})
	}
	return res, nil
}
