package tools

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// harness is an in-process MCP server on a memory store, with a client
// connected through mcp-go's in-process transport.
type harness struct {
	clock *testClock
	t     testing.TB
	cfg   Config
	srv   *server.MCPServer
	c     *client.Client
	store tracestore.Store
}

// lockedRand makes a seeded source safe for the service's goroutines.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

func newHarness(t testing.TB, tune func(*Config), clientOpts ...client.ClientOption) *harness {
	t.Helper()
	return newHarnessAt(t, mcp.LATEST_LEGACY_PROTOCOL_VERSION, tune, clientOpts...)
}

// newHarnessAt connects with the given protocol revision: a legacy one
// (initialize handshake) or 2026-07-28 (stateless, per-request _meta).
func newHarnessAt(t testing.TB, version string, tune func(*Config), clientOpts ...client.ClientOption) *harness {
	t.Helper()
	ctx := context.Background()
	rnd := &lockedRand{r: rand.New(rand.NewSource(1))}
	keys, err := keyring.Ephemeral(rnd)
	if err != nil {
		t.Fatal(err)
	}
	st := tracestore.NewMemory()
	clock := &testClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	svc := service.New(service.Options{Store: st, Secret: keys.Secret, Rand: rnd, Clock: clock.tick})
	addExamples(t, svc)
	cfg := Config{Service: svc, Store: st, Keys: keys, Version: "test"}
	if tune != nil {
		tune(&cfg)
	}
	srv := NewServer(cfg)
	c, err := client.NewInProcessClientWithOptions(srv, clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = version
	init.Params.ClientInfo = mcp.Implementation{Name: "harness", Version: "1"}
	if len(clientOpts) > 0 {
		init.Params.Capabilities.Elicitation = &mcp.ElicitationCapability{}
	}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &harness{t: t, cfg: cfg, srv: srv, c: c, store: st, clock: clock}
}

// addExamples registers every example program with svc.
func addExamples(t testing.TB, svc *service.Service) {
	t.Helper()
	for _, name := range examples.Programs() {
		p, src := examples.MustLoad(name)
		if err := svc.AddProgram(context.Background(), p, src); err != nil {
			t.Fatal(err)
		}
	}
}

// testClock moves a second on every reading, and jumps when told.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) tick() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var outputSchemas = func() map[string]*schema.Schema {
	out := map[string]*schema.Schema{}
	for name, b := range ToolSchemaFiles() {
		doc, err := jsonvalue.Decode(b)
		if err != nil {
			panic(err)
		}
		s, err := schema.Compile(doc)
		if err != nil {
			panic(name + ": " + err.Error())
		}
		out[name] = s
	}
	return out
}()

// call calls a tool and checks the result's shape: a success carries
// structuredContent valid against the tool's output schema and the same
// JSON as text; an error carries no structuredContent and the error JSON
// as its only text.
func (h *harness) call(ctx context.Context, name string, args any) (map[string]any, *ErrorBody) {
	h.t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		h.t.Fatal(err)
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = json.RawMessage(raw)
	res, err := h.c.CallTool(ctx, req)
	if err != nil {
		h.t.Fatalf("%s: protocol error: %v", name, err)
	}
	if len(res.Content) == 0 {
		h.t.Fatalf("%s: no content", name)
	}
	text, ok := res.Content[0].(mcp.TextContent)
	if !ok {
		h.t.Fatalf("%s: first content is %T, not text", name, res.Content[0])
	}
	if res.IsError {
		if res.StructuredContent != nil {
			h.t.Fatalf("%s: error result carries structuredContent %v", name, res.StructuredContent)
		}
		var body ErrorBody
		dec := json.NewDecoder(strings.NewReader(text.Text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.Code == "" || body.Message == "" {
			h.t.Fatalf("%s: error text is not the error JSON: %q (%v)", name, text.Text, err)
		}
		return nil, &body
	}
	sc, err := json.Marshal(res.StructuredContent)
	if err != nil {
		h.t.Fatal(err)
	}
	v, err := jsonvalue.Decode(sc)
	if err != nil {
		h.t.Fatalf("%s: structuredContent: %v", name, err)
	}
	if vs := outputSchemas[name+".output.json"].Validate(v); len(vs) > 0 {
		h.t.Fatalf("%s: structuredContent does not match the output schema: %v\n%s", name, vs, sc)
	}
	tv, err := jsonvalue.Decode([]byte(text.Text))
	if err != nil || !jsonvalue.Equal(tv, v) {
		h.t.Fatalf("%s: text content differs from structuredContent", name)
	}
	m := map[string]any{}
	if err := json.Unmarshal(sc, &m); err != nil {
		h.t.Fatal(err)
	}
	return m, nil
}

// mustCall fails the test on an error result.
func (h *harness) mustCall(ctx context.Context, name string, args any) map[string]any {
	h.t.Helper()
	m, e := h.call(ctx, name, args)
	if e != nil {
		h.t.Fatalf("%s: %s: %s %v", name, e.Code, e.Message, e.Details)
	}
	return m
}

// mustFail expects an error result with code.
func (h *harness) mustFail(ctx context.Context, name string, args any, code string) *ErrorBody {
	h.t.Helper()
	m, e := h.call(ctx, name, args)
	if e == nil {
		h.t.Fatalf("%s: succeeded (%v), want %s", name, m, code)
	}
	if e.Code != code {
		h.t.Fatalf("%s: code %s (%s), want %s", name, e.Code, e.Message, code)
	}
	return e
}

// answers reads an example answers file.
func answers(t testing.TB, name string) []json.RawMessage {
	t.Helper()
	data, err := examples.FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, json.RawMessage(bytes.Clone(line)))
		}
	}
	return out
}

func exampleInput(t testing.TB, name string) json.RawMessage {
	t.Helper()
	data, err := examples.FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// task returns the task member of a result.
func task(t testing.TB, m map[string]any) map[string]any {
	t.Helper()
	tk, ok := m["task"].(map[string]any)
	if !ok {
		t.Fatalf("no task in %v", m)
	}
	return tk
}

func seqOf(t testing.TB, tk map[string]any) uint64 {
	t.Helper()
	return uint64(tk["seq"].(float64))
}

// drive answers tasks from answers until the run stops at an approval, ends
// or the answers run out; it returns the last result and the answers used.
// Some example answers are meant to be rejected (schema_violation,
// guard_denied): the next answer goes to the task the error carries.
func (h *harness) drive(ctx context.Context, runID string, res map[string]any, ans []json.RawMessage) (map[string]any, int) {
	h.t.Helper()
	used := 0
	tk := task(h.t, res)
	for res["status"] == "running" && used < len(ans) {
		args := map[string]any{"run_id": runID, "seq": seqOf(h.t, tk), "output": ans[used], "state": tk["state"]}
		if tool, ok := tk["tool"].(map[string]any); ok {
			args["tool"] = map[string]any{"name": tool["name"]}
		}
		used++
		next, e := h.call(ctx, "step", args)
		if e != nil {
			if e.Code != "schema_violation" && e.Code != "guard_denied" {
				h.t.Fatalf("step: %s: %s", e.Code, e.Message)
			}
			b, _ := json.Marshal(e.Task)
			tk = map[string]any{}
			json.Unmarshal(b, &tk)
			continue
		}
		res = next
		if res["status"] == "running" {
			tk = task(h.t, res)
		}
	}
	return res, used
}

// as runs ctx as principal.
func as(id string, profile access.Profile) context.Context {
	return access.WithPrincipal(context.Background(), access.Principal{ID: id, Profile: profile})
}
