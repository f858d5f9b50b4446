package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// The web console over HTTP against the real binary: who may reach it,
// and how its receipt verification is bounded (issue 13, items 2, 8, 9).

const testOperatorToken = "operator-token-0123456789abcdef"

// consoleClient makes requests to the console without following
// redirects, so that a 303 is seen as such.
var consoleClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// consoleRequest is one request to the console.
type consoleRequest struct {
	method, path string
	header       map[string]string
	form         url.Values
	cookies      []*http.Cookie
}

func (q consoleRequest) do(t *testing.T, base string) (*http.Response, string) {
	t.Helper()
	res, body, err := q.send(base)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// send is do for other goroutines than the test's.
func (q consoleRequest) send(base string) (*http.Response, string, error) {
	var body io.Reader
	if q.form != nil {
		body = strings.NewReader(q.form.Encode())
	}
	req, err := http.NewRequest(q.method, base+q.path, body)
	if err != nil {
		return nil, "", err
	}
	if q.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range q.header {
		req.Header.Set(k, v)
	}
	for _, c := range q.cookies {
		req.AddCookie(c)
	}
	res, err := consoleClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, string(b), err
}

func bearerHeader(token string, more ...string) map[string]string {
	h := map[string]string{"Authorization": "Bearer " + token}
	for i := 0; i+1 < len(more); i += 2 {
		h[more[i]] = more[i+1]
	}
	return h
}

func TestServeConsoleNeedsACredential(t *testing.T) {
	env := []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken, "NANO_VM_OPERATOR_TOKEN=" + testOperatorToken}
	mcpURL := startHTTP(t, env, "--store", "memory", "--approvers", writeApprovers(t))
	base := strings.TrimSuffix(mcpURL, "/mcp")
	run := startAgentRefund(t, mcpURL)
	verify := "/ui/runs/" + run + "/receipt/verify"
	jsonAccept := map[string]string{"Accept": "application/json"}
	for _, tc := range []struct {
		name     string
		q        consoleRequest
		want     int
		location string
	}{
		{"anonymous list", consoleRequest{method: "GET", path: "/ui/runs"}, http.StatusUnauthorized, ""},
		{"anonymous browser is sent to sign in", consoleRequest{method: "GET", path: "/ui/runs", header: map[string]string{"Accept": "text/html"}}, http.StatusSeeOther, "/ui/login"},
		{"anonymous run page", consoleRequest{method: "GET", path: "/ui/runs/" + run}, http.StatusUnauthorized, ""},
		{"anonymous verify", consoleRequest{method: "POST", path: verify, header: jsonAccept, form: url.Values{}}, http.StatusUnauthorized, ""},
		{"anonymous favicon", consoleRequest{method: "GET", path: "/favicon.ico"}, http.StatusOK, ""},
		{"anonymous sign-in page", consoleRequest{method: "GET", path: "/ui/login"}, http.StatusOK, ""},
		{"anonymous approver sign-in page", consoleRequest{method: "GET", path: "/ui/approvals"}, http.StatusOK, ""},
		{"the agent's token", consoleRequest{method: "GET", path: "/ui/runs", header: bearerHeader(testAccessToken)}, http.StatusForbidden, ""},
		{"the operator's token", consoleRequest{method: "GET", path: "/ui/runs", header: bearerHeader(testOperatorToken)}, http.StatusOK, ""},
		{"the operator verifies", consoleRequest{method: "POST", path: verify, header: bearerHeader(testOperatorToken, "Accept", "application/json"), form: url.Values{}}, http.StatusOK, ""},
		{"an approver's token, the inbox", consoleRequest{method: "GET", path: "/ui/approvals", header: bearerHeader(aliceToken)}, http.StatusOK, ""},
		{"an approver's token, a run not waiting for her", consoleRequest{method: "GET", path: "/ui/runs/" + run, header: bearerHeader(aliceToken)}, http.StatusForbidden, ""},
		{"an approver's token, the runs list", consoleRequest{method: "GET", path: "/ui/runs", header: bearerHeader(aliceToken)}, http.StatusForbidden, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := tc.q.do(t, base)
			if res.StatusCode != tc.want || (tc.location != "" && res.Header.Get("Location") != tc.location) {
				t.Fatalf("status %d (Location %q), want %d %q: %.300s", res.StatusCode, res.Header.Get("Location"), tc.want, tc.location, body)
			}
			if tc.want == http.StatusUnauthorized && !strings.Contains(body, "missing_token") {
				t.Fatalf("401 body %s", body)
			}
		})
	}

	// The operator's session ends at sign-out, on the server: the cookie
	// copied before is refused afterwards.
	res, _ := consoleRequest{method: "POST", path: "/ui/login", form: url.Values{"token": {testOperatorToken}}}.do(t, base)
	cookies := res.Cookies()
	if res.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("sign-in: %d, cookies %v", res.StatusCode, cookies)
	}
	if res, _ := (consoleRequest{method: "GET", path: "/ui/runs", cookies: cookies}).do(t, base); res.StatusCode != http.StatusOK {
		t.Fatalf("signed in: %d", res.StatusCode)
	}
	if res, _ := (consoleRequest{method: "POST", path: "/ui/logout", cookies: cookies}).do(t, base); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", res.StatusCode)
	}
	if res, _ := (consoleRequest{method: "GET", path: "/ui/runs", cookies: cookies}).do(t, base); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session after sign-out: %d", res.StatusCode)
	}

	// Failed sign-ins from one address are throttled.
	var last *http.Response
	for range 10 {
		last, _ = consoleRequest{method: "POST", path: "/ui/login", form: url.Values{"token": {"wrong-wrong-wrong-wrong"}}}.do(t, base)
		if last.StatusCode == http.StatusTooManyRequests {
			break
		}
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" {
		t.Fatalf("ten wrong tokens: the last answered %d, Retry-After %q", last.StatusCode, last.Header.Get("Retry-After"))
	}
}

