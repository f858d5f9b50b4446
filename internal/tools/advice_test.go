package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

// A rejected tool result is never answered with "fix the output": the
// advice is to call the tool and submit its result unchanged, or to stop.
// llm tasks keep their advice. Every attempt code says it used an attempt.
func TestRejectionAdviceByTaskKind(t *testing.T) {
	toolRule := []string{"task.tool.arguments", "unchanged", "never edit", "cannot call that tool", "cancel_run", "tell the user"}
	cases := []struct {
		name     string
		toolTask bool
		output   map[string]any
		claim    string
		code     string
		want     []string
		not      []string
	}{
		{"tool task, schema_violation", true, map[string]any{"score": "high"}, "", "schema_violation",
			append([]string{"exactly the JSON the tool returned"}, toolRule...), []string{"Fix the output"}},
		{"tool task, guard_denied", true, map[string]any{"score": 120}, "", "guard_denied",
			append([]string{"changing it to pass the policy is not allowed"}, toolRule...), []string{"submit an output the policy allows"}},
		{"tool task, capability_denied", true, map[string]any{"score": 700}, "credit_score", "capability_denied",
			append([]string{"Claim only the tool the task grants"}, toolRule...), nil},
		{"llm task, schema_violation", false, map[string]any{"proceed": "yes"}, "", "schema_violation",
			[]string{"Fix the output so it matches the task's output_schema and call step again"}, toolRule[:1]},
		{"llm task, guard_denied", false, map[string]any{"proceed": false}, "", "guard_denied",
			[]string{"submit an output the policy allows"}, toolRule[:1]},
		{"llm task, capability_denied", false, map[string]any{"proceed": true}, "credit_check", "capability_denied",
			[]string{"Submit only what the task grants"}, toolRule[:1]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.addProgram("testdata/tool-gate.yaml")
			ctx := context.Background()
			res := h.mustCall(ctx, "start_run", map[string]any{"program": "test-tool-gate", "input": map[string]any{"customer": "Ada"}})
			runID := res["run_id"]
			if tc.toolTask {
				res = h.mustCall(ctx, "step", map[string]any{"run_id": runID, "seq": seqOf(t, task(t, res)), "output": map[string]any{"proceed": true}})
			}
			tk := task(t, res)
			if (tk["kind"] == "tool") != tc.toolTask {
				t.Fatalf("task kind %v", tk["kind"])
			}
			args := map[string]any{"run_id": runID, "seq": seqOf(t, tk), "output": tc.output}
			if tc.claim != "" {
				args["tool"] = map[string]any{"name": tc.claim}
			}
			e := h.mustFail(ctx, "step", args, tc.code)
			left := int(tk["attempts_left"].(float64)) - 1
			if e.Task == nil || e.Task.AttemptsLeft != left {
				t.Fatalf("error task %+v, want attempts_left %d", e.Task, left)
			}
			want := append(tc.want, "used up an attempt", "capability_denied each use one", fmt.Sprintf("%d left.", left))
			for _, w := range want {
				if !strings.Contains(e.Message, w) {
					t.Errorf("message lacks %q: %s", w, e.Message)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(e.Message, n) {
					t.Errorf("message has %q: %s", n, e.Message)
				}
			}
		})
	}
}

// A protocol error that carries a tool task repeats the tool-task rule,
// and says nothing of attempts.
func TestToolTaskRuleOnProtocolErrors(t *testing.T) {
	h := newHarness(t, nil)
	h.addProgram("testdata/tool-gate.yaml")
	ctx := context.Background()
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "test-tool-gate", "input": map[string]any{"customer": "Ada"}})
	res = h.mustCall(ctx, "step", map[string]any{"run_id": res["run_id"], "seq": seqOf(t, task(t, res)), "output": map[string]any{"proceed": true}})
	e := h.mustFail(ctx, "step", map[string]any{"run_id": res["run_id"], "seq": seqOf(t, task(t, res)) + 1, "output": map[string]any{"score": 700}}, "stale_seq")
	if !strings.Contains(e.Message, toolTaskRule) || strings.Contains(e.Message, "attempt") {
		t.Fatalf("stale_seq on a tool task: %s", e.Message)
	}
}

// Every text a model reads before it answers a tool task says to call the
// tool with its arguments, to submit the result unchanged, to stop when it
// cannot call the tool, and that capability_denied costs an attempt.
func TestToolTaskGuidanceInEveryText(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()

	c, err := client.NewInProcessClient(h.srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "guidance", Version: "1"}
	ir, err := c.Initialize(ctx, init)
	if err != nil {
		t.Fatal(err)
	}
	list, err := h.c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var step string
	for _, tool := range list.Tools {
		if tool.Name == "step" {
			step = tool.Description
		}
	}
	req := mcp.GetPromptRequest{}
	req.Params.Name = "drive_run"
	pr, err := h.c.GetPrompt(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]string{
		"server instructions": ir.Instructions,
		"step description":    step,
		"drive_run prompt":    pr.Messages[0].Content.(mcp.TextContent).Text,
	}
	for name, text := range texts {
		// The prompt wraps its lines; the phrases are matched across them.
		flat := strings.Join(strings.Fields(text), " ")
		for _, want := range []string{
			"task.tool.name with task.tool.arguments", "its result unchanged", "with tool: {name}",
			"ever edit or invent", "If you cannot call that tool, stop, or call cancel_run, and tell the user",
			"schema_violation, guard_denied and capability_denied each use up", "the last one ends the run",
			`waiting_for: "tool"`, "submit nothing for it, call await_run with the run_id until waiting_for is gone",
		} {
			if !strings.Contains(flat, want) {
				t.Errorf("%s lacks %q:\n%s", name, want, text)
			}
		}
	}
}

