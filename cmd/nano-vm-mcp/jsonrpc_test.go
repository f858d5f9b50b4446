package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonrpc"
)

// The JSON-RPC envelope end to end, on every transport of the real binary:
// ids are answered exactly as written (issue 13, item 11) and unsolicited
// responses cost one debug line each, within a rate limit (item 12).

// idCases are the ids a client may send, with the id its answer must
// carry: the same bytes, or null with -32600 for an id JSON-RPC forbids.
var idCases = []struct{ name, id, want string }{
	{"object", `{"a":1}`, `null`},
	{"array", `[1,2]`, `null`},
	{"boolean", `true`, `null`},
	{"2^53+1", `9007199254740993`, `9007199254740993`},
	{"2^64+1", `18446744073709551617`, `18446744073709551617`},
	{"negative beyond 2^53", `-9007199254740993`, `-9007199254740993`},
	{"negative", `-5`, `-5`},
	{"string", `"call-1"`, `"call-1"`},
	{"string of digits", `"9007199254740993"`, `"9007199254740993"`},
}

// checkIDAnswer checks one answer to a request of idCases.
func checkIDAnswer(t *testing.T, id, want string, answer []byte) {
	t.Helper()
	var a struct {
		ID    json.RawMessage `json:"id"`
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(answer, &a); err != nil {
		t.Fatalf("answer %q: %v", answer, err)
	}
	if string(a.ID) != want {
		t.Errorf("id %s answered with id %s: %s", id, a.ID, answer)
	}
	if refused := want == "null"; refused != (a.Error != nil && a.Error.Code == -32600) {
		t.Errorf("id %s: answer %s", id, answer)
	}
}

// rawLine reads the next stdout line of a piped session as it is.
func (p *piped) rawLine(t *testing.T) []byte {
	t.Helper()
	if !p.out.Scan() {
		t.Fatalf("stdout ended (%v); stderr:\n%s", p.out.Err(), p.stderr())
	}
	return bytes.Clone(p.out.Bytes())
}

func ping(id string) string { return `{"jsonrpc":"2.0","id":` + id + `,"method":"ping"}` }

const idsLegacyInit = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"ids","version":"1"}}}`

func TestServeStdioAnswersIDsAsGiven(t *testing.T) {
	p, err := startPiped(serverBinary(t), "serve", "--store", "memory")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	io.WriteString(p.in, idsLegacyInit+"\n")
	p.rawLine(t)
	for _, tc := range idCases {
		t.Run(tc.name, func(t *testing.T) {
			io.WriteString(p.in, ping(tc.id)+"\n")
			checkIDAnswer(t, tc.id, tc.want, p.rawLine(t))
		})
	}
	p.in.Close()
	if err := p.finish(); err != nil {
		t.Fatal(err)
	}
}

// startHTTPPiped starts serve over HTTP or SSE on a free port, with its
// stderr kept, and returns the session and its base URL.
func startHTTPPiped(t *testing.T, transport string, args ...string) (*piped, string) {
	t.Helper()
	p, err := startPiped(serverBinary(t), append([]string{"serve", "--transport", transport, "--addr", "127.0.0.1:0", "--store", "memory"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	m, err := p.awaitStderr(regexp.MustCompile(`listening on (http://\S+)`))
	if err != nil {
		t.Fatal(err)
	}
	return p, m[1]
}

// post sends one message to the Streamable HTTP endpoint and returns the
// status and body.
func post(t *testing.T, url, session, version, body string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", version)
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	if strings.Contains(body, `"tools/list"`) {
		req.Header.Set("Mcp-Method", "tools/list")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// An answer streamed as SSE is one "data:" line.
	if i := bytes.Index(b, []byte("data: ")); i >= 0 {
		b = bytes.TrimSpace(b[i+len("data: "):])
	}
	return resp.StatusCode, bytes.TrimSpace(b), resp.Header
}

func idsLegacySession(t *testing.T, url string) string {
	t.Helper()
	status, body, h := post(t, url, "", "2025-11-25", idsLegacyInit)
	if status != http.StatusOK || h.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %d %s", status, body)
	}
	return h.Get("Mcp-Session-Id")
}

