package console

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/service/servicetest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The run page's tool calls, on runs whose tools the service really
// executed: http tools of a registry, against an endpoint in the test.

// callsProgram is the refunds program with the customer required; execution
// is the tool state's execution field; onError, when set, its on_error
// target. Neither the customer (the argument) nor the receipt (the result)
// may reach a page.
func callsProgram(tool, execution, onError string) string {
	return servicetest.Program(tool, servicetest.ProgramOptions{Execution: execution, OnError: onError, CustomerRequired: true})
}

var (
	failReply   = servicetest.Reply{Status: 500, Body: `{"error": "down"}`}
	schemaReply = servicetest.Reply{Status: 200, Body: `{"wrong": "` + servicetest.ReceiptPII + `"}`}
)

// newEndpoint is the http tools' far side, answering from script (then
// servicetest.OKReply); each call moves the service's clock by took, so
// that the trace's times give a known duration.
func newEndpoint(t *testing.T, clock *stepClock, took time.Duration, script ...servicetest.Reply) *servicetest.Endpoint {
	return servicetest.NewEndpoint(t, script...).OnCall(func() { clock.add(took) })
}

// stepClock is the service's clock: it moves only when told.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *stepClock) add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// callsFixture is a console over a service that executes the registry's
// tools, on a store and clock the test holds.
type callsFixture struct {
	c     *Console
	svc   *service.Service
	store tracestore.Store
	clock *stepClock
	keys  *keyring.Keyring
	src   string
}

