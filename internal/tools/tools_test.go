package tools

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

var update = flag.Bool("update", false, "rewrite schemas/tools/ from the contract types")

const schemaDir = "../../schemas/tools"

// TestToolSchemasUpToDate keeps the committed schemas in step with the Go
// contract types: the server advertises what the code generates, and
// clients read the committed files.
func TestToolSchemasUpToDate(t *testing.T) {
	files := ToolSchemaFiles()
	if *update {
		if err := os.MkdirAll(schemaDir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(schemaDir, "*.json"))
		for _, f := range old {
			os.Remove(f)
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(schemaDir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	committed, _ := filepath.Glob(filepath.Join(schemaDir, "*.json"))
	if len(committed) != len(files) {
		t.Errorf("schemas/tools holds %d files, the contract has %d; run go test ./internal/tools -run TestToolSchemasUpToDate -update", len(committed), len(files))
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(schemaDir, name))
		if err != nil || string(got) != string(want) {
			t.Errorf("schemas/tools/%s is out of date; run go test ./internal/tools -run TestToolSchemasUpToDate -update", name)
		}
	}
}

// TestSchemasArePortable pins what MCP clients need of a tool schema: an
// object root with inline properties, no $ref or $defs anywhere, free-form
// values as {} (never `true`), and arrays typed "array" only, never null.
func TestSchemasArePortable(t *testing.T) {
	for name, b := range ToolSchemaFiles() {
		var root map[string]any
		if err := json.Unmarshal(b, &root); err != nil {
			t.Fatal(err)
		}
		if root["type"] != "object" || root["properties"] == nil && !strings.HasPrefix(name, "list_programs.input") {
			t.Errorf("%s: root is not an object schema with properties: %v", name, root["type"])
		}
		for _, bad := range []string{`"$ref"`, `"$defs"`, `": true`, `"null"`, `"$schema"`} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s contains %s", name, bad)
			}
		}
	}
}

var agentTools = []string{"await_approval", "await_run", "cancel_run", "get_receipt", "get_run", "inject_fault", "list_programs", "list_runs", "replay_run", "start_run", "step", "verify_receipt"}

func toolNames(t *testing.T, c *client.Client, ctx context.Context) map[string]mcp.Tool {
	t.Helper()
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]mcp.Tool{}
	for _, tl := range res.Tools {
		out[tl.Name] = tl
	}
	return out
}

func keys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestToolListByProfile(t *testing.T) {
	approvers := testApprovers(t)
	cases := []struct {
		name    string
		profile access.Profile
		ctx     context.Context
		want    []string
	}{
		{"agent", access.ProfileAgent, context.Background(), agentTools},
		{"operator", access.ProfileOperator, context.Background(), append(slices.Clone(agentTools), "analyze", "approve", "erase_subject", "list_approvals", "resolve_tool_call")},
		// An approver reads and decides; it drives no run.
		{"approver", access.ProfileAgent, approverCtx("alice", "compliance_officer"),
			[]string{"approve", "get_receipt", "get_run", "list_approvals", "list_programs", "verify_receipt"}},
		{"operator server, agent caller", access.ProfileOperator, as("agent", access.ProfileAgent), agentTools},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Profile = tc.profile; c.Approvers = approvers })
			got := toolNames(t, h.c, tc.ctx)
			want := slices.Clone(tc.want)
			sort.Strings(want)
			if !slices.Equal(keys(got), want) {
				t.Fatalf("tools %v, want %v", keys(got), want)
			}
			for name, tl := range got {
				a := tl.Annotations
				if a.ReadOnlyHint == nil || a.DestructiveHint == nil || a.IdempotentHint == nil || a.OpenWorldHint == nil || *a.OpenWorldHint {
					t.Errorf("%s: annotations not all set explicitly: %+v", name, a)
				}
				wire, _ := json.Marshal(tl)
				var w map[string]any
				json.Unmarshal(wire, &w)
				in, _ := w["inputSchema"].(map[string]any)
				out, _ := w["outputSchema"].(map[string]any)
				if tl.Description == "" || in["type"] != "object" || out["type"] != "object" {
					t.Errorf("%s: missing description or object schemas: %s", name, wire)
				}
			}
			if got["get_receipt"].Annotations.ReadOnlyHint == nil || !*got["get_receipt"].Annotations.ReadOnlyHint {
				t.Error("get_receipt is not read-only")
			}
			if f, ok := got["inject_fault"]; ok && !*f.Annotations.DestructiveHint {
				t.Error("inject_fault is not destructive")
			}
		})
	}
}

