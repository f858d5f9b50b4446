package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

// Approvers over HTTP against the real binary: they reach only the runs
// that wait for their role (issue 13 item 1), and separation of duties
// keeps anyone from deciding what they drove (item 3).

const (
	sodAliceApprover = "alice-approver-token-0123456789"
	sodBobApprover   = "bob-approver-token-0123456789"
	sodCarolApprover = "carol-approver-token-0123456789"
	sodDaveAgent     = "dave-agent-token-0123456789"
	sodDaveApprover  = "dave-approver-token-0123456789"
)

// approversFile lists alice and bob (compliance officers) and carol
// (finance), and dave (a compliance officer) when withDave.
func approversFile(withDave bool) string {
	s := "approvers:\n" +
		"  - {id: alice, role: compliance_officer, token_sha256: " + tokenHash(sodAliceApprover) + "}\n" +
		"  - {id: bob, role: compliance_officer, token_sha256: " + tokenHash(sodBobApprover) + "}\n" +
		"  - {id: carol, role: finance, token_sha256: " + tokenHash(sodCarolApprover) + "}\n"
	if withDave {
		s += "  - {id: dave, role: compliance_officer, token_sha256: " + tokenHash(sodDaveApprover) + "}\n"
	}
	return s
}

// startApprovalsServer serves the examples and the dual-control program
// (approvals: 2) with the approvers of approversFile(false) and dave as an
// agent of the tokens file. It returns the /mcp URL and the two files.
func startApprovalsServer(t *testing.T) (url, approvers, tokens string) {
	t.Helper()
	dir := t.TempDir()
	approvers, tokens = filepath.Join(dir, "approvers.yaml"), filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(approvers, []byte(approversFile(false)), 0o600); err != nil {
		t.Fatal(err)
	}
	writeTokens(t, tokens, map[string]string{"dave": sodDaveAgent})
	progs := filepath.Join(dir, "programs")
	src, err := os.ReadFile("../../internal/tools/testdata/dual-control.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(progs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(progs, "dual-control.yaml"), src, 0o600); err != nil {
		t.Fatal(err)
	}
	url = startHTTP(t, []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken, "NANO_VM_OPERATOR_TOKEN=" + testOpToken},
		"--store", "memory", "--approvers", approvers, "--tokens", tokens, "--programs", progs)
	return url, approvers, tokens
}

// accepted reports whether the server lets a request with the bearer
// token through its guard.
func accepted(t *testing.T, url, token string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode != http.StatusUnauthorized
}

