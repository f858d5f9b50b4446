package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Runtime-executed tool calls survive the server's death (issue 15 §5):
// the real binary is SIGKILLed while a call is in flight, and restarted on
// the same store; two servers share one PostgreSQL database, and one dies
// midway (toolshare_test.go). The tools' far side is an HTTP endpoint in
// the test process (countingTool) that logs every invocation with its
// idempotency key and the server that made it.

// envKillSeed fixes the seed of the random kill points (and the tool's
// delays); without it the seed is the clock's, printed by each test.
const envKillSeed = "NANO_VM_TEST_KILL_SEED"

// countingProgram runs two tool states itself, one after the other, with
// the idempotent count tool, between two caller tasks. A kill can land in
// either call, or between them.
const countingProgram = `
name: counting
version: "1"
input_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
initial: plan
states:
  plan:
    kind: llm
    view: [input.n]
    output_schema: {type: object, properties: {amount: {type: integer}}, required: [amount]}
    transitions: [{to: first}]
  first:
    kind: tool
    tool: count
    execution: runtime
    arguments: {n: input.n, stage: "'first'", amount: data.plan.amount}
    output_schema: {type: object, properties: {key: {type: string}, effect: {type: integer}}, required: [key, effect]}
    transitions: [{to: second}]
  second:
    kind: tool
    tool: count
    execution: runtime
    arguments: {n: input.n, stage: "'second'"}
    output_schema: {type: object, properties: {key: {type: string}, effect: {type: integer}}, required: [key, effect]}
    transitions: [{to: confirm}]
  confirm:
    kind: llm
    view: [data.second.effect]
    output_schema: {type: object, properties: {message: {type: string}}, required: [message]}
    transitions: [{to: done}]
  done: {kind: terminal, outcome: DONE}
`

// chargingProgram runs one tool state itself with the charge tool, which
// is not idempotent; an operator who settles the call as failed sends the
// run to manual.
const chargingProgram = `
name: charging
version: "1"
input_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
initial: plan
states:
  plan:
    kind: llm
    view: [input.n]
    output_schema: {type: object, properties: {amount: {type: integer}}, required: [amount]}
    transitions: [{to: pay}]
  pay:
    kind: tool
    tool: charge
    execution: runtime
    arguments: {n: input.n, stage: "'pay'", amount: data.plan.amount}
    output_schema: {type: object, properties: {key: {type: string}, effect: {type: integer}}, required: [key, effect]}
    on_error: manual
    transitions: [{to: confirm}]
  manual: {kind: terminal, outcome: MANUAL}
  confirm:
    kind: llm
    view: [data.pay.effect]
    output_schema: {type: object, properties: {message: {type: string}}, required: [message]}
    transitions: [{to: done}]
  done: {kind: terminal, outcome: DONE}
`

// killSeed is the seed of a test's random choices, printed so that a
// failure can be run again with the same choices.
func killSeed(t *testing.T) int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	if v := os.Getenv(envKillSeed); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want an integer", envKillSeed, v)
		}
		seed = n
	}
	t.Logf("seed %d (%s=%d repeats these choices)", seed, envKillSeed, seed)
	return seed
}

// invocation is one request the tool received.
type invocation struct {
	key, tool, stage, instance string
	n                          int
	delay                      time.Duration // how long the tool takes to answer
	pos                        int           // its place in the tool's log
}

// countingTool is the far side of the registry's http tools. count is
// idempotent: the first call with a key applies its effect (a number, one
// more than the last) and later calls with the key answer with the same
// result. charge is not: every call applies an effect. Each answer comes
// after a random delay up to maxDelay; a held call (hold, holdNext) is
// never answered, and ends when its server does.
type countingTool struct {
	srv      *httptest.Server
	maxDelay time.Duration
	seen     chan invocation // every invocation, as it arrives

	mu       sync.Mutex
	rng      *rand.Rand
	log      []invocation
	effects  map[string]int // key → effects applied
	results  map[string]map[string]any
	applied  int
	hold     map[string]bool // tool → hold every call
	holdNext string          // instance whose next call is held
}

