package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// These benchmarks measure one governed call from a real client process:
// the mcp-go client in this test process, the server in its own process
// (the binary as it ships), over stdio or over Streamable HTTP on
// loopback. Every call is timed on its own; p50-µs and p99-µs are
// percentiles of those latencies, and steps/s (calls/s) is the number of
// calls over the time the timed loop took, which ns/op also gives. One
// client makes one call at a time, as an agent drives a run.
// server-cpu-µs/op is the server process's CPU time (user and system, all
// threads) per call; B/op and allocs/op are the client's.
//
// The reference is the official @modelcontextprotocol/server-everything's
// no-op echo tool, spawned and called by the same client with the same
// measuring code (BenchmarkEverythingEcho; tests/bench/setup.sh installs
// it, and the benchmark skips without it).
//
//	tests/bench/setup.sh
//	go test -run '^$' -bench . -benchtime 2000x -count 6 ./cmd/nano-vm-mcp
//
// docs/performance.md has the results.

// benchWarmup calls are made, untimed, before each timed loop: the first
// calls pay for lazy initialisation (Node compiles the handler's code, Go
// grows its buffers, HTTP opens its connection).
const benchWarmup = 200

// benchProc is a server process the benchmark talks to.
type benchProc struct {
	c   *client.Client
	pid int
}

// lockedBuffer is a bytes.Buffer safe for the stderr-draining goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Buffer.Write(p)
}

// benchStdio starts command with args as an MCP server over stdio and
// completes the 2025-11-25 handshake.
func benchStdio(b *testing.B, command string, args ...string) *benchProc {
	b.Helper()
	var cmd *exec.Cmd
	stderr := &lockedBuffer{}
	c, err := client.NewStdioMCPClientWithOptions(command, nil, args,
		transport.WithCommandFunc(func(ctx context.Context, command string, env, args []string) (*exec.Cmd, error) {
			cmd = exec.CommandContext(ctx, command, args...)
			cmd.Env = append(os.Environ(), env...)
			return cmd, nil
		}),
		transport.WithCommandStderrWriter(stderr))
	if err != nil {
		b.Fatal(err)
	}
	p := &benchProc{c: c, pid: cmd.Process.Pid}
	b.Cleanup(func() {
		c.Close()
		if b.Failed() {
			stderr.mu.Lock()
			b.Logf("server stderr:\n%s", stderr.String())
			stderr.mu.Unlock()
		}
	})
	benchInitialize(b, c)
	return p
}

// benchFreePort returns a loopback port that is free right now.
func benchFreePort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// benchHTTP starts nano-vm-mcp serve --transport http on a free loopback
// port with args and connects the Streamable HTTP client to /mcp.
func benchHTTP(b *testing.B, args ...string) *benchProc {
	b.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", benchFreePort(b))
	cmd := exec.Command(serverBinary(b), append([]string{"serve", "--transport", "http", "--addr", addr}, args...)...)
	return benchHTTPServer(b, cmd, addr)
}

