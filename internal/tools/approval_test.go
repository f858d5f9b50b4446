package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

// kycAtApproval drives the KYC example to its compliance decision and
// returns the run id, the approval task's seq and the decisions left in
// the approved answers file.
func kycAtApproval(t *testing.T, h *harness, ctx context.Context) (string, uint64, []json.RawMessage) {
	t.Helper()
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "kyc-onboarding", "input": exampleInput(t, "kyc-onboarding.input.json")})
	runID := res["run_id"].(string)
	ans := answers(t, "kyc-onboarding.approved.answers.jsonl")
	res, used := h.drive(ctx, runID, res, ans)
	if res["status"] != "waiting_approval" {
		t.Fatalf("status %v, want waiting_approval", res["status"])
	}
	return runID, seqOf(t, task(t, res)), ans[used:]
}

type elicitFunc func(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error)

func (f elicitFunc) Elicit(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return f(ctx, req)
}

// await_approval asks through elicitation/create in the handshake era and
// through an input_required result (MRTR) for 2026-07-28 clients; one
// handler serves both.
func TestAwaitApprovalThroughElicitation(t *testing.T) {
	for _, version := range []string{mcp.LATEST_LEGACY_PROTOCOL_VERSION, mcp.LATEST_PROTOCOL_VERSION} {
		t.Run(version, func(t *testing.T) { testAwaitApproval(t, version) })
	}
}

func testAwaitApproval(t *testing.T, version string) {
	var asked []mcp.ElicitationRequest
	decision := map[string]any{"decision": "approve", "reason": "Documents verified; low risk."}
	action := mcp.ElicitationResponseActionDecline
	h := newHarnessAt(t, version, func(c *Config) { c.ElicitApprovals = true },
		client.WithElicitationHandler(elicitFunc(func(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
			asked = append(asked, req)
			return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: action, Content: decision}}, nil
		})))
	ctx := context.Background()
	runID, seq, _ := kycAtApproval(t, h, ctx)

	// A declined form leaves the run waiting.
	res := h.mustCall(ctx, "await_approval", map[string]any{"run_id": runID, "seq": seq})
	if res["status"] != "waiting_approval" || len(asked) != 1 {
		t.Fatalf("after a decline: %v (%d forms)", res, len(asked))
	}
	form := asked[0].Params
	if !strings.Contains(form.Message, "compliance_officer") {
		t.Fatalf("the form does not say who decides: %q", form.Message)
	}
	if b, _ := json.Marshal(form.RequestedSchema); !strings.Contains(string(b), `"decision"`) {
		t.Fatalf("the form's schema is not the decision form: %s", b)
	}
	h.mustFail(ctx, "await_approval", map[string]any{"run_id": runID, "seq": seq + 1}, "stale_seq")

	action = mcp.ElicitationResponseActionAccept
	res = h.mustCall(ctx, "await_approval", map[string]any{"run_id": runID, "seq": seq})
	if res["status"] == "waiting_approval" || res["transition"] == nil {
		t.Fatalf("the decision did not move the run: %v", res)
	}
	events, err := h.cfg.Service.Events(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events {
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), `"elicitation:local"`) {
			found = true
		}
	}
	if !found {
		t.Fatal("the trace does not record who decided (elicitation:local)")
	}
}

