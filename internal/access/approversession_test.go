package access

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// approverSignIn posts the inbox's sign-in form.
func approverSignIn(t *testing.T, h http.Handler, token string) *http.Response {
	t.Helper()
	return postToken(t, h, ConsoleApproverLoginPath, token)
}

// An approver signs in to the console with their own token: the session
// is theirs alone, ends, and follows the approvers list; nothing else
// signs in there.
func TestConsoleApproverSignIn(t *testing.T) {
	now := signInDay
	h, next := clockedGuard(t, &now)
	as := func(c *http.Cookie) *Principal {
		t.Helper()
		return consoleAs(t, h, next, ConsoleApprovalsPath, c)
	}

	for _, tok := range []string{"wrong", agentTok, operatorTok, ""} {
		res := approverSignIn(t, h, tok)
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != ConsoleApprovalsPath+"?failed=1" || len(res.Cookies()) != 0 {
			t.Fatalf("approver sign-in with %q: %d to %q, cookies %v", tok, res.StatusCode, res.Header.Get("Location"), res.Cookies())
		}
	}
	res := approverSignIn(t, h, aliceTok)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != ConsoleApprovalsPath || len(res.Cookies()) != 1 {
		t.Fatalf("alice's sign-in: %d to %q, cookies %v", res.StatusCode, res.Header.Get("Location"), res.Cookies())
	}
	c := res.Cookies()[0]
	if c.Name != ConsoleApproverCookie || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != ConsolePath || strings.Contains(c.Value, aliceTok) {
		t.Fatalf("session cookie %+v", c)
	}
	if p := as(c); p == nil || *p != *alice {
		t.Fatalf("with alice's session: %+v, want %+v", p, *alice)
	}
	// Anything but a session the server opened for an approver is
	// nobody's: the inbox shows its sign-in form.
	op := signIn(t, h, operatorTok).Cookies()[0]
	for name, v := range map[string]string{
		"a made-up id":                 strings.Repeat("A", len(c.Value)),
		"one character changed":        c.Value[:len(c.Value)-2] + map[bool]string{true: "B", false: "A"}[c.Value[len(c.Value)-2] == 'A'] + c.Value[len(c.Value)-1:],
		"the operator's session value": op.Value,
	} {
		f := *c
		f.Value = v
		if p := as(&f); p == nil || *p != *nobody {
			t.Errorf("with %s: %+v, want nobody", name, p)
		}
	}

	// The role comes from the approvers list, and an approver taken off
	// it has no session.
	g := h.(*guard)
	g.approvers = nil
	if p := as(c); p == nil || *p != *nobody {
		t.Fatalf("alice off the list: %+v", p)
	}
	g.approvers = testApprovers(t)

	now = now.Add(ConsoleSession + time.Second)
	if p := as(c); p == nil || *p != *nobody {
		t.Fatalf("with an expired session: %+v", p)
	}
}