// benchHTTPServer starts cmd, an MCP server that will listen on addr, and
// connects the Streamable HTTP client to http://addr/mcp.
func benchHTTPServer(b *testing.B, cmd *exec.Cmd, addr string) *benchProc {
	b.Helper()
	stderr := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if b.Failed() {
			b.Logf("server output:\n%s", stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("nothing listens on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := client.NewStreamableHttpClient("http://" + addr + "/mcp")
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	benchInitialize(b, c)
	return &benchProc{c: c, pid: cmd.Process.Pid}
}

func benchInitialize(b *testing.B, c *client.Client) {
	b.Helper()
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "nano-vm-bench", Version: "1"}
	if _, err := c.Initialize(context.Background(), req); err != nil {
		b.Fatalf("initialize: %v", err)
	}
}

// benchRefund is the refund example: its input and the answer that
// finishes a run in one step.
func benchRefund(b *testing.B) (input, answer json.RawMessage) {
	b.Helper()
	in, err := os.ReadFile("../../examples/refund.input.json")
	if err != nil {
		b.Fatal(err)
	}
	ans, err := os.ReadFile("../../examples/refund.refunded.answers.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	return json.RawMessage(in), json.RawMessage(bytes.TrimSpace(ans))
}

func benchCall(name string, args any) mcp.CallToolRequest {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return req
}

// benchStartRuns starts n runs of program on the refund input, untimed,
// and returns the step request that answers the first task of each with
// the refund answer.
func benchStartRuns(b *testing.B, c *client.Client, program string, n int) []mcp.CallToolRequest {
	b.Helper()
	input, answer := benchRefund(b)
	start := benchCall("start_run", map[string]any{"program": program, "input": input})
	steps := make([]mcp.CallToolRequest, n)
	for i := range steps {
		res, err := c.CallTool(context.Background(), start)
		if err != nil {
			b.Fatalf("start_run: %v", err)
		}
		var got struct {
			RunID string `json:"run_id"`
			Task  struct {
				Seq json.Number `json:"seq"`
			} `json:"task"`
		}
		if err := json.Unmarshal([]byte(benchText(res)), &got); err != nil || res.IsError || got.RunID == "" {
			b.Fatalf("start_run answered %s", benchText(res))
		}
		steps[i] = benchCall("step", map[string]any{"run_id": got.RunID, "seq": got.Task.Seq, "output": answer})
	}
	return steps
}

func benchText(res *mcp.CallToolResult) string {
	if len(res.Content) == 0 {
		return ""
	}
	if t, ok := res.Content[0].(mcp.TextContent); ok {
		return t.Text
	}
	return fmt.Sprintf("%#v", res.Content[0])
}

// benchStepAnswers checks that a step's answer has the status and outcome
// wanted.
func benchStepAnswers(status, outcome string) func(*mcp.CallToolResult) error {
	return func(res *mcp.CallToolResult) error {
		var got struct {
			Status  string `json:"status"`
			Outcome string `json:"outcome"`
		}
		if err := json.Unmarshal([]byte(benchText(res)), &got); err != nil || res.IsError || got.Status != status || got.Outcome != outcome {
			return fmt.Errorf("step answered %s", benchText(res))
		}
		return nil
	}
}

// benchFinished is the answer to the step that finishes a refund run.
var benchFinished = benchStepAnswers("completed", "REFUNDED")

// benchMeasure makes the timed loop: call i = reqs[i], each timed alone.
// It reports the 50th and 99th percentile latencies, the calls per second
// under unit (steps/s, calls/s), and the server's CPU time per call.
func benchMeasure(b *testing.B, p *benchProc, reqs []mcp.CallToolRequest, unit string, check func(*mcp.CallToolResult) error) {
	b.Helper()
	ctx := context.Background()
	lat := make([]time.Duration, len(reqs))
	res := make([]*mcp.CallToolResult, len(reqs))
	cpu0 := benchProcCPU(p.pid)
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	for i := range reqs {
		t0 := time.Now()
		r, err := p.c.CallTool(ctx, reqs[i])
		lat[i] = time.Since(t0)
		if err != nil {
			b.Fatalf("call %d: %v", i, err)
		}
		res[i] = r
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	cpu1 := benchProcCPU(p.pid)
	for i, r := range res {
		if err := check(r); err != nil {
			b.Fatalf("call %d: %v", i, err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(benchMicros(benchPercentile(lat, 50)), "p50-µs")
	b.ReportMetric(benchMicros(benchPercentile(lat, 99)), "p99-µs")
	b.ReportMetric(float64(len(reqs))/elapsed.Seconds(), unit)
	if cpu0 >= 0 && cpu1 >= 0 {
		b.ReportMetric(benchMicros(cpu1-cpu0)/float64(len(reqs)), "server-cpu-µs/op")
	}
}

// benchPercentile is the nearest-rank percentile of sorted latencies.
func benchPercentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

func benchMicros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// benchProcCPU is the user plus system CPU time the process has used, all
// threads, from /proc (Linux); -1 where there is none. Its resolution is
// the clock tick (10 ms), so it is meaningful over thousands of calls.
func benchProcCPU(pid int) time.Duration {
	if runtime.GOOS != "linux" {
		return -1
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces; fields count from after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return -1
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// benchSteps warms the server up, starts b.N runs of program untimed,
// then times one step per run: the answer to its first task (checked
// against the output schema, the guards evaluated, the events sealed and
// appended in one transaction, the answer returned).
func benchSteps(b *testing.B, p *benchProc, program string, check func(*mcp.CallToolResult) error) {
	b.Helper()
	benchWarm(b, p, benchStartRuns(b, p.c, program, benchWarmup), check)
	steps := benchStartRuns(b, p.c, program, b.N)
	benchMeasure(b, p, steps, "steps/s", check)
}

// BenchmarkStdioStep: one governed step over stdio, on the durable SQLite
// store (synchronous=FULL: the step is on disk before the answer leaves).
// The step finishes a refund run.
func BenchmarkStdioStep(b *testing.B) {
	p := benchStdio(b, serverBinary(b), "serve", "--data-dir", b.TempDir())
	benchSteps(b, p, "refund", benchFinished)
}

// BenchmarkStdioStepMemory: the same on the memory store, which separates
// the cost of the durable append.
func BenchmarkStdioStepMemory(b *testing.B) {
	p := benchStdio(b, serverBinary(b), "serve", "--store", "memory")
	benchSteps(b, p, "refund", benchFinished)
}

// BenchmarkStdioStepSyncNormal: the same on SQLite with
// --sqlite-synchronous normal (no fsync at commit; power loss can lose the
// last steps), which separates the fsync from the rest of the append.
func BenchmarkStdioStepSyncNormal(b *testing.B) {
	p := benchStdio(b, serverBinary(b), "serve", "--data-dir", b.TempDir(), "--sqlite-synchronous", "normal")
	benchSteps(b, p, "refund", benchFinished)
}

// benchRelay is the refund's first task twice in a row: answering the
// first moves a running run on without finishing it, so the run's status
// and outcome, and the listing indexes that hold them, stay as they are.
const benchRelay = `name: bench-relay
version: "1.0"
description: The refund's first task twice in a row (cmd/nano-vm-mcp/bench_test.go).
input_schema:
  type: object
  required: [order, request]
  properties:
    order: {type: object}
    request: {type: object}
initial: assess
states:
  assess:
    kind: llm
    instructions: Decide whether the request is eligible and how much to refund.
    view: [input.order, input.request]
    output_schema:
      type: object
      required: [eligible, amount_cents, reason]
      properties:
        eligible: {type: boolean}
        amount_cents: {type: integer, minimum: 0}
        reason: {type: string, maxLength: 500}
    transitions:
      - to: confirm
  confirm:
    kind: llm
    instructions: Confirm the decision.
    view: [input.order, input.request, data.assess.amount_cents]
    output_schema:
      type: object
      required: [eligible, amount_cents, reason]
      properties:
        eligible: {type: boolean}
        amount_cents: {type: integer, minimum: 0}
        reason: {type: string, maxLength: 500}
    transitions:
      - to: done
  done:
    kind: terminal
    outcome: DONE
`

// BenchmarkStdioStepMidRun: a durable step over stdio that moves a run on
// to its next task instead of finishing it (the usual step of a longer
// program).
func BenchmarkStdioStepMidRun(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bench-relay.yaml"), []byte(benchRelay), 0o600); err != nil {
		b.Fatal(err)
	}
	p := benchStdio(b, serverBinary(b), "serve", "--data-dir", b.TempDir(), "--programs", dir)
	benchSteps(b, p, "bench-relay", benchStepAnswers("running", ""))
}

// BenchmarkHTTPStep: one governed step over Streamable HTTP on loopback, on
// the durable SQLite store.
func BenchmarkHTTPStep(b *testing.B) {
	p := benchHTTP(b, "--data-dir", b.TempDir())
	benchSteps(b, p, "refund", benchFinished)
}

// BenchmarkHTTPStepMemory: the same on the memory store.
func BenchmarkHTTPStepMemory(b *testing.B) {
	p := benchHTTP(b, "--store", "memory")
	benchSteps(b, p, "refund", benchFinished)
}

// BenchmarkStdioGetRun: a read-only call to nano-vm over stdio (get_run of
// a finished run): the server's MCP and JSON cost with no step and no
// append, to set beside the echo of the reference server.
func BenchmarkStdioGetRun(b *testing.B) {
	p := benchStdio(b, serverBinary(b), "serve", "--store", "memory")
	steps := benchStartRuns(b, p.c, "refund", 1)
	benchWarm(b, p, steps, benchFinished)
	get := benchCall("get_run", map[string]any{"run_id": steps[0].GetArguments()["run_id"]})
	reqs := make([]mcp.CallToolRequest, benchWarmup+b.N)
	for i := range reqs {
		reqs[i] = get
	}
	check := func(res *mcp.CallToolResult) error {
		if res.IsError || !strings.Contains(benchText(res), `"completed"`) {
			return fmt.Errorf("get_run answered %s", benchText(res))
		}
		return nil
	}
	benchWarm(b, p, reqs[:benchWarmup], check)
	benchMeasure(b, p, reqs[benchWarmup:], "calls/s", check)
}

// benchWarm makes the calls reqs, untimed, and checks their answers.
func benchWarm(b *testing.B, p *benchProc, reqs []mcp.CallToolRequest, check func(*mcp.CallToolResult) error) {
	b.Helper()
	for i := range reqs {
		res, err := p.c.CallTool(context.Background(), reqs[i])
		if err != nil {
			b.Fatal(err)
		}
		if err := check(res); err != nil {
			b.Fatal(err)
		}
	}
}

// everythingEntry is where tests/bench/setup.sh installs the reference
// server.
const everythingEntry = "../../.cache/bench/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

// benchEverything returns the node binary and the reference server's entry
// point, or skips the benchmark when either is missing.
// NANO_VM_BENCH_NODE chooses the node binary (default: node on PATH).
func benchEverything(b *testing.B) (node, entry string) {
	b.Helper()
	entry, err := filepath.Abs(everythingEntry)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(entry); errors.Is(err, os.ErrNotExist) {
		b.Skip("server-everything is not installed: run tests/bench/setup.sh (it installs into .cache/bench)")
	} else if err != nil {
		b.Fatal(err)
	}
	node = os.Getenv("NANO_VM_BENCH_NODE")
	if node == "" {
		if node, err = exec.LookPath("node"); err != nil {
			b.Skip("no node on PATH (set NANO_VM_BENCH_NODE=/path/to/node)")
		}
	}
	return node, entry
}

// benchEcho warms up and times calls of server-everything's no-op echo
// tool, with the refund answer as the message, so that the request
// carries the same bytes as a step.
func benchEcho(b *testing.B, p *benchProc) {
	b.Helper()
	_, answer := benchRefund(b)
	echo := benchCall("echo", map[string]any{"message": string(answer)})
	want := "Echo: " + string(answer)
	reqs := make([]mcp.CallToolRequest, benchWarmup+b.N)
	for i := range reqs {
		reqs[i] = echo
	}
	check := func(res *mcp.CallToolResult) error {
		if res.IsError || benchText(res) != want {
			return fmt.Errorf("echo answered %s", benchText(res))
		}
		return nil
	}
	benchWarm(b, p, reqs[:benchWarmup], check)
	benchMeasure(b, p, reqs[benchWarmup:], "calls/s", check)
}

// BenchmarkEverythingEcho: the reference. The same client spawns the
// official server-everything over stdio (node dist/index.js stdio) and
// calls its no-op echo tool.
func BenchmarkEverythingEcho(b *testing.B) {
	node, entry := benchEverything(b)
	benchEcho(b, benchStdio(b, node, entry, "stdio"))
}

// BenchmarkEverythingEchoHTTP: the reference over Streamable HTTP
// (node dist/index.js streamableHttp). It takes its port from PORT and
// listens on every interface, not only loopback, while it runs.
func BenchmarkEverythingEchoHTTP(b *testing.B) {
	node, entry := benchEverything(b)
	port := benchFreePort(b)
	cmd := exec.Command(node, entry, "streamableHttp")
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	benchEcho(b, benchHTTPServer(b, cmd, fmt.Sprintf("127.0.0.1:%d", port)))
}