func newCountingTool(t *testing.T, seed int64, maxDelay time.Duration) *countingTool {
	ct := &countingTool{
		maxDelay: maxDelay, seen: make(chan invocation, 1<<14),
		rng: rand.New(rand.NewSource(seed)), effects: map[string]int{}, results: map[string]map[string]any{}, hold: map[string]bool{},
	}
	ct.srv = httptest.NewServer(http.HandlerFunc(ct.serveHTTP))
	t.Cleanup(ct.srv.Close)
	return ct
}

func (ct *countingTool) serveHTTP(w http.ResponseWriter, r *http.Request) {
	var args struct {
		N     int    `json:"n"`
		Stage string `json:"stage"`
	}
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, &args)
	}
	key := r.Header.Get("Idempotency-Key")
	if err != nil || key == "" {
		http.Error(w, "want a JSON body and an Idempotency-Key", http.StatusBadRequest)
		return
	}
	inv := invocation{key: key, tool: strings.TrimPrefix(r.URL.Path, "/"), stage: args.Stage, instance: r.Header.Get("X-Instance"), n: args.N}
	ct.mu.Lock()
	res, known := ct.results[key]
	if !known || inv.tool != "count" {
		ct.applied++
		ct.effects[key]++
		res = map[string]any{"key": key, "effect": ct.applied}
		if !known {
			ct.results[key] = res
		}
	}
	held := ct.hold[inv.tool] || ct.holdNext != "" && ct.holdNext == inv.instance
	if ct.holdNext == inv.instance {
		ct.holdNext = ""
	}
	inv.delay = time.Duration(ct.rng.Int63n(int64(ct.maxDelay) + 1))
	inv.pos = len(ct.log)
	ct.log = append(ct.log, inv)
	ct.mu.Unlock()
	select {
	case ct.seen <- inv:
	default: // nobody is looking; the log has it
	}
	if held {
		<-r.Context().Done()
		return
	}
	timer := time.NewTimer(inv.delay)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// next waits for the next invocation that match accepts.
func (ct *countingTool) next(t *testing.T, match func(invocation) bool) invocation {
	t.Helper()
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case inv := <-ct.seen:
			if match(inv) {
				return inv
			}
		case <-timeout.C:
			t.Fatal("the tool was not called within 60 s")
		}
	}
}

// drain forgets the invocations next has not looked at.
func (ct *countingTool) drain() {
	for {
		select {
		case <-ct.seen:
		default:
			return
		}
	}
}

// invoked returns the tool's log.
func (ct *countingTool) invoked() []invocation {
	log, _, _ := ct.snapshot()
	return log
}

// snapshot returns the tool's log, effects per key and results per key.
func (ct *countingTool) snapshot() ([]invocation, map[string]int, map[string]map[string]any) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	effects := make(map[string]int, len(ct.effects))
	for k, v := range ct.effects {
		effects[k] = v
	}
	results := make(map[string]map[string]any, len(ct.results))
	for k, v := range ct.results {
		results[k] = v
	}
	return append([]invocation(nil), ct.log...), effects, results
}

// registryFile writes a registry of the two http tools on ct, each call
// marked with the server instance's name.
func (ct *countingTool) registryFile(t *testing.T, instance string) string {
	t.Helper()
	doc := fmt.Sprintf(`tools:
  count:
    http: {url: '%[1]s/count', headers: {X-Instance: %[2]s}}
    timeout: 30s
    idempotent: true
  charge:
    http: {url: '%[1]s/charge', headers: {X-Instance: %[2]s}}
    timeout: 30s
`, ct.srv.URL, instance)
	return filepath.Join(writeFiles(t, map[string]string{"tools.yaml": doc}), "tools.yaml")
}

// toolServer is one serve --transport http process.
type toolServer struct {
	cmd    *exec.Cmd
	url    string
	stderr *lockedBuffer
	exited chan struct{}
}