func newCallsFixture(t *testing.T, store tracestore.Store, clock *stepClock, keys *keyring.Keyring, reg *executor.Registry, src string, o service.Options) *callsFixture {
	t.Helper()
	o.Store, o.Tools, o.Clock, o.Secret, o.KEKs = store, reg, clock.Now, keys.Secret, keys.KEKs
	o.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	svc := service.New(o)
	t.Cleanup(svc.Close)
	p, err := program.Load("refunds.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddProgram(context.Background(), p, []byte(src)); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Service: svc, Store: store, Keys: keys, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return &callsFixture{c: c, svc: svc, store: store, clock: clock, keys: keys, src: src}
}

func testKeys(t *testing.T) *keyring.Keyring {
	t.Helper()
	keys, err := keyring.Ephemeral(strings.NewReader(strings.Repeat("k", 64)))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

var callsT0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// startAndPlan starts a run and answers its plan task: the step that
// enters the tool state.
func (f *callsFixture) startAndPlan(t *testing.T) service.Answer {
	t.Helper()
	ctx := context.Background()
	in, _ := jsonvalue.Decode([]byte(`{"order": "o-7", "customer": "` + servicetest.CustomerID + `"}`))
	a, err := f.svc.Start(ctx, "refunds", in, "alice")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jsonvalue.Decode([]byte(`{"amount": 12}`))
	a, err = f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Principal: "alice", Output: out})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// callRow is one row of the run page's tool calls table, its cells as
// text.
type callRow struct {
	source, outcome string
	cells           []string // call, state, tool, result, executor, started, duration, attempts, outcome
}

var (
	callRowRE = regexp.MustCompile(`(?s)<tr id="callrow-\d+" data-source="([^"]*)" data-outcome="([^"]*)">(.*?)</tr>`)
	cellRE    = regexp.MustCompile(`(?s)<td>(.*?)</td>`)
	tagRE     = regexp.MustCompile(`<[^>]*>`)
)

func callRows(body string) []callRow {
	var rows []callRow
	for _, m := range callRowRE.FindAllStringSubmatch(body, -1) {
		r := callRow{source: m[1], outcome: m[2]}
		for _, c := range cellRE.FindAllStringSubmatch(m[3], -1) {
			r.cells = append(r.cells, strings.TrimSpace(tagRE.ReplaceAllString(c[1], "")))
		}
		rows = append(rows, r)
	}
	return rows
}

// oneCall is the only row of the page's tool calls table.
func oneCall(t *testing.T, body string) callRow {
	t.Helper()
	rows := callRows(body)
	if len(rows) != 1 {
		t.Fatalf("tool call rows %+v, want one", rows)
	}
	return rows[0]
}

// receiptCounts is the receipt panel's tool call counts, "executed/reported".
func receiptCounts(body string) string {
	get := func(id string) string {
		m := regexp.MustCompile(`id="` + id + `">(\d+) `).FindStringSubmatch(body)
		if m == nil {
			return "?"
		}
		return m[1]
	}
	return get("tool-calls-executed") + "/" + get("tool-calls-reported")
}

// assertNoCallPII fails when a page shows the run's personal data.
func assertNoCallPII(t *testing.T, where, body string) {
	t.Helper()
	for _, pii := range []string{servicetest.CustomerID, servicetest.ReceiptPII, "Ada"} {
		if strings.Contains(body, pii) {
			t.Errorf("%s shows personal data %q", where, pii)
		}
	}
}

// The run page lists each call the runtime executed with its executor,
// its duration from the trace's times, its attempts and its outcome, and
// the failure's class; the receipt panel counts the executed results; an
// on_error taken is drawn on the path; no argument or result that reads
// personal data is shown.
func TestRunPageShowsExecutedToolCalls(t *testing.T) {
	for _, c := range []struct {
		name      string
		script    []servicetest.Reply
		attempts  int
		onError   string
		status    runtime.Status
		outcome   string // the row's outcome
		detail    string // in the outcome cell
		duration  string
		tries     string
		counts    string
		onErrorOn bool // the on_error edge is on the path
		result    bool // the result is shown (redacted where personal)
	}{
		{"completed at the first attempt", nil, 1, "", runtime.StatusRunning, "completed", "", "1.5s", "1", "1/0", false, true},
		{"completed after a retry", []servicetest.Reply{failReply}, 2, "", runtime.StatusRunning, "completed", "", "3s", "2", "1/0", false, true},
		{"failed, then on_error", []servicetest.Reply{failReply, failReply}, 2, "manual", runtime.StatusCompleted, "failed", "tool_error: " + redactedHTML, "3s", "2", "0/0", true, false},
		{"failed without on_error", []servicetest.Reply{failReply}, 1, "", runtime.StatusFailed, "failed", "tool_error", "1.5s", "1", "0/0", false, false},
		{"a result the schema refuses", []servicetest.Reply{schemaReply}, 1, "manual", runtime.StatusCompleted, "failed", "schema_violation", "1.5s", "1", "0/0", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := &stepClock{now: callsT0}
			e := newEndpoint(t, clock, 1500*time.Millisecond, c.script...)
			f := newCallsFixture(t, tracestore.NewMemory(), clock, testKeys(t), servicetest.Registry(t, e, c.attempts, "0s"), callsProgram("refund", "runtime", c.onError), service.Options{})
			a := f.startAndPlan(t)
			if a.Status != c.status || a.WaitingFor != "" {
				t.Fatalf("after the step: %+v, want status %s and no call open", a, c.status)
			}
			res, body := get(t, f.c, "GET", "/ui/runs/"+a.RunID, nil)
			if res.StatusCode != 200 {
				t.Fatalf("status %d: %s", res.StatusCode, body)
			}
			r := oneCall(t, body)
			if r.source != sourceExecuted || r.outcome != c.outcome || r.cells[0] != "call-2" || r.cells[1] != "refund" || r.cells[3] != "executed" ||
				r.cells[4] != "http" || r.cells[6] != c.duration || r.cells[7] != c.tries || !strings.Contains(r.cells[8], c.detail) {
				t.Errorf("the call's row is %+v; want executed by http in %s, %s attempts, outcome %s with %q", r, c.duration, c.tries, c.outcome, c.detail)
			}
			if strings.Contains(body, "HTTP 500") {
				t.Error("the page shows a tool call's sealed failure detail; no page shows it, to the operator either")
			}
			if got := receiptCounts(body); got != c.counts {
				t.Errorf("the receipt panel counts %s tool calls executed/reported, want %s", got, c.counts)
			}
			edge := `<g id="ed_refund_to_manual" class="on-path `
			if strings.Contains(body, edge) != c.onErrorOn {
				t.Errorf("the on_error edge drawn on the path: %t, want %t", !c.onErrorOn, c.onErrorOn)
			}
			if c.onErrorOn && !strings.Contains(body, "<td>on_error</td>") {
				t.Error("the path table does not say the run entered manual by on_error")
			}
			// The customer argument reads personal data: redacted; the
			// others are shown; the result's receipt is redacted.
			if !strings.Contains(body, `&#34;customer&#34;: {`) || !strings.Contains(body, `&#34;order&#34;: &#34;o-7&#34;`) {
				t.Error("the call's arguments are not shown with the customer redacted")
			}
			if got := strings.Contains(body, `&#34;refund_id&#34;: &#34;r-1&#34;`); got != c.result {
				t.Errorf("the result shown: %t, want %t", got, c.result)
			}
			if !strings.Contains(body, "tool_call_started") || !strings.Contains(body, "call-2: refund via http, attempt 1") {
				t.Error("the timeline does not show the call's intent")
			}
			assertNoCallPII(t, "the run page", body)
		})
	}
}

