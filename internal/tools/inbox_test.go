package tools

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// addProgram serves the program in a test data file beside the examples.
func (h *harness) addProgram(path string) {
	h.t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		h.t.Fatal(err)
	}
	p, err := program.Load(path, src)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.cfg.Service.AddProgram(context.Background(), p, src); err != nil {
		h.t.Fatal(err)
	}
}

// approverCtx is a request of the approver as the HTTP guard identifies
// one by its bearer token.
func approverCtx(id, role string) context.Context {
	return access.WithPrincipal(context.Background(), access.Principal{ID: id, Profile: access.ProfileApprover, ApproverRole: role})
}

// inboxRows renders list_approvals' rows as "program/state role
// remaining/given [you]" lines, in order.
func inboxRows(res map[string]any) string {
	var rows []string
	for _, a := range res["approvals"].([]any) {
		m := a.(map[string]any)
		row := fmt.Sprintf("%s/%s %s %v/%v", m["program"], m["state"], m["role"], m["approvals_remaining"], m["approvals_given"])
		if m["approved_by_you"] == true {
			row += " you"
		}
		rows = append(rows, row)
	}
	return strings.Join(rows, "; ")
}

// An approver's inbox over MCP: two roles (compliance officers, of whom a
// dual-control state needs two, and finance) and a third (support
// managers) nobody here holds. Each approver sees their role's decisions,
// soonest deadline first; an approval already given is marked for its
// giver and counted for the others; an operator sees every role's, or an
// approver's when passing their token.
func TestListApprovalsByRoleWithNEyes(t *testing.T) {
	approvers := testApprovers(t)
	h := newHarness(t, func(c *Config) { c.Approvers = approvers; c.Profile = access.ProfileOperator })
	ctx := context.Background()
	h.addProgram("testdata/dual-control.yaml")
	agent := as("ops", access.ProfileAgent)
	kycID, _, _ := kycAtApproval(t, h, agent)
	dual := h.mustCall(agent, "start_run", map[string]any{"program": "test-dual-control", "input": map[string]any{"amount": 10}})
	large := h.mustCall(agent, "start_run", map[string]any{"program": "test-dual-control", "input": map[string]any{"amount": 5000}})
	refund := h.mustCall(agent, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.large.input.json")})
	if res, _ := h.drive(agent, refund["run_id"].(string), refund, answers(t, "refund.large.refunded.answers.jsonl")); res["status"] != "waiting_approval" {
		t.Fatalf("refund: %v", res["status"])
	}
	h.mustCall(agent, "start_run", map[string]any{"program": "test-dual-control", "input": map[string]any{"amount": 20}, "lab": true})
	dualID, dualSeq := dual["run_id"].(string), seqOf(t, task(t, dual))

	alice, bob, carol := approverCtx("alice", "compliance_officer"), approverCtx("bob", "compliance_officer"), approverCtx("carol", "finance")
	h.mustCall(alice, "approve", map[string]any{"run_id": dualID, "seq": dualSeq, "decision": map[string]any{"release": true}})

	for _, c := range []struct {
		name string
		ctx  context.Context
		args map[string]any
		// scope, approver, then the rows
		want string
	}{
		{"alice", alice, nil, "approver alice: test-dual-control/dual_control compliance_officer 1/1 you; kyc-onboarding/human_approval compliance_officer 1/0"},
		{"bob", bob, nil, "approver bob: test-dual-control/dual_control compliance_officer 1/1; kyc-onboarding/human_approval compliance_officer 1/0"},
		{"carol", carol, nil, "approver carol: test-dual-control/finance_check finance 1/0"},
		{"alice with lab runs", alice, map[string]any{"include_lab": true},
			"approver alice: test-dual-control/dual_control compliance_officer 1/1 you; test-dual-control/dual_control compliance_officer 2/0; kyc-onboarding/human_approval compliance_officer 1/0"},
		{"the operator", ctx, nil, "all : test-dual-control/dual_control compliance_officer 1/1; kyc-onboarding/human_approval compliance_officer 1/0; " +
			sortedNoDeadline(large["run_id"].(string), "test-dual-control/finance_check finance 1/0", refund["run_id"].(string), "refund/manager_approval support_manager 1/0")},
		{"the operator with carol's token", ctx, map[string]any{"approver_token": carolToken}, "approver carol: test-dual-control/finance_check finance 1/0"},
		{"the operator with alice's token", ctx, map[string]any{"approver_token": aliceToken}, "approver alice: test-dual-control/dual_control compliance_officer 1/1 you; kyc-onboarding/human_approval compliance_officer 1/0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if args == nil {
				args = map[string]any{}
			}
			res := h.mustCall(c.ctx, "list_approvals", args)
			who, _ := res["approver"].(string)
			if got := fmt.Sprintf("%s %s: %s", res["scope"], who, inboxRows(res)); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
			if res["next_cursor"] != nil {
				t.Errorf("next_cursor %v on the only page", res["next_cursor"])
			}
		})
	}

	// The row carries what approve needs, and when the task times out.
	res := h.mustCall(alice, "list_approvals", map[string]any{})
	first := res["approvals"].([]any)[0].(map[string]any)
	since, _ := time.Parse(time.RFC3339Nano, first["since"].(string))
	deadline, _ := time.Parse(time.RFC3339Nano, first["deadline"].(string))
	if first["run_id"] != dualID || uint64(first["seq"].(float64)) != dualSeq || deadline.Sub(since) != time.Hour {
		t.Errorf("first row %v: want run %s, seq %d, a deadline an hour after since", first, dualID, dualSeq)
	}
	if kyc := res["approvals"].([]any)[1].(map[string]any); kyc["run_id"] != kycID {
		t.Errorf("second row %v, want the KYC run %s", kyc, kycID)
	}

	// Bob's approval decides: the run leaves both inboxes.
	h.mustCall(bob, "approve", map[string]any{"run_id": dualID, "seq": dualSeq, "decision": map[string]any{"release": true}})
	if got := inboxRows(h.mustCall(alice, "list_approvals", map[string]any{})); got != "kyc-onboarding/human_approval compliance_officer 1/0" {
		t.Errorf("alice's inbox after the decision: %s", got)
	}

	// Refusals.
	h.mustFail(ctx, "list_approvals", map[string]any{"approver_token": "not-a-token"}, CodeForbidden)
	h.mustFail(alice, "list_approvals", map[string]any{"cursor": "nonsense"}, CodeInvalidArguments)
}

