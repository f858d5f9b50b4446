package console

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// An approver reads their inbox and the runs waiting for their role, and
// nothing else: not the other runs, the programs' guards, the metrics,
// the laboratory or the demo.
func TestApproverSeesOnlyInboxAndWaitingRuns(t *testing.T) {
	c, svc, _ := newTestConsole(t)
	waiting, _ := toApproval(t, svc, "kyc-onboarding", exampleJSON(t, "kyc-onboarding.input.json"), "kyc-onboarding.approved.answers.jsonl", false)
	other, err := svc.StartRun(t.Context(), service.StartOptions{Program: "refund", Input: exampleJSON(t, "refund.input.json"), Principal: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	alice := &access.Principal{ID: "alice", Profile: access.ProfileApprover, ApproverRole: "compliance_officer"}
	bob := &access.Principal{ID: "bob", Profile: access.ProfileApprover, ApproverRole: "risk_officer"}
	for _, tc := range []struct {
		who          *access.Principal
		method, path string
		want         int
	}{
		{alice, "GET", access.ConsoleApprovalsPath, http.StatusOK},
		{alice, "GET", "/ui/runs/" + waiting, http.StatusOK},
		{alice, "GET", "/ui/runs/" + waiting + "/state.json", http.StatusOK},
		{alice, "POST", "/ui/runs/" + waiting + "/receipt/verify", http.StatusOK},
		{alice, "GET", "/ui/static/console.css", http.StatusOK},
		{alice, "GET", access.FaviconPath, http.StatusOK},
		{alice, "GET", "/ui/", http.StatusSeeOther},
		{alice, "GET", "/ui/runs", http.StatusForbidden},
		{alice, "GET", "/ui/runs/" + other.RunID, http.StatusForbidden},
		{alice, "POST", "/ui/runs/" + other.RunID + "/receipt/verify", http.StatusForbidden},
		{alice, "GET", "/ui/runs/run_nope", http.StatusForbidden},
		{alice, "GET", "/ui/programs", http.StatusForbidden},
		{alice, "GET", "/ui/metrics", http.StatusForbidden},
		{alice, "GET", "/ui/lab", http.StatusForbidden},
		{alice, "GET", "/ui/demo", http.StatusForbidden},
		{bob, "GET", "/ui/runs/" + waiting, http.StatusForbidden},
		{bob, "GET", access.ConsoleApprovalsPath, http.StatusOK},
		{operator, "GET", "/ui/runs/" + other.RunID, http.StatusOK},
		{operator, "GET", "/ui/runs", http.StatusOK},
	} {
		t.Run(tc.who.ID+" "+tc.method+" "+tc.path, func(t *testing.T) {
			res, body := get(t, c, tc.method, tc.path, tc.who)
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %.300s", res.StatusCode, tc.want, body)
			}
			if tc.path == "/ui/" && res.Header.Get("Location") != access.ConsoleApprovalsPath {
				t.Fatalf("an approver's home is %q", res.Header.Get("Location"))
			}
			if tc.who == alice && tc.want == http.StatusOK && strings.Contains(body, `href="/ui/programs"`) {
				t.Error("an approver's page links to the programs")
			}
		})
	}
}

// On a public console an approver reads what the auditor reads, not less.
func TestApproverOnAPublicConsoleReadsAsTheAuditor(t *testing.T) {
	c, svc, _ := newTestConsole(t)
	c.cfg.Public = true
	other, err := svc.StartRun(t.Context(), service.StartOptions{Program: "refund", Input: exampleJSON(t, "refund.input.json"), Principal: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	alice := &access.Principal{ID: "alice", Profile: access.ProfileApprover, ApproverRole: "compliance_officer"}
	for _, path := range []string{"/ui/runs", "/ui/runs/" + other.RunID, "/ui/programs", access.ConsoleApprovalsPath} {
		if res, body := get(t, c, "GET", path, alice); res.StatusCode != http.StatusOK || !strings.Contains(body, `href="/ui/programs"`) {
			t.Errorf("%s: %d, without the full navigation: %.200s", path, res.StatusCode, body)
		}
	}
	if res, _ := get(t, c, "POST", "/ui/lab/run", alice); res.StatusCode != http.StatusForbidden {
		t.Errorf("the lab's action: %d", res.StatusCode)
	}
}

// Without a credential where the console is closed, the guard lets in the
// sign-in pages only, with no principal: they ask for a token and show no
// navigation into pages that would refuse.
func TestSignInPageForNobody(t *testing.T) {
	c, _, _ := newTestConsole(t)
	res, body := get(t, c, "GET", access.ConsoleLoginPath, &access.Principal{})
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `id="login-required"`) || strings.Contains(body, "auditor view") || strings.Contains(body, `href="/ui/runs"`) {
		t.Fatalf("status %d:\n%s", res.StatusCode, body)
	}
	_, body = get(t, c, "GET", access.ConsoleLoginPath, nil)
	if strings.Contains(body, `id="login-required"`) || !strings.Contains(body, "auditor view") {
		t.Fatalf("the public console's sign-in page:\n%s", body)
	}
	res, body = get(t, c, "GET", access.FaviconPath, &access.Principal{})
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(body, "\x00\x00\x01\x00") {
		t.Fatalf("favicon: %d %q", res.StatusCode, body[:min(len(body), 8)])
	}
}