// A caller that runs the tool itself and reports its result is marked
// reported, never executed, and counted as reported in the receipt panel.
func TestRunPageMarksReportedToolResults(t *testing.T) {
	clock := &stepClock{now: callsT0}
	e := newEndpoint(t, clock, time.Second)
	f := newCallsFixture(t, tracestore.NewMemory(), clock, testKeys(t), servicetest.Registry(t, e, 1, "0s"), callsProgram("refund", "caller", ""), service.Options{})
	a := f.startAndPlan(t)
	if a.Task == nil || a.Task.Tool == nil {
		t.Fatalf("after the step: %+v, want the caller's tool task", a)
	}
	clock.add(4 * time.Second)
	out, _ := jsonvalue.Decode([]byte(servicetest.OKReply.Body))
	if _, err := f.svc.Submit(context.Background(), a.RunID, runtime.Submit{Seq: a.Task.Seq, Tool: "refund", Output: out}); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, f.c, "GET", "/ui/runs/"+a.RunID, nil)
	if r := oneCall(t, body); r.source != sourceReported || r.outcome != sourceReported || r.cells[3] != "reported" || r.cells[4] != "the caller" || r.cells[6] != "4s" || r.cells[7] != "1" {
		t.Errorf("the reported result's row is %+v; want reported by the caller, 4s after its task, one submission", r)
	}
	if got := receiptCounts(body); got != "0/1" {
		t.Errorf("the receipt panel counts %s tool calls executed/reported, want 0/1", got)
	}
	if n := e.Count(); n != 0 {
		t.Errorf("the endpoint saw %d calls of a caller-run tool", n)
	}
	assertNoCallPII(t, "the run page", body)
}

// A server that died while a non-idempotent call ran leaves the run
// waiting for the operator: the runs list filters on waiting_operator,
// the run page shows the call's outcome unknown, and once the operator
// resolves it, who resolved it.
func TestRunPageShowsAWaitingOperatorCallAndItsResolution(t *testing.T) {
	ctx := context.Background()
	store, keys := tracestore.NewMemory(), testKeys(t)
	clock := &stepClock{now: callsT0}
	e := newEndpoint(t, clock, time.Second)
	e.Hold()
	src := callsProgram("charge", "runtime", "manual")
	first := newCallsFixture(t, store, clock, keys, servicetest.Registry(t, e, 1, "0s"), src, service.Options{StepWait: time.Millisecond, Instance: "first"})
	a := first.startAndPlan(t)
	<-e.Entered
	first.svc.Close() // the crash: the call's outcome is never recorded
	e.Release()

	next := newCallsFixture(t, store, clock, keys, servicetest.Registry(t, e, 1, "0s"), src, service.Options{Instance: "next"})
	clock.add(service.DefaultLeaseTTL + time.Second)
	if n, err := next.svc.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("recovery took %d calls, %v; want 1", n, err)
	}
	ops := service.Caller{ID: "ops", Operator: true}
	r, _, err := next.svc.AwaitRun(ctx, a.RunID, ops, service.MaxAwait)
	if err != nil || r.Status != runtime.StatusWaitingOperator {
		t.Fatalf("run %+v, %v; want it waiting for the operator", r, err)
	}

	for _, c := range []struct{ query, want string }{
		{"?status=waiting_operator", a.RunID},
		{"?status=running", ""},
	} {
		res, body := get(t, next.c, "GET", "/ui/runs"+c.query, operator)
		if got := strings.Join(runIDsIn(body), " "); res.StatusCode != 200 || got != c.want {
			t.Errorf("runs%s: %d, runs %q; want %q", c.query, res.StatusCode, got, c.want)
		}
	}
	_, body := get(t, next.c, "GET", "/ui/runs/"+a.RunID, nil)
	if r := oneCall(t, body); r.outcome != "waiting_operator" || r.cells[6] != "unknown" {
		t.Fatalf("tool call row %+v; want the call waiting for the operator, its duration unknown", r)
	}
	if !strings.Contains(body, `data-status="waiting_operator"`) || !strings.Contains(body, `status-waiting_operator`) {
		t.Error("the run page does not show the status waiting_operator")
	}

	if _, err := next.svc.ResolveToolCall(ctx, ops, a.RunID, service.Resolution{CallID: r.Call.CallID, Failed: true, Detail: "the bank never saw it"}); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, next.c, "GET", "/ui/runs/"+a.RunID, nil)
	if r := oneCall(t, body); r.outcome != "resolved" || r.cells[6] != "unknown" || !strings.Contains(r.cells[8], "by ops as failed: "+redactedHTML+", then on_error → manual") || strings.Contains(body, "the bank never saw it") {
		t.Fatalf("tool call row %+v; want the call resolved by ops as failed, then on_error, how long it ran unknown", r)
	}
	if n := e.Count(); n != 1 {
		t.Errorf("the endpoint saw %d calls; a call whose outcome is unknown is never invoked again", n)
	}
	assertNoCallPII(t, "the run page", body)
}