func TestServeHTTPAnswersIDsAsGiven(t *testing.T) {
	_, base := startHTTPPiped(t, "http")
	url := base + "/mcp"
	session := idsLegacySession(t, url)
	modern := func(id string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"ids","version":"1"}}}}`
	}
	for _, tc := range idCases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := post(t, url, session, "2025-11-25", ping(tc.id))
			checkIDAnswer(t, tc.id, tc.want, body)
			status2, body2, _ := post(t, url, "", "2026-07-28", modern(tc.id))
			checkIDAnswer(t, tc.id, tc.want, body2)
			want := http.StatusOK
			if tc.want == "null" {
				want = http.StatusBadRequest
			}
			if status != want || status2 != want {
				t.Errorf("status %d (legacy), %d (2026-07-28), want %d", status, status2, want)
			}
		})
	}
}

// sseStream opens a legacy SSE stream and returns the /message URL of its
// session and the stream's "data:" lines after the endpoint.
func sseStream(t *testing.T, base string) (string, <-chan []byte) {
	t.Helper()
	resp, err := http.Get(base + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	data := make(chan []byte, 100)
	sc := bufio.NewScanner(resp.Body)
	endpoint := ""
	for endpoint == "" && sc.Scan() {
		if after, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			endpoint = strings.TrimSpace(after)
		}
	}
	if endpoint == "" {
		t.Fatalf("no endpoint event (%v)", sc.Err())
	}
	go func() {
		defer close(data)
		for sc.Scan() {
			if after, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: ")); ok {
				data <- bytes.Clone(after)
			}
		}
	}()
	return base + endpoint, data
}

func postMessage(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, bytes.TrimSpace(b)
}

func TestServeLegacySSEAnswersIDsAsGiven(t *testing.T) {
	_, base := startHTTPPiped(t, "sse")
	msgURL, stream := sseStream(t, base)
	postMessage(t, msgURL, idsLegacyInit)
	<-stream
	for _, tc := range idCases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postMessage(t, msgURL, ping(tc.id))
			if tc.want == "null" {
				// Refused at the POST, as mcp-go refuses what it cannot parse.
				if status != http.StatusBadRequest {
					t.Fatalf("status %d", status)
				}
				checkIDAnswer(t, tc.id, tc.want, body)
				return
			}
			if status != http.StatusAccepted {
				t.Fatalf("status %d: %s", status, body)
			}
			checkIDAnswer(t, tc.id, tc.want, <-stream)
		})
	}
}

// unsolicitedLines checks a server's stderr after a flood of unsolicited
// responses: no error line, no stack trace, and between one and the rate
// limit's lines about them, at debug.
func unsolicitedLines(t *testing.T, stderr, transport string) {
	t.Helper()
	n := 0
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, "stacktrace") || strings.Contains(l, "goroutine ") {
			t.Errorf("stderr: %s", l)
		}
		if strings.Contains(l, "answers no request") {
			n++
			if !strings.Contains(l, `"level":"debug"`) || !strings.Contains(l, `"transport":"`+transport+`"`) {
				t.Errorf("stderr: %s", l)
			}
		}
	}
	if n < 1 || n > jsonrpc.UnsolicitedLines {
		t.Errorf("%d lines about unsolicited responses, want 1 to %d; stderr:\n%s", n, jsonrpc.UnsolicitedLines, stderr)
	}
}

// unsolicited are responses that answer no request of the server's.
func unsolicited(i int) []string {
	return []string{
		fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":{"action":"accept"}}`, 1000+i),
		fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"error":{"code":-1,"message":"no"}}`, 2000+i),
		`{"jsonrpc":"2.0","id":"s","result":{"x":1}}`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`,
	}
}

const flood = 50

func TestServeStdioUnsolicitedResponses(t *testing.T) {
	p, err := startPiped(serverBinary(t), "serve", "--store", "memory", "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	lines := idsLegacyInit + "\n"
	for i := range flood {
		lines += strings.Join(unsolicited(i), "\n") + "\n"
	}
	io.WriteString(p.in, lines+ping("7")+"\n")
	p.in.Close()
	// Only the two calls are answered: a response never is.
	if a, b := p.rawLine(t), p.rawLine(t); !bytes.Contains(a, []byte(`"id":1,`)) || string(b) != `{"jsonrpc":"2.0","id":7,"result":{}}` {
		t.Fatalf("answers %s, %s", a, b)
	}
	if err := p.finish(); err != nil {
		t.Fatal(err)
	}
	unsolicitedLines(t, p.stderr(), "stdio")
}

func TestServeHTTPUnsolicitedResponses(t *testing.T) {
	p, base := startHTTPPiped(t, "http", "--log-level", "debug")
	url := base + "/mcp"
	session := idsLegacySession(t, url)
	for i := range flood {
		for _, r := range unsolicited(i) {
			if status, body, _ := post(t, url, session, "2025-11-25", r); status < 400 || status >= 500 {
				t.Fatalf("%s: %d %s", r, status, body)
			}
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.finish(); err != nil {
		t.Fatal(err)
	}
	unsolicitedLines(t, p.stderr(), "http")
}

// The legacy SSE transport sends no requests, so every response posted is
// unsolicited: accepted, never answered (it used to get "Method not
// found"), and logged like the others.
func TestServeLegacySSEUnsolicitedResponses(t *testing.T) {
	p, base := startHTTPPiped(t, "sse", "--log-level", "debug")
	msgURL, stream := sseStream(t, base)
	postMessage(t, msgURL, idsLegacyInit)
	<-stream
	for i := range flood {
		for _, r := range unsolicited(i) {
			if status, body := postMessage(t, msgURL, r); status != http.StatusAccepted {
				t.Fatalf("%s: %d %s", r, status, body)
			}
		}
	}
	postMessage(t, msgURL, ping("7"))
	if got := <-stream; string(got) != `{"jsonrpc":"2.0","id":7,"result":{}}` {
		t.Fatalf("the stream carried %s before the ping's answer", got)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.finish(); err != nil {
		t.Fatal(err)
	}
	unsolicitedLines(t, p.stderr(), "sse")
}
