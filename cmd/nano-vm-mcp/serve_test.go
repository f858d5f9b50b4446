package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// These tests start the real binary and talk to it as MCP clients do: over
// stdio and over Streamable HTTP, in both protocol eras.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// serverBinary builds nano-vm-mcp once per test process, as it ships (no
// race detector, no coverage): tests and benchmarks run the real binary.
func serverBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nano-vm-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "nano-vm-mcp")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

const testApprovers = `approvers:
  - id: alice
    role: compliance_officer
    token_sha256: 5c9b30e77f74b6df6e20c8cb756d26e80318e27342a3a66cc01399741532ed7c
`

const aliceToken = "alice-approver-token-1"

func writeApprovers(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "approvers.yaml")
	if err := os.WriteFile(path, []byte(testApprovers), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// callTool calls a tool and returns its structured result, or the error
// JSON of an isError result.
func callTool(t *testing.T, c *client.Client, name string, args any) (map[string]any, map[string]any) {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	text := res.Content[0].(mcp.TextContent).Text
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatalf("%s: %q: %v", name, text, err)
	}
	if res.IsError {
		if res.StructuredContent != nil {
			t.Fatalf("%s: error with structuredContent", name)
		}
		return nil, m
	}
	return m, nil
}

func readLines(t *testing.T, path string) []json.RawMessage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	for _, l := range bytes.Split(data, []byte("\n")) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			out = append(out, json.RawMessage(l))
		}
	}
	return out
}

// startKYC starts a KYC run with the input file from examples/ and
// returns start_run's result.
func startKYC(t *testing.T, agent *client.Client, inputFile string) map[string]any {
	t.Helper()
	input, err := os.ReadFile("../../examples/" + inputFile)
	if err != nil {
		t.Fatal(err)
	}
	res, e := callTool(t, agent, "start_run", map[string]any{"program": "kyc-onboarding", "input": json.RawMessage(input)})
	if e != nil {
		t.Fatalf("start_run: %v", e)
	}
	return res
}

// driveKYC answers every task from the answers file: llm and tool tasks
// through step on the agent's client, approval tasks through approve on
// the approver's. Rejected answers are expected in some files: the next
// answer goes to the task the error carries.
func driveKYC(t *testing.T, agent, approver *client.Client, approveArgs func(map[string]any) map[string]any, inputFile, answersFile string) map[string]any {
	t.Helper()
	res := startKYC(t, agent, inputFile)
	runID := res["run_id"].(string)
	tk, _ := res["task"].(map[string]any)
	for _, ans := range readLines(t, "../../examples/"+answersFile) {
		if tk == nil {
			t.Fatalf("answers left but no task: %v", res)
		}
		args := map[string]any{"run_id": runID, "seq": tk["seq"]}
		var next, errBody map[string]any
		if tk["kind"] == "approval" {
			args["decision"] = ans
			next, errBody = callTool(t, approver, "approve", approveArgs(args))
		} else {
			args["output"] = ans
			if tool, ok := tk["tool"].(map[string]any); ok {
				args["tool"] = map[string]any{"name": tool["name"]}
			}
			next, errBody = callTool(t, agent, "step", args)
		}
		if errBody != nil {
			if code := errBody["code"]; code != "schema_violation" && code != "guard_denied" {
				t.Fatalf("answer rejected with %v: %v", code, errBody["message"])
			}
			tk, _ = errBody["task"].(map[string]any)
			continue
		}
		res = next
		tk, _ = res["task"].(map[string]any)
		if tk == nil && res["status"] == "running" {
			// An approver is not shown the agent's next task: the agent
			// picks the run up where it now stands.
			now, e := callTool(t, agent, "get_run", map[string]any{"run_id": runID})
			if e != nil {
				t.Fatalf("get_run: %v", e)
			}
			tk, _ = now["task"].(map[string]any)
		}
	}
	got, e := callTool(t, agent, "get_run", map[string]any{"run_id": runID})
	if e != nil {
		t.Fatal(e)
	}
	return got
}

