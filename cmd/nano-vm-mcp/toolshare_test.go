package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/pgtest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// TestServeTwoServersOnPostgresInvokeEachToolCallOnce: two serve
// processes share one PostgreSQL database (and data directory, hence
// keys), as instances behind a load balancer. 200 runs of the counting
// program are started across both, and each call of each run goes to
// either, at random; every run has two tool calls the servers run
// themselves. Midway, one server is SIGKILLed while it holds a call (the
// tool holds that call until the server is gone); the other takes its
// leases over once they expire. Every run ends, each call id has exactly
// one tool_call_completed with the tool's result for its key, every
// receipt verifies, and the tool saw each idempotency key exactly once,
// except the calls the killed server held: those exactly twice, first
// from it, then from the survivor. NANO_VM_SOAK=1 (make soak) runs 1,000.
func TestServeTwoServersOnPostgresInvokeEachToolCallOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two servers")
	}
	runs, workers := 200, 8
	if os.Getenv("NANO_VM_SOAK") != "" {
		runs = 1000
	}
	dsn, _ := pgtest.Schema(t, "serve_tools_")
	seed := killSeed(t)
	tool := newCountingTool(t, seed, 5*time.Millisecond)
	data := t.TempDir()
	progs := writeFiles(t, map[string]string{"counting.yaml": countingProgram})
	common := []string{"--store", "postgres", "--dsn", dsn, "--data-dir", data, "--programs", progs,
		"--tool-lease", "4s", "--tool-recovery", "250ms"}
	env := []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}
	// One after the other: the first makes the keys both hold.
	a := startToolServer(t, env, append(common, "--tools", tool.registryFile(t, "a"))...)
	b := startToolServer(t, env, append(common, "--tools", tool.registryFile(t, "b"))...)
	viaA, viaB := make([]*client.Client, workers), make([]*client.Client, workers)
	for w := range workers {
		viaA[w] = httpClient(t, a.url, testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
		viaB[w] = httpClient(t, b.url, testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
	}

	var (
		bKilled  atomic.Bool
		finished atomic.Int64
		halfway  = make(chan struct{})
		once     sync.Once
		mu       sync.Mutex
		ids      = make([]string, runs)
		acks     []ack
		errs     []error
		jobs     = make(chan int)
		wg       sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range jobs {
				err := func() error {
					rng := rand.New(rand.NewSource(seed + int64(i)))
					pick := func() *client.Client {
						if bKilled.Load() || rng.Intn(2) == 0 {
							return viaA[w]
						}
						return viaB[w]
					}
					lost := func(c *client.Client, _ error) bool { return c == viaB[w] && bKilled.Load() }
					// Started with a key: asked again through the other
					// server after a lost answer, it is the same run.
					var id string
					for id == "" {
						c := pick()
						s := tryTool(c, "start_run", map[string]any{"program": "counting", "input": map[string]any{"n": i}, "idempotency_key": fmt.Sprintf("run-%d", i)})
						switch {
						case s.err != nil && lost(c, s.err):
						case s.err != nil || s.fail != nil:
							return fmt.Errorf("start_run %d: %v %v", i, s.err, s.fail)
						default:
							id = s.res["run_id"].(string)
						}
					}
					last, got, err := driveRun(pick, id, i, lost)
					mu.Lock()
					ids[i], acks = id, append(acks, got...)
					mu.Unlock()
					if err != nil {
						return err
					}
					if last["status"] != "completed" || last["outcome"] != "DONE" {
						return fmt.Errorf("run %s ended %v, want completed DONE", id, last)
					}
					return nil
				}()
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
				if finished.Add(1) == int64(runs/2) {
					once.Do(func() { close(halfway) })
				}
			}
		})
	}
	feed := make(chan struct{})
	go func() {
		defer close(feed)
		for i := range runs {
			jobs <- i
		}
		close(jobs)
	}()

	// Midway, hold b's next call at the tool and kill b while it holds it.
	<-halfway
	tool.mu.Lock()
	tool.holdNext = "b"
	from := len(tool.log)
	tool.mu.Unlock()
	held := tool.next(t, func(inv invocation) bool { return inv.instance == "b" && inv.pos >= from })
	bKilled.Store(true)
	b.kill()
	killedAt := len(tool.invoked())
	t.Logf("killed b at run %d of %d, holding the call with key %s (run %d, %s)", finished.Load(), runs, held.key, held.n, held.stage)
	<-feed
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d runs failed; the first: %v", len(errs), errs[0])
	}

	receipts := make(map[string]signedReceipt, runs)
	for _, id := range ids {
		receipts[id] = fetchReceipt(t, viaA[0], id)
	}
	a.stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := tracestore.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all := loadRuns(t, s, ids)
	facts := make(map[string]runFacts, runs)
	for id, recs := range all {
		facts[id] = readFacts(t, recs)
		receipts[id].verify(t, id, recs)
		if got := counted(receipts[id].body, "tool_calls_executed"); got != 2 {
			t.Fatalf("run %s: the receipt counts %v executed tool calls, want 2", id, got)
		}
	}
	checkAcks(t, facts, acks)
	log, effects, results := tool.snapshot()
	keys := checkEndedOnce(t, facts, effects, results, log)
	if len(keys) != 2*runs {
		t.Fatalf("%d keys in the traces, want two per run (%d)", len(keys), 2*runs)
	}
	byKey := map[string][]invocation{}
	perInstance := map[string]int{}
	for _, inv := range log {
		byKey[inv.key] = append(byKey[inv.key], inv)
		perInstance[inv.instance]++
	}
	again := 0
	for key, invs := range byKey {
		switch {
		case len(invs) == 1:
		case len(invs) == 2 && invs[0].instance == "b" && invs[0].pos < killedAt && invs[1].instance == "a" && invs[1].pos >= killedAt:
			again++ // a call b held when it died, taken over by a
		default:
			t.Fatalf("key %s was invoked %d times (%+v); want once, or twice when b held it at its death and a took it over", key, len(invs), invs)
		}
	}
	if invs := byKey[held.key]; len(invs) != 2 {
		t.Fatalf("the call b held at its death (key %s) was invoked %d times, want twice: a did not take its lease over", held.key, len(invs))
	}
	if perInstance["a"] == 0 || perInstance["b"] == 0 {
		t.Fatalf("invocations per server %v: want both to have run calls", perInstance)
	}
	t.Logf("%d runs, %d invocations (%v), %d keys taken over by a after b's death", runs, len(log), perInstance, again)
}
