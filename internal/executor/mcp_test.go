package executor

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/executor/executortest"
	"github.com/nano-vm/nano-vm-mcp/internal/executor/internal/downstream"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// The downstream server of the stdio tests is this test binary, run again
// with NANO_VM_DOWNSTREAM=1: it serves the server instead of the tests.
// Re-running the binary spares the tests a go build of their own.
func init() { executortest.ServeIfAsked() }

// stdioTool is a registry tool on the downstream server over stdio, and
// the options to build it with: env is the downstream's environment (the
// allowlist passes exactly these names), the pins file is fresh.
func stdioTool(t testing.TB, remote string, env map[string]string) (*Tool, Options) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	all := executortest.Env()
	for k, v := range env {
		all[k] = v
	}
	names := make([]string, 0, len(all))
	for k := range all {
		names = append(names, k)
	}
	slices.Sort(names)
	tool := &Tool{
		Name:    "bureau",
		MCP:     &MCPSpec{Command: []string{exe}, Env: names, Tool: remote},
		Timeout: 10 * time.Second,
	}
	return tool, Options{
		Getenv: func(k string) string { return all[k] },
		Pins:   filepath.Join(t.TempDir(), "tools.pins.json"),
	}
}

// build builds the executor and closes it when the test ends.
func build(t testing.TB, tool *Tool, o Options) *mcpExec {
	t.Helper()
	e, err := newMCP(tool, o)
	if err != nil {
		t.Fatalf("newMCP: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e.(*mcpExec)
}

// invokeAs calls the executor with another downstream tool's name: the
// failure-case tools share one server, and one executor, with echo.
func invokeAs(t *testing.T, m *mcpExec, remote string, args map[string]any, key string) (any, error) {
	t.Helper()
	saved := m.d.remote
	m.d.remote = remote
	defer func() { m.d.remote = saved }()
	return m.Invoke(context.Background(), Call{Tool: m.d.tool, Arguments: args, IdempotencyKey: key, Attempt: 1})
}

// class returns the failure class of err, failing the test when err is
// not a *Failure.
func class(t *testing.T, err error) Class {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v (%T) is not a *Failure", err, err)
	}
	return f.Class
}

func field(t *testing.T, v any, name string) any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("result %#v is not an object", v)
	}
	return m[name]
}

func TestMCPStdioEchoAnswersStructuredContentWithTheKeyInMeta(t *testing.T) {
	tool, o := stdioTool(t, "echo", map[string]string{"BUREAU_REGION": "eu", "BUREAU_UNSET": ""})
	m := build(t, tool, o)
	got, err := m.Invoke(context.Background(), Call{Tool: "bureau", Arguments: map[string]any{"message": "hi"}, IdempotencyKey: "run-1/3/call-1", Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	if field(t, got, "message") != "hi" || field(t, got, "key") != "run-1/3/call-1" {
		t.Fatalf("echo answered %#v", got)
	}
	// The server's environment is the allowlist's names that have a value,
	// and nothing else.
	env, _ := field(t, got, "env").([]any)
	if want := []any{"BUREAU_REGION", "GORACE", "NANO_VM_DOWNSTREAM"}; !slices.Equal(env, want) {
		t.Fatalf("the server's environment has %v, want exactly %v", env, want)
	}
	if _, ok := field(t, got, "pid").(json.Number); !ok {
		t.Fatalf("pid %#v is not a json.Number: results are strict JSON", field(t, got, "pid"))
	}
}

// resultCases are the downstream's failure-case tools, each with what the
// executor makes of its answer.
var resultCases = []struct {
	name   string
	remote string
	args   map[string]any
	want   Class  // "" for a result
	detail string // in the failure's detail
	check  func(t *testing.T, v any)
}{
	{name: "JSON text content is the result", remote: "text_json", args: map[string]any{"q": "x"},
		check: func(t *testing.T, v any) {
			if field(t, v, "n") != json.Number("9007199254740991") {
				t.Fatalf("n = %#v", field(t, v, "n"))
			}
		}},
	{name: "plain text is a schema violation", remote: "text", args: map[string]any{"text": "Echo: hi"},
		want: ClassSchemaViolation, detail: "not strict JSON"},
	{name: "JSON text with a duplicate key is a schema violation", remote: "text", args: map[string]any{"text": `{"a":1,"a":2}`},
		want: ClassSchemaViolation, detail: "duplicate"},
	{name: "isError is a tool error carrying its text", remote: "fail",
		want: ClassToolError, detail: "the bureau refused the lookup"},
	{name: "a long isError text is cut to a bounded detail", remote: "fail", args: map[string]any{"size": 5000},
		want: ClassToolError, detail: "more bytes)"},
	{name: "a huge text result is over the cap", remote: "huge",
		want: ClassSandbox, detail: "cap"},
	{name: "a huge structured result is over the cap", remote: "huge", args: map[string]any{"structured": true},
		want: ClassSandbox, detail: "cap"},
	{name: "a result of the wrong types is returned for the state's schema to judge", remote: "bad_schema",
		check: func(t *testing.T, v any) {
			s, err := schema.Compile(mustDecode(t, `{"type":"object","properties":{"amount":{"type":"number"},"currency":{"type":"string"}}}`))
			if err != nil {
				t.Fatal(err)
			}
			if vs := s.Validate(v); len(vs) != 2 {
				t.Fatalf("violations %v, want amount and currency", vs)
			}
		}},
	{name: "an unknown downstream tool is a tool error", remote: "no_such_tool",
		want: ClassToolError, detail: "refused the call"},
}

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	v, err := jsonvalue.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMCPResultsOfTheDownstreamFailureCases(t *testing.T) {
	tool, o := stdioTool(t, "echo", nil)
	runResultCases(t, build(t, tool, o))
}

// runResultCases calls each of resultCases through m.
func runResultCases(t *testing.T, m *mcpExec) {
	for _, tc := range resultCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := invokeAs(t, m, tc.remote, tc.args, "k")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, got)
				return
			}
			if c := class(t, err); c != tc.want || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("error %v (class %s), want class %s with %q", err, c, tc.want, tc.detail)
			}
			if len(err.Error()) > 2*maxDetail {
				t.Fatalf("detail of %d bytes is not bounded", len(err.Error()))
			}
		})
	}
}