// A call still open when the run is cancelled is shown abandoned.
func TestRunPageShowsACallAbandonedByCancel(t *testing.T) {
	clock := &stepClock{now: callsT0}
	e := newEndpoint(t, clock, time.Second)
	e.Hold()
	defer e.Release()
	f := newCallsFixture(t, tracestore.NewMemory(), clock, testKeys(t), servicetest.Registry(t, e, 1, "0s"), callsProgram("refund", "runtime", ""), service.Options{StepWait: time.Millisecond})
	a := f.startAndPlan(t)
	<-e.Entered
	_, body := get(t, f.c, "GET", "/ui/runs/"+a.RunID, nil)
	if r := oneCall(t, body); r.outcome != "running" || r.cells[6] != "unknown" {
		t.Fatalf("tool call row %+v; want the call running", r)
	}
	clock.add(2 * time.Second)
	if _, err := f.svc.Cancel(context.Background(), a.RunID, "alice", "changed my mind"); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, f.c, "GET", "/ui/runs/"+a.RunID, nil)
	if r := oneCall(t, body); r.outcome != "abandoned" || r.cells[6] != "2s" || !strings.Contains(r.cells[8], "cancelled") {
		t.Fatalf("tool call row %+v; want the call abandoned when the run was cancelled, after 2s", r)
	}
}

// The KYC example's caller runs its screening tools and reports each
// result: every one is listed as reported, as many as the receipt counts,
// and none shows the customer's personal data.
func TestRunPageListsEveryReportedResultOfTheKYCExample(t *testing.T) {
	f := newRunsFixture(t)
	a := f.kyc(t)
	_, body := get(t, f.c, "GET", "/ui/runs/"+a.RunID, nil)
	rows := callRows(body)
	if len(rows) == 0 {
		t.Fatal("the KYC run lists no tool call")
	}
	for _, r := range rows {
		if r.source != sourceReported || r.cells[4] != "the caller" {
			t.Errorf("row %+v: want a result the caller reported", r)
		}
	}
	if got, want := receiptCounts(body), fmt.Sprintf("0/%d", len(rows)); got != want {
		t.Errorf("the receipt panel counts %s tool calls executed/reported, want %s", got, want)
	}
	assertNoPII(t, "the KYC run page", body)
}

// A call still running when its state's timeout passes is shown expired,
// its duration the time between its intent and the recorded expiry.
func TestRunPageShowsACallExpiredByItsStatesTimeout(t *testing.T) {
	clock := &stepClock{now: callsT0}
	e := newEndpoint(t, clock, time.Second)
	e.Hold()
	defer e.Release()
	src := strings.Replace(callsProgram("refund", "runtime", ""), "    execution: runtime\n", "    execution: runtime\n    timeout: 1m\n", 1)
	f := newCallsFixture(t, tracestore.NewMemory(), clock, testKeys(t), servicetest.Registry(t, e, 1, "0s"), src, service.Options{StepWait: time.Millisecond})
	a := f.startAndPlan(t)
	<-e.Entered
	clock.add(61 * time.Second)
	if n, err := f.svc.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("the sweep moved %d runs, %v; want the run whose call ran past its timeout", n, err)
	}
	_, body := get(t, f.c, "GET", "/ui/runs/"+a.RunID, nil)
	if r := oneCall(t, body); r.outcome != "expired" || r.cells[6] != "1m1s" || !strings.Contains(r.cells[8], "timeout") {
		t.Fatalf("tool call row %+v; want the call expired by the state's timeout, recorded by the sweep 1m1s after its intent", r)
	}
}

// redactedHTML is the redaction marker as a page shows it: a tool call's
// detail is sealed in runs with data subjects, and no page shows what the
// trace seals, to the operator either (docs/console.md).
const redactedHTML = `{&#34;$redacted&#34;:&#34;personal_data&#34;}`