// awaitReload polls until the server's guard treats token as want: the
// credentials files are checked every access.DefaultReloadInterval.
func awaitReload(t *testing.T, url, token string, want bool) {
	t.Helper()
	deadline := time.Now().Add(4 * access.DefaultReloadInterval)
	for accepted(t, url, token) != want {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not reload its credentials files (token accepted: %v)", !want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stepToApproval answers the run's llm and tool tasks from the approved
// answers file until it waits for an approval: that task, and the answer
// meant for it.
func stepToApproval(t *testing.T, c *client.Client, runID string, tk map[string]any) (map[string]any, json.RawMessage) {
	t.Helper()
	for _, ans := range readLines(t, "../../examples/kyc-onboarding.approved.answers.jsonl") {
		if tk["kind"] == "approval" {
			return tk, ans
		}
		args := map[string]any{"run_id": runID, "seq": tk["seq"], "output": ans}
		if tool, ok := tk["tool"].(map[string]any); ok {
			args["tool"] = map[string]any{"name": tool["name"]}
		}
		res, e := callTool(t, c, "step", args)
		if e != nil {
			if code := e["code"]; code != "schema_violation" && code != "guard_denied" {
				t.Fatalf("step: %v", e)
			}
			tk = e["task"].(map[string]any)
			continue
		}
		tk = res["task"].(map[string]any)
	}
	t.Fatal("the answers ran out before an approval")
	return nil, nil
}

// treeOf is the run's trace as its receipt commits to it: the event count
// and the Merkle root over every event's bytes.
func treeOf(t *testing.T, operator *client.Client, runID string) string {
	t.Helper()
	res, e := callTool(t, operator, "get_receipt", map[string]any{"run_id": runID})
	if e != nil {
		t.Fatalf("get_receipt: %v", e)
	}
	b, _ := json.Marshal(res["receipt"].(map[string]any)["tree"])
	return string(b)
}

// traceEvents reads the run's whole trace through the operator's resource.
func traceEvents(t *testing.T, operator *client.Client, runID string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for uri := "nano-vm://runs/" + runID + "/trace"; uri != ""; {
		req := mcp.ReadResourceRequest{}
		req.Params.URI = uri
		res, err := operator.ReadResource(context.Background(), req)
		if err != nil {
			t.Fatalf("read %s: %v", uri, err)
		}
		var page struct {
			Events []map[string]any `json:"events"`
			Next   string           `json:"next"`
		}
		if err := json.Unmarshal([]byte(res.Contents[0].(mcp.TextResourceContents).Text), &page); err != nil {
			t.Fatal(err)
		}
		out, uri = append(out, page.Events...), page.Next
	}
	return out
}

func TestServeApproverCannotWriteIntoOthersRuns(t *testing.T) {
	url, _, _ := startApprovalsServer(t)
	v := mcp.LATEST_PROTOCOL_VERSION
	agent, operator := httpClient(t, url, testAccessToken, v), httpClient(t, url, testOpToken, v)
	carol := httpClient(t, url, sodCarolApprover, v)

	atLLM, _ := startExample(t, agent, "kyc-onboarding")
	ofOperator, _ := startExample(t, operator, "kyc-onboarding")
	waiting, tk := startExample(t, agent, "kyc-onboarding")
	tk, _ = stepToApproval(t, agent, waiting, tk)

	big := map[string]any{"decision": "approve", "reason": strings.Repeat("x", 1_000_000)}
	for _, tc := range []struct {
		name, run string
		seq       any
		want      string
	}{
		{"the agent's run at its first llm task", atLLM, 1, "unknown_run"},
		{"the operator's run", ofOperator, 1, "unknown_run"},
		{"a run waiting for another role", waiting, tk["seq"], "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := treeOf(t, operator, tc.run)
			for range 3 {
				_, e := callTool(t, carol, "approve", map[string]any{"run_id": tc.run, "seq": tc.seq, "decision": big})
				if errCode(e) != tc.want {
					t.Fatalf("carol's approve: %v, want %s", e, tc.want)
				}
			}
			if after := treeOf(t, operator, tc.run); after != before {
				t.Fatalf("carol's refused approves changed the trace: %s -> %s", before, after)
			}
		})
	}
}

// Separation of duties. Over HTTP an approver is never an agent at the
// same time: an approver token drives no run, and the tokens file refuses
// an agent id that an approver has. A person can still change roles: dave
// drives runs as an agent, then the operator makes him an approver. He
// may not decide the runs he started and answered.
func TestServeSeparationOfDuties(t *testing.T) {
	url, approvers, tokens := startApprovalsServer(t)
	v := mcp.LATEST_PROTOCOL_VERSION
	operator := httpClient(t, url, testOpToken, v)
	alice, bob := httpClient(t, url, sodAliceApprover, v), httpClient(t, url, sodBobApprover, v)

	t.Run("an approver token drives no run", func(t *testing.T) {
		tools, err := alice.ListTools(context.Background(), mcp.ListToolsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tl := range tools.Tools {
			names = append(names, tl.Name)
		}
		if got := " " + strings.Join(names, " ") + " "; strings.Contains(got, " start_run ") || strings.Contains(got, " step ") || !strings.Contains(got, " approve ") {
			t.Fatalf("the approver's tools: %s", got)
		}
		for name, args := range map[string]map[string]any{
			"start_run": {"program": "kyc-onboarding", "input": map[string]any{}},
			"step":      {"run_id": "run-x", "seq": 1, "output": map[string]any{}},
		} {
			req := mcp.CallToolRequest{}
			req.Params.Name, req.Params.Arguments = name, args
			if res, err := alice.CallTool(context.Background(), req); err == nil {
				t.Fatalf("%s with an approver token answered %+v", name, res)
			}
		}
	})

	// dave, an agent, starts a KYC run and answers it up to its approval,
	// and starts a payment that needs two compliance officers.
	daveAgent := httpClient(t, url, sodDaveAgent, v)
	kyc, tk := startExample(t, daveAgent, "kyc-onboarding")
	tk, decision := stepToApproval(t, daveAgent, kyc, tk)
	res, e := callTool(t, daveAgent, "start_run", map[string]any{"program": "test-dual-control", "input": map[string]any{"amount": 10}})
	if e != nil || res["status"] != "waiting_approval" {
		t.Fatalf("start_run: %v %v", res, e)
	}
	payment, paymentSeq := res["run_id"], res["task"].(map[string]any)["seq"]

	// The operator makes dave a compliance officer.
	if err := os.WriteFile(tokens, []byte("agents: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	awaitReload(t, url, sodDaveAgent, false)
	if err := os.WriteFile(approvers, []byte(approversFile(true)), 0o600); err != nil {
		t.Fatal(err)
	}
	awaitReload(t, url, sodDaveApprover, true)
	dave := httpClient(t, url, sodDaveApprover, v)

	t.Run("the owner and submitter cannot approve", func(t *testing.T) {
		n := len(traceEvents(t, operator, kyc))
		_, e := callTool(t, dave, "approve", map[string]any{"run_id": kyc, "seq": tk["seq"], "decision": decision})
		if errCode(e) != "forbidden" || !strings.Contains(e["message"].(string), "separation of duties") {
			t.Fatalf("dave approving his own run: %v", e)
		}
		events := traceEvents(t, operator, kyc)
		if len(events) != n+2 {
			t.Fatalf("%d events -> %d, want the input and its rejection", n, len(events))
		}
		rej, _ := events[n+1]["rejection"].(map[string]any)
		if rej["code"] != "forbidden" || rej["principal"] != "dave" || rej["output"] != nil || rej["digest"] != nil || rej["counted"] == true {
			t.Fatalf("recorded refusal %v: want forbidden, dave, no decision, not counted", rej)
		}
		if in := events[n]["input"].(map[string]any); in["separate_duties"] != true {
			t.Fatalf("input record %v", in)
		}
		res, e := callTool(t, bob, "approve", map[string]any{"run_id": kyc, "seq": tk["seq"], "decision": decision})
		if e != nil || res["status"] == "waiting_approval" || res["transition"] == nil {
			t.Fatalf("bob's decision did not move the run: %v %v", res, e)
		}
	})

	t.Run("the owner does not count toward two approvals", func(t *testing.T) {
		args := map[string]any{"run_id": payment, "seq": paymentSeq, "decision": map[string]any{"release": true}}
		if _, e := callTool(t, dave, "approve", args); errCode(e) != "forbidden" {
			t.Fatalf("dave first: %v", e)
		}
		if got, e := callTool(t, alice, "approve", args); e != nil || got["approvals_given"] != float64(1) || got["status"] != "waiting_approval" {
			t.Fatalf("alice: %v %v", got, e)
		}
		if _, e := callTool(t, dave, "approve", args); errCode(e) != "forbidden" {
			t.Fatalf("dave second: %v", e)
		}
		got, e := callTool(t, operator, "get_run", map[string]any{"run_id": payment})
		if e != nil || got["status"] != "waiting_approval" {
			t.Fatalf("after the owner's attempts: %v %v", got, e)
		}
		if got, e := callTool(t, bob, "approve", args); e != nil || got["outcome"] != "RELEASED" {
			t.Fatalf("bob, the second distinct approver: %v %v", got, e)
		}
	})
}
