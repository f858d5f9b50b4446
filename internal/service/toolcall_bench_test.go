package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
	"github.com/nano-vm/nano-vm-mcp/internal/executor/executortest"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The runtime's overhead per executed tool call (issue 15 §6,
// docs/performance.md): the stdio mcp tool is the executor tests'
// downstream server, served by this test binary run again.
func init() { executortest.ServeIfAsked() }

// timedStore times the appends and lease writes made through it, so that
// a benchmark can take the durable appends' share out of the very calls
// it measures.
type timedStore struct {
	tracestore.Store

	mu              sync.Mutex
	appends, leases []time.Duration
}

func (s *timedStore) Append(ctx context.Context, runID string, records []tracestore.Record, info tracestore.RunInfo) error {
	t := time.Now()
	err := s.Store.Append(ctx, runID, records, info)
	s.record(&s.appends, time.Since(t))
	return err
}

// LoadRange passes the store's range reads on (tracestore.Range), so
// that the wrapper changes nothing but the timing.
func (s *timedStore) LoadRange(ctx context.Context, runID string, from, to uint64) ([]tracestore.Record, error) {
	return tracestore.Range(ctx, s.Store, runID, from, to)
}

func (s *timedStore) TakeLease(ctx context.Context, runID, callID, holder string, now, until time.Time) (bool, error) {
	t := time.Now()
	held, err := s.Store.TakeLease(ctx, runID, callID, holder, now, until)
	s.record(&s.leases, time.Since(t))
	return held, err
}

func (s *timedStore) record(to *[]time.Duration, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*to = append(*to, d)
}

// take returns the times recorded since the last take, and forgets them.
func (s *timedStore) take() (appends, leases []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	appends, leases = s.appends, s.leases
	s.appends, s.leases = nil, nil
	return appends, leases
}

// callLoopProgram loops between a caller's llm state and a runtime tool
// state on tool: each step the caller submits runs the tool once, between
// the step's append (which records the intent) and the outcome's.
func callLoopProgram(tool string) string {
	return `
name: callloop
version: "1"
input_schema:
  type: object
  properties: {order: {type: string}}
  required: [order]
limits: {max_steps: 100000, max_attempts: 1}
initial: ask
states:
  ask:
    kind: llm
    instructions: Go on, or stop.
    view: [input.order]
    max_visits: 10000
    output_schema:
      type: object
      properties: {stop: {type: boolean}}
    transitions:
      - {to: done, when: "has(output.stop) && output.stop"}
      - {to: work}
  work:
    kind: tool
    tool: ` + tool + `
    execution: runtime
    arguments:
      message: "'hi'"
    output_schema: {type: object, additionalProperties: true}
    transitions: [{to: ask}]
  done: {kind: terminal, outcome: DONE}
`
}

// BenchmarkExecutedToolCall is one step through the service into a
// runtime tool state and back, on durable SQLite (synchronous=FULL): the
// step's append with the call's intent (which writes the runner's lease),
// the invocation, the outcome's append (conditional on that lease), and the answer with the next caller
// task. mcp-echo calls the downstream server's echo over stdio;
// exec-true runs /bin/true (exit-status output). Besides ns/op (the step,
// timed), it reports per step, at p50 (and p99 for the total):
//
//   - total: the step's latency as the caller sees it;
//   - appends: the step's two durable appends, timed as the service makes
//     them;
//   - leases: the runner's lease writes (TakeLease), timed the same way;
//     they are part of the overhead, and lease-writes/op counts them
//     (none while the intent's lease is fresh);
//   - bare: the executor's Invoke alone, of the same tool with the same
//     arguments, made after each step with the timer stopped;
//   - overhead: total − appends − bare, per step.
func BenchmarkExecutedToolCall(b *testing.B) {
	for _, c := range []struct{ name, tool string }{
		{"mcp-echo", "echo"},
		{"exec-true", "noop"},
	} {
		b.Run(c.name, func(b *testing.B) { benchExecutedCall(b, c.tool) })
	}
}