// A hidden tool cannot be called either: the filter is an access control.
func TestApproveHiddenFromAgents(t *testing.T) {
	h := newHarness(t, nil)
	req := mcp.CallToolRequest{}
	req.Params.Name = "approve"
	req.Params.Arguments = map[string]any{"run_id": "x", "seq": 1, "decision": map[string]any{}}
	if _, err := h.c.CallTool(context.Background(), req); err == nil {
		t.Fatal("an agent called approve")
	}
}

func TestRefundRunToEachOutcome(t *testing.T) {
	cases := []struct {
		input, answers, status, outcome string
	}{
		{"refund.input.json", "refund.refunded.answers.jsonl", "completed", "REFUNDED"},
		{"refund.late.input.json", "refund.late.denied.answers.jsonl", "completed", "DENIED"},
		// A large refund waits for a manager, whom step cannot stand in for.
		{"refund.large.input.json", "refund.large.refunded.answers.jsonl", "waiting_approval", ""},
	}
	for _, tc := range cases {
		t.Run(tc.answers, func(t *testing.T) {
			h := newHarness(t, nil)
			ctx := context.Background()
			res := h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, tc.input)})
			runID := res["run_id"].(string)
			if !strings.HasPrefix(runID, "run_") || len(runID) < 36 {
				t.Fatalf("run id %q is not an opaque high-entropy handle", runID)
			}
			res, _ = h.drive(ctx, runID, res, answers(t, tc.answers))
			if res["status"] != tc.status || tc.outcome != "" && res["outcome"] != tc.outcome {
				t.Fatalf("status %v %v, want %s %s", res["status"], res["outcome"], tc.status, tc.outcome)
			}
			got := h.mustCall(ctx, "get_run", map[string]any{"run_id": runID})
			if got["status"] != res["status"] || got["outcome"] != res["outcome"] {
				t.Fatalf("get_run says %v %v, step said %v %v", got["status"], got["outcome"], res["status"], res["outcome"])
			}
		})
	}
}

const approversYAML = `approvers:
  - id: alice
    role: compliance_officer
    token_sha256: 5c9b30e77f74b6df6e20c8cb756d26e80318e27342a3a66cc01399741532ed7c
  - id: bob
    role: compliance_officer
    token_sha256: 99e33b66687c8440d7b812e19d222675000f72f5b95b71d6ad26e30b3c8188d9
  - id: carol
    role: finance
    token_sha256: 25a47311c7b7277e3a545dd38124f0a9aeaa3b46dfc48ff6dc005e743530d7ed
`

// The tokens whose SHA-256 approversYAML holds.
const (
	aliceToken = "alice-approver-token-1"
	bobToken   = "bob-approver-token-22"
	carolToken = "carol-approver-token-3"
)

