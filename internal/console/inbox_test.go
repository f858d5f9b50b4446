package console

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// inboxRunIDs are the run ids of the inbox table's rows, in order.
func inboxRunIDs(body string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`<tr data-run-id="([^"]+)"`).FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// toApproval starts a run of program with input and submits answers until
// the run waits for an approval; it returns the run id and the task's seq.
func toApproval(t *testing.T, svc *service.Service, prog string, input any, answers string, lab bool) (string, uint64) {
	t.Helper()
	ctx := context.Background()
	a, err := svc.StartRun(ctx, service.StartOptions{Program: prog, Input: input, Principal: "ops", Lab: lab})
	if err != nil {
		t.Fatal(err)
	}
	if answers != "" {
		data, err := examples.FS.ReadFile(answers)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if a.Task == nil || a.Task.Kind == string(program.KindApproval) {
				break
			}
			var out any
			if err := json.Unmarshal([]byte(line), &out); err != nil {
				t.Fatal(err)
			}
			next, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Task.Seq, Actor: runtime.ActorModel, Principal: "ops", Output: out})
			if err == nil {
				a = next
			}
		}
	}
	if a.Task == nil || a.Task.Kind != string(program.KindApproval) {
		t.Fatalf("%s: the run does not wait for an approval: %+v", prog, a)
	}
	return a.RunID, a.Task.Seq
}

func exampleJSON(t *testing.T, name string) any {
	t.Helper()
	data, err := examples.FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// The console's inbox: an approver sees their role's pending decisions
// (here two compliance officers, one of whom approved a dual-control
// payment already, and finance), the operator every role's and is told
// so, and anyone else the approver's sign-in form.
func TestInboxPageByApproverAndOperator(t *testing.T) {
	c, svc, _ := newTestConsole(t)
	ctx := context.Background()
	src, err := os.ReadFile("../tools/testdata/dual-control.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := program.Load("dual-control.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	kyc, _ := toApproval(t, svc, "kyc-onboarding", exampleJSON(t, "kyc-onboarding.input.json"), "kyc-onboarding.approved.answers.jsonl", false)
	dual, dualSeq := toApproval(t, svc, "test-dual-control", map[string]any{"amount": 10}, "", false)
	large, _ := toApproval(t, svc, "test-dual-control", map[string]any{"amount": 5000}, "", false)
	labRun, _ := toApproval(t, svc, "test-dual-control", map[string]any{"amount": 20}, "", true)
	if _, err := svc.Decide(ctx, dual, runtime.Decide{Seq: dualSeq, Role: "compliance_officer", Principal: "alice", Decision: map[string]any{"release": true}}); err != nil {
		t.Fatal(err)
	}

	alice := &access.Principal{ID: "alice", Profile: access.ProfileApprover, ApproverRole: "compliance_officer"}
	bob := &access.Principal{ID: "bob", Profile: access.ProfileApprover, ApproverRole: "compliance_officer"}
	carol := &access.Principal{ID: "carol", Profile: access.ProfileApprover, ApproverRole: "finance"}
	for _, tc := range []struct {
		name   string
		target string
		who    *access.Principal
		want   []string
		has    []string
		hasNot []string
	}{
		{"alice", "/ui/approvals", alice, []string{dual, kyc}, []string{"compliance_officer", "approver alice", "approved by you", "1 of 2"}, []string{"every pending approval", large, "Approver token"}},
		{"bob", "/ui/approvals", bob, []string{dual, kyc}, []string{"approver bob", "1 of 2"}, []string{"approved by you", large}},
		{"carol", "/ui/approvals", carol, []string{large}, []string{"finance", "none"}, []string{kyc, dual}},
		{"alice with lab runs", "/ui/approvals?lab=include", alice, []string{dual, labRun, kyc}, []string{"Leave out laboratory runs"}, nil},
		{"the operator", "/ui/approvals", operator, []string{dual, kyc, large}, []string{"every pending approval, of every role", "Approver token"}, []string{"approved by you"}},
		{"the auditor", "/ui/approvals", nil, nil, []string{"Approver sign-in", `action="/ui/approvals/login"`}, []string{kyc, "inbox-table"}},
		{"a refused sign-in", "/ui/approvals?failed=1", nil, nil, []string{"not an approver's token"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := get(t, c, "GET", tc.target, tc.who)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", res.StatusCode, body)
			}
			if got := inboxRunIDs(body); strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("rows %v, want %v", got, tc.want)
			}
			for _, s := range tc.has {
				if !strings.Contains(body, s) {
					t.Errorf("the page lacks %q", s)
				}
			}
			for _, s := range tc.hasNot {
				if strings.Contains(body, s) {
					t.Errorf("the page shows %q", s)
				}
			}
		})
	}
	if res, body := get(t, c, "GET", "/ui/approvals?cursor=nonsense", alice); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "cursor") {
		t.Errorf("a bad cursor: %d", res.StatusCode)
	}
	// The inbox reads ?lab= as the runs list and the metrics pages do.
	for _, target := range []string{"/ui/approvals?lab=1", "/ui/approvals?lab=yes"} {
		res, body := get(t, c, "GET", target, alice)
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, `lab must be &#34;include&#34;`) {
			t.Errorf("%s: %d, want 400 naming lab=include", target, res.StatusCode)
		}
	}
}