// An answer carrying another task's request state is refused: the state
// is MAC'd and bound to the run, the seq and the caller.
func TestAwaitApprovalRequestStateIsBound(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ElicitApprovals = true })
	ctx := context.Background()
	runID, seq, _ := kycAtApproval(t, h, ctx)
	hd := &handlers{Config: h.cfg, inputs: compileInputs(), stateKey: []byte("k")}
	good := hd.requestState(runID, seq, "local")
	for name, state := range map[string]string{
		"other seq":    hd.requestState(runID, seq+1, "local"),
		"other caller": hd.requestState(runID, seq, "mallory"),
		"forged":       "v1.AAAA",
	} {
		if state == good {
			t.Fatalf("%s: same state", name)
		}
	}
	// Through the handler: a forged state with an accepted answer.
	hd.ElicitApprovals = true
	req := mcp.CallToolRequest{}
	req.Params.RawArguments = []byte(`{"run_id":"` + runID + `","seq":` + jsonNum(seq) + `}`)
	req.Params.MultiRoundTripParams = mcp.MultiRoundTripParams{
		RequestState: "v1.forged",
		InputResponses: mcp.InputResponses{decisionInput: mcp.NewElicitationInputResponse(mcp.ElicitationResult{
			ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"decision": "approve", "reason": "x"}},
		})},
	}
	_, err := hd.call(withElicitingClient(ctx), specByName("await_approval"), access.Principal{ID: "local", Profile: access.ProfileAgent}, req)
	te, ok := err.(*toolError)
	if !ok || te.body.Code != CodeInvalidRequestState {
		t.Fatalf("forged request state: %v", err)
	}
}

// withElicitingClient marks ctx as a modern request from a client that
// declared the elicitation capability.
func withElicitingClient(ctx context.Context) context.Context {
	return server.WithRequestProtocolInfo(ctx, &server.RequestProtocolInfo{
		Modern: true, ProtocolVersion: mcp.LATEST_PROTOCOL_VERSION,
		ClientCapabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapability{}},
	})
}

func jsonNum(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func TestApproveByConfiguredApprovers(t *testing.T) {
	approvers := testApprovers(t)
	h := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator; c.Approvers = approvers })
	ctx := context.Background()
	runID, seq, rest := kycAtApproval(t, h, ctx)
	var decision map[string]any
	if err := json.Unmarshal(rest[0], &decision); err != nil {
		t.Fatal(err)
	}
	h.mustFail(ctx, "approve", map[string]any{"run_id": runID, "seq": seq, "decision": decision, "approver_token": "not-a-token-of-anyone"}, CodeForbidden)
	h.mustFail(ctx, "approve", map[string]any{"run_id": runID, "seq": seq, "decision": decision}, CodeForbidden)
	// carol is an approver, but not a compliance officer.
	if m, e := h.call(ctx, "approve", map[string]any{"run_id": runID, "seq": seq, "decision": decision, "approver_token": carolToken}); e == nil {
		t.Fatalf("carol's decision was accepted: %v", m)
	}
	res := h.mustCall(ctx, "approve", map[string]any{"run_id": runID, "seq": seq, "decision": decision, "approver_token": aliceToken})
	if res["status"] == "waiting_approval" {
		t.Fatalf("alice's approval did not move the run: %v", res)
	}
	events, err := h.cfg.Service.Events(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(events)
	if !strings.Contains(string(b), `"alice"`) || strings.Contains(string(b), aliceToken) {
		t.Fatal("the trace must name alice and never hold her token")
	}
}

// An HTTP caller holding an approver token approves without passing it.
func TestApproveWithApproverBearer(t *testing.T) {
	approvers := testApprovers(t)
	h := newHarness(t, func(c *Config) { c.Approvers = approvers })
	ctx := context.Background()
	runID, seq, rest := kycAtApproval(t, h, ctx)
	alice := access.WithPrincipal(context.Background(), access.Principal{ID: "alice", Profile: access.ProfileApprover, ApproverRole: "compliance_officer"})
	res := h.mustCall(alice, "approve", map[string]any{"run_id": runID, "seq": seq, "decision": json.RawMessage(rest[0])})
	if res["status"] == "waiting_approval" {
		t.Fatalf("not moved: %v", res)
	}
}

// A program can open the elicitation channel for one approval state
// without the operator's flag.
func TestProgramOpensElicitationChannel(t *testing.T) {
	h := newHarness(t, nil, client.WithElicitationHandler(elicitFunc(func(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
		return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"approve": true}}}, nil
	})))
	ctx := context.Background()
	h.addProgram("testdata/sign-off.yaml")
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "test-sign-off", "input": map[string]any{"change": "bump the parser"}})
	if res["status"] != "waiting_approval" {
		t.Fatalf("status %v", res["status"])
	}
	res = h.mustCall(ctx, "await_approval", map[string]any{"run_id": res["run_id"], "seq": seqOf(t, task(t, res))})
	if res["status"] != "completed" || res["outcome"] != "SHIPPED" {
		t.Fatalf("after the sign-off: %v", res)
	}
}