func TestStepErrors(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "kyc-onboarding", "input": exampleInput(t, "kyc-onboarding.input.json")})
	runID := res["run_id"].(string)
	tk := task(t, res)
	seq := seqOf(t, tk)
	good := answers(t, "kyc-onboarding.rejected.answers.jsonl")[0]

	cases := []struct {
		name    string
		args    map[string]any
		code    string
		hasTask bool
	}{
		{"later seq", map[string]any{"run_id": runID, "seq": seq + 1, "output": good}, "stale_seq", true},
		{"wrong state", map[string]any{"run_id": runID, "seq": seq, "output": good, "state": "screen_sanctions"}, "wrong_state", true},
		{"definition mismatch", map[string]any{"run_id": runID, "seq": seq, "output": good, "definition_hash": "sha256:00"}, "definition_mismatch", true},
		{"tool claim on an llm task", map[string]any{"run_id": runID, "seq": seq, "output": good, "tool": map[string]any{"name": "approve_customer"}}, "capability_denied", true},
		{"schema violation", map[string]any{"run_id": runID, "seq": seq, "output": map[string]any{"full_name": 7}}, "schema_violation", true},
		{"unknown run", map[string]any{"run_id": "run_nope", "seq": 1, "output": good}, "unknown_run", false},
		{"missing output", map[string]any{"run_id": runID, "seq": seq}, "invalid_arguments", false},
		{"extra argument", map[string]any{"run_id": runID, "seq": seq, "output": good, "approve": true}, "invalid_arguments", false},
		{"seq zero", map[string]any{"run_id": runID, "seq": 0, "output": good}, "invalid_arguments", false},
		{"seq as a string", map[string]any{"run_id": runID, "seq": "1", "output": good}, "invalid_arguments", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := h.mustFail(ctx, "step", tc.args, tc.code)
			if tc.hasTask != (e.Task != nil) {
				t.Fatalf("task present %v, want %v", e.Task != nil, tc.hasTask)
			}
			if e.Task != nil && e.Task.Seq != seq {
				t.Fatalf("error carries task %d, want the current %d", e.Task.Seq, seq)
			}
		})
	}
	// Every rejection left the run where it was.
	got := h.mustCall(ctx, "get_run", map[string]any{"run_id": runID})
	if uint64(got["seq"].(float64)) != seq || got["state"] != tk["state"] {
		t.Fatalf("the run moved: %v", got)
	}
	// And the run can go on normally.
	res = h.mustCall(ctx, "step", map[string]any{"run_id": runID, "seq": seq, "output": good})
	if res["transition"] == nil || len(res["transitions"].([]any)) == 0 {
		t.Fatalf("no transition: %v", res)
	}
	// An exact duplicate returns the original answer; the resubmission of
	// an old seq with another output is stale.
	dup := h.mustCall(ctx, "step", map[string]any{"run_id": runID, "seq": seq, "output": good})
	if dup["duplicate"] != true || !jsonEqual(dup["transitions"], res["transitions"]) {
		t.Fatalf("duplicate gave %v, want the original %v", dup, res)
	}
	var changed map[string]any
	json.Unmarshal(good, &changed)
	changed["occupation"] = "astronaut"
	h.mustFail(ctx, "step", map[string]any{"run_id": runID, "seq": seq, "output": changed}, "stale_seq")
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestApprovalThroughStepIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.large.input.json")})
	runID := res["run_id"].(string)
	res, used := h.drive(ctx, runID, res, answers(t, "refund.large.refunded.answers.jsonl"))
	if res["status"] != "waiting_approval" {
		t.Fatalf("status %v, want waiting_approval", res["status"])
	}
	decision := answers(t, "refund.large.refunded.answers.jsonl")[used]
	e := h.mustFail(ctx, "step", map[string]any{"run_id": runID, "seq": seqOf(t, task(t, res)), "output": decision}, "approval_required")
	if e.Task == nil || e.Task.Kind != "approval" {
		t.Fatalf("approval_required without the approval task: %+v", e)
	}
	// No approver is configured here: the advice must not promise one.
	if !strings.Contains(e.Message, "Call await_approval") || strings.Contains(e.Message, "approver") {
		t.Fatalf("approval_required advice: %s", e.Message)
	}
	// Without the elicitation channel, await_approval says so.
	h.mustFail(ctx, "await_approval", map[string]any{"run_id": runID, "seq": seqOf(t, task(t, res))}, CodeApprovalChannelClosed)
}

