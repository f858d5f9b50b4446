package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// legacyVersion is the legacy revision these tests speak where a session
// matters.
const legacyVersion = "2025-06-18"

// mcpPost sends one JSON-RPC message over Streamable HTTP and returns the
// status, the Mcp-Session-Id the server sent, and the body.
func mcpPost(t testing.TB, method, url, token, session, version, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	if version != "" {
		req.Header.Set("Mcp-Protocol-Version", version)
	}
	if mcp.IsModernProtocol(version) {
		var m struct{ Method string }
		_ = json.Unmarshal([]byte(body), &m)
		req.Header.Set("Mcp-Method", m.Method)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// A GET that is accepted opens a stream: its status is all we need.
	if method == http.MethodGet && resp.StatusCode == http.StatusOK {
		return resp.StatusCode, "", ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), string(b)
}

const (
	legacyInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + legacyVersion + `","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	listTools  = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	modernList = `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
)

// legacySession initializes a legacy session and returns its id.
func legacySession(t testing.TB, url, token string) string {
	t.Helper()
	status, id, body := mcpPost(t, http.MethodPost, url, token, "", "", legacyInit)
	if status != http.StatusOK || id == "" {
		t.Fatalf("initialize: %d %q %s", status, id, body)
	}
	return id
}

// A legacy session id is its principal's alone, until deleted or idle too
// long; whatever else is named gets 404, and a 2026-07-28 request's session
// header is ignored.
func TestServeLegacySessionsAnswer404ToIdsNotTheCallers(t *testing.T) {
	url := startHTTP(t, []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}, "--store", "memory", "--approvers", writeApprovers(t), "--session-idle-timeout", "2s")
	agents := legacySession(t, url, testAccessToken)
	alices := legacySession(t, url, aliceToken)
	steps := []struct {
		name                                  string
		method, token, session, version, body string
		want                                  int
	}{
		{"own session", http.MethodPost, testAccessToken, agents, legacyVersion, listTools, http.StatusOK},
		{"never issued", http.MethodPost, testAccessToken, "mcp-session-00000000-0000-4000-8000-000000000000", legacyVersion, listTools, http.StatusNotFound},
		{"another principal's POST", http.MethodPost, aliceToken, agents, legacyVersion, listTools, http.StatusNotFound},
		{"another principal's GET", http.MethodGet, aliceToken, agents, legacyVersion, "", http.StatusNotFound},
		{"another principal's DELETE", http.MethodDelete, aliceToken, agents, legacyVersion, "", http.StatusNotFound},
		{"the session survived them", http.MethodPost, testAccessToken, agents, legacyVersion, listTools, http.StatusOK},
		{"modern request ignores the header", http.MethodPost, aliceToken, agents, "2026-07-28", modernList, http.StatusOK},
		{"own DELETE", http.MethodDelete, testAccessToken, agents, legacyVersion, "", http.StatusOK},
		{"deleted", http.MethodPost, testAccessToken, agents, legacyVersion, listTools, http.StatusNotFound},
		{"deleted, GET", http.MethodGet, testAccessToken, agents, legacyVersion, "", http.StatusNotFound},
		{"alice's own still works", http.MethodPost, aliceToken, alices, legacyVersion, listTools, http.StatusOK},
	}
	for _, s := range steps {
		status, _, body := mcpPost(t, s.method, url, s.token, s.session, s.version, s.body)
		if status != s.want {
			t.Fatalf("%s: status %d, want %d: %s", s.name, status, s.want, body)
		}
	}
	// Idle past the timeout (2 s), the session is refused. This waits for
	// the server's clock, not for another goroutine.
	time.Sleep(2500 * time.Millisecond)
	if status, _, body := mcpPost(t, http.MethodPost, url, aliceToken, alices, legacyVersion, listTools); status != http.StatusNotFound {
		t.Fatalf("a session idle past the timeout: status %d, want 404: %s", status, body)
	}
}

