package access

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	agentTok    = "agent-token-0123456789abcdef"
	operatorTok = "operator-token-0123456789abcdef"
	aliceTok    = "alice-token-0123456789"
	issuer      = "https://auth.example.com"
)

func testApprovers(t testing.TB) *Approvers {
	t.Helper()
	a, err := ParseApprovers("approvers.yaml", []byte(validApproversYAML))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// reached records what the next handler saw.
type reached struct {
	calls     atomic.Int32
	principal Principal
	hasP      bool
	bodyLen   int
	bodyErr   error
}

func (s *reached) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	s.principal, s.hasP = FromContext(r.Context())
	b, err := io.ReadAll(r.Body)
	s.bodyLen, s.bodyErr = len(b), err
	w.WriteHeader(http.StatusTeapot)
}

type guardCase struct {
	name    string
	cfg     func(*HTTPConfig) // adjusts the base config (access + operator tokens, approvers)
	method  string
	target  string
	host    string
	header  map[string]string
	body    string
	chunked bool   // body of unknown length
	remote  string // RemoteAddr; loopback when empty

	wantStatus int
	wantCode   string     // refusal code; "" when next is reached
	want       *Principal // principal next sees; nil when next must not be reached
	wantAuth   string     // exact WWW-Authenticate on 401 (and on 403 when set)
	wantDetail string     // in the refusal log's detail, when set
}

func baseConfig(t testing.TB) HTTPConfig {
	return HTTPConfig{
		AccessToken:    agentTok,
		OperatorToken:  operatorTok,
		Approvers:      testApprovers(t),
		AllowedHosts:   []string{"mcp.example.com", "fixed.example.com:8443"},
		AllowedOrigins: []string{"https://app.example.com"},
	}
}

func noAccessToken(c *HTTPConfig) { c.AccessToken = "" }
func withTokens(c *HTTPConfig)    { c.Tokens = testTokens() }
func withIssuer(c *HTTPConfig)    { c.TokenIssuer = issuer }
func bearer(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}

func runGuardCase(t *testing.T, tc guardCase) {
	t.Helper()
	cfg := baseConfig(t)
	if tc.cfg != nil {
		tc.cfg(&cfg)
	}
	next := &reached{}
	core, logs := observer.New(zapcore.InfoLevel)
	cfg.Log = zap.New(core)
	h := Guard(cfg, next)
	method, target, host := tc.method, tc.target, tc.host
	if method == "" {
		method = http.MethodPost
	}
	if target == "" {
		target = "/mcp"
	}
	if host == "" {
		host = "localhost:8080"
	}
	var body io.Reader
	if tc.body != "" {
		body = strings.NewReader(tc.body)
	}
	r := httptest.NewRequest(method, target, body)
	r.Host = host
	r.RemoteAddr = tc.remote
	if r.RemoteAddr == "" {
		r.RemoteAddr = "127.0.0.1:5555"
	}
	if tc.chunked {
		r.ContentLength = -1
	}
	for k, v := range tc.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)

	if w.Code != tc.wantStatus {
		t.Fatalf("status = %d, want %d; body %s", w.Code, tc.wantStatus, w.Body)
	}
	if tc.want == nil {
		if n := next.calls.Load(); n != 0 {
			t.Fatalf("next handler reached %d times; want refused", n)
		}
	} else {
		if n := next.calls.Load(); n != 1 {
			t.Fatalf("next handler reached %d times; want 1", n)
		}
		if !next.hasP || next.principal != *tc.want {
			t.Fatalf("principal = %+v (present %v), want %+v", next.principal, next.hasP, *tc.want)
		}
		if next.bodyErr != nil || next.bodyLen != len(tc.body) {
			t.Fatalf("next read %d bytes, %v; want %d", next.bodyLen, next.bodyErr, len(tc.body))
		}
	}
	if tc.wantCode != "" {
		var got refusal
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("refusal body %q: %v", w.Body, err)
		}
		if got.Error != tc.wantCode || got.Message == "" {
			t.Fatalf("refusal = %+v, want code %q with a message", got, tc.wantCode)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type = %q", ct)
		}
	}
	if tc.wantDetail != "" {
		var details []string
		for _, e := range logs.All() {
			details = append(details, fmt.Sprint(e.ContextMap()["detail"]))
		}
		if len(details) != 1 || !strings.Contains(details[0], tc.wantDetail) {
			t.Fatalf("refusal details %q, want one containing %q", details, tc.wantDetail)
		}
	}
	if tc.wantStatus == http.StatusUnauthorized || tc.wantAuth != "" {
		if got := w.Header().Get("WWW-Authenticate"); got != tc.wantAuth {
			t.Fatalf("WWW-Authenticate = %q, want %q", got, tc.wantAuth)
		}
	}
}