func benchExecutedCall(b *testing.B, tool string) {
	ctx := context.Background()
	dir := b.TempDir()
	store, err := tracestore.OpenSQLite(filepath.Join(dir, "trace.db"), tracestore.SQLiteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	ts := &timedStore{Store: store}
	reg := benchRegistry(b, dir)
	src := []byte(callLoopProgram(tool))
	prog, err := program.Load("callloop.yaml", src)
	if err != nil {
		b.Fatal(err)
	}
	svc := New(Options{Store: ts, Tools: reg, Secret: make([]byte, 32)})
	b.Cleanup(svc.Close)
	if err := svc.AddProgram(ctx, prog, src); err != nil {
		b.Fatal(err)
	}
	ex, ok := reg.Executor(tool)
	if !ok {
		b.Fatalf("the registry has no executor for %s", tool)
	}
	bareCall := executor.Call{Tool: tool, Arguments: map[string]any{"message": "hi"}, IdempotencyKey: "bench/bare", Attempt: 1}
	out := js(b, `{}`)

	var a Answer
	start := func() {
		if a, err = svc.StartRun(ctx, StartOptions{Program: "callloop", Input: js(b, `{"order": "o-1"}`), Principal: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	step := func() {
		if a, err = svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Principal: "bench", Output: out}); err != nil {
			b.Fatal(err)
		}
		if a.State != "ask" || a.Task == nil || hops(a) != "ask>work work>ask" {
			b.Fatalf("answer %+v (hops %q), want the next ask task after ask>work work>ask", a, hops(a))
		}
	}
	// Warm up: the downstream's first calls, SQLite's first pages.
	start()
	for range 20 {
		step()
	}
	ts.take()

	var total, appends, leases, bare, overhead []time.Duration
	steps, leaseWrites := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		t := time.Now()
		step()
		d := time.Since(t)

		b.StopTimer()
		aps, ls := ts.take()
		if len(aps) != 2 {
			b.Fatalf("the step made %d appends, want 2 (the intent's and the outcome's)", len(aps))
		}
		t = time.Now()
		if _, err := ex.Invoke(ctx, bareCall); err != nil {
			b.Fatal(err)
		}
		bd := time.Since(t)
		ad, ld := aps[0]+aps[1], sum(ls)
		leaseWrites += len(ls)
		total, appends, leases, bare = append(total, d), append(appends, ad), append(leases, ld), append(bare, bd)
		overhead = append(overhead, d-ad-bd)
		// A run enters ask once a step, within its max_visits.
		if steps++; steps%5000 == 0 {
			start()
		}
		b.StartTimer()
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(percentile(total, 50)), "total-p50-µs")
	b.ReportMetric(us(percentile(total, 99)), "total-p99-µs")
	b.ReportMetric(us(percentile(appends, 50)), "appends-p50-µs")
	b.ReportMetric(us(percentile(leases, 50)), "leases-p50-µs")
	b.ReportMetric(float64(leaseWrites)/float64(steps), "lease-writes/op")
	b.ReportMetric(us(percentile(bare, 50)), "bare-p50-µs")
	b.ReportMetric(us(percentile(overhead, 50)), "overhead-p50-µs")
}

// benchRegistry is the benchmark's registry: echo on the downstream
// server over stdio, and noop, an exec of /bin/true.
func benchRegistry(b *testing.B, dir string) *executor.Registry {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	env := executortest.Env()
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	doc := fmt.Sprintf(`tools:
  echo:
    mcp: {command: [%q], env: [%s], tool: echo}
    timeout: 10s
  noop:
    exec: {argv: [/bin/true]}
    output: {format: exit-status}
    timeout: 10s
`, exe, strings.Join(names, ", "))
	reg, err := executor.Parse([]byte(doc), "tools.yaml", executor.Options{
		RegistryDir: dir,
		Getenv:      func(k string) string { return env[k] },
		Pins:        filepath.Join(dir, "tools.pins.json"),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { reg.Close() })
	return reg
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// percentile returns the p-th percentile of ds (nearest rank), sorting a
// copy.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i, 1)-1]
}
