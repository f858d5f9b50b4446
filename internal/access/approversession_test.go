package access

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
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
// is theirs alone (the id under a MAC), ends, and follows the approvers
// list; nothing else signs in there.
func TestConsoleApproverSignIn(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	cfg := baseConfig(t)
	cfg.Clock = func() time.Time { return now }
	next := &reached{}
	h := Guard(cfg, next)
	as := func(cs ...*http.Cookie) Principal {
		t.Helper()
		r := httptest.NewRequest("GET", ConsoleApprovalsPath, nil)
		r.RemoteAddr, r.Host = "127.0.0.1:5000", "127.0.0.1:8080"
		for _, c := range cs {
			r.AddCookie(c)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		return next.principal
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
	if p := as(c); p != *alice {
		t.Fatalf("with alice's session: %+v, want %+v", p, *alice)
	}

	raw, _ := base64.RawURLEncoding.DecodeString(c.Value)
	forge := func(change func([]byte) []byte) *http.Cookie {
		f := *c
		f.Value = base64.RawURLEncoding.EncodeToString(change(append([]byte(nil), raw...)))
		return &f
	}
	for name, f := range map[string]*http.Cookie{
		"a MAC bit flipped":     forge(func(b []byte) []byte { b[8] ^= 1; return b }),
		"another approver's id": forge(func(b []byte) []byte { return append(b[:len(b)-len("alice")], "bob"...) }),
		"no id":                 forge(func(b []byte) []byte { return b[:len(b)-len("alice")] }),
		"the operator's cookie value": func() *http.Cookie {
			op := signIn(t, h, operatorTok).Cookies()[0]
			f := *c
			f.Value = op.Value
			return &f
		}(),
	} {
		if p := as(f); p.Profile != ProfileAuditor {
			t.Errorf("with %s: %+v, want the auditor", name, p)
		}
	}

	// The role comes from the approvers list, and an approver taken off
	// it has no session.
	g := h.(*guard)
	g.approvers = nil
	if p := as(c); p.Profile != ProfileAuditor {
		t.Fatalf("alice off the list: %+v", p)
	}
	g.approvers = testApprovers(t)

	now = now.Add(ConsoleSession + time.Second)
	if p := as(c); p.Profile != ProfileAuditor {
		t.Fatalf("with an expired session: %+v", p)
	}
	now = now.Add(-ConsoleSession)

	// Signing out clears both sessions the browser holds.
	r := httptest.NewRequest("POST", ConsoleLogoutPath, nil)
	r.Host = "127.0.0.1:8080"
	r.AddCookie(c)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	cleared := map[string]bool{}
	for _, k := range w.Result().Cookies() {
		cleared[k.Name] = k.MaxAge < 0
	}
	if !cleared[ConsoleCookie] || !cleared[ConsoleApproverCookie] {
		t.Fatalf("sign-out cleared %v", cleared)
	}
}