var (
	ciBot    = &Principal{ID: "ci-bot", Profile: ProfileAgent}
	agent    = &Principal{ID: IDAgent, Profile: ProfileAgent}
	operator = &Principal{ID: IDOperator, Profile: ProfileOperator}
	local    = &Principal{ID: IDLocal, Profile: ProfileAgent}
	alice    = &Principal{ID: "alice", Profile: ProfileApprover, ApproverRole: "compliance_officer"}
)

func TestGuardChecksHost(t *testing.T) {
	for _, tc := range []guardCase{
		{name: "foreign host on /mcp", host: "evil.example:8080", header: bearer(agentTok), wantStatus: 403, wantCode: CodeForbiddenHost},
		{name: "foreign host on an arbitrary path", method: "GET", target: "/anything/else", host: "evil.example", header: bearer(agentTok), wantStatus: 403, wantCode: CodeForbiddenHost},
		{name: "foreign host on the metadata path", cfg: withIssuer, method: "GET", target: MetadataPath, host: "evil.example", wantStatus: 403, wantCode: CodeForbiddenHost},
		{name: "foreign host on the /mcp metadata path", cfg: withIssuer, method: "GET", target: MetadataPath + MCPPath, host: "rebind.attacker.test:8080", wantStatus: 403, wantCode: CodeForbiddenHost},
		{name: "empty host", host: " ", header: bearer(agentTok), wantStatus: 403, wantCode: CodeForbiddenHost},
		{name: "localhost suffix is not localhost", host: "localhost.evil.example:8080", header: bearer(agentTok), wantStatus: 403, wantCode: CodeForbiddenHost},
		{name: "allowed host with the wrong fixed port", host: "fixed.example.com:9000", header: bearer(agentTok), wantStatus: 403, wantCode: CodeForbiddenHost},
		{name: "LAN IP not allowed", host: "192.168.1.10:8080", header: bearer(agentTok), wantStatus: 403, wantCode: CodeForbiddenHost},
		{name: "localhost any port", host: "localhost:1234", header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "upper-case localhost with trailing dot", host: "LOCALHOST.:80", header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "127.0.0.1", host: "127.0.0.1:8080", header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "[::1]", host: "[::1]:8080", header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "[::1] without port", host: "[::1]", header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "allowed host any port", host: "MCP.example.com:9999", header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "allowed host fixed port", host: "fixed.example.com:8443", header: bearer(agentTok), wantStatus: 418, want: agent},
	} {
		t.Run(tc.name, func(t *testing.T) { runGuardCase(t, tc) })
	}
}

