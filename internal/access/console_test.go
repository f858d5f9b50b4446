package access

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

var auditor = &Principal{ID: IDAuditor, Profile: ProfileAuditor}

func TestGuardConsoleAccess(t *testing.T) {
	for _, tc := range []guardCase{
		{name: "no token is the auditor", method: "GET", target: "/ui/runs", wantStatus: http.StatusTeapot, want: auditor},
		{name: "no token from afar is the auditor too", method: "GET", target: "/ui/runs", remote: "203.0.113.9:4000", wantStatus: http.StatusTeapot, want: auditor},
		{name: "the operator's bearer", method: "GET", target: "/ui/lab", header: bearer(operatorTok), wantStatus: http.StatusTeapot, want: &Principal{ID: IDOperator, Profile: ProfileOperator}},
		{name: "a wrong bearer is refused", method: "GET", target: "/ui/runs", header: bearer("nope"), wantStatus: http.StatusUnauthorized, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token"`},
		{name: "a foreign origin is refused", method: "GET", target: "/ui/runs", header: map[string]string{"Origin": "https://evil.example"}, wantStatus: http.StatusForbidden, wantCode: CodeForbiddenOrigin},
		{name: "a cross-site post is refused", method: "POST", target: "/ui/lab/run", header: map[string]string{"Sec-Fetch-Site": "cross-site"}, wantStatus: http.StatusForbidden, wantCode: CodeCrossOrigin},
		{name: "a foreign host is refused", method: "GET", target: "/ui/runs", host: "evil.example", wantStatus: http.StatusForbidden, wantCode: CodeForbiddenHost},
		{name: "MCP still wants a token", method: "POST", target: "/mcp", remote: "203.0.113.9:4000", wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "a path that only starts like the console is not it", method: "GET", target: "/uix", remote: "203.0.113.9:4000", wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) { runGuardCase(t, tc) })
	}
}

// signIn posts the sign-in form and returns the answer.
func signIn(t *testing.T, h http.Handler, token string) *http.Response {
	t.Helper()
	return postToken(t, h, ConsoleLoginPath, token)
}

// postToken posts a sign-in form with token to path.
func postToken(t *testing.T, h http.Handler, path, token string) *http.Response {
	t.Helper()
	r := httptest.NewRequest("POST", path, strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr, r.Host = "127.0.0.1:5000", "127.0.0.1:8080"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestConsoleSignIn(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	cfg := baseConfig(t)
	cfg.Clock = func() time.Time { return now }
	next := &reached{}
	h := Guard(cfg, next)
	as := func(c *http.Cookie) Principal {
		t.Helper()
		r := httptest.NewRequest("GET", "/ui/runs", nil)
		r.RemoteAddr, r.Host = "127.0.0.1:5000", "127.0.0.1:8080"
		if c != nil {
			r.AddCookie(c)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		return next.principal
	}

	for _, tok := range []string{"wrong", agentTok, ""} {
		res := signIn(t, h, tok)
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != ConsoleLoginPath+"?failed=1" || len(res.Cookies()) != 0 {
			t.Fatalf("sign-in with %q: %d to %q, cookies %v", tok, res.StatusCode, res.Header.Get("Location"), res.Cookies())
		}
	}
	res := signIn(t, h, operatorTok)
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 {
		t.Fatalf("operator sign-in: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	c := res.Cookies()[0]
	if c.Name != ConsoleCookie || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != ConsolePath || strings.Contains(c.Value, operatorTok) {
		t.Fatalf("session cookie %+v", c)
	}
	if p := as(c); p.Profile != ProfileOperator || p.ID != IDOperator {
		t.Fatalf("with the session: %+v", p)
	}
	forged := *c
	raw, _ := base64.RawURLEncoding.DecodeString(c.Value)
	raw[len(raw)-1] ^= 1 // one bit of the MAC
	forged.Value = base64.RawURLEncoding.EncodeToString(raw)
	if forged.Value == c.Value {
		t.Fatal("the forged session is the session")
	}
	if p := as(&forged); p.Profile != ProfileAuditor {
		t.Fatalf("with a forged session: %+v", p)
	}
	if p := as(nil); p.Profile != ProfileAuditor {
		t.Fatalf("without a session: %+v", p)
	}
	now = now.Add(ConsoleSession + time.Second)
	if p := as(c); p.Profile != ProfileAuditor {
		t.Fatalf("with an expired session: %+v", p)
	}
	// Another server's session (another key) is nobody's.
	other := Guard(cfg, next)
	r := httptest.NewRequest("GET", "/ui/runs", nil)
	r.Host = "127.0.0.1:8080"
	r.AddCookie(c)
	now = now.Add(-ConsoleSession)
	other.ServeHTTP(httptest.NewRecorder(), r)
	if next.principal.Profile != ProfileAuditor {
		t.Fatalf("another server took the session: %+v", next.principal)
	}
	// Signing out clears the cookie.
	r = httptest.NewRequest("POST", ConsoleLogoutPath, nil)
	r.Host = "127.0.0.1:8080"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Fatalf("sign-out cookies %v", cs)
	}
}

// Without an operator token nobody can sign in, and the form must say
// that rather than call the typed token wrong.
func TestConsoleSignInWithoutOperatorToken(t *testing.T) {
	for _, tc := range []struct {
		name, operator, token, want string
	}{
		{"no operator token, any token typed", "", "whatever-was-typed", ConsoleLoginPath + "?failed=" + ConsoleNoOperatorToken},
		{"no operator token, the access token typed", "", agentTok, ConsoleLoginPath + "?failed=" + ConsoleNoOperatorToken},
		{"an operator token, a wrong one typed", operatorTok, "whatever-was-typed", ConsoleLoginPath + "?failed=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t)
			cfg.OperatorToken = tc.operator
			res := signIn(t, Guard(cfg, &reached{}), tc.token)
			if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != tc.want || len(res.Cookies()) != 0 {
				t.Fatalf("%d to %q (want %q), cookies %v", res.StatusCode, res.Header.Get("Location"), tc.want, res.Cookies())
			}
		})
	}
}
