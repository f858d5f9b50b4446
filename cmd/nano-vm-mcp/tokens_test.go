package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tools"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Two agents of the tokens file, and the operator, for the isolation
// tests.
const (
	ciBotToken     = "ci-bot-agent-token-0123456789"
	reviewBotToken = "review-bot-agent-token-0123456789"
	deployBotToken = "deploy-bot-agent-token-0123456789"
	testOpToken    = "operator-token-for-tests-0123456789"
)

func tokenHash(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func tokensFile(agents map[string]string) string {
	var b strings.Builder
	b.WriteString("agents:\n")
	for id, tok := range agents {
		b.WriteString("  - id: " + id + "\n    token_sha256: " + tokenHash(tok) + "\n")
	}
	return b.String()
}

func writeTokens(t *testing.T, path string, agents map[string]string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(tokensFile(agents)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// errCode is the code of a tool's error result.
func errCode(e map[string]any) string {
	if e == nil {
		return ""
	}
	s, _ := e["code"].(string)
	return s
}

// startRefund starts a refund run as c's principal and returns its id and
// its task's seq.
func startRefund(t *testing.T, c *client.Client) (string, any) {
	t.Helper()
	id, tk := startExample(t, c, "refund")
	return id, tk["seq"]
}

// startExample starts a run of the example program with its example input
// as c's principal, and returns its id and first task.
func startExample(t *testing.T, c *client.Client, name string) (string, map[string]any) {
	t.Helper()
	input, err := os.ReadFile("../../examples/" + name + ".input.json")
	if err != nil {
		t.Fatal(err)
	}
	res, e := callTool(t, c, "start_run", map[string]any{"program": name, "input": json.RawMessage(input)})
	if e != nil {
		t.Fatalf("start_run: %v", e)
	}
	return res["run_id"].(string), res["task"].(map[string]any)
}

// listedRuns is the run ids list_runs shows c.
func listedRuns(t *testing.T, c *client.Client) []string {
	t.Helper()
	res, e := callTool(t, c, "list_runs", map[string]any{})
	if e != nil {
		t.Fatalf("list_runs: %v", e)
	}
	var ids []string
	for _, r := range res["runs"].([]any) {
		ids = append(ids, r.(map[string]any)["run_id"].(string))
	}
	return ids
}

// checkAgentsIsolated drives the server at url as two agents of the tokens
// file and as the access token's principal "agent": each sees and drives
// only its own runs, and the operator sees each run's principal.
func checkAgentsIsolated(t *testing.T, url string) {
	t.Helper()
	version := mcp.LATEST_PROTOCOL_VERSION
	ci := httpClient(t, url, ciBotToken, version)
	review := httpClient(t, url, reviewBotToken, version)
	shared := httpClient(t, url, testAccessToken, version)
	op := httpClient(t, url, testOpToken, version)

	ciRun, ciSeq := startRefund(t, ci)
	reviewRun, _ := startRefund(t, review)
	sharedRun, _ := startRefund(t, shared)
	for name, tc := range map[string]struct {
		c    *client.Client
		want string
	}{"ci-bot": {ci, ciRun}, "review-bot": {review, reviewRun}, "agent": {shared, sharedRun}} {
		if got := listedRuns(t, tc.c); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s lists %v, want only its own run %s", name, got, tc.want)
		}
	}

	answer := readLines(t, "../../examples/refund.refunded.answers.jsonl")[0]
	for _, other := range []struct {
		name string
		c    *client.Client
	}{{"review-bot", review}, {"agent", shared}} {
		for _, call := range []struct {
			tool string
			args map[string]any
		}{
			{"get_run", map[string]any{"run_id": ciRun}},
			{"step", map[string]any{"run_id": ciRun, "seq": ciSeq, "output": answer}},
			{"cancel_run", map[string]any{"run_id": ciRun, "reason": "not mine"}},
		} {
			if res, e := callTool(t, other.c, call.tool, call.args); errCode(e) != "unknown_run" {
				t.Errorf("%s: %s on ci-bot's run = %v %v, want unknown_run", other.name, call.tool, res, e)
			}
		}
	}
	if _, e := callTool(t, ci, "get_run", map[string]any{"run_id": reviewRun}); errCode(e) != "unknown_run" {
		t.Errorf("ci-bot: get_run on review-bot's run = %v, want unknown_run", e)
	}

	// ci-bot's run is untouched by the others, and ci-bot drives it.
	res, e := callTool(t, ci, "step", map[string]any{"run_id": ciRun, "seq": ciSeq, "output": answer})
	if e != nil || res["status"] != "completed" || res["outcome"] != "REFUNDED" {
		t.Fatalf("ci-bot's step on its run: %v %v", res, e)
	}

	// The operator sees every run, each recorded under its principal.
	if got := listedRuns(t, op); len(got) != 3 {
		t.Errorf("the operator lists %v, want the three runs", got)
	}
	for run, principal := range map[string]string{ciRun: "ci-bot", reviewRun: "review-bot", sharedRun: access.IDAgent} {
		rr, err := op.ReadResource(context.Background(), mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "nano-vm://runs/" + run + "/trace"}})
		if err != nil || len(rr.Contents) == 0 {
			t.Fatalf("trace of %s: %v", run, err)
		}
		text := rr.Contents[0].(mcp.TextResourceContents).Text
		if !strings.Contains(text, `"principal":"`+principal+`"`) {
			t.Errorf("trace of %s does not record principal %s: %.300s", run, principal, text)
		}
	}
}