func TestApproverRules(t *testing.T) {
	approvers := testApprovers(t)
	h := newHarness(t, func(c *Config) { c.Approvers = approvers })
	ctx := context.Background()
	runID, seq, rest := kycAtApproval(t, h, ctx)
	alice := access.WithPrincipal(ctx, access.Principal{ID: "alice", Profile: access.ProfileApprover, ApproverRole: "compliance_officer"})
	carol := access.WithPrincipal(ctx, access.Principal{ID: "carol", Profile: access.ProfileApprover, ApproverRole: "finance"})

	// An approver sees a run that waits for their role, and only that.
	got := h.mustCall(alice, "get_run", map[string]any{"run_id": runID})
	before := task(t, got)["attempts_left"]
	h.mustFail(carol, "get_run", map[string]any{"run_id": runID}, CodeUnknownRun)

	// A wrong role is an authorisation failure that costs the task nothing.
	for range 4 {
		h.mustFail(carol, "approve", map[string]any{"run_id": runID, "seq": seq, "decision": json.RawMessage(rest[1])}, CodeForbidden)
	}
	if after := task(t, h.mustCall(alice, "get_run", map[string]any{"run_id": runID}))["attempts_left"]; after != before {
		t.Fatalf("attempts_left %v -> %v after wrong-role approvals", before, after)
	}

	// alice's decision (request more information: a rollback) moves the
	// run on; she is not shown the agent's next task, and repeating her
	// call returns the original answer.
	first := h.mustCall(alice, "approve", map[string]any{"run_id": runID, "seq": seq, "decision": json.RawMessage(rest[0])})
	if first["task"] != nil || first["transition"] == nil {
		t.Fatalf("approve answered %v", first)
	}
	again := h.mustCall(alice, "approve", map[string]any{"run_id": runID, "seq": seq, "decision": json.RawMessage(rest[0])})
	if again["duplicate"] != true || !jsonEqual(again["transitions"], first["transitions"]) {
		t.Fatalf("repeated approve: %v", again)
	}
	// The run no longer waits for her.
	h.mustFail(alice, "get_run", map[string]any{"run_id": runID}, CodeUnknownRun)
}

// An approver may look at the run that waits for them and decide it,
// never drive a run: the tools that do are not theirs to call.
func TestApproverCannotDriveRuns(t *testing.T) {
	approvers := testApprovers(t)
	h := newHarness(t, func(c *Config) { c.Approvers = approvers })
	ctx := context.Background()
	runID, seq, _ := kycAtApproval(t, h, ctx)
	alice := approverCtx("alice", "compliance_officer")
	h.mustCall(alice, "get_run", map[string]any{"run_id": runID})
	receipt := h.mustCall(alice, "get_receipt", map[string]any{"run_id": runID})
	if v := h.mustCall(alice, "verify_receipt", map[string]any{"receipt": receipt["receipt"], "signature": receipt["signature"]}); v["valid"] != true {
		t.Fatalf("verify_receipt: %v", v)
	}
	for name, args := range map[string]map[string]any{
		"start_run":      {"program": "kyc-onboarding", "input": exampleInput(t, "kyc-onboarding.input.json")},
		"step":           {"run_id": runID, "seq": seq, "output": map[string]any{}},
		"cancel_run":     {"run_id": runID, "reason": "x"},
		"await_approval": {"run_id": runID, "seq": seq},
		"replay_run":     {"run_id": runID},
		"inject_fault":   {"run_id": runID, "fault": "skip_step"},
		"list_runs":      {},
	} {
		req := mcp.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = name, args
		if res, err := h.c.CallTool(alice, req); err == nil {
			t.Errorf("%s: an approver called it: %+v", name, res)
		}
	}
}