// approve's errors say how to make the call succeed: which token is
// missing, and that a corrected decision goes to approve, not step.
func TestApproveErrorAdvice(t *testing.T) {
	cases := []struct {
		name      string
		approvers bool
		token     string
		decision  map[string]any
		code      string
		want      []string
	}{
		{"no token", true, "", nil, CodeForbidden, []string{"none was passed", "Call approve again with approver_token"}},
		{"unknown token", true, "not-a-token-of-anyone", nil, CodeForbidden, []string{"no configured approver holds that token", "Call approve again with approver_token"}},
		{"no approvers configured", false, aliceToken, nil, CodeForbidden, []string{"serve --approvers FILE", "--approval-channel elicitation"}},
		{"wrong role", true, carolToken, nil, CodeForbidden, []string{"Do not retry as carol", "role compliance_officer"}},
		{"decision off the form", true, aliceToken, map[string]any{"decision": "maybe", "reason": "x"}, "schema_violation",
			[]string{"Fix the decision so it matches the task's output_schema and call approve again", "2 left."}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.Profile = access.ProfileOperator
				if tc.approvers {
					c.Approvers = testApprovers(t)
				}
			})
			ctx := context.Background()
			runID, seq, rest := kycAtApproval(t, h, ctx)
			args := map[string]any{"run_id": runID, "seq": seq, "decision": json.RawMessage(rest[0])}
			if tc.decision != nil {
				args["decision"] = tc.decision
			}
			if tc.token != "" {
				args["approver_token"] = tc.token
			}
			e := h.mustFail(ctx, "approve", args, tc.code)
			for _, w := range tc.want {
				if !strings.Contains(e.Message, w) {
					t.Errorf("message lacks %q: %s", w, e.Message)
				}
			}
			if strings.Contains(e.Message, "step") || (tc.name != "wrong role" && strings.Contains(e.Message, "do not retry")) {
				t.Errorf("misleading advice: %s", e.Message)
			}
		})
	}
}

// await_approval on a closed channel names who decides instead; where
// nobody can, it names the missing configuration and the deadline, and
// never speaks of approvers the server does not have.
func TestAwaitApprovalClosedChannelNamesTheWayOut(t *testing.T) {
	// carol alone: an approver, but not a compliance officer.
	financeOnly, err := access.ParseApprovers("approvers.yaml", []byte("approvers:\n  - {id: carol, role: finance, token_sha256: 25a47311c7b7277e3a545dd38124f0a9aeaa3b46dfc48ff6dc005e743530d7ed}\n"))
	if err != nil {
		t.Fatal(err)
	}
	nobody := []string{"This server has no approver of role compliance_officer", "serve --approvers FILE", "at its deadline, 2026-", "it goes to escalated"}
	cases := []struct {
		name      string
		approvers *access.Approvers
		elicit    bool
		want, not []string
	}{
		{"no approvers, channel closed", nil, false,
			append([]string{"runs without --approval-channel elicitation", "serve started with --approval-channel elicitation"}, nobody...),
			[]string{"configured approvers", "An approver of role"}},
		{"approvers of another role, channel closed", financeOnly, false,
			append([]string{"serve started with --approval-channel elicitation"}, nobody...),
			[]string{"configured approvers", "An approver of role"}},
		{"approvers of the role, channel closed", testApprovers(t), false,
			[]string{"An approver of role compliance_officer decides this task with approve"},
			[]string{"--approvers FILE", "nobody can decide"}},
		{"no approvers, client cannot elicit", nil, true,
			append([]string{"did not declare the elicitation capability", "one of: a client that shows elicitation forms; or an approver"}, nobody...),
			[]string{"configured approvers", "serve started"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Approvers, c.ElicitApprovals = tc.approvers, tc.elicit })
			ctx := context.Background()
			runID, seq, _ := kycAtApproval(t, h, ctx)
			e := h.mustFail(ctx, "await_approval", map[string]any{"run_id": runID, "seq": seq}, CodeApprovalChannelClosed)
			for _, w := range tc.want {
				if !strings.Contains(e.Message, w) {
					t.Errorf("message lacks %q: %s", w, e.Message)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(e.Message, n) {
					t.Errorf("message has %q: %s", n, e.Message)
				}
			}
		})
	}
}
