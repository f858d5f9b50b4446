package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/service/servicetest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The MCP face of runtime-executed tools: step answers with the hops the
// runtime's own tool call took, or waiting_for "tool" past the step wait;
// await_run long-polls; progress notifications name the call; an
// operator's resolve_tool_call settles a call whose outcome is unknown.

const chargeProgram = `
name: charge
version: "1"
input_schema: {type: object, properties: {order: {type: string}}, required: [order]}
initial: plan
states:
  plan:
    kind: llm
    view: [input.order]
    output_schema: {type: object, properties: {amount: {type: integer}}, required: [amount]}
    transitions: [{to: pay}]
  pay:
    kind: tool
    tool: pay
    execution: runtime
    arguments: {order: input.order, amount: data.plan.amount}
    output_schema: {type: object, properties: {paid: {type: boolean}}, required: [paid]}
    on_error: unpaid
    transitions: [{to: done}]
  unpaid: {kind: terminal, outcome: UNPAID}
  done: {kind: terminal, outcome: PAID}
`

// newPayEndpoint is the pay tool's far side: it answers {"paid": true}.
func newPayEndpoint(t *testing.T) *servicetest.Endpoint {
	return servicetest.NewEndpoint(t).Answer(servicetest.Reply{Status: 200, Body: `{"paid": true}`})
}

// toolHarness is an operator's MCP server over a service that runs the
// pay tool (not idempotent) itself, on store, with an in-process client
// that collects progress notifications.
type toolHarness struct {
	*harness
	svc *service.Service

	progress chan string // the messages of progress notifications, as they arrive
}

func newToolHarness(t *testing.T, store tracestore.Store, e *servicetest.Endpoint, o service.Options) *toolHarness {
	t.Helper()
	reg := servicetest.ParseRegistry(t, fmt.Sprintf("tools:\n  pay:\n    http: {url: '%s/pay'}\n    timeout: 30s\n", e.URL))
	rnd := &lockedRand{r: rand.New(rand.NewSource(1))}
	keys, err := keyring.Ephemeral(rnd)
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	o.Store, o.Tools, o.Secret, o.Rand, o.Clock = store, reg, keys.Secret, rnd, clock.tick
	svc := service.New(o)
	t.Cleanup(svc.Close)
	p, err := program.Load("charge.yaml", []byte(chargeProgram))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddProgram(context.Background(), p, []byte(chargeProgram)); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Service: svc, Store: store, Keys: keys, Version: "test", Profile: access.ProfileOperator}
	th := &toolHarness{svc: svc, progress: make(chan string, 100)}
	srv := NewServer(cfg)
	c, err := client.NewInProcessClient(srv)
	if err != nil {
		t.Fatal(err)
	}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationProgress) {
			msg, _ := n.Params.AdditionalFields["message"].(string)
			th.progress <- msg
		}
	})
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "harness", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	th.harness = &harness{t: t, cfg: cfg, srv: srv, c: c, store: store, clock: clock}
	return th
}