func TestMCPSlowCallTimesOutAndTheSessionServesTheNextCall(t *testing.T) {
	tool, o := stdioTool(t, "echo", nil)
	m := build(t, tool, o)
	before, err := invokeAs(t, m, "echo", map[string]any{"message": "a"}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	// More timed-out calls than the server has workers (five): echo can
	// only be answered after them if each timeout cancelled its call on
	// the server (notifications/cancelled). Only the slow calls get the
	// short timeout, so that a loaded machine cannot fail echo.
	m.d.timeout = 300 * time.Millisecond
	for range 6 {
		start := time.Now()
		_, err = invokeAs(t, m, "slow", map[string]any{"ms": 60_000}, "k2")
		if c := class(t, err); c != ClassTimeout {
			t.Fatalf("slow: %v, want class timeout", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("the timed-out call took %s", d)
		}
	}
	m.d.timeout = 10 * time.Second
	after, err := invokeAs(t, m, "echo", map[string]any{"message": "b"}, "k3")
	if err != nil {
		t.Fatal(err)
	}
	if field(t, before, "pid") != field(t, after, "pid") {
		t.Fatal("a timeout restarted the server; it should only cancel the call")
	}
}

func TestMCPCrashedStdioServerFailsTheCallAndIsRestartedOnTheNext(t *testing.T) {
	tool, o := stdioTool(t, "echo", nil)
	m := build(t, tool, o)
	first, err := invokeAs(t, m, "echo", map[string]any{"message": "a"}, "k1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = invokeAs(t, m, "crash", nil, "k2")
	if c := class(t, err); c != ClassTransport {
		t.Fatalf("crash: %v, want class transport", err)
	}
	second, err := invokeAs(t, m, "echo", map[string]any{"message": "b"}, "k3")
	if err != nil {
		t.Fatalf("the call after the crash: %v", err)
	}
	if field(t, first, "pid") == field(t, second, "pid") {
		t.Fatal("the server was not restarted")
	}
}

func TestMCPConcurrentCallsShareOneSessionAndSendEachKeyOnce(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	tool, o := stdioTool(t, "count", map[string]string{"DOWNSTREAM_COUNT_FILE": count})
	m := build(t, tool, o)
	const n = 24
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = m.Invoke(context.Background(), Call{Tool: "bureau", IdempotencyKey: keyOf(i), Attempt: 1})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	assertKeysOnce(t, count, n)
}

func keyOf(i int) string { return "run/1/call-" + string(rune('a'+i)) }

// assertKeysOnce checks that the count file holds keys 0..n-1, each once.
func assertKeysOnce(t *testing.T, path string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(b))
	slices.Sort(got)
	var want []string
	for i := range n {
		want = append(want, keyOf(i))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("keys counted %v, want each of %v once", got, want)
	}
}

func TestMCPDriftBetweenRunsRefusesCallsUntilRepinned(t *testing.T) {
	for _, drift := range []string{downstream.DriftDescription, downstream.DriftSchema} {
		t.Run(drift, func(t *testing.T) {
			tool, o := stdioTool(t, "echo", map[string]string{"DOWNSTREAM_DRIFT": ""})
			first := build(t, tool, o)
			if _, err := first.Invoke(context.Background(), Call{Arguments: map[string]any{"message": "a"}}); err != nil {
				t.Fatal(err)
			}
			first.Close()
			pins, err := readPins(o.Pins)
			if err != nil || pins["bureau"].Pin == "" {
				t.Fatalf("the first load pinned nothing: %v %v", pins, err)
			}

			// The same registry, a server that now lists echo differently.
			tool, o2 := stdioTool(t, "echo", map[string]string{"DOWNSTREAM_DRIFT": drift})
			o2.Pins = o.Pins
			second := build(t, tool, o2)
			_, err = second.Invoke(context.Background(), Call{Arguments: map[string]any{"message": "b"}})
			if c := class(t, err); c != ClassDrifted || !strings.Contains(err.Error(), pinPrefix(pins["bureau"].Pin)) {
				t.Fatalf("call on a drifted tool: %v, want class drifted naming the pin", err)
			}
			if err := second.Check(context.Background()); class(t, err) != ClassDrifted {
				t.Fatalf("Check: %v, want drifted", err)
			}

			entries, err := Pin(context.Background(), []*Tool{tool}, o2.Pins, o2)
			if err != nil || len(entries) != 1 || entries[0].Pin == pins["bureau"].Pin {
				t.Fatalf("Pin: %v %v", entries, err)
			}
			if _, err := second.Invoke(context.Background(), Call{Arguments: map[string]any{"message": "c"}}); err != nil {
				t.Fatalf("the call after re-pinning: %v", err)
			}
			if err := second.Check(context.Background()); err != nil {
				t.Fatalf("Check after re-pinning: %v", err)
			}
		})
	}
}

func TestMCPToolsListChangedRechecksThePinBeforeTheNextCall(t *testing.T) {
	tool, o := stdioTool(t, "echo", nil)
	m := build(t, tool, o)
	changed := make(chan struct{}, 1)
	f := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	m.onListChanged.Store(&f)
	if _, err := invokeAs(t, m, "mutate", nil, "k1"); err != nil {
		t.Fatal(err)
	}
	<-changed
	_, err := invokeAs(t, m, "echo", map[string]any{"message": "a"}, "k2")
	if c := class(t, err); c != ClassDrifted {
		t.Fatalf("call after list_changed: %v, want drifted", err)
	}
}

// httpDownstream serves the downstream server over Streamable HTTP behind
// a bearer check; down makes it answer 502 as a dead gateway would.
type httpDownstream struct {
	srv  *httptest.Server
	down atomic.Bool
}

const testToken = "s3cret-token"

func newHTTPDownstream(t *testing.T, cfg downstream.Config) *httpDownstream {
	t.Helper()
	h := downstream.Handler(cfg)
	d := &httpDownstream{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.down.Load() {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// mcpHTTPTool is a registry tool on d, with its token file.
func mcpHTTPTool(t *testing.T, d *httpDownstream, remote, token string) (*Tool, Options) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Tool{
			Name:    "bureau",
			MCP:     &MCPSpec{URL: d.srv.URL + "/mcp", TokenFile: "token", Tool: remote},
			Timeout: 10 * time.Second,
		}, Options{
			RegistryDir: dir,
			Pins:        "tools.pins.json",
		}
}

func TestMCPStreamableHTTPResultsAndKeys(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	d := newHTTPDownstream(t, downstream.Config{CountFile: count})
	tool, o := mcpHTTPTool(t, d, "echo", testToken)
	m := build(t, tool, o)
	got, err := invokeAs(t, m, "echo", map[string]any{"message": "hi"}, "k-http")
	if err != nil || field(t, got, "key") != "k-http" {
		t.Fatalf("echo: %#v %v", got, err)
	}
	runResultCases(t, m)
	for i := range 5 {
		if _, err := invokeAs(t, m, "count", nil, keyOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	assertKeysOnce(t, count, 5)
	if _, err := os.Stat(filepath.Join(o.RegistryDir, "tools.pins.json")); err != nil {
		t.Fatalf("the pins file is not next to the registry: %v", err)
	}
}

func TestMCPStreamableHTTPServerDownFailsTheCallAndTheNextReconnects(t *testing.T) {
	d := newHTTPDownstream(t, downstream.Config{})
	tool, o := mcpHTTPTool(t, d, "echo", testToken)
	m := build(t, tool, o)
	d.down.Store(true)
	_, err := m.Invoke(context.Background(), Call{Arguments: map[string]any{"message": "a"}})
	if c := class(t, err); c != ClassTransport {
		t.Fatalf("call to a dead server: %v, want transport", err)
	}
	d.down.Store(false)
	if _, err := m.Invoke(context.Background(), Call{Arguments: map[string]any{"message": "b"}}); err != nil {
		t.Fatalf("call after the server came back: %v", err)
	}
}

func TestMCPStreamableHTTPSlowCallTimesOut(t *testing.T) {
	d := newHTTPDownstream(t, downstream.Config{})
	tool, o := mcpHTTPTool(t, d, "slow", testToken)
	tool.Timeout = 300 * time.Millisecond
	m := build(t, tool, o)
	_, err := m.Invoke(context.Background(), Call{Arguments: map[string]any{"ms": 60_000}})
	if c := class(t, err); c != ClassTimeout {
		t.Fatalf("slow over HTTP: %v, want timeout", err)
	}
}

func TestMCPLoadRefusesWhatCannotWork(t *testing.T) {
	d := newHTTPDownstream(t, downstream.Config{})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + "/mcp"
	dead.Close()
	cases := []struct {
		name  string
		setup func(t *testing.T) (*Tool, Options)
		want  string
	}{
		{"a missing binary", func(t *testing.T) (*Tool, Options) {
			return &Tool{Name: "x", MCP: &MCPSpec{Command: []string{"/nonexistent/bureau-mcp"}, Tool: "lookup"}}, Options{}
		}, `command "/nonexistent/bureau-mcp"`},
		{"a server that does not list the tool", func(t *testing.T) (*Tool, Options) {
			return stdioTool(t, "lookup", nil)
		}, `does not list tool "lookup"`},
		{"an unreachable URL", func(t *testing.T) (*Tool, Options) {
			return &Tool{Name: "x", MCP: &MCPSpec{URL: deadURL, Tool: "echo"}}, Options{}
		}, "cannot reach the downstream server"},
		{"a wrong token", func(t *testing.T) (*Tool, Options) {
			return mcpHTTPTool(t, d, "echo", "wrong")
		}, "cannot reach the downstream server"},
		{"credentials in the URL", func(t *testing.T) (*Tool, Options) {
			return &Tool{Name: "x", MCP: &MCPSpec{URL: "https://u:p@bureau.internal/mcp", Tool: "echo"}}, Options{}
		}, "token_file"},
		{"an empty token file", func(t *testing.T) (*Tool, Options) {
			tool, o := mcpHTTPTool(t, d, "echo", "")
			return tool, o
		}, "is empty"},
		{"both command and url", func(t *testing.T) (*Tool, Options) {
			return &Tool{Name: "x", MCP: &MCPSpec{Command: []string{"true"}, URL: d.srv.URL, Tool: "echo"}}, Options{}
		}, "not both"},
		{"no downstream tool name", func(t *testing.T) (*Tool, Options) {
			return &Tool{Name: "x", MCP: &MCPSpec{Command: []string{"true"}}}, Options{}
		}, "tool (the downstream tool's name) is required"},
		{"a corrupt pins file", func(t *testing.T) (*Tool, Options) {
			tool, o := stdioTool(t, "echo", nil)
			if err := os.WriteFile(o.Pins, []byte(`{"version":1,"pins":[{"tool":"bureau","pin":"md5:x"}]}`), 0o644); err != nil {
				t.Fatal(err)
			}
			return tool, o
		}, "is not sha256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tool, o := tc.setup(t)
			e, err := newMCP(tool, o)
			if err == nil {
				e.Close()
				t.Fatalf("newMCP succeeded, want an error with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Fatalf("error %q carries the token", err)
			}
		})
	}
}

func TestMCPClosedExecutorFailsCallsWithTransport(t *testing.T) {
	tool, o := stdioTool(t, "echo", nil)
	m := build(t, tool, o)
	m.Close()
	_, err := m.Invoke(context.Background(), Call{Arguments: map[string]any{"message": "a"}})
	if c := class(t, err); c != ClassTransport {
		t.Fatalf("%v, want transport", err)
	}
}
