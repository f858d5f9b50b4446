package access

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

var (
	auditor = &Principal{ID: IDAuditor, Profile: ProfileAuditor}
	nobody  = &Principal{}
)

func html(h map[string]string) map[string]string {
	out := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

func consolePublic(c *HTTPConfig) { c.ConsolePublic = true }

// noCredential is a loopback development server: no token of any kind.
func noCredential(c *HTTPConfig) { c.AccessToken, c.OperatorToken, c.Approvers = "", "", nil }

func TestGuardConsoleAccess(t *testing.T) {
	const verify = "/ui/runs/r1/receipt/verify"
	afar := "203.0.113.9:4000"
	for _, tc := range []guardCase{
		{name: "no credential, a browser is sent to sign in", method: "GET", target: "/ui/runs", header: html(nil), wantStatus: http.StatusSeeOther},
		{name: "no credential, a script gets 401", method: "GET", target: "/ui/runs", wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "no credential, verify is 401", method: "POST", target: verify, wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "no credential from afar is 401", method: "GET", target: "/ui/runs/r1", remote: afar, wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "the sign-in page is open", method: "GET", target: ConsoleLoginPath, remote: afar, wantStatus: http.StatusTeapot, want: nobody},
		{name: "the approver's sign-in page is open", method: "GET", target: ConsoleApprovalsPath, remote: afar, wantStatus: http.StatusTeapot, want: nobody},
		{name: "the static files are open", method: "GET", target: "/ui/static/console.css", remote: afar, wantStatus: http.StatusTeapot, want: nobody},
		{name: "the favicon is open", method: "GET", target: FaviconPath, remote: afar, wantStatus: http.StatusTeapot, want: nobody},
		{name: "a post to the favicon is MCP's 401", method: "POST", target: FaviconPath, remote: afar, wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "the operator's bearer", method: "GET", target: "/ui/lab", header: bearer(operatorTok), wantStatus: http.StatusTeapot, want: &Principal{ID: IDOperator, Profile: ProfileOperator}},
		{name: "an approver's bearer", method: "GET", target: ConsoleApprovalsPath, header: bearer(aliceTok), wantStatus: http.StatusTeapot, want: alice},
		{name: "the agent's bearer is refused", method: "GET", target: "/ui/runs", header: bearer(agentTok), wantStatus: http.StatusForbidden, wantCode: CodeConsoleForbidden},
		{name: "a wrong bearer is refused", method: "GET", target: "/ui/runs", header: bearer("nope"), wantStatus: http.StatusUnauthorized, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token"`},
		{name: "public: no credential is the auditor", cfg: consolePublic, method: "GET", target: "/ui/runs", remote: afar, wantStatus: http.StatusTeapot, want: auditor},
		{name: "public: verify without a credential", cfg: consolePublic, method: "POST", target: verify, wantStatus: http.StatusTeapot, want: auditor},
		{name: "public: the agent's bearer is the auditor", cfg: consolePublic, method: "GET", target: "/ui/runs", header: bearer(agentTok), wantStatus: http.StatusTeapot, want: auditor},
		{name: "public: the operator's bearer", cfg: consolePublic, method: "GET", target: "/ui/lab", header: bearer(operatorTok), wantStatus: http.StatusTeapot, want: &Principal{ID: IDOperator, Profile: ProfileOperator}},
		{name: "no credential configured: the auditor, as before", cfg: noCredential, method: "GET", target: "/ui/runs", wantStatus: http.StatusTeapot, want: auditor},
		{name: "an operator token alone closes the console", cfg: func(c *HTTPConfig) { c.AccessToken, c.Approvers = "", nil }, method: "GET", target: "/ui/runs", wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "approvers alone close the console", cfg: func(c *HTTPConfig) { c.AccessToken, c.OperatorToken = "", "" }, method: "GET", target: "/ui/runs", wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "an agent tokens file alone closes the console", cfg: func(c *HTTPConfig) { noCredential(c); c.Tokens = testTokens() }, method: "GET", target: "/ui/runs", wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "an issuer alone closes the console", cfg: func(c *HTTPConfig) { noCredential(c); withIssuer(c) }, method: "POST", target: verify, wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: `Bearer resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp"`},
		{name: "a foreign origin is refused", method: "GET", target: "/ui/runs", header: map[string]string{"Origin": "https://evil.example"}, wantStatus: http.StatusForbidden, wantCode: CodeForbiddenOrigin},
		{name: "a cross-site post is refused", method: "POST", target: "/ui/lab/run", header: map[string]string{"Sec-Fetch-Site": "cross-site"}, wantStatus: http.StatusForbidden, wantCode: CodeCrossOrigin},
		{name: "a foreign host is refused", method: "GET", target: "/ui/runs", host: "evil.example", wantStatus: http.StatusForbidden, wantCode: CodeForbiddenHost},
		{name: "MCP still wants a token", method: "POST", target: "/mcp", remote: afar, wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "a path that only starts like the console is not it", method: "GET", target: "/uix", remote: afar, wantStatus: http.StatusUnauthorized, wantCode: CodeMissingToken, wantAuth: "Bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) { runGuardCase(t, tc) })
	}
}

// A browser without a credential is sent to the sign-in page.
func TestGuardConsoleRedirectsBrowsersToSignIn(t *testing.T) {
	r := httptest.NewRequest("GET", "/ui/runs", nil)
	r.Host, r.RemoteAddr = "127.0.0.1:8080", "127.0.0.1:5000"
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	Guard(baseConfig(t), &reached{}).ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != ConsoleLoginPath {
		t.Fatalf("%d to %q", w.Code, w.Header().Get("Location"))
	}
}

// signInDay is when the console's sign-in tests start their clock.
var signInDay = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

// clockedGuard is the guard over baseConfig whose clock reads *now, and
// the handler behind it.
func clockedGuard(t *testing.T, now *time.Time) (http.Handler, *reached) {
	t.Helper()
	cfg := baseConfig(t)
	cfg.Clock = func() time.Time { return *now }
	next := &reached{}
	return Guard(cfg, next), next
}

// signIn posts the sign-in form and returns the answer.
func signIn(t *testing.T, h http.Handler, token string) *http.Response {
	t.Helper()
	return postToken(t, h, ConsoleLoginPath, token)
}

// postToken posts a sign-in form with token to path from 127.0.0.1.
func postToken(t *testing.T, h http.Handler, path, token string) *http.Response {
	t.Helper()
	return postTokenFrom(t, h, path, token, "127.0.0.1:5000")
}

func postTokenFrom(t *testing.T, h http.Handler, path, token, remote string) *http.Response {
	t.Helper()
	r := httptest.NewRequest("POST", path, strings.NewReader(url.Values{"token": {token}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr, r.Host = remote, "127.0.0.1:8080"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// consoleAs requests path with the cookies and returns the principal the
// console saw, or nil when the guard refused the request.
func consoleAs(t *testing.T, h http.Handler, next *reached, path string, cs ...*http.Cookie) *Principal {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	r.RemoteAddr, r.Host = "127.0.0.1:5000", "127.0.0.1:8080"
	for _, c := range cs {
		r.AddCookie(c)
	}
	before := next.calls.Load()
	h.ServeHTTP(httptest.NewRecorder(), r)
	if next.calls.Load() == before {
		return nil
	}
	p := next.principal
	return &p
}

// signOut posts the sign-out form with the cookies and returns the
// cookies it sets.
func signOut(t *testing.T, h http.Handler, cs ...*http.Cookie) []*http.Cookie {
	t.Helper()
	r := httptest.NewRequest("POST", ConsoleLogoutPath, nil)
	r.Host = "127.0.0.1:8080"
	for _, c := range cs {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result().Cookies()
}

func TestConsoleSignIn(t *testing.T) {
	now := signInDay
	h, next := clockedGuard(t, &now)
	as := func(c *http.Cookie) *Principal {
		t.Helper()
		if c == nil {
			return consoleAs(t, h, next, "/ui/runs")
		}
		return consoleAs(t, h, next, "/ui/runs", c)
	}
	operator := &Principal{ID: IDOperator, Profile: ProfileOperator}

	for _, tok := range []string{"wrong", agentTok, aliceTok, ""} {
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
	if p := as(c); p == nil || *p != *operator {
		t.Fatalf("with the session: %+v", p)
	}
	forged := *c
	forged.Value = strings.Repeat("A", len(c.Value))
	if p := as(&forged); p != nil {
		t.Fatalf("with a made-up session: %+v", p)
	}
	if p := as(nil); p != nil {
		t.Fatalf("without a session: %+v", p)
	}
	// An approver's session is not the operator's.
	ap := approverSignIn(t, h, aliceTok).Cookies()[0]
	asOp := *ap
	asOp.Name = ConsoleCookie
	if p := as(&asOp); p != nil {
		t.Fatalf("an approver's session as the operator's cookie: %+v", p)
	}
	// Another server's session (another table) is nobody's.
	other, otherNext := clockedGuard(t, &now)
	if p := consoleAs(t, other, otherNext, "/ui/runs", c); p != nil {
		t.Fatalf("another server took the session: %+v", p)
	}
	now = now.Add(ConsoleSession + time.Second)
	if p := as(c); p != nil {
		t.Fatalf("with an expired session: %+v", p)
	}
}

// Signing out ends the session on the server: the cookie, copied before,
// is worth nothing afterwards. Another session goes on.
func TestConsoleSignOutRevokes(t *testing.T) {
	next := &reached{}
	h := Guard(baseConfig(t), next)
	op := signIn(t, h, operatorTok).Cookies()[0]
	op2 := signIn(t, h, operatorTok).Cookies()[0]
	ap := approverSignIn(t, h, aliceTok).Cookies()[0]
	for _, c := range []*http.Cookie{op, op2, ap} {
		if consoleAs(t, h, next, ConsoleApprovalsPath, c) == nil || *consoleAs(t, h, next, ConsoleApprovalsPath, c) == *nobody {
			t.Fatalf("%s does not sign in", c.Name)
		}
	}
	cleared := map[string]bool{}
	for _, k := range signOut(t, h, op, ap) {
		cleared[k.Name] = k.MaxAge < 0
	}
	if !cleared[ConsoleCookie] || !cleared[ConsoleApproverCookie] {
		t.Fatalf("sign-out cleared %v", cleared)
	}
	if p := consoleAs(t, h, next, "/ui/runs", op); p != nil {
		t.Fatalf("the operator's session after sign-out: %+v", p)
	}
	if p := consoleAs(t, h, next, ConsoleApprovalsPath, ap); p == nil || *p != *nobody {
		t.Fatalf("the approver's session after sign-out: %+v", p)
	}
	if p := consoleAs(t, h, next, "/ui/runs", op2); p == nil || p.Profile != ProfileOperator {
		t.Fatalf("another browser's session after this one signed out: %+v", p)
	}
}

// Failed sign-ins are limited per client address, for both forms: a few
// are free, then each needs a wait that doubles; while it lasts, even the
// right token is answered 429 unchecked. Success forgets the failures.
func TestConsoleSignInThrottle(t *testing.T) {
	now := signInDay
	h, _ := clockedGuard(t, &now)
	const a, b = "198.51.100.7:1000", "198.51.100.8:1000"
	try := func(path, tok, remote string) (int, string) {
		t.Helper()
		res := postTokenFrom(t, h, path, tok, remote)
		return res.StatusCode, res.Header.Get("Retry-After")
	}
	for i := range SignInFreeFailures {
		path := ConsoleLoginPath
		if i%2 == 1 {
			path = ConsoleApproverLoginPath // both forms count
		}
		if code, _ := try(path, "wrong", a); code != http.StatusSeeOther {
			t.Fatalf("free failure %d: %d", i+1, code)
		}
	}
	// The next failure is checked, and sets the first wait.
	if code, _ := try(ConsoleLoginPath, "wrong", a); code != http.StatusSeeOther {
		t.Fatalf("failure %d: %d", SignInFreeFailures+1, code)
	}
	for _, tc := range []struct{ path, tok string }{{ConsoleLoginPath, operatorTok}, {ConsoleApproverLoginPath, aliceTok}, {ConsoleLoginPath, "wrong"}} {
		if code, after := try(tc.path, tc.tok, a); code != http.StatusTooManyRequests || after != "1" {
			t.Fatalf("%s during the wait: %d, Retry-After %q", tc.path, code, after)
		}
	}
	if code, _ := try(ConsoleLoginPath, "wrong", b); code != http.StatusSeeOther {
		t.Fatalf("another address: %d", code)
	}
	now = now.Add(SignInBackoff)
	if code, _ := try(ConsoleLoginPath, "wrong", a); code != http.StatusSeeOther {
		t.Fatalf("after the wait: %d", code)
	}
	if code, after := try(ConsoleLoginPath, operatorTok, a); code != http.StatusTooManyRequests || after != "2" {
		t.Fatalf("the wait doubles: %d, Retry-After %q", code, after)
	}
	now = now.Add(2 * SignInBackoff)
	res := postTokenFrom(t, h, ConsoleLoginPath, operatorTok, a)
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 {
		t.Fatalf("the right token after the wait: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	for i := range SignInFreeFailures {
		if code, _ := try(ConsoleLoginPath, "wrong", a); code != http.StatusSeeOther {
			t.Fatalf("after a success, failure %d: %d", i+1, code)
		}
	}
}

func TestSignInBackoff(t *testing.T) {
	for _, tc := range []struct {
		k    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {10, 512 * time.Second}, {11, SignInMaxBackoff}, {1000, SignInMaxBackoff}} {
		if got := backoff(tc.k); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.k, got, tc.want)
		}
	}
}

// The throttle keys IPv4 peers by address and IPv6 peers by /64.
func TestSignInClientKey(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"198.51.100.7:1000", "198.51.100.7"},
		{"[::ffff:198.51.100.7]:1000", "198.51.100.7"},
		{"[2001:db8:1:2:3:4:5:6]:1000", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:9", "2001:db8:1:2::/64"},
		{"@", "@"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if got := clientKey(r); got != tc.want {
			t.Errorf("clientKey(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

// The tables stay bounded whatever the number of sessions or addresses.
func TestConsoleTablesAreBounded(t *testing.T) {
	now := signInDay
	s := newSessions(100)
	first := s.open(now, "", time.Hour)
	for i := range 250 {
		s.open(now.Add(time.Duration(i+1)*time.Second), "", time.Hour)
	}
	if n := len(s.byID); n > 100 {
		t.Fatalf("%d sessions held, bound 100", n)
	}
	if _, ok := s.get(first, now); ok {
		t.Fatal("the session that expires first is still held")
	}
	th := newThrottle(100)
	for i := range 250 {
		th.attempt(fmt.Sprintf("198.51.%d.%d", i/256, i%256), now)
	}
	if n := len(th.by); n > 100 {
		t.Fatalf("%d addresses held, bound 100", n)
	}
}