// startToolServer starts the binary on a free loopback port. It is
// stopped (SIGTERM) when the test ends, unless it was killed.
func startToolServer(t *testing.T, env []string, args ...string) *toolServer {
	t.Helper()
	addr := freeAddr(t)
	s := &toolServer{stderr: &lockedBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(serverBinary(t), append([]string{"serve", "--transport", "http", "--addr", addr}, args...)...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server %s stderr (the end):\n%s", addr, s.tail(4000))
		}
	})
	s.waitListening(t, addr)
	s.url = "http://" + addr + "/mcp"
	return s
}

// waitListening waits until the server listens, and fails as soon as it
// has exited instead.
func (s *toolServer) waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		select {
		case <-s.exited:
			t.Fatalf("the server exited at start: %s\n%s", s.cmd.ProcessState, s.tail(4000))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}

// kill SIGKILLs the server and waits until it is gone.
func (s *toolServer) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// stop SIGTERMs the server and waits until it is gone.
func (s *toolServer) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not stop on SIGTERM within 20 s")
	}
}

func (s *toolServer) tail(n int) string {
	s.stderr.mu.Lock()
	defer s.stderr.mu.Unlock()
	b := s.stderr.Bytes()
	return string(b[max(0, len(b)-n):])
}

// toolAnswer is a tool's answer: the structured result or the error JSON
// of an isError result, and the text as the server sent it. err is a
// failure to get an answer at all (the server died).
type toolAnswer struct {
	res, fail map[string]any
	text      string
	err       error
}

// tryTool calls a tool; unlike callTool, a server that dies is an answer.
func tryTool(c *client.Client, name string, args any) toolAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return toolAnswer{err: err}
	}
	if len(res.Content) == 0 {
		return toolAnswer{err: fmt.Errorf("%s: no content", name)}
	}
	text, _ := res.Content[0].(mcp.TextContent)
	var m map[string]any
	if err := json.Unmarshal([]byte(text.Text), &m); err != nil {
		return toolAnswer{err: fmt.Errorf("%s: %q: %v", name, text.Text, err)}
	}
	if res.IsError {
		return toolAnswer{fail: m, text: text.Text}
	}
	return toolAnswer{res: m, text: text.Text}
}

// mustTool is tryTool for a call that must succeed.
func mustTool(t *testing.T, c *client.Client, name string, args any) toolAnswer {
	t.Helper()
	a := tryTool(c, name, args)
	if a.err != nil || a.fail != nil {
		t.Fatalf("%s %v: %v %v", name, args, a.err, a.fail)
	}
	return a
}

// ack is a step the client got an answer for: its event must be in the
// trace from then on, whatever dies.
type ack struct {
	runID string
	seq   uint64
}

// taskSeq returns the seq of an answer's task, 0 without one.
func taskSeq(ans map[string]any) (uint64, string) {
	task, _ := ans["task"].(map[string]any)
	if task == nil {
		return 0, ""
	}
	seq, _ := task["seq"].(float64)
	state, _ := task["state"].(string)
	return uint64(seq), state
}

// answerFor is the caller's answer to a task of the test programs.
func answerFor(state string, n int) map[string]any {
	if state == "plan" {
		return map[string]any{"amount": n}
	}
	return map[string]any{"message": fmt.Sprintf("run %d is done", n)}
}

// pickClient returns the client to send a run's next call to.
type pickClient func() *client.Client

// lostAnswer reports whether a call through c that got no answer is one
// the test expects to lose (its server was killed); another is a failure.
type lostAnswer func(c *client.Client, err error) bool

// noLoss expects every answer; everyLoss expects any call to lose its
// answer (its server may be killed at any time).
func noLoss(*client.Client, error) bool    { return false }
func everyLoss(*client.Client, error) bool { return true }