func TestRunsAreBoundToTheirPrincipal(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator })
	alice, mallory := as("alice", access.ProfileAgent), as("mallory", access.ProfileAgent)
	res := h.mustCall(alice, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json")})
	runID := res["run_id"].(string)
	for _, tool := range []string{"get_run", "get_receipt", "replay_run"} {
		h.mustFail(mallory, tool, map[string]any{"run_id": runID}, CodeUnknownRun)
	}
	h.mustFail(mallory, "cancel_run", map[string]any{"run_id": runID, "reason": "x"}, CodeUnknownRun)
	h.mustFail(mallory, "step", map[string]any{"run_id": runID, "seq": 1, "output": map[string]any{}}, CodeUnknownRun)
	if runs := h.mustCall(mallory, "list_runs", map[string]any{})["runs"].([]any); len(runs) != 0 {
		t.Fatalf("mallory lists %d runs of alice", len(runs))
	}
	if runs := h.mustCall(alice, "list_runs", map[string]any{})["runs"].([]any); len(runs) != 1 {
		t.Fatalf("alice lists %d runs, want 1", len(runs))
	}
	// An operator sees every run.
	if runs := h.mustCall(as("op", access.ProfileOperator), "list_runs", map[string]any{})["runs"].([]any); len(runs) != 1 {
		t.Fatalf("the operator lists %d runs, want 1", len(runs))
	}
}

func TestStartRunIdempotencyKey(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	args := map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json"), "idempotency_key": "order-1042"}
	first := h.mustCall(ctx, "start_run", args)
	again := h.mustCall(ctx, "start_run", args)
	if first["run_id"] != again["run_id"] {
		t.Fatalf("a repeated key started a second run: %v, %v", first["run_id"], again["run_id"])
	}
	args["input"] = exampleInput(t, "refund.late.input.json")
	h.mustFail(ctx, "start_run", args, "idempotency_conflict")
	if runs := h.mustCall(ctx, "list_runs", map[string]any{})["runs"].([]any); len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
}

func TestStartRunErrors(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.mustFail(ctx, "start_run", map[string]any{"program": "nope", "input": map[string]any{}}, CodeUnknownProgram)
	e := h.mustFail(ctx, "start_run", map[string]any{"program": "refund", "input": map[string]any{"order": 1}}, "invalid_input")
	if len(e.Details) == 0 {
		t.Fatal("invalid input without details")
	}
	h.mustFail(ctx, "start_run", map[string]any{"program": "refund"}, CodeInvalidArguments)
	h.mustFail(ctx, "start_run", map[string]any{"program": "refund", "input": map[string]any{}, "idempotency_key": "has space"}, CodeInvalidArguments)
}