// stepWithProgress calls step with a progress token.
func (th *toolHarness) stepWithProgress(t *testing.T, args map[string]any) map[string]any {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = "step"
	raw, _ := json.Marshal(args)
	req.Params.Arguments = json.RawMessage(raw)
	req.Params.Meta = &mcp.Meta{ProgressToken: "p-1"}
	res, err := th.c.CallTool(context.Background(), req)
	if err != nil || res.IsError {
		t.Fatalf("step: %v %+v", err, res)
	}
	m := map[string]any{}
	if err := json.Unmarshal([]byte(res.Content[0].(mcp.TextContent).Text), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (th *toolHarness) start(t *testing.T) (string, uint64) {
	t.Helper()
	started := th.mustCall(context.Background(), "start_run", map[string]any{"program": "charge", "input": map[string]any{"order": "o-1"}})
	return started["run_id"].(string), seqOf(t, task(t, started))
}

// A step into the runtime's tool state answers with the end of the run
// and both hops, and the client hears the call's progress; no argument or
// result reaches a progress message.
func TestStepRunsTheRuntimeToolAndReportsProgress(t *testing.T) {
	e := newPayEndpoint(t)
	th := newToolHarness(t, tracestore.NewMemory(), e, service.Options{})
	id, seq := th.start(t)
	res := th.stepWithProgress(t, map[string]any{"run_id": id, "seq": seq, "output": map[string]any{"amount": 7}})
	if res["status"] != "completed" || res["outcome"] != "PAID" || len(res["transitions"].([]any)) != 2 || res["waiting_for"] != nil {
		t.Fatalf("step answered %v, want the run completed after two hops", res)
	}
	// Notifications arrive on their own goroutine: read them until the
	// completion, in order.
	var got []string
	for _, want := range []string{"state pay: tool pay, attempt 1, started", "state pay: tool pay, attempt 1, completed"} {
		select {
		case msg := <-th.progress:
			got = append(got, msg)
			if msg != want {
				t.Fatalf("progress %q, want %q next", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("progress %q: no %q within 10s", got, want)
		}
	}
}

// Past the step wait, step answers running, waiting_for "tool", with no
// task; get_run says the same; await_run returns once the call is done.
func TestStepWaitingForAToolThenAwaitRun(t *testing.T) {
	ctx := context.Background()
	e := newPayEndpoint(t)
	e.Hold()
	th := newToolHarness(t, tracestore.NewMemory(), e, service.Options{StepWait: time.Millisecond})
	id, seq := th.start(t)
	res := th.mustCall(ctx, "step", map[string]any{"run_id": id, "seq": seq, "output": map[string]any{"amount": 7}})
	if res["status"] != "running" || res["waiting_for"] != "tool" || res["task"] != nil {
		t.Fatalf("step answered %v, want running, waiting_for tool, no task", res)
	}
	<-e.Entered
	if got := th.mustCall(ctx, "get_run", map[string]any{"run_id": id}); got["waiting_for"] != "tool" || got["state"] != "pay" {
		t.Fatalf("get_run %v, want waiting_for tool in pay", got)
	}
	done := make(chan map[string]any)
	go func() { done <- th.mustCall(ctx, "await_run", map[string]any{"run_id": id, "timeout": 30}) }()
	e.Release()
	if got := <-done; got["status"] != "completed" || got["outcome"] != "PAID" || got["waiting_for"] != nil {
		t.Fatalf("await_run %v, want the run completed", got)
	}
	th.mustFail(ctx, "await_run", map[string]any{"run_id": id, "timeout": 31}, CodeInvalidArguments)
}

// The server stopped while the pay tool (not idempotent) ran: recovery
// makes the run wait for an operator (status waiting_operator), and the
// operator's resolve_tool_call settles it; a call id that is not the open
// call's is refused, and so is a resolution with neither result nor failed.
func TestResolveToolCallSettlesAnUnknownOutcome(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	e := newPayEndpoint(t)
	e.Hold()
	first := newToolHarness(t, store, e, service.Options{StepWait: time.Millisecond, Instance: "first"})
	id, seq := first.start(t)
	first.mustCall(ctx, "step", map[string]any{"run_id": id, "seq": seq, "output": map[string]any{"amount": 7}})
	<-e.Entered
	first.svc.Close()
	e.Release()

	next := newToolHarness(t, store, e, service.Options{Instance: "next"})
	next.clock.advance(time.Hour)
	if n, err := next.svc.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v; want 1", n, err)
	}
	run := next.mustCall(ctx, "get_run", map[string]any{"run_id": id})
	if run["status"] != "waiting_operator" || run["waiting_for"] != nil {
		t.Fatalf("get_run %v, want waiting_operator", run)
	}
	next.mustFail(ctx, "resolve_tool_call", map[string]any{"run_id": id, "call_id": "call-2"}, CodeInvalidArguments)
	next.mustFail(ctx, "resolve_tool_call", map[string]any{"run_id": id, "call_id": "call-99", "failed": true}, "wrong_state")
	events, err := next.svc.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	callID := ""
	for _, ev := range events {
		if ev.Call != nil {
			callID = ev.Call.CallID
		}
	}
	res := next.mustCall(ctx, "resolve_tool_call", map[string]any{"run_id": id, "call_id": callID, "result": map[string]any{"paid": true}, "detail": "the bank confirmed it"})
	if res["status"] != "completed" || res["outcome"] != "PAID" {
		t.Fatalf("resolve_tool_call %v, want the run completed", res)
	}
	if n := e.Count(); n != 1 {
		t.Errorf("the pay tool was called %d times, want once", n)
	}
}