// driveRun drives a run until it ends or waits for an operator: it waits
// out the tool calls the server runs (await_run), and answers the caller's
// tasks. A call whose answer is lost is not acknowledged: the run is read
// again, through the client pick gives next. It returns the last answer
// and every step acknowledged; it may run outside the test's goroutine.
func driveRun(pick pickClient, runID string, n int, lost lostAnswer) (map[string]any, []ack, error) {
	var acks []ack
	for range 200 {
		c := pick()
		got := tryTool(c, "get_run", map[string]any{"run_id": runID})
		if got.err != nil && lost(c, got.err) {
			continue
		}
		if got.err != nil || got.fail != nil {
			return nil, acks, fmt.Errorf("get_run %s: %v %v", runID, got.err, got.fail)
		}
		r := got.res
		seq, state := taskSeq(r)
		switch {
		case r["status"] != "running":
			return r, acks, nil
		case r["waiting_for"] == "tool":
			if a := tryTool(c, "await_run", map[string]any{"run_id": runID, "timeout": 10}); a.err != nil && !lost(c, a.err) || a.fail != nil {
				return nil, acks, fmt.Errorf("await_run %s: %v %v", runID, a.err, a.fail)
			}
		case seq != 0:
			a := tryTool(c, "step", map[string]any{"run_id": runID, "seq": seq, "output": answerFor(state, n)})
			switch {
			case a.err != nil && lost(c, a.err):
			case a.err != nil || a.fail != nil && a.fail["code"] != "stale_seq":
				return nil, acks, fmt.Errorf("step %s at %s: %v %v", runID, state, a.err, a.fail)
			case a.res != nil:
				acks = append(acks, ack{runID, seq})
			}
		default:
			return nil, acks, fmt.Errorf("run %s is running with neither a task nor a tool call: %v", runID, r)
		}
	}
	return nil, acks, fmt.Errorf("run %s did not end within 200 calls", runID)
}

// driveOn is driveRun through one client, in the test's goroutine: it
// fails the test unless the run ends with status want.
func driveOn(t *testing.T, c *client.Client, runID string, n int, lost lostAnswer, want string) (map[string]any, []ack) {
	t.Helper()
	last, acks, err := driveRun(func() *client.Client { return c }, runID, n, lost)
	if err != nil {
		t.Fatal(err)
	}
	if last["status"] != want {
		t.Fatalf("run %s ended with %v, want status %s", runID, last, want)
	}
	return last, acks
}

// runFacts is what the tests read from one run's trace.
type runFacts struct {
	status, outcome string
	keys            map[string]string // call id → idempotency key
	started         map[string]int    // call id → tool_call_started events
	completed       map[string]int    // call id → tool_call_completed events
	failed, unknown map[string]int
	resolved        map[string][]map[string]any // call id → the resolutions' call members
	results         map[string]map[string]any   // call id → the completed call's result
	last            map[string]string           // call id → its last event's type
	accepted        map[uint64]bool             // seqs of accepted submissions
}

// open returns the call ids whose outcome is not recorded.
func (f runFacts) open() []string {
	var ids []string
	for id, typ := range f.last {
		if typ == "tool_call_started" || typ == "tool_call_unknown" {
			ids = append(ids, id)
		}
	}
	return ids
}

func readFacts(t *testing.T, recs []tracestore.Record) runFacts {
	t.Helper()
	f := runFacts{
		keys: map[string]string{}, started: map[string]int{}, completed: map[string]int{}, failed: map[string]int{}, unknown: map[string]int{},
		resolved: map[string][]map[string]any{}, results: map[string]map[string]any{}, last: map[string]string{}, accepted: map[uint64]bool{},
	}
	for _, r := range recs {
		var e struct {
			Type string         `json:"type"`
			Seq  uint64         `json:"seq"`
			Call map[string]any `json:"call"`
			End  struct {
				Status  string `json:"status"`
				Outcome string `json:"outcome"`
			} `json:"finished"`
		}
		if err := json.Unmarshal(r.Body, &e); err != nil {
			t.Fatalf("event %d: %v", r.Index, err)
		}
		if e.Type == "submission_accepted" {
			f.accepted[e.Seq] = true
		}
		if e.Type == "run_finished" {
			f.status, f.outcome = e.End.Status, e.End.Outcome
		}
		if e.Call == nil {
			continue
		}
		id, _ := e.Call["call_id"].(string)
		f.last[id] = e.Type
		switch e.Type {
		case "tool_call_started":
			f.started[id]++
			f.keys[id], _ = e.Call["idempotency_key"].(string)
		case "tool_call_completed":
			f.completed[id]++
			f.results[id], _ = e.Call["result"].(map[string]any)
		case "tool_call_failed":
			f.failed[id]++
		case "tool_call_unknown":
			f.unknown[id]++
		case "tool_call_resolved":
			f.resolved[id] = append(f.resolved[id], e.Call)
		}
	}
	return f
}