// initializeStatus is the HTTP status of an initialize request with token.
func initializeStatus(t *testing.T, url, token string) int {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Over HTTP against the real binary: agents of --tokens are principals of
// their own, beside the access token's "agent".
func TestServeTokensFileIsolatesAgents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokens(t, path, map[string]string{"ci-bot": ciBotToken, "review-bot": reviewBotToken})
	url := startHTTP(t, []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken, "NANO_VM_OPERATOR_TOKEN=" + testOpToken},
		"--store", "memory", "--tokens", path)
	checkAgentsIsolated(t, url)
	if got := initializeStatus(t, url, deployBotToken); got != http.StatusUnauthorized {
		t.Fatalf("a token in no file: status %d, want 401", got)
	}
}

// In process, the same wiring: the guard with the tokens file a Reloader
// keeps in force, in front of both profiles' servers. A reload takes an
// agent's token away and gives a new agent one.
func TestTokensFileIsolatesAgentsAndReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokens(t, path, map[string]string{"ci-bot": ciBotToken, "review-bot": reviewBotToken})
	credentials := access.NewReloader(nil, nil)
	agents, err := credentials.Tokens(path)
	if err != nil {
		t.Fatal(err)
	}
	hc := access.HTTPConfig{AccessToken: testAccessToken, OperatorToken: testOpToken, Tokens: agents}
	if err := hc.Validate("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}

	st := tracestore.NewMemory()
	keys, err := keyring.Ephemeral(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(service.Options{Store: st, Secret: keys.Secret, KEKs: keys.KEKs})
	progs, err := loadServedPrograms("")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range progs {
		if err := svc.AddProgram(context.Background(), p.Program, p.Source); err != nil {
			t.Fatal(err)
		}
	}
	cfg := tools.Config{Service: svc, Store: st, Keys: keys, Version: runtime.Version}
	agentCfg, operatorCfg := cfg, cfg
	agentCfg.Profile, operatorCfg.Profile = access.ProfileAgent, access.ProfileOperator
	mux := http.NewServeMux()
	quiet := slog.New(slog.DiscardHandler)
	mux.Handle(access.MCPPath, byProfile(streamable(t.Context(), tools.NewServer(agentCfg), serveFlags{}, quiet), streamable(t.Context(), tools.NewServer(operatorCfg), serveFlags{}, quiet)))
	srv := httptest.NewServer(access.Guard(hc, mux))
	t.Cleanup(srv.Close)
	url := srv.URL + access.MCPPath

	checkAgentsIsolated(t, url)

	writeTokens(t, path, map[string]string{"ci-bot": ciBotToken, "deploy-bot": deployBotToken})
	if got := initializeStatus(t, url, deployBotToken); got != http.StatusUnauthorized {
		t.Fatalf("deploy-bot before the reload: status %d, want 401", got)
	}
	credentials.Check()
	if got := initializeStatus(t, url, reviewBotToken); got != http.StatusUnauthorized {
		t.Fatalf("review-bot after the reload: status %d, want 401", got)
	}
	deploy := httpClient(t, url, deployBotToken, mcp.LATEST_PROTOCOL_VERSION)
	if got := listedRuns(t, deploy); len(got) != 0 {
		t.Fatalf("a new agent lists %v, want no runs", got)
	}
	if got := listedRuns(t, httpClient(t, url, ciBotToken, mcp.LATEST_PROTOCOL_VERSION)); len(got) != 1 {
		t.Fatalf("ci-bot after the reload lists %v, want its run", got)
	}
}