func TestReceiptVerifyReplay(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.late.input.json")})
	runID := res["run_id"].(string)
	h.drive(ctx, runID, res, answers(t, "refund.late.denied.answers.jsonl"))

	rec := h.mustCall(ctx, "get_receipt", map[string]any{"run_id": runID})
	if rec["receipt"].(map[string]any)["run_id"] != runID || !strings.HasPrefix(rec["public_key"].(string), "nano-vm-mcp-ed25519 ") {
		t.Fatalf("receipt %v", rec)
	}
	v := h.mustCall(ctx, "verify_receipt", map[string]any{"receipt": rec["receipt"], "signature": rec["signature"]})
	if v["valid"] != true || len(v["problems"].([]any)) != 0 {
		t.Fatalf("verify: %v", v)
	}
	// With the exported trace instead of the stored one.
	recs, err := h.store.Load(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	var trace strings.Builder
	for _, r := range recs {
		trace.Write(r.Body)
		trace.WriteByte('\n')
	}
	v = h.mustCall(ctx, "verify_receipt", map[string]any{"receipt": rec["receipt"], "signature": rec["signature"], "trace": trace.String()})
	if v["valid"] != true {
		t.Fatalf("verify with trace: %v", v)
	}
	// A changed field fails and is named.
	tampered := map[string]any{}
	for k, val := range rec["receipt"].(map[string]any) {
		tampered[k] = val
	}
	tampered["outcome"] = "APPROVED"
	v = h.mustCall(ctx, "verify_receipt", map[string]any{"receipt": tampered, "signature": rec["signature"]})
	if v["valid"] != false || !strings.Contains(strings.Join(toStrings(v["problems"]), " "), "outcome") {
		t.Fatalf("tampered receipt: %v", v)
	}
	// A dropped event fails.
	short := strings.Join(strings.SplitAfter(trace.String(), "\n")[1:], "")
	v = h.mustCall(ctx, "verify_receipt", map[string]any{"receipt": rec["receipt"], "signature": rec["signature"], "trace": short})
	if v["valid"] != false {
		t.Fatalf("trace without its first event verified: %v", v)
	}
	rp := h.mustCall(ctx, "replay_run", map[string]any{"run_id": runID})
	if rp["identical"] != true {
		t.Fatalf("replay: %v", rp)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestInjectFaultAndCancel(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	plain := h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json")})["run_id"]
	lab := h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json"), "lab": true})["run_id"]
	h.mustFail(ctx, "inject_fault", map[string]any{"run_id": plain, "fault": "skip_step"}, CodeForbidden)
	// Erasure is an operator's attack: n/a for an agent, and nothing done.
	if got := h.mustCall(ctx, "inject_fault", map[string]any{"run_id": lab, "fault": "gdpr_erase"}); got["outcome"] != "n/a" || got["run_unchanged"] != true {
		t.Fatalf("gdpr_erase by an agent = %v", got)
	}
	// tool_failure is a fault name inject_fault takes; refund has no tool
	// state, so each sub-attack is n/a with the reason.
	if got := h.mustCall(ctx, "inject_fault", map[string]any{"run_id": lab, "fault": "tool_failure"}); got["outcome"] != "n/a" || got["run_unchanged"] != true ||
		!strings.Contains(got["detail"].(string), "timeout: expected timeout, observed n/a (n/a): the program has no tool state") {
		t.Fatalf("tool_failure by an agent = %v", got)
	}
	h.mustFail(ctx, "inject_fault", map[string]any{"run_id": lab, "fault": "format_disk"}, CodeInvalidArguments)
	before := h.mustCall(ctx, "get_run", map[string]any{"run_id": lab})
	for _, tc := range []struct{ fault, outcome string }{
		{"skip_step", "wrong_state"},
		{"reorder_steps", "stale_seq"},
		{"tool_injection", "capability_denied"},
		{"policy_bypass", "definition_mismatch"},
		{"corrupt_receipt", "verification_failed"},
		{"invalid_program", "invalid_program"},
	} {
		f := h.mustCall(ctx, "inject_fault", map[string]any{"run_id": lab, "fault": tc.fault})
		if f["fault"] != tc.fault || f["outcome"] != tc.outcome || f["run_unchanged"] != true || f["detail"] == "" {
			t.Errorf("%s: %v", tc.fault, f)
		}
	}
	after := h.mustCall(ctx, "get_run", map[string]any{"run_id": lab})
	for _, k := range []string{"state", "seq", "status", "path"} {
		if fmt.Sprint(after[k]) != fmt.Sprint(before[k]) {
			t.Errorf("%s: %v → %v", k, before[k], after[k])
		}
	}
	// Each attack is in the trace, and the receipt counts it.
	rec := h.mustCall(ctx, "get_receipt", map[string]any{"run_id": lab})
	if faults := rec["receipt"].(map[string]any)["counts"].(map[string]any)["faults"]; faults.(float64) < 6 {
		t.Errorf("receipt counts %v faults", faults)
	}
	// A base output for the attacks that alter one, on a run with its
	// attempts intact (the attacks above used two of three).
	lab2 := h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json"), "lab": true})["run_id"]
	f := h.mustCall(ctx, "inject_fault", map[string]any{"run_id": lab2, "fault": "tool_injection",
		"params": map[string]any{"output": map[string]any{"eligible": true, "amount_cents": 100, "reason": "ok"}}})
	if f["outcome"] != "capability_denied" || !strings.Contains(f["detail"].(string), "extra_fields: expected schema_violation, observed schema_violation (pass)") {
		t.Errorf("with params: %v", f)
	}
	if r := h.mustCall(ctx, "get_run", map[string]any{"run_id": lab}); r["lab"] != true {
		t.Fatalf("lab run not marked: %v", r)
	}
	c := h.mustCall(ctx, "cancel_run", map[string]any{"run_id": plain, "reason": "customer withdrew"})
	if c["status"] != "cancelled" {
		t.Fatalf("cancel: %v", c)
	}
	h.mustFail(ctx, "cancel_run", map[string]any{"run_id": plain, "reason": "again"}, "run_finished")
	h.mustFail(ctx, "step", map[string]any{"run_id": plain, "seq": 1, "output": map[string]any{}}, "run_finished")
}

func TestListProgramsShowsNoGuards(t *testing.T) {
	h := newHarness(t, nil)
	res := h.mustCall(context.Background(), "list_programs", map[string]any{})
	b, _ := json.Marshal(res)
	progs := res["programs"].([]any)
	if len(progs) != 3 {
		t.Fatalf("%d programs", len(progs))
	}
	for _, leak := range []string{"when", "guard", "transitions", "max_attempts"} {
		if strings.Contains(string(b), `"`+leak+`"`) {
			t.Errorf("list_programs shows %q", leak)
		}
	}
}

func TestListRunsPaging(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	for range 60 {
		h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json")})
	}
	page := h.mustCall(ctx, "list_runs", map[string]any{"program": "refund"})
	first := len(page["runs"].([]any))
	next, _ := page["next_cursor"].(string)
	if first == 0 || next == "" {
		t.Fatalf("first page %d runs, cursor %q", first, next)
	}
	page = h.mustCall(ctx, "list_runs", map[string]any{"program": "refund", "cursor": next})
	if first+len(page["runs"].([]any)) != 60 || page["next_cursor"] != nil {
		t.Fatalf("pages hold %d+%d runs, want 60 in all", first, len(page["runs"].([]any)))
	}
	h.mustFail(ctx, "list_runs", map[string]any{"cursor": "garbage"}, CodeInvalidArguments)
	h.mustFail(ctx, "list_runs", map[string]any{"status": "waiting"}, CodeInvalidArguments)
}

// The rejection that uses up the last attempt says the run has ended
// instead of inviting another try.
func TestLastAttemptEndsTheRun(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json")})
	runID, seq := res["run_id"], seqOf(t, task(t, res))
	var e *ErrorBody
	for range 3 {
		e = h.mustFail(ctx, "step", map[string]any{"run_id": runID, "seq": seq, "output": map[string]any{"eligible": "yes"}}, "schema_violation")
	}
	if e.Task != nil || !strings.Contains(e.Message, "The run has ended: failed (attempts_exhausted") || strings.Contains(e.Message, "call step again") {
		t.Fatalf("last rejection: %+v", e)
	}
	if got := h.mustCall(ctx, "get_run", map[string]any{"run_id": runID}); got["status"] != "failed" {
		t.Fatalf("status %v", got["status"])
	}
}

// A repeated tool result is a duplicate even after the run moved on.
func TestDuplicateToolStepAfterTheRunMovedOn(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "kyc-onboarding", "input": exampleInput(t, "kyc-onboarding.input.json")})
	runID := res["run_id"]
	ans := answers(t, "kyc-onboarding.rejected.answers.jsonl")
	res = h.mustCall(ctx, "step", map[string]any{"run_id": runID, "seq": seqOf(t, task(t, res)), "output": ans[0]})
	tk := task(t, res)
	args := map[string]any{"run_id": runID, "seq": seqOf(t, tk), "output": ans[1], "tool": map[string]any{"name": tk["tool"].(map[string]any)["name"]}}
	first := h.mustCall(ctx, "step", args)
	again := h.mustCall(ctx, "step", args)
	if again["duplicate"] != true || !jsonEqual(again["transitions"], first["transitions"]) {
		t.Fatalf("repeated tool step: %v", again)
	}
}

// An expired task times out when the run is next looked at, not only
// when someone submits.
func TestExpiredTaskTimesOutOnRead(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	runID, _, _ := kycAtApproval(t, h, ctx)
	h.clock.advance(73 * time.Hour)
	got := h.mustCall(ctx, "get_run", map[string]any{"run_id": runID})
	if got["state"] == "human_approval" || got["status"] == "waiting_approval" {
		t.Fatalf("the 72-hour approval did not time out: %v", got)
	}
}