// --console-public opens the console to the auditor again.
func TestServeConsolePublic(t *testing.T) {
	env := []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken, "NANO_VM_CONSOLE_PUBLIC=true"}
	mcpURL := startHTTP(t, env, "--store", "memory")
	base := strings.TrimSuffix(mcpURL, "/mcp")
	run := startAgentRefund(t, mcpURL)
	for _, q := range []consoleRequest{
		{method: "GET", path: "/ui/runs"},
		{method: "GET", path: "/ui/runs/" + run},
		{method: "POST", path: "/ui/runs/" + run + "/receipt/verify", header: map[string]string{"Accept": "application/json"}, form: url.Values{}},
	} {
		if res, body := q.do(t, base); res.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %.300s", q.method, q.path, res.StatusCode, body)
		}
	}
}

// Verifications beyond the limit are answered 429, and a repeated one
// comes from the cache without reading the trace again.
func TestServeConsoleVerifyIsBounded(t *testing.T) {
	env := []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken, "NANO_VM_OPERATOR_TOKEN=" + testOperatorToken}
	mcpURL := startHTTP(t, env, "--data-dir", t.TempDir(), "--approvers", writeApprovers(t), "--console-verify-concurrency", "1")
	base := strings.TrimSuffix(mcpURL, "/mcp")
	agent := httpClient(t, mcpURL, testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
	approver := httpClient(t, mcpURL, aliceToken, mcp.LATEST_PROTOCOL_VERSION)
	run := driveKYC(t, agent, approver, func(a map[string]any) map[string]any { return a }, "kyc-onboarding.input.json", "kyc-onboarding.approved.answers.jsonl")["run_id"].(string)
	verifyRequest := func(receipt string) consoleRequest {
		return consoleRequest{method: "POST", path: "/ui/runs/" + run + "/receipt/verify",
			header: bearerHeader(testOperatorToken, "Accept", "application/json"), form: url.Values{"receipt": {receipt}}}
	}
	verify := func(receipt string) (*http.Response, map[string]any) {
		t.Helper()
		res, body := verifyRequest(receipt).do(t, base)
		var v map[string]any
		if res.StatusCode == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &v); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
		}
		return res, v
	}

	if res, v := verify(""); res.StatusCode != http.StatusOK || v["valid"] != true || v["cached"] != false {
		t.Fatalf("first verification: %d %v", res.StatusCode, v)
	}
	if res, v := verify(""); res.StatusCode != http.StatusOK || v["valid"] != true || v["cached"] != true {
		t.Fatalf("the same again: %d %v", res.StatusCode, v)
	}

	// Distinct receipts miss the cache, so each needs the one slot: of
	// many at once, some are refused. Rounds repeat only in the unlikely
	// case that none overlapped.
	const racers = 32
	refused := 0
	for round := 0; round < 10 && refused == 0; round++ {
		start := make(chan struct{})
		var wg sync.WaitGroup
		codes := make([]int, racers)
		retry := make([]string, racers)
		errs := make([]error, racers)
		for i := range racers {
			wg.Go(func() {
				<-start
				res, _, err := verifyRequest(fmt.Sprintf("{not a receipt %d-%d", round, i)).send(base)
				if errs[i] = err; err == nil {
					codes[i], retry[i] = res.StatusCode, res.Header.Get("Retry-After")
				}
			})
		}
		close(start)
		wg.Wait()
		for i, code := range codes {
			switch {
			case errs[i] != nil:
				t.Fatalf("round %d racer %d: %v", round, i, errs[i])
			case code == http.StatusTooManyRequests && retry[i] == "1":
				refused++
			case code != http.StatusOK:
				t.Fatalf("round %d racer %d: %d, Retry-After %q", round, i, code, retry[i])
			}
		}
	}
	if refused == 0 {
		t.Fatal("no verification beyond the limit was refused")
	}
}

// startAgentRefund starts a refund run as the access token's agent.
func startAgentRefund(t *testing.T, mcpURL string) string {
	t.Helper()
	run, _ := startRefund(t, httpClient(t, mcpURL, testAccessToken, mcp.LATEST_PROTOCOL_VERSION))
	return run
}