// signedReceipt is a receipt as get_receipt gave it.
type signedReceipt struct {
	signed *receipt.Signed
	pub    []byte
	body   map[string]any
}

// fetchReceipt gets the run's signed receipt from the server.
func fetchReceipt(t *testing.T, c *client.Client, runID string) signedReceipt {
	t.Helper()
	a := mustTool(t, c, "get_receipt", map[string]any{"run_id": runID})
	v, err := jsonvalue.Decode([]byte(a.text))
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	canon, err := jsonvalue.Canonical(m["receipt"])
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := m["signature"].(string)
	keyID, _ := m["key_id"].(string)
	pub, _ := m["public_key"].(string)
	body, _ := m["receipt"].(map[string]any)
	return signedReceipt{signed: &receipt.Signed{Receipt: canon, Signature: sig, KeyID: keyID}, pub: []byte(pub), body: body}
}

// verify checks the receipt offline against the stored trace: it must
// verify and cover every event of the (ended) run.
func (sr signedReceipt) verify(t *testing.T, runID string, recs []tracestore.Record) {
	t.Helper()
	pub, err := keyring.ParsePublicKey(sr.pub)
	if err != nil {
		t.Fatalf("run %s: public key: %v", runID, err)
	}
	rep, err := receipt.Check(sr.signed, receipt.Slice(recs), pub, receipt.Options{})
	if err != nil || !rep.Valid || rep.Covered != uint64(len(recs)) {
		t.Fatalf("run %s: the receipt does not verify over its %d events: %v %+v", runID, len(recs), err, rep)
	}
}

// counted returns one of a receipt body's counts, -1 when it has none.
func counted(body map[string]any, name string) float64 {
	counts, _ := body["counts"].(map[string]any)
	n, err := strconv.ParseFloat(fmt.Sprint(counts[name]), 64)
	if err != nil {
		return -1
	}
	return n
}

// loadRuns loads every run's trace from the store.
func loadRuns(t *testing.T, s tracestore.Store, ids []string) map[string][]tracestore.Record {
	t.Helper()
	out := make(map[string][]tracestore.Record, len(ids))
	for _, id := range ids {
		recs, err := s.Load(context.Background(), id)
		if err != nil {
			t.Fatalf("load run %s: %v", id, err)
		}
		out[id] = recs
	}
	return out
}

func openSQLiteStore(t *testing.T, dir string) *tracestore.SQLite {
	t.Helper()
	s, err := tracestore.OpenSQLite(tracestore.SQLitePath(dir), tracestore.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkAcks fails unless every acknowledged step is in its run's trace.
func checkAcks(t *testing.T, facts map[string]runFacts, acks []ack) {
	t.Helper()
	for _, a := range acks {
		if !facts[a.runID].accepted[a.seq] {
			t.Fatalf("run %s: the step at seq %d was acknowledged, but the trace has no accepted submission at it", a.runID, a.seq)
		}
	}
}

// checkEndedOnce fails unless every call the runs started ended exactly
// once with the result the tool gave for its key, the tool applied each
// key's effect exactly once, and the tool was never invoked without a
// recorded intent. It returns the runs' keys.
func checkEndedOnce(t *testing.T, facts map[string]runFacts, effects map[string]int, results map[string]map[string]any, log []invocation) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	for id, f := range facts {
		if f.status != "completed" || f.outcome != "DONE" {
			t.Fatalf("run %s ended %s %s, want completed DONE", id, f.status, f.outcome)
		}
		if len(f.started) == 0 {
			t.Fatalf("run %s started no tool call", id)
		}
		for call, key := range f.keys {
			keys[key] = true
			if f.completed[call] != 1 || f.failed[call]+f.unknown[call]+len(f.resolved[call]) != 0 {
				t.Fatalf("run %s, %s: %d completions, %d failures, %d unknown, %d resolutions; want exactly one completion",
					id, call, f.completed[call], f.failed[call], f.unknown[call], len(f.resolved[call]))
			}
			if effects[key] != 1 {
				t.Fatalf("run %s, %s: the tool applied key %s's effect %d times, want once", id, call, key, effects[key])
			}
			if got, want := f.results[call], results[key]; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("run %s, %s: recorded result %v, the tool's result for the key %v", id, call, got, want)
			}
		}
	}
	for _, inv := range log {
		if inv.tool == "count" && !keys[inv.key] {
			t.Fatalf("the tool was invoked with key %s, which no recorded intent holds", inv.key)
		}
	}
	return keys
}

