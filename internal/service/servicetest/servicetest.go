// Package servicetest is the shared fixture of the tests that drive
// runtime-executed tool calls (the service's, the console's and the MCP
// face's): a refunds program with a tool state, an HTTP tool endpoint that
// answers as scripted, and a registry of http tools over it. It imports
// no package that tests it, so every one of those tests can use it.
package servicetest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
)

// The personal data of a Program run: the customer (the tool's argument)
// and the receipt (the tool's result, in OKReply).
const (
	CustomerID = "cust-4711"
	ReceiptPII = "paid to Ada Lovelace"
)

// ProgramOptions chooses the variant of Program.
type ProgramOptions struct {
	// Execution is the tool state's execution field; empty means runtime.
	Execution string
	// OnError, when set, is the tool state's on_error target, a terminal
	// state with outcome MANUAL.
	OnError string
	// CustomerRequired makes input.customer required and passes it to the
	// tool as it is; otherwise it is optional and the tool gets '' without it.
	CustomerRequired bool
}

// Program is the refunds program: a tool state (refund) calling tool,
// between two llm states (plan, confirm). The customer argument reads the
// data subject's id and the result's receipt is personal data, so the
// trace seals both.
func Program(tool string, o ProgramOptions) string {
	execution, required, customer := o.Execution, "[order]", `"has(input.customer) ? input.customer : ''"`
	if execution == "" {
		execution = "runtime"
	}
	if o.CustomerRequired {
		required, customer = "[order, customer]", "input.customer"
	}
	src := `
name: refunds
version: "1"
input_schema:
  type: object
  properties:
    order: {type: string}
    customer: {type: string}
  required: ` + required + `
subjects:
  customer:
    id: input.customer
    pii: [data.refund.receipt]
limits: {max_steps: 20, max_attempts: 3}
initial: plan
states:
  plan:
    kind: llm
    instructions: Decide the amount.
    view: [input.order]
    output_schema:
      type: object
      properties: {amount: {type: integer}}
      required: [amount]
    transitions: [{to: refund}]
  refund:
    kind: tool
    tool: ` + tool + `
    execution: ` + execution + `
    arguments:
      order: input.order
      amount: data.plan.amount
      customer: ` + customer + `
    output_schema:
      type: object
      properties:
        refund_id: {type: string}
        receipt: {type: string}
      required: [refund_id]
    transitions: [{to: confirm}]
`
	if o.OnError != "" {
		src += "    on_error: " + o.OnError + "\n  " + o.OnError + ": {kind: terminal, outcome: MANUAL}\n"
	}
	return src + `  confirm:
    kind: llm
    instructions: Tell the customer.
    view: [data.refund.refund_id]
    output_schema:
      type: object
      properties: {message: {type: string}}
      required: [message]
    transitions: [{to: done}]
  done: {kind: terminal, outcome: DONE}
`
}

// Reply is one scripted answer of an Endpoint.
type Reply struct {
	Status int
	Body   string
}

// OKReply is the refund tool's success: its result carries ReceiptPII.
var OKReply = Reply{200, `{"refund_id": "r-1", "receipt": "` + ReceiptPII + `"}`}

// Endpoint is an HTTP tool's far side. It records every call (idempotency
// key and body), answers from its script and then with its default reply
// (OKReply unless Answer says otherwise), and, while held, keeps each
// call waiting until Release or the end of the request.
type Endpoint struct {
	// URL is the server's base URL.
	URL string
	// Entered receives one value per call, as the call arrives (before
	// any hold), so a test knows a call is in flight without sleeping.
	Entered chan struct{}

	srv    *httptest.Server
	mu     sync.Mutex
	keys   []string
	bodies []string
	script []Reply
	answer Reply
	onCall func()
	gate   chan struct{}
}

// NewEndpoint starts an endpoint, closed when the test ends.
func NewEndpoint(t testing.TB, script ...Reply) *Endpoint {
	e := &Endpoint{script: script, answer: OKReply, Entered: make(chan struct{}, 1000)}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	e.URL = e.srv.URL
	t.Cleanup(e.srv.Close)
	return e
}

func (e *Endpoint) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	e.keys = append(e.keys, r.Header.Get("Idempotency-Key"))
	e.bodies = append(e.bodies, string(body))
	next := e.answer
	if len(e.script) > 0 {
		next, e.script = e.script[0], e.script[1:]
	}
	gate, onCall := e.gate, e.onCall
	e.mu.Unlock()
	e.Entered <- struct{}{}
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	if onCall != nil {
		onCall()
	}
	w.WriteHeader(next.Status)
	_, _ = io.WriteString(w, next.Body)
}

// Answer sets the reply given once the script is spent.
func (e *Endpoint) Answer(r Reply) *Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.answer = r
	return e
}

// OnCall sets a hook run for each call just before it is answered (after
// any hold): the console's tests move their clock there so that the trace
// shows a known duration.
func (e *Endpoint) OnCall(f func()) *Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onCall = f
	return e
}

// Hold makes the calls from now on wait until Release. Holding while held
// changes nothing, so no waiting call is stranded.
func (e *Endpoint) Hold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gate == nil {
		e.gate = make(chan struct{})
	}
}

// Release lets every held call through and stops holding.
func (e *Endpoint) Release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gate != nil {
		close(e.gate)
		e.gate = nil
	}
}

// Calls returns the idempotency key and the body of every call so far.
func (e *Endpoint) Calls() (keys, bodies []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.keys...), append([]string(nil), e.bodies...)
}

// Count is how many calls the endpoint has received.
func (e *Endpoint) Count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.keys)
}

// ParseRegistry parses doc as a tools registry, with no environment, and
// closes it when the test ends.
func ParseRegistry(t testing.TB, doc string) *executor.Registry {
	t.Helper()
	reg, err := executor.Parse([]byte(doc), "tools.yaml", executor.Options{RegistryDir: t.TempDir(), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// Registry has two http tools on e: refund (idempotent) and charge (not),
// each with a 30s timeout and the retry policy given (backoff is a
// duration such as "0s").
func Registry(t testing.TB, e *Endpoint, attempts int, backoff string) *executor.Registry {
	t.Helper()
	return ParseRegistry(t, fmt.Sprintf(`tools:
  refund:
    http: {url: '%[1]s/refund'}
    timeout: 30s
    idempotent: true
    retry: {max_attempts: %[2]d, backoff: %[3]s}
  charge:
    http: {url: '%[1]s/charge'}
    timeout: 30s
    retry: {max_attempts: %[2]d, backoff: %[3]s}
`, e.URL, attempts, backoff))
}