func TestGuardChecksOrigin(t *testing.T) {
	withOrigin := func(origin string, extra ...string) map[string]string {
		h := bearer(agentTok)
		h["Origin"] = origin
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	crossSite := bearer(agentTok)
	crossSite["Sec-Fetch-Site"] = "cross-site"
	for _, tc := range []guardCase{
		{name: "foreign origin POST", header: withOrigin("https://evil.example"), wantStatus: 403, wantCode: CodeForbiddenOrigin},
		{name: "foreign origin GET (DNS rebinding)", method: "GET", header: withOrigin("http://evil.example:8080"), wantStatus: 403, wantCode: CodeForbiddenOrigin},
		{name: "foreign origin on the metadata path", cfg: withIssuer, method: "GET", target: MetadataPath, header: map[string]string{"Origin": "https://evil.example"}, wantStatus: 403, wantCode: CodeForbiddenOrigin},
		{name: "null origin GET", method: "GET", header: withOrigin("null"), wantStatus: 403, wantCode: CodeForbiddenOrigin},
		{name: "non-web origin GET", method: "GET", header: withOrigin("chrome-extension://abcdef"), wantStatus: 403, wantCode: CodeForbiddenOrigin},
		{name: "origin with a path", method: "GET", header: withOrigin("http://localhost:8080/x"), wantStatus: 403, wantCode: CodeForbiddenOrigin},
		{name: "cross-site Sec-Fetch-Site POST without Origin", header: crossSite, wantStatus: 403, wantCode: CodeCrossOrigin},
		{name: "same-site Sec-Fetch-Site POST", header: withOrigin("http://localhost:3000", "Sec-Fetch-Site", "same-site"), wantStatus: 403, wantCode: CodeCrossOrigin},
		{name: "other loopback port POST", header: withOrigin("http://localhost:3000"), wantStatus: 403, wantCode: CodeCrossOrigin},
		{name: "other loopback port GET", method: "GET", header: withOrigin("http://localhost:3000"), wantStatus: 418, want: agent},
		{name: "same origin POST", header: withOrigin("http://localhost:8080", "Sec-Fetch-Site", "same-origin"), wantStatus: 418, want: agent},
		{name: "same origin POST, old browser", header: withOrigin("http://localhost:8080"), wantStatus: 418, want: agent},
		{name: "allowed origin POST", header: withOrigin("https://app.example.com", "Sec-Fetch-Site", "cross-site"), wantStatus: 418, want: agent},
		{name: "allowed origin GET", method: "GET", header: withOrigin("https://app.example.com"), wantStatus: 418, want: agent},
		{name: "allowed host as origin GET", method: "GET", host: "mcp.example.com", header: withOrigin("https://mcp.example.com"), wantStatus: 418, want: agent},
		{name: "no Origin (non-browser client) POST", header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "Sec-Fetch-Site none (user typed the URL)", header: withOrigin("http://localhost:8080", "Sec-Fetch-Site", "none"), wantStatus: 418, want: agent},
	} {
		t.Run(tc.name, func(t *testing.T) { runGuardCase(t, tc) })
	}
}

func TestGuardAuthenticates(t *testing.T) {
	mdURL := `resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp"`
	for _, tc := range []guardCase{
		{name: "missing token", wantStatus: 401, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "wrong token", header: bearer("not-the-token-0123456789"), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token"`},
		{name: "prefix of the token", header: bearer(agentTok[:len(agentTok)-1]), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token"`},
		{name: "empty bearer", header: map[string]string{"Authorization": "Bearer "}, wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token"`},
		{name: "basic scheme", header: map[string]string{"Authorization": "Basic " + agentTok}, wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token"`},
		{name: "token without scheme", header: map[string]string{"Authorization": agentTok}, wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token"`},
		{name: "wrong token when none is required", cfg: noAccessToken, header: bearer("not-the-token-0123456789"), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token"`},
		{name: "missing token with issuer", cfg: withIssuer, wantStatus: 401, wantCode: CodeMissingToken, wantAuth: "Bearer " + mdURL},
		{name: "wrong token with issuer", cfg: withIssuer, header: bearer("nope"), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token", ` + mdURL},
		{name: "missing token with resource URL", cfg: func(c *HTTPConfig) { withIssuer(c); c.ResourceURL = "https://mcp.example.com/v1/mcp" }, wantStatus: 401, wantCode: CodeMissingToken,
			wantAuth: `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp"`},
		{name: "metadata is not served without issuer", method: "GET", target: MetadataPath, wantStatus: 401, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "agent token", header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "lower-case scheme", header: map[string]string{"Authorization": "bearer " + agentTok}, wantStatus: 418, want: agent},
		{name: "operator token", header: bearer(operatorTok), wantStatus: 418, want: operator},
		{name: "operator token, no access token configured", cfg: noAccessToken, header: bearer(operatorTok), wantStatus: 418, want: operator},
		{name: "approver token", header: bearer(aliceTok), wantStatus: 418, want: alice},
		{name: "approver token, no access token configured", cfg: noAccessToken, header: bearer(aliceTok), wantStatus: 418, want: alice},
		{name: "no token, none required", cfg: noAccessToken, wantStatus: 418, want: local},
		{name: "no token, none required, IPv6 loopback peer", cfg: noAccessToken, remote: "[::1]:5555", wantStatus: 418, want: local},
		{name: "no token, none required, Unix socket peer", cfg: noAccessToken, remote: "@", wantStatus: 418, want: local},
		{name: "no token, an issuer configured: every caller authenticates", cfg: func(c *HTTPConfig) { noAccessToken(c); c.TokenIssuer = "http://127.0.0.1:1" }, wantStatus: 401, wantCode: CodeMissingToken, wantAuth: `Bearer resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp"`},
		{name: "no token, none required, but a remote peer", cfg: noAccessToken, remote: "192.0.2.7:5555", wantStatus: 401, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "operator token, none required, remote peer", cfg: noAccessToken, remote: "192.0.2.7:5555", header: bearer(operatorTok), wantStatus: 418, want: operator},
		{name: "agent token from the tokens file", cfg: withTokens, header: bearer(ciTok), wantStatus: 418, want: ciBot},
		{name: "agent token from the tokens file, no access token configured", cfg: func(c *HTTPConfig) { noAccessToken(c); withTokens(c) }, header: bearer(ciTok), wantStatus: 418, want: ciBot},
		{name: "the access token is still the principal agent beside a tokens file", cfg: withTokens, header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "an agent's token without the tokens file", header: bearer(ciTok), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: `Bearer error="invalid_token"`},
		{name: "no token, a tokens file configured: every caller authenticates", cfg: func(c *HTTPConfig) { noAccessToken(c); withTokens(c) }, wantStatus: 401, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "no token, an empty tokens file configured", cfg: func(c *HTTPConfig) { noAccessToken(c); c.Tokens = &Tokens{} }, wantStatus: 401, wantCode: CodeMissingToken, wantAuth: "Bearer"},
		{name: "GET is authenticated too", method: "GET", target: "/sse", wantStatus: 401, wantCode: CodeMissingToken, wantAuth: "Bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) { runGuardCase(t, tc) })
	}
}

func TestGuardRefusesTwoAuthorizationHeaders(t *testing.T) {
	next := &reached{}
	r := httptest.NewRequest("POST", "/mcp", nil)
	r.Host = "localhost"
	r.Header.Add("Authorization", "Bearer "+operatorTok)
	r.Header.Add("Authorization", "Bearer "+agentTok)
	w := httptest.NewRecorder()
	Guard(baseConfig(t), next).ServeHTTP(w, r)
	if w.Code != 401 || next.calls.Load() != 0 {
		t.Fatalf("status %d, next reached %d times; want 401 and refused", w.Code, next.calls.Load())
	}
}

func TestGuardLimitsBody(t *testing.T) {
	small := func(c *HTTPConfig) { c.MaxBodyBytes = 16 }
	for _, tc := range []guardCase{
		{name: "declared length over the limit", cfg: small, header: bearer(agentTok), body: strings.Repeat("x", 17), wantStatus: 413, wantCode: CodeBodyTooLarge},
		{name: "unknown length over the limit", cfg: small, header: bearer(agentTok), body: strings.Repeat("x", 4096), chunked: true, wantStatus: 413, wantCode: CodeBodyTooLarge},
		{name: "declared length at the limit", cfg: small, header: bearer(agentTok), body: strings.Repeat("x", 16), wantStatus: 418, want: agent},
		{name: "unknown length at the limit", cfg: small, header: bearer(agentTok), body: strings.Repeat("x", 16), chunked: true, wantStatus: 418, want: agent},
		{name: "default limit is 1 MiB", header: bearer(agentTok), body: strings.Repeat("x", 1<<20+1), wantStatus: 413, wantCode: CodeBodyTooLarge},
		{name: "unauthenticated oversize body is a 401, not read", cfg: small, body: strings.Repeat("x", 4096), chunked: true, wantStatus: 401, wantCode: CodeMissingToken, wantAuth: "Bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) { runGuardCase(t, tc) })
	}
}

// TestGuardRefusesOversizeBodyOverTheWire sends real requests, chunked and
// with a declared length, through a real server: the client gets 413 and
// the next handler never runs.
func TestGuardRefusesOversizeBodyOverTheWire(t *testing.T) {
	next := &reached{}
	cfg := baseConfig(t)
	cfg.MaxBodyBytes = 1024
	srv := httptest.NewServer(Guard(cfg, next))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"chunked", io.MultiReader(strings.NewReader(strings.Repeat("x", 8<<10)))},
		{"declared length", strings.NewReader(strings.Repeat("x", 8<<10))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", srv.URL+"/mcp", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+agentTok)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status = %d, want 413", resp.StatusCode)
			}
			if n := next.calls.Load(); n != 0 {
				t.Fatalf("next handler reached %d times", n)
			}
		})
	}
}

func TestGuardServesProtectedResourceMetadata(t *testing.T) {
	for _, tc := range []struct {
		name, resourceURL, target, host string
		tls                             bool
		wantResource                    string
	}{
		{name: "root path, derived", target: MetadataPath, host: "localhost:8080", wantResource: "http://localhost:8080/mcp"},
		{name: "mcp path, derived", target: MetadataPath + MCPPath, host: "mcp.example.com", tls: true, wantResource: "https://mcp.example.com/mcp"},
		{name: "configured resource", resourceURL: "https://mcp.example.com/mcp", target: MetadataPath + MCPPath, host: "localhost", wantResource: "https://mcp.example.com/mcp"},
		{name: "configured resource's own path", resourceURL: "https://mcp.example.com/v1/mcp", target: MetadataPath + "/v1/mcp", host: "localhost", wantResource: "https://mcp.example.com/v1/mcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t)
			cfg.TokenIssuer = issuer
			cfg.ResourceURL = tc.resourceURL
			next := &reached{}
			r := httptest.NewRequest("GET", tc.target, nil) // no token: metadata is public
			r.Host = tc.host
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			Guard(cfg, next).ServeHTTP(w, r)
			if w.Code != 200 || next.calls.Load() != 0 {
				t.Fatalf("status %d (next reached %d times): %s", w.Code, next.calls.Load(), w.Body)
			}
			var got map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"resource":                 tc.wantResource,
				"authorization_servers":    []any{issuer},
				"scopes_supported":         []any{ScopeAgent, ScopeOperator},
				"bearer_methods_supported": []any{"header"},
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("metadata = %v, want %v", got, want)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type = %q", ct)
			}
		})
	}
	t.Run("POST is not allowed", func(t *testing.T) {
		cfg := baseConfig(t)
		cfg.TokenIssuer = issuer
		r := httptest.NewRequest("POST", MetadataPath, nil)
		r.Host = "localhost"
		w := httptest.NewRecorder()
		Guard(cfg, &reached{}).ServeHTTP(w, r)
		if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
			t.Fatalf("status %d, Allow %q", w.Code, w.Header().Get("Allow"))
		}
	})
}

func TestGuardLogsRefusalsWithoutTokens(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := baseConfig(t)
	cfg.Log = zap.New(core)
	h := Guard(cfg, &reached{})
	for _, r := range []*http.Request{
		func() *http.Request {
			r := httptest.NewRequest("POST", "/mcp", nil)
			r.Host = "localhost"
			r.Header.Set("Authorization", "Bearer wrong-"+agentTok)
			return r
		}(),
		func() *http.Request {
			r := httptest.NewRequest("POST", "/mcp", nil)
			r.Host = "evil.example"
			r.Header.Set("Authorization", "Bearer "+operatorTok)
			return r
		}(),
		func() *http.Request { // accepted: not logged
			r := httptest.NewRequest("POST", "/mcp", nil)
			r.Host = "localhost"
			r.Header.Set("Authorization", "Bearer "+aliceTok)
			return r
		}(),
	} {
		r.RemoteAddr = "198.51.100.9:4242"
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	entries := logs.All()
	if len(entries) != 2 {
		t.Fatalf("%d log entries, want 2 refusals", len(entries))
	}
	wantReasons := []string{CodeInvalidToken, CodeForbiddenHost}
	for i, e := range entries {
		fields := e.ContextMap()
		if e.Level != zapcore.InfoLevel || fields["reason"] != wantReasons[i] || fields["remote_addr"] != "198.51.100.9:4242" {
			t.Errorf("entry %d = %v %q %v", i, e.Level, e.Message, fields)
		}
		text := e.Message + fmt.Sprint(fields)
		for _, tok := range []string{agentTok, operatorTok, aliceTok} {
			if strings.Contains(text, tok) {
				t.Errorf("entry %d leaks a token: %s", i, text)
			}
		}
	}
}

func TestGuardPanicsOnInvalidConfig(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Guard accepted an invalid configuration")
		}
	}()
	Guard(HTTPConfig{AllowedHosts: []string{"*"}}, &reached{})
}

func TestValidate(t *testing.T) {
	ok := func(c *HTTPConfig) {}
	withToken := func(c *HTTPConfig) { c.AccessToken = agentTok; c.AllowedHosts = []string{"mcp.example.com"} }
	for _, tc := range []struct {
		name    string
		addr    string
		cfg     func(*HTTPConfig)
		wantErr string
	}{
		{"loopback IPv4 without token", "127.0.0.1:8080", ok, ""},
		{"loopback IPv6 without token", "[::1]:8080", ok, ""},
		{"localhost without token", "localhost:8080", ok, ""},
		{"other loopback IP", "127.0.0.5:0", ok, ""},
		{"all interfaces without token", "0.0.0.0:8080", func(c *HTTPConfig) { c.AllowedHosts = []string{"mcp.example.com"} }, "an access token is required"},
		{"unspecified host without token", ":8080", func(c *HTTPConfig) { c.AllowedHosts = []string{"mcp.example.com"} }, "an access token is required"},
		{"IPv6 any without token", "[::]:8080", ok, "an access token is required"},
		{"LAN IP without token", "192.168.1.10:8080", ok, "an access token is required"},
		{"host name without token", "mcp.example.com:8080", ok, "an access token is required"},
		{"operator token alone beyond loopback", "0.0.0.0:8080", func(c *HTTPConfig) { c.OperatorToken = operatorTok; c.AllowedHosts = []string{"x.example"} }, "an access token is required"},
		{"all interfaces with token and hosts", "0.0.0.0:8080", withToken, ""},
		{"loopback with allowed hosts but no token", "127.0.0.1:8080", func(c *HTTPConfig) { c.AllowedHosts = []string{"mcp.example.com"} }, "reachable under other names"},
		{"loopback with allowed hosts and token", "127.0.0.1:8080", withToken, ""},
		{"LAN IP with token but no allowed hosts", "192.168.1.10:8080", func(c *HTTPConfig) { c.AccessToken = agentTok }, "allowed hosts"},
		{"bad address", "8080", ok, "listen address"},
		{"short token", "127.0.0.1:1", func(c *HTTPConfig) { c.AccessToken = "short" }, "at least 16"},
		{"token with a space", "127.0.0.1:1", func(c *HTTPConfig) { c.OperatorToken = "operator token 0123456789" }, "white space"},
		{"same access and operator token", "127.0.0.1:1", func(c *HTTPConfig) { c.AccessToken, c.OperatorToken = agentTok, agentTok }, "the same"},
		{"access token is an approver's", "127.0.0.1:1", func(c *HTTPConfig) { c.Approvers = testApprovers(t); c.AccessToken = aliceTok }, `approver "alice"`},
		{"operator token is an agent's", "127.0.0.1:1", func(c *HTTPConfig) { c.Tokens = testTokens(); c.OperatorToken = ciTok }, `operator token is also agent "ci-bot"'s token`},
		{"tokens file alone beyond loopback", "0.0.0.0:8080", func(c *HTTPConfig) { c.Tokens = testTokens(); c.AllowedHosts = []string{"mcp.example.com"} }, ""},
		{"empty tokens file beyond loopback", "0.0.0.0:8080", func(c *HTTPConfig) { c.Tokens = &Tokens{}; c.AllowedHosts = []string{"mcp.example.com"} }, ""},
		{"an agent with an approver's id", "127.0.0.1:1", func(c *HTTPConfig) {
			c.Approvers = testApprovers(t)
			c.Tokens, _ = ParseTokens("tokens.yaml", []byte("agents:\n  - {id: alice, token_sha256: "+sha(ciTok)+"}\n"))
		}, `tokens.yaml:2: id "alice" is also the id of approver "alice" (approvers.yaml:3)`},
		{"an agent with an approver's token", "127.0.0.1:1", func(c *HTTPConfig) {
			c.Approvers = testApprovers(t)
			c.Tokens, _ = ParseTokens("tokens.yaml", []byte("agents:\n  - id: al\n    token_sha256: "+sha(aliceTok)+"\n"))
		}, `tokens.yaml:3: token_sha256 of "al" is also the token of approver "alice" (approvers.yaml:3)`},
		{"wildcard host", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedHosts = []string{"*"} }, "no scheme, path or wildcard"},
		{"wildcard subdomain host", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedHosts = []string{"*.example.com"} }, "wildcard"},
		{"host with scheme", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedHosts = []string{"https://x.example"} }, "no scheme"},
		{"host with bad port", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedHosts = []string{"x.example:99999"} }, "bad port"},
		{"bare IPv6 host", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedHosts = []string{"2001:db8::1:8080"} }, "brackets"},
		{"bracketed IPv6 host", "127.0.0.1:1", func(c *HTTPConfig) {
			c.AccessToken = agentTok
			c.AllowedHosts = []string{"[2001:db8::1]:8080", "[2001:db8::2]"}
		}, ""},
		{"wildcard origin", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedOrigins = []string{"*"} }, "name one origin"},
		{"null origin", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedOrigins = []string{"null"} }, "name one origin"},
		{"origin with slash", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedOrigins = []string{"https://app.example.com/"} }, "path"},
		{"origin with default port", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedOrigins = []string{"https://app.example.com:443"} }, "default port"},
		{"origin without scheme", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedOrigins = []string{"app.example.com"} }, "scheme://host"},
		{"upper-case origin is normalised", "127.0.0.1:1", func(c *HTTPConfig) { c.AllowedOrigins = []string{"HTTPS://App.Example.com:8443"} }, ""},
		{"negative body limit", "127.0.0.1:1", func(c *HTTPConfig) { c.MaxBodyBytes = -1 }, "negative"},
		{"issuer alone beyond loopback", "0.0.0.0:8080", func(c *HTTPConfig) {
			c.TokenIssuer = "https://auth.example.com"
			c.AllowedHosts = []string{"mcp.example.com"}
		}, ""},
		{"http issuer beyond loopback", "127.0.0.1:1", func(c *HTTPConfig) { c.TokenIssuer = "http://auth.example.com" }, "use https"},
		{"http issuer on loopback", "127.0.0.1:1", func(c *HTTPConfig) { c.TokenIssuer = "http://localhost:9000" }, ""},
		{"issuer without scheme", "127.0.0.1:1", func(c *HTTPConfig) { c.TokenIssuer = "auth.example.com" }, "https URL"},
		{"issuer with query", "127.0.0.1:1", func(c *HTTPConfig) { c.TokenIssuer = "https://auth.example.com/?x=1" }, "no query"},
		{"resource URL with fragment", "127.0.0.1:1", func(c *HTTPConfig) { c.ResourceURL = "https://mcp.example.com/mcp#x" }, "fragment"},
		{"https issuer and resource", "127.0.0.1:1", func(c *HTTPConfig) { c.TokenIssuer = issuer; c.ResourceURL = "https://mcp.example.com/mcp" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c HTTPConfig
			tc.cfg(&c)
			err := c.Validate(tc.addr)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate(%q) = %v; want ok", tc.addr, err)
				}
				Guard(c, &reached{}) // a valid config must not panic
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate(%q) = %v; want error containing %q", tc.addr, err, tc.wantErr)
			}
			for _, tok := range []string{agentTok, operatorTok, aliceTok} {
				if strings.Contains(err.Error(), tok) {
					t.Fatalf("error leaks a token: %v", err)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := HTTPConfig{AccessToken: "short", AllowedHosts: []string{"*"}}.Validate("0.0.0.0:80")
	if err == nil {
		t.Fatal("no error")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("error %T is not a joined error", err)
	}
	for _, want := range []string{"at least 16", "wildcard"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