// testApprovers are alice and bob (compliance officers) and carol
// (finance), from approversYAML.
func testApprovers(t testing.TB) *access.Approvers {
	t.Helper()
	a, err := access.ParseApprovers("approvers.yaml", []byte(approversYAML))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// traceBytes is a run's stored trace: its event count and bytes.
func (h *harness) traceBytes(ctx context.Context, runID string) (int, string) {
	h.t.Helper()
	recs, err := h.store.Load(ctx, runID)
	if err != nil {
		h.t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		b.Write(r.Body)
	}
	return len(recs), b.String()
}

// An approver who may not read a run cannot write into it: every refusal
// of approve comes before the core, and nothing is recorded.
func TestApproveRefusedBeforeTheCoreRecordsNothing(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Approvers = testApprovers(t) })
	ctx := context.Background()
	agentRun := h.mustCall(ctx, "start_run", map[string]any{"program": "kyc-onboarding", "input": exampleInput(t, "kyc-onboarding.input.json")})
	atLLM := agentRun["run_id"].(string)
	opRun := h.mustCall(as(access.IDOperator, access.ProfileOperator), "start_run", map[string]any{"program": "kyc-onboarding", "input": exampleInput(t, "kyc-onboarding.input.json")})
	atApproval, seq, rest := kycAtApproval(t, h, ctx)
	finished := h.mustCall(ctx, "start_run", map[string]any{"program": "kyc-onboarding", "input": exampleInput(t, "kyc-onboarding.input.json")})["run_id"].(string)
	h.mustCall(ctx, "cancel_run", map[string]any{"run_id": finished, "reason": "test"})

	big := map[string]any{"decision": "approve", "reason": strings.Repeat("x", 1_000_000)}
	alice, carol := approverCtx("alice", "compliance_officer"), approverCtx("carol", "finance")
	tests := []struct {
		name     string
		ctx      context.Context
		run      string
		seq      uint64
		decision any
		want     string
	}{
		{"another role on a run at an llm task", carol, atLLM, 1, big, CodeUnknownRun},
		{"another role on the operator's run", carol, opRun["run_id"].(string), 1, big, CodeUnknownRun},
		{"another role on a waiting run", carol, atApproval, seq, big, CodeForbidden},
		{"another role on a waiting run, stale seq", carol, atApproval, seq - 1, big, CodeForbidden},
		{"the right role on a run at an llm task", alice, atLLM, 1, json.RawMessage(rest[0]), CodeUnknownRun},
		{"the right role on a finished run", alice, finished, 1, json.RawMessage(rest[0]), CodeUnknownRun},
		{"no such run", alice, "run-does-not-exist", 1, json.RawMessage(rest[0]), CodeUnknownRun},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n int
			var before string
			if tt.run != "run-does-not-exist" {
				n, before = h.traceBytes(ctx, tt.run)
			}
			h.mustFail(tt.ctx, "approve", map[string]any{"run_id": tt.run, "seq": tt.seq, "decision": tt.decision}, tt.want)
			if tt.run == "run-does-not-exist" {
				return
			}
			if m, after := h.traceBytes(ctx, tt.run); m != n || after != before {
				t.Fatalf("the refused approve changed the trace: %d events -> %d", n, m)
			}
		})
	}
	// The approver of the awaited role still reaches the core, which
	// records what it refuses in a run she may read.
	n, _ := h.traceBytes(ctx, atApproval)
	h.mustFail(alice, "approve", map[string]any{"run_id": atApproval, "seq": seq + 1, "decision": json.RawMessage(rest[0])}, "stale_seq")
	if m, _ := h.traceBytes(ctx, atApproval); m != n+2 {
		t.Fatalf("a stale decision of the awaited role: %d events -> %d, want the input and its rejection", n, m)
	}
}