// Over legacy SSE, a message to a session that is not the caller's stream
// gets 404, and a session ends with its stream.
func TestServeLegacySSESessionsAreTheirPrincipalsAlone(t *testing.T) {
	addr := freeAddr(t)
	cmd := exec.Command(serverBinary(t), "serve", "--transport", "sse", "--addr", addr, "--store", "memory", "--approvers", writeApprovers(t))
	cmd.Env = append(os.Environ(), "NANO_VM_ACCESS_TOKEN="+testAccessToken)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	waitListening(t, addr)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+testAccessToken)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stream.Body)
	endpoint := ""
	for endpoint == "" && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			endpoint = data
		}
	}
	if !strings.Contains(endpoint, "sessionId=") {
		t.Fatalf("no endpoint event: %q", endpoint)
	}
	message := "http://" + addr + endpoint
	post := func(url, token string) int {
		status, _, _ := mcpPost(t, http.MethodPost, url, token, "", "", listTools)
		return status
	}
	for _, tc := range []struct {
		name, url, token string
		want             int
	}{
		{"own session", message, testAccessToken, http.StatusAccepted},
		{"another principal's", message, aliceToken, http.StatusNotFound},
		{"never issued", "http://" + addr + "/message?sessionId=0f0e0d0c-0000-4000-8000-000000000000", testAccessToken, http.StatusNotFound},
	} {
		if got := post(tc.url, tc.token); got != tc.want {
			t.Fatalf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	stream.Body.Close()
	// The server sees the stream end when it next writes or reads; the
	// session is gone once it has.
	deadline := time.Now().Add(10 * time.Second)
	for post(message, testAccessToken) != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("a closed stream's session is still accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// After a restart every legacy session id is unknown (404); the client
// initializes again and continues its run, which lives in the store.
func TestServeLegacyClientContinuesItsRunAfterRestart(t *testing.T) {
	dir := t.TempDir()
	env := []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}
	url, proc := startHTTPProcess(t, env, "--data-dir", dir)
	session := legacySession(t, url, testAccessToken)
	input, _ := os.ReadFile("../../examples/refund.input.json")
	start := fmt.Sprintf(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"start_run","arguments":{"program":"refund","input":%s}}}`, input)
	status, _, body := mcpPost(t, http.MethodPost, url, testAccessToken, session, legacyVersion, start)
	runID := fieldIn(t, body, "run_id")
	if status != http.StatusOK || runID == "" {
		t.Fatalf("start_run: %d %s", status, body)
	}
	proc.Signal(os.Interrupt)
	proc.Wait()

	url = startHTTP(t, env, "--data-dir", dir)
	get := fmt.Sprintf(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get_run","arguments":{"run_id":%q}}}`, runID)
	if status, _, body := mcpPost(t, http.MethodPost, url, testAccessToken, session, legacyVersion, get); status != http.StatusNotFound {
		t.Fatalf("the old session after a restart: %d, want 404: %s", status, body)
	}
	session = legacySession(t, url, testAccessToken)
	status, _, body = mcpPost(t, http.MethodPost, url, testAccessToken, session, legacyVersion, get)
	if status != http.StatusOK || fieldIn(t, body, "run_id") != runID || fieldIn(t, body, "status") != "running" {
		t.Fatalf("get_run in a new session: %d %s", status, body)
	}
}

// fieldIn finds a string field of a tool result's JSON text in a
// Streamable HTTP answer (JSON or one SSE event).
func fieldIn(t testing.TB, body, field string) string {
	t.Helper()
	if i := strings.Index(body, "data: "); i >= 0 {
		body = strings.TrimSpace(body[i+len("data: "):])
	}
	var resp struct {
		Result struct {
			Content []struct{ Text string } `json:"content"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || len(resp.Result.Content) == 0 {
		return ""
	}
	var m map[string]any
	_ = json.Unmarshal([]byte(resp.Result.Content[0].Text), &m)
	s, _ := m[field].(string)
	return s
}

// rssBytes reads a process's resident set size from /proc.
func rssBytes(t testing.TB, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// parallel runs n jobs on w workers.
func parallel(n, w int, job func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				job(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// Abandoned legacy sessions and runs touched once do not pile up in the
// server's memory. Measured as the growth of the server's RSS, end to end
// over HTTP. By default the test is small, with small bounds, so that it
// stays quick under the race suite and still fails without them (about
// 11 KB a session and 33 KB a run were kept for good). NANO_VM_SOAK=1
// (make soak) runs the full size, 20,000 sessions and 5,000 runs, with the
// default bounds.
func TestServeMemoryStaysBoundedUnderSessionsAndRuns(t *testing.T) {
	sessions, runs, bound := 4000, 1000, int64(32<<20)
	args := []string{"--data-dir", t.TempDir(), "--sqlite-synchronous", "normal", "--max-sessions-per-principal", "100", "--run-cache-size", "100"}
	if os.Getenv("NANO_VM_SOAK") != "" {
		sessions, runs, bound = 20000, 5000, 96<<20
		args = args[:4]
	}
	url, proc := startHTTPProcess(t, []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}, args...)
	input, _ := os.ReadFile("../../examples/refund.input.json")
	agent := httpClient(t, url, testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
	startRun := func() {
		res, e := callTool(t, agent, "start_run", map[string]any{"program": "refund", "input": json.RawMessage(input)})
		if e != nil {
			t.Errorf("start_run: %v", e)
			return
		}
		if _, e := callTool(t, agent, "get_run", map[string]any{"run_id": res["run_id"]}); e != nil {
			t.Errorf("get_run: %v", e)
		}
	}
	// Warm up: programs loaded, keys made, connections pooled.
	first := legacySession(t, url, testAccessToken)
	parallel(50, 4, func(int) { startRun() })
	before := rssBytes(t, proc.Pid)

	parallel(sessions, 8, func(int) { legacySession(t, url, testAccessToken) })
	parallel(runs, 4, func(int) { startRun() })
	after := rssBytes(t, proc.Pid)
	t.Logf("%d sessions, %d runs: RSS %d MiB -> %d MiB (+%d KiB, bound %d MiB)", sessions, runs, before>>20, after>>20, (after-before)>>10, bound>>20)
	if after-before > bound {
		t.Fatalf("RSS grew by %d MiB over %d sessions and %d runs, bound %d MiB", (after-before)>>20, sessions, runs, bound>>20)
	}
	// The oldest session was pushed out by the principal's newer ones.
	if status, _, _ := mcpPost(t, http.MethodPost, url, testAccessToken, first, legacyVersion, listTools); status != http.StatusNotFound {
		t.Fatalf("the oldest of %d sessions: status %d, want 404", sessions, status)
	}
}