// sortedNoDeadline orders two rows without a deadline as the inbox does:
// by run id.
func sortedNoDeadline(idA, rowA, idB, rowB string) string {
	if idB < idA {
		rowA, rowB = rowB, rowA
	}
	return rowA + "; " + rowB
}

// A deadline that has passed takes the decision out of the inbox, before
// any sweep records the timeout: it can no longer be decided.
func TestListApprovalsLeavesOutPassedDeadlines(t *testing.T) {
	approvers := testApprovers(t)
	h := newHarness(t, func(c *Config) { c.Approvers = approvers })
	agent := as("ops", access.ProfileAgent)
	kycAtApproval(t, h, agent)
	alice := approverCtx("alice", "compliance_officer")
	if got := inboxRows(h.mustCall(alice, "list_approvals", map[string]any{})); got != "kyc-onboarding/human_approval compliance_officer 1/0" {
		t.Fatalf("before the deadline: %q", got)
	}
	h.clock.advance(72 * time.Hour)
	if got := inboxRows(h.mustCall(alice, "list_approvals", map[string]any{})); got != "" {
		t.Fatalf("after the deadline: %q", got)
	}
}

// Only an approver (or an operator) has an inbox: an agent neither sees
// list_approvals nor can call it.
func TestListApprovalsHiddenFromAgents(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Approvers = testApprovers(t) })
	if _, ok := toolNames(t, h.c, as("ops", access.ProfileAgent))["list_approvals"]; ok {
		t.Fatal("an agent without an approver token lists list_approvals")
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "list_approvals"
	req.Params.Arguments = map[string]any{"approver_token": aliceToken}
	if _, err := h.c.CallTool(as("ops", access.ProfileAgent), req); err == nil {
		t.Fatal("an agent called list_approvals")
	}
}

// The inbox is paged like list_runs: 50 decisions a page, then next_cursor
// leads to the rest, each decision once.
func TestListApprovalsPages(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Approvers = testApprovers(t) })
	h.addProgram("testdata/dual-control.yaml")
	agent := as("ops", access.ProfileAgent)
	const runs = inboxPageSize + 1
	for range runs {
		h.mustCall(agent, "start_run", map[string]any{"program": "test-dual-control", "input": map[string]any{"amount": 5000}})
	}
	carol := approverCtx("carol", "finance")
	seen := map[string]bool{}
	var sizes []int
	args := map[string]any{}
	for {
		res := h.mustCall(carol, "list_approvals", args)
		rows := res["approvals"].([]any)
		sizes = append(sizes, len(rows))
		for _, r := range rows {
			id := r.(map[string]any)["run_id"].(string)
			if seen[id] {
				t.Fatalf("run %s listed twice", id)
			}
			seen[id] = true
		}
		next, _ := res["next_cursor"].(string)
		if next == "" {
			break
		}
		args = map[string]any{"cursor": next}
	}
	if fmt.Sprint(sizes) != fmt.Sprintf("[%d 1]", inboxPageSize) || len(seen) != runs {
		t.Fatalf("pages of %v, %d runs; want [%d 1], %d", sizes, len(seen), inboxPageSize, runs)
	}
}