var kycOutcomes = []struct{ input, answers, outcome string }{
	{"kyc-onboarding.input.json", "kyc-onboarding.approved.answers.jsonl", "APPROVED"},
	{"kyc-onboarding.input.json", "kyc-onboarding.rejected.answers.jsonl", "REJECTED"},
	{"kyc-onboarding.input.json", "kyc-onboarding.escalated.answers.jsonl", "ESCALATED"},
	{"kyc-onboarding.sanctioned.input.json", "kyc-onboarding.sanctioned.rejected.answers.jsonl", "REJECTED"},
}

func startStdio(t *testing.T, env []string, args ...string) *client.Client {
	t.Helper()
	c, err := client.NewStdioMCPClient(serverBinary(t), env, append([]string{"serve"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	initialize(t, c, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	return c
}

func initialize(t *testing.T, c *client.Client, version string) {
	t.Helper()
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = version
	req.Params.ClientInfo = mcp.Implementation{Name: "serve-test", Version: "1"}
	res, err := c.Initialize(context.Background(), req)
	if err != nil {
		t.Fatalf("initialize %s: %v", version, err)
	}
	if res.ServerInfo.Name != "nano-vm" {
		t.Fatalf("server %q", res.ServerInfo.Name)
	}
}

func TestServeStdioDrivesKYCToEachOutcome(t *testing.T) {
	data := t.TempDir()
	c := startStdio(t, nil, "--data-dir", data, "--profile", "operator", "--approvers", writeApprovers(t))
	for _, tc := range kycOutcomes {
		t.Run(tc.answers, func(t *testing.T) {
			got := driveKYC(t, c, c, func(a map[string]any) map[string]any { a["approver_token"] = aliceToken; return a }, tc.input, tc.answers)
			if got["status"] != "completed" || got["outcome"] != tc.outcome {
				t.Fatalf("run ended %v %v, want completed %s", got["status"], got["outcome"], tc.outcome)
			}
			rec, e := callTool(t, c, "get_receipt", map[string]any{"run_id": got["run_id"]})
			if e != nil {
				t.Fatal(e)
			}
			v, e := callTool(t, c, "verify_receipt", map[string]any{"receipt": rec["receipt"], "signature": rec["signature"]})
			if e != nil || v["valid"] != true {
				t.Fatalf("verify: %v %v", v, e)
			}
		})
	}
}

// stdout carries only JSON-RPC; logs go to stderr.
func TestServeStdioStdoutIsOnlyJSONRPC(t *testing.T) {
	cmd := exec.Command(serverBinary(t), "serve", "--store", "memory", "--log-level", "debug")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	msgs := []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sh","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"start_run","arguments":{"program":"refund","input":{"order":{"id":"ORD-1","total_cents":1000,"currency":"EUR","days_since_delivery":3},"request":{"amount_cents":500,"reason":"broken"}}}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"step","arguments":{"run_id":"run_x","seq":1,"output":{}}}}`,
		`this is not json`,
	}
	for _, m := range msgs {
		io.WriteString(stdin, m+"\n")
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	ids := map[float64]bool{}
	for len(ids) < 4 && sc.Scan() {
		var msg map[string]any
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil || msg["jsonrpc"] != "2.0" {
			t.Fatalf("stdout line is not JSON-RPC: %q", sc.Text())
		}
		if id, ok := msg["id"].(float64); ok {
			ids[id] = true
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after stdin closed: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"tool call"`) {
		t.Fatalf("no logs on stderr:\n%s", stderr.String())
	}
}

// A run survives a server restart and continues from a new connection;
// SIGTERM stops the server cleanly.
func TestServeRunSurvivesRestart(t *testing.T) {
	data := t.TempDir()
	args := []string{"serve", "--data-dir", data}
	first, err := client.NewStdioMCPClient(serverBinary(t), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, first, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	input, _ := os.ReadFile("../../examples/refund.input.json")
	res, e := callTool(t, first, "start_run", map[string]any{"program": "refund", "input": json.RawMessage(input)})
	if e != nil {
		t.Fatal(e)
	}
	runID, seq := res["run_id"], res["task"].(map[string]any)["seq"]
	stdio := first.GetTransport().(*transport.Stdio)
	if err := stdio.Close(); err != nil {
		t.Fatal(err)
	}

	second := startStdio(t, nil, "--data-dir", data)
	ans := readLines(t, "../../examples/refund.refunded.answers.jsonl")
	res, e = callTool(t, second, "step", map[string]any{"run_id": runID, "seq": seq, "output": ans[0]})
	if e != nil {
		t.Fatalf("step after restart: %v", e)
	}
	if res["transition"] == nil {
		t.Fatalf("no transition: %v", res)
	}
}

func TestServeStopsCleanlyOnSIGTERM(t *testing.T) {
	addr := freeAddr(t)
	cmd := exec.Command(serverBinary(t), "serve", "--transport", "http", "--addr", addr, "--data-dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitListening(t, addr)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the server did not stop on SIGTERM")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

// startHTTP starts the binary on a free loopback port and returns its /mcp
// URL.
func startHTTP(t *testing.T, env []string, args ...string) string {
	t.Helper()
	url, _ := startHTTPProcess(t, env, args...)
	return url
}

// startHTTPProcess is startHTTP, returning the server's process too.
func startHTTPProcess(t *testing.T, env []string, args ...string) (string, *os.Process) {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(serverBinary(t), append([]string{"serve", "--transport", "http", "--addr", addr}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	waitListening(t, addr)
	return "http://" + addr + "/mcp", cmd.Process
}

func httpClient(t *testing.T, url, token, version string) *client.Client {
	t.Helper()
	var opts []transport.StreamableHTTPCOption
	if token != "" {
		opts = append(opts, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	}
	c, err := client.NewStreamableHttpClient(url, opts...)
	return connect(t, c, err, version)
}

// connect starts a new HTTP or SSE client and initializes it.
func connect(t *testing.T, c *client.Client, err error, version string) *client.Client {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	initialize(t, c, version)
	return c
}

const testAccessToken = "agent-access-token-0123456789"

func TestServeHTTPDrivesKYCToEachOutcome(t *testing.T) {
	url := startHTTP(t, []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}, "--data-dir", t.TempDir(), "--approvers", writeApprovers(t))
	for _, version := range []string{mcp.LATEST_PROTOCOL_VERSION, mcp.LATEST_LEGACY_PROTOCOL_VERSION} {
		agent := httpClient(t, url, testAccessToken, version)
		// The approver uses a connection of her own, authenticated by her
		// token: the run is in the store, not in a transport session.
		approver := httpClient(t, url, aliceToken, version)
		for _, tc := range kycOutcomes {
			t.Run(version+"/"+tc.answers, func(t *testing.T) {
				got := driveKYC(t, agent, approver, func(a map[string]any) map[string]any { return a }, tc.input, tc.answers)
				if got["status"] != "completed" || got["outcome"] != tc.outcome {
					t.Fatalf("run ended %v %v, want completed %s", got["status"], got["outcome"], tc.outcome)
				}
			})
		}
	}
}

// The deprecated HTTP+SSE transport serves old clients the same tools.
func TestServeLegacySSE(t *testing.T) {
	addr := freeAddr(t)
	cmd := exec.Command(serverBinary(t), "serve", "--transport", "sse", "--addr", addr, "--store", "memory")
	cmd.Env = append(os.Environ(), "NANO_VM_ACCESS_TOKEN="+testAccessToken)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	waitListening(t, addr)
	c, err := client.NewSSEMCPClient("http://"+addr+"/sse", transport.WithHeaders(map[string]string{"Authorization": "Bearer " + testAccessToken}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	initialize(t, c, "2024-11-05")
	input, _ := os.ReadFile("../../examples/refund.input.json")
	res, e := callTool(t, c, "start_run", map[string]any{"program": "refund", "input": json.RawMessage(input)})
	if e != nil || res["task"] == nil {
		t.Fatalf("start_run over SSE: %v %v", res, e)
	}
}

// The HTTP listener refuses what it must, end to end; the access package
// tests every rule in detail.
func TestServeHTTPRefusals(t *testing.T) {
	url := startHTTP(t, []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}, "--store", "memory")
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	cases := []struct {
		name   string
		header map[string]string
		host   string
		want   int
	}{
		{"no token", nil, "", http.StatusUnauthorized},
		{"wrong token", map[string]string{"Authorization": "Bearer wrong-token-wrong-token"}, "", http.StatusUnauthorized},
		{"foreign host", map[string]string{"Authorization": "Bearer " + testAccessToken}, "evil.example", http.StatusForbidden},
		{"foreign origin", map[string]string{"Authorization": "Bearer " + testAccessToken, "Origin": "https://evil.example"}, "", http.StatusForbidden},
		{"good", map[string]string{"Authorization": "Bearer " + testAccessToken}, "", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestServeRefusesUnsafeConfigurations(t *testing.T) {
	readable := filepath.Join(t.TempDir(), "world-readable-token")
	if err := os.WriteFile(readable, []byte("a-token-everyone-can-read-0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(readable, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	tokens := func(data string) string {
		p := filepath.Join(t.TempDir(), "tokens.yaml")
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	reserved := tokens("agents:\n  - {id: cli, token_sha256: " + tokenHash(ciBotToken) + "}\n")
	twice := t.TempDir()
	if src, err := os.ReadFile("../../examples/refund.yaml"); err != nil || os.WriteFile(filepath.Join(twice, "refund.yaml"), src, 0o600) != nil {
		t.Fatal("cannot copy the refund example", err)
	}
	approverID := tokens("agents:\n  - {id: alice, token_sha256: " + tokenHash(ciBotToken) + "}\n")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"--tokens over stdio", []string{"--tokens", tokens(tokensFile(map[string]string{"ci-bot": ciBotToken}))}, "--tokens applies to http and sse"},
		{"a tokens file with a reserved id", []string{"--transport", "http", "--tokens", reserved}, `tokens.yaml:2: agents[0]: id "cli" is reserved`},
		{"an agent with an approver's id", []string{"--transport", "http", "--tokens", approverID, "--approvers", writeApprovers(t)}, `id "alice" is also the id of approver "alice"`},
		{"beyond loopback without a token", []string{"--transport", "http", "--addr", "0.0.0.0:0", "--allowed-hosts", "mcp.example", "--store", "sqlite"}, "access token"},
		{"a token file others can read", []string{"--transport", "http", "--access-token-file", readable, "--store", "sqlite"}, "world-readable-token"},
		{"operator profile over HTTP", []string{"--transport", "http", "--profile", "operator"}, "operator token"},
		{"unknown transport", []string{"--transport", "carrier-pigeon"}, "--transport"},
		{"a tool lease of zero", []string{"--tool-lease", "0s"}, "--tool-lease and --tool-recovery must be positive"},
		{"a negative tool recovery interval", []string{"--tool-recovery", "-1s"}, "--tool-lease and --tool-recovery must be positive"},
		{"invalid program", []string{"--programs", "testdata/bad-programs"}, "bad.yaml"},
		{"a program name served twice", []string{"--programs", twice}, "refund.yaml: program \"refund\" is also defined by examples/refund.yaml"},
		{"a programs directory that is not there", []string{"--programs", filepath.Join(twice, "none")}, "--programs: open " + filepath.Join(twice, "none")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			code, _, errOut := runCLI(t, append([]string{"serve", "--store", "memory", "--data-dir", data}, tc.args...)...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d mentioning %q", code, errOut, exitUsage, tc.want)
			}
			// Refused before anything was created: no keys, no database.
			if entries, _ := os.ReadDir(data); len(entries) != 0 {
				t.Fatalf("the refused start left %d files in the data directory", len(entries))
			}
		})
	}
}

// At the default log level, serve says on stderr, once, where a client
// reaches it; stdout stays JSON-RPC (TestServeStdioStdoutIsOnlyJSONRPC).
func TestServeSaysWhereItServes(t *testing.T) {
	bin := serverBinary(t)
	for _, tc := range []struct {
		transport string
		want      string
	}{
		{"stdio", `^nano-vm-mcp: serving MCP on stdin/stdout \(JSON-RPC, one message a line\); logs go to stderr$`},
		{"http", `^nano-vm-mcp: listening on http://(127\.0\.0\.1:\d+) \(MCP /mcp, console /ui\)$`},
		{"sse", `^nano-vm-mcp: listening on http://(127\.0\.0\.1:\d+) \(MCP legacy SSE: GET /sse, POST /message\)$`},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			p, err := startPiped(bin, "serve", "--transport", tc.transport, "--addr", "127.0.0.1:0", "--store", "memory")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
			m, err := p.awaitStderr(regexp.MustCompile(tc.want))
			if err != nil {
				t.Fatal(err)
			}
			if tc.transport == "stdio" {
				p.in.Close()
			} else {
				// The line names the address the server listens on.
				c, err := net.Dial("tcp", m[1])
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				p.cmd.Process.Signal(syscall.SIGTERM)
			}
			if err := p.finish(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A resource read of a run that does not exist, or that is another
// principal's, is the protocol's resource-not-found on every transport,
// with the code of the request's era: -32002 up to 2025-11-25, -32602 in
// 2026-07-28. The two cases cannot be told apart.
func TestServeResourceNotFoundCodes(t *testing.T) {
	url := startHTTP(t, []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}, "--store", "memory", "--approvers", writeApprovers(t))
	sseAddr := freeAddr(t)
	sse := exec.Command(serverBinary(t), "serve", "--transport", "sse", "--addr", sseAddr, "--store", "memory")
	if err := sse.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sse.Process.Signal(syscall.SIGTERM); sse.Wait() })
	waitListening(t, sseAddr)
	stdioAt := func(version string) *client.Client {
		c, err := client.NewStdioMCPClient(serverBinary(t), nil, "serve", "--store", "memory")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		initialize(t, c, version)
		return c
	}
	sseClient := func() *client.Client {
		c, err := client.NewSSEMCPClient("http://" + sseAddr + "/sse")
		return connect(t, c, err, "2024-11-05")
	}
	legacy, modern := mcp.ErrResourceNotFound, mcp.ErrInvalidParams
	cases := []struct {
		name          string
		owner, reader *client.Client
		want          error
	}{
		{"stdio legacy", stdioAt(mcp.LATEST_LEGACY_PROTOCOL_VERSION), nil, legacy},
		{"stdio 2026-07-28", stdioAt(mcp.LATEST_PROTOCOL_VERSION), nil, modern},
		{"http legacy", httpClient(t, url, testAccessToken, mcp.LATEST_LEGACY_PROTOCOL_VERSION), httpClient(t, url, aliceToken, mcp.LATEST_LEGACY_PROTOCOL_VERSION), legacy},
		{"http 2026-07-28", httpClient(t, url, testAccessToken, mcp.LATEST_PROTOCOL_VERSION), httpClient(t, url, aliceToken, mcp.LATEST_PROTOCOL_VERSION), modern},
		{"legacy sse", sseClient(), nil, legacy},
	}
	input, _ := os.ReadFile("../../examples/refund.input.json")
	read := func(c *client.Client, uri string) error {
		req := mcp.ReadResourceRequest{}
		req.Params.URI = uri
		_, err := c.ReadResource(context.Background(), req)
		return err
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, e := callTool(t, tc.owner, "start_run", map[string]any{"program": "refund", "input": json.RawMessage(input)})
			if e != nil {
				t.Fatal(e)
			}
			own := "nano-vm://runs/" + res["run_id"].(string) + "/receipt"
			if err := read(tc.owner, own); err != nil {
				t.Fatalf("the owner reads its receipt: %v", err)
			}
			if err := read(tc.owner, "nano-vm://runs/run_00000000000000000000000000000000/receipt"); !errors.Is(err, tc.want) {
				t.Errorf("unknown run: %v, want %v", err, tc.want)
			}
			if tc.reader != nil {
				if err := read(tc.reader, own); !errors.Is(err, tc.want) {
					t.Errorf("another principal's run: %v, want %v", err, tc.want)
				}
			}
		})
	}
}