// Only the approver whose decision moved the run on gets the original
// answer back for an exact repeat; another approver of the role sending
// the same decision is refused as for any run not waiting for them.
func TestApproveRetryIsTheDecidersOnly(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Approvers = testApprovers(t) })
	ctx := context.Background()
	runID, seq, rest := kycAtApproval(t, h, ctx)
	args := map[string]any{"run_id": runID, "seq": seq, "decision": json.RawMessage(rest[0])}
	h.mustCall(approverCtx("alice", "compliance_officer"), "approve", args)
	n, before := h.traceBytes(ctx, runID)
	if again := h.mustCall(approverCtx("alice", "compliance_officer"), "approve", args); again["duplicate"] != true {
		t.Fatalf("alice's repeat: %v", again)
	}
	h.mustFail(approverCtx("bob", "compliance_officer"), "approve", args, CodeUnknownRun)
	if m, after := h.traceBytes(ctx, runID); m != n || after != before {
		t.Fatalf("the repeats changed the trace: %d events -> %d", n, m)
	}
}

// Separation of duties through approve: nobody decides a run they started
// or answered in, and the trace records the refusal without the decision.
func TestApproveSeparationOfDuties(t *testing.T) {
	tests := []struct {
		name   string
		owner  context.Context // starts the run
		driver context.Context // answers its tasks
	}{
		{"the owner", as("alice", access.ProfileAgent), as("alice", access.ProfileAgent)},
		// alice answers the agent's run as an operator would.
		{"a submitter", as("agent", access.ProfileAgent), as("alice", access.ProfileOperator)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Approvers = testApprovers(t) })
			ctx := context.Background()
			res := h.mustCall(tt.owner, "start_run", map[string]any{"program": "kyc-onboarding", "input": exampleInput(t, "kyc-onboarding.input.json")})
			runID := res["run_id"].(string)
			ans := answers(t, "kyc-onboarding.approved.answers.jsonl")
			res, used := h.drive(tt.driver, runID, res, ans)
			if res["status"] != "waiting_approval" {
				t.Fatalf("status %v", res["status"])
			}
			n, _ := h.traceBytes(ctx, runID)
			e := h.mustFail(approverCtx("alice", "compliance_officer"), "approve", map[string]any{"run_id": runID, "seq": seqOf(t, task(t, res)), "decision": json.RawMessage(ans[used])}, CodeForbidden)
			if !strings.Contains(e.Message, "separation of duties") {
				t.Fatalf("message %q", e.Message)
			}
			events, err := h.cfg.Service.Events(ctx, runID)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != n+2 {
				t.Fatalf("%d events -> %d, want the input and its rejection", n, len(events))
			}
			rej := events[n+1].Rejection
			if rej == nil || rej.Code != "forbidden" || rej.Output != nil || rej.Digest != nil || rej.Principal != "alice" || rej.Counted {
				t.Fatalf("recorded rejection %+v: want forbidden, alice, no decision, not counted", rej)
			}
			// bob, who did neither, decides.
			if res := h.mustCall(approverCtx("bob", "compliance_officer"), "approve", map[string]any{"run_id": runID, "seq": seqOf(t, task(t, res)), "decision": json.RawMessage(ans[used])}); res["status"] == "waiting_approval" {
				t.Fatalf("bob's approval did not move the run: %v", res)
			}
		})
	}
}

// The elicitation channel is outside separation of duties (the owner's
// own client answers), and counts once toward a four-eyes decision.
func TestElicitationCountsOnceTowardFourEyes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ElicitApprovals = true; c.Approvers = testApprovers(t) },
		client.WithElicitationHandler(elicitFunc(func(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
			return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"release": true}}}, nil
		})))
	ctx := context.Background()
	h.addProgram("testdata/dual-control.yaml")
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "test-dual-control", "input": map[string]any{"amount": 10}})
	args := map[string]any{"run_id": res["run_id"], "seq": seqOf(t, task(t, res))}
	// The owner's client decides: one of the two.
	if got := h.mustCall(ctx, "await_approval", args); got["approvals_given"] != float64(1) {
		t.Fatalf("the owner's elicited decision: %v", got)
	}
	// The operator's client is the elicitation channel again.
	h.mustFail(as(access.IDOperator, access.ProfileOperator), "await_approval", args, "forbidden")
	args["decision"] = map[string]any{"release": true}
	if got := h.mustCall(approverCtx("alice", "compliance_officer"), "approve", args); got["status"] != "completed" {
		t.Fatalf("alice beside the elicited decision: %v", got)
	}
}