// invocations counts the log's invocations per key.
func invocations(log []invocation) map[string]int {
	n := map[string]int{}
	for _, inv := range log {
		n[inv.key]++
	}
	return n
}

// TestServeSIGKILLDuringToolCallsLosesNothing kills the server (SIGKILL)
// while a runtime tool call is in flight, at random points: while the tool
// runs, just after it answered, between the two calls of a run, and while
// the restarted server's recovery invokes the call again. Each time the
// server is started again on the same SQLite store. After each restart
// no acknowledged step is missing from the trace; at the end every call
// ended exactly once with the result the idempotent tool gave its key
// (which it applied once, however often it was asked), no invocation
// lacked a recorded intent, every key was asked at most once more than
// the kills that found its call open, and every receipt verifies.
// NANO_VM_SOAK=1 (make soak) kills 100 times.
func TestServeSIGKILLDuringToolCallsLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the server 20 times")
	}
	kills := 20
	if os.Getenv("NANO_VM_SOAK") != "" {
		kills = 100
	}
	seed := killSeed(t)
	rng := rand.New(rand.NewSource(seed))
	tool := newCountingTool(t, seed, 15*time.Millisecond)
	data := t.TempDir()
	progs := writeFiles(t, map[string]string{"counting.yaml": countingProgram})
	args := []string{"--data-dir", data, "--programs", progs, "--tools", tool.registryFile(t, "solo"),
		"--tool-lease", "500ms", "--tool-recovery", "100ms"}
	env := []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}

	var (
		runs       []string
		numbers    = map[string]int{}
		acks       []ack
		receipts   = map[string]signedReceipt{}
		openAtKill = map[string]int{} // key → kills that found its call open
		inFlight   int                // kills that found a call open
		pending    string             // the run the last kill interrupted
		reopened   bool               // pending's call was open: recovery invokes it
	)
	for round := 0; inFlight < kills; round++ {
		if round >= 3*kills {
			t.Fatalf("%d rounds killed only %d calls in flight, want %d", round, inFlight, kills)
		}
		tool.drain()
		srv := startToolServer(t, env, args...)
		c := httpClient(t, srv.url, testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
		var (
			victim  string
			stepSeq uint64
			stepped chan toolAnswer
		)
		switch {
		case reopened && rng.Intn(3) == 0:
			// Kill again while recovery invokes the interrupted call.
			victim = pending
		default:
			if pending != "" {
				_, a := driveOn(t, c, pending, numbers[pending], everyLoss, "completed")
				acks = append(acks, a...)
				receipts[pending] = fetchReceipt(t, c, pending)
				pending = ""
			}
			n := len(runs)
			started := mustTool(t, c, "start_run", map[string]any{"program": "counting", "input": map[string]any{"n": n}})
			victim = started.res["run_id"].(string)
			runs, numbers[victim] = append(runs, victim), n
			stepSeq, _ = taskSeq(started.res)
			stepped = make(chan toolAnswer, 1)
			go func() {
				stepped <- tryTool(c, "step", map[string]any{"run_id": victim, "seq": stepSeq, "output": answerFor("plan", n)})
			}()
		}
		// The kill point: after the first or the second call of the run
		// reached the tool, a random time within the tool's own delay
		// and a little after it (the answer on its way to the trace).
		stage := []string{"first", "second"}[rng.Intn(2)]
		n := numbers[victim]
		inv := tool.next(t, func(inv invocation) bool {
			return inv.n == n && (inv.stage == stage || victim == pending)
		})
		// Not a synchronisation: the kill point is random by design.
		time.Sleep(time.Duration(rng.Int63n(int64(inv.delay + 4*time.Millisecond))))
		srv.kill()
		if stepped != nil {
			if a := <-stepped; a.res != nil {
				acks = append(acks, ack{victim, stepSeq})
			}
		}
		// The store as the dead server left it.
		s := openSQLiteStore(t, data)
		all := loadRuns(t, s, runs)
		s.Close()
		facts := map[string]runFacts{}
		for id, recs := range all {
			facts[id] = readFacts(t, recs)
		}
		checkAcks(t, facts, acks)
		for id, sr := range receipts {
			sr.verify(t, id, all[id])
		}
		pending, reopened = "", false
		if f := facts[victim]; f.status == "" {
			pending = victim
			if open := f.open(); len(open) > 0 {
				inFlight, reopened = inFlight+1, true
				for _, call := range open {
					openAtKill[f.keys[call]]++
				}
			}
		}
	}
	// The last run ends on a server that is stopped as usual.
	srv := startToolServer(t, env, args...)
	c := httpClient(t, srv.url, testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
	if pending != "" {
		_, a := driveOn(t, c, pending, numbers[pending], noLoss, "completed")
		acks = append(acks, a...)
		receipts[pending] = fetchReceipt(t, c, pending)
	}
	srv.stop(t)

	s := openSQLiteStore(t, data)
	defer s.Close()
	all := loadRuns(t, s, runs)
	facts := map[string]runFacts{}
	for id, recs := range all {
		facts[id] = readFacts(t, recs)
		receipts[id].verify(t, id, recs)
		if got := counted(receipts[id].body, "tool_calls_executed"); got != 2 {
			t.Fatalf("run %s: the receipt counts %v executed tool calls, want 2", id, got)
		}
	}
	checkAcks(t, facts, acks)
	log, effects, results := tool.snapshot()
	checkEndedOnce(t, facts, effects, results, log)
	again := 0
	for key, n := range invocations(log) {
		if n > 1+openAtKill[key] {
			t.Fatalf("key %s was invoked %d times, but only %d kills found its call open", key, n, openAtKill[key])
		}
		again += n - 1
	}
	if again == 0 {
		t.Fatal("no call was invoked again after a kill: the kills never landed in flight")
	}
	t.Logf("%d runs, %d kills with a call in flight, %d invocations, %d of them again with the same key after a kill", len(runs), inFlight, len(log), again)
}

// A call of a tool that is not idempotent, in flight when the server is
// killed, is never invoked again: after the restart its run waits for an
// operator (waiting_operator, tool_call_unknown). The operator's
// resolve_tool_call over MCP continues it: with a result, through the
// rest of the program; as failed, along on_error. Both receipts verify,
// and count the resolved result as executed.
func TestServeSIGKILLDuringANonIdempotentCallWaitsForTheOperator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the server")
	}
	seed := killSeed(t)
	tool := newCountingTool(t, seed, time.Millisecond)
	tool.hold["charge"] = true // in flight until the server dies
	data := t.TempDir()
	progs := writeFiles(t, map[string]string{"charging.yaml": chargingProgram})
	args := []string{"--data-dir", data, "--programs", progs, "--tools", tool.registryFile(t, "solo"),
		"--tool-lease", "500ms", "--tool-recovery", "100ms"}
	env := []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken, "NANO_VM_OPERATOR_TOKEN=" + testOperatorToken}

	srv := startToolServer(t, env, args...)
	c := httpClient(t, srv.url, testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
	runs := make([]string, 2)
	stepped := make(chan toolAnswer, len(runs))
	for i := range runs {
		started := mustTool(t, c, "start_run", map[string]any{"program": "charging", "input": map[string]any{"n": i}})
		runs[i] = started.res["run_id"].(string)
		seq, _ := taskSeq(started.res)
		go func() {
			stepped <- tryTool(c, "step", map[string]any{"run_id": runs[i], "seq": seq, "output": answerFor("plan", i)})
		}()
	}
	for range runs {
		tool.next(t, func(inv invocation) bool { return inv.tool == "charge" })
	}
	srv.kill()
	for range runs {
		if a := <-stepped; a.err == nil {
			t.Fatalf("a step answered while its charge was held: %v %v", a.res, a.fail)
		}
	}

	srv = startToolServer(t, env, args...)
	c = httpClient(t, srv.url, testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
	operator := httpClient(t, srv.url, testOperatorToken, mcp.LATEST_PROTOCOL_VERSION)
	calls := make([]string, len(runs))
	for i, id := range runs {
		last, _ := driveOn(t, c, id, i, noLoss, "waiting_operator")
		if last["waiting_for"] != nil {
			t.Fatalf("run %s after the restart: %v, want waiting_operator", id, last)
		}
		// The operator finds the call in the trace (as the console shows it).
		s := openSQLiteStore(t, data)
		f := readFacts(t, loadRuns(t, s, []string{id})[id])
		s.Close()
		if open := f.open(); len(open) != 1 || f.unknown[open[0]] != 1 {
			t.Fatalf("run %s: open calls %v, unknown %v; want one, unknown", id, open, f.unknown)
		}
		calls[i] = f.open()[0]
	}
	// The recovery reported them unknown; it invoked nothing.
	if log := tool.invoked(); len(log) != len(runs) {
		t.Fatalf("the charge tool was invoked %d times, want once per run (%d)", len(log), len(runs))
	}

	res := mustTool(t, operator, "resolve_tool_call", map[string]any{"run_id": runs[0], "call_id": calls[0],
		"result": map[string]any{"key": "checked-by-hand", "effect": 1}, "detail": "the bank statement shows the charge"})
	if seq, state := taskSeq(res.res); res.res["status"] != "running" || state != "confirm" {
		t.Fatalf("resolve_tool_call with a result answered %v (task %d %s), want the confirm task", res.res, seq, state)
	}
	res = mustTool(t, operator, "resolve_tool_call", map[string]any{"run_id": runs[1], "call_id": calls[1], "failed": true, "detail": "no charge on the statement"})
	if res.res["status"] != "completed" || res.res["outcome"] != "MANUAL" {
		t.Fatalf("resolve_tool_call as failed answered %v, want completed MANUAL along on_error", res.res)
	}
	last, _ := driveOn(t, c, runs[0], 0, noLoss, "completed")
	if last["outcome"] != "DONE" {
		t.Fatalf("run %s after the resolution: %v, want completed DONE", runs[0], last)
	}
	receipts := []signedReceipt{fetchReceipt(t, c, runs[0]), fetchReceipt(t, c, runs[1])}
	srv.stop(t)

	s := openSQLiteStore(t, data)
	defer s.Close()
	all := loadRuns(t, s, runs)
	for i, id := range runs {
		f := readFacts(t, all[id])
		call := calls[i]
		if f.started[call] != 1 || f.unknown[call] != 1 || f.completed[call] != 0 || len(f.resolved[call]) != 1 {
			t.Fatalf("run %s, %s: %d started, %d unknown, %d completed, %d resolutions; want one start, unknown, resolved once",
				id, call, f.started[call], f.unknown[call], f.completed[call], len(f.resolved[call]))
		}
		if p, _ := f.resolved[call][0]["principal"].(string); p == "" {
			t.Fatalf("run %s: the resolution names no principal: %v", id, f.resolved[call][0])
		}
		receipts[i].verify(t, id, all[id])
		if got, want := counted(receipts[i].body, "tool_calls_executed"), float64(1-i); got != want {
			t.Fatalf("run %s: the receipt counts %v executed tool calls, want %v", id, got, want)
		}
	}
	seen := invocations(tool.invoked())
	if len(seen) != len(runs) {
		t.Fatalf("the charge tool saw keys %v, want one per run", seen)
	}
	for key, n := range seen {
		if n != 1 {
			t.Fatalf("the charge tool was invoked %d times with key %s, want once", n, key)
		}
	}
}
