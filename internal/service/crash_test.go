package service

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// crashProgram loops on one step for as long as the child keeps answering.
const crashProgram = `
name: crash
version: "1"
input_schema:
  type: object
  properties:
    customer: {type: string}
subjects:
  customer:
    id: input.customer
    pii: [data.work.note]
limits: {max_steps: 100000}
initial: work
states:
  work:
    kind: llm
    max_visits: 10000
    output_schema:
      type: object
      properties:
        n: {type: integer}
        note: {type: string}
        done: {type: boolean}
      required: [n, done]
    transitions:
      - {to: done, when: output.done}
      - {to: work}
  done: {kind: terminal, outcome: DONE}
`

// crashRuns runs step at once in the child, and crashRounds children are
// killed: the group commit's crash test (issue 16) asks for at least 16
// concurrent runs and 20 kills.
const (
	crashRuns   = 16
	crashRounds = 20
)

// TestCrashChild is the child process of TestCrashSafety: it streams steps
// of crashRuns runs at once into the store and prints one line per
// acknowledged step. It does
// nothing unless the parent started it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("NANO_VM_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestCrashSafety only")
	}
	ctx := context.Background()
	store, err := tracestore.OpenSQLite(filepath.Join(dir, "traces.db"), tracestore.SQLiteOptions{})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	keks, err := keyring.OpenKEKs(dir)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	svc := New(Options{Store: store, Secret: bytes.Repeat([]byte{5}, 32), KEKs: keks})
	p, err := program.Load("crash.yaml", []byte(crashProgram))
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if err := svc.AddProgram(ctx, p, []byte(crashProgram)); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	runs, _, err := store.ListRuns(ctx, tracestore.ListFilter{Program: "crash"})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.RunID)
	}
	var outMu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
		outMu.Unlock()
	}
	for len(ids) < crashRuns {
		a, err := svc.Start(ctx, "crash", map[string]any{"customer": fmt.Sprintf("cust-%d", len(ids))}, "crash")
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		ids = append(ids, a.RunID)
		say("START %s", a.RunID)
	}
	// One writer per run, all at once, so that the store batches their
	// appends (group commit) when the kill comes.
	for _, id := range ids {
		go func() {
			for {
				run, _, err := svc.Get(ctx, id)
				if err != nil {
					say("ERROR %v", err)
					os.Exit(1)
				}
				output := map[string]any{"n": int64(run.Seq), "note": "note for step " + strconv.FormatUint(run.Seq, 10), "done": false}
				if _, err := svc.Submit(ctx, id, runtime.Submit{Seq: run.Seq, Output: output}); err != nil {
					say("ERROR %v", err)
					os.Exit(1)
				}
				// The answer is acknowledged only now, after the append
				// returned.
				say("ACK %s %d", id, run.Seq)
			}
		}()
	}
	select {}
}

// TestCrashSafety kills a child that streams steps of many runs at once
// with SIGKILL at random moments, so that most kills land while a batch of
// appends is being written or synced. After each kill, every acknowledged step is in the store,
// nothing is half-written, every run's chain and tree verify, and the next
// child continues the same runs.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(42, 7))
	acked := map[string]uint64{} // run → highest acknowledged seq
	for round := 0; round < crashRounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "NANO_VM_CRASH_DIR="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 16 + rng.IntN(64)
		sc := bufio.NewScanner(stdout)
		acks := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "ACK":
				seq, _ := strconv.ParseUint(f[2], 10, 64)
				acked[f[1]] = max(acked[f[1]], seq)
				acks++
			case len(f) > 0 && f[0] == "ERROR":
				t.Fatalf("round %d: child: %s", round, sc.Text())
			}
			if acks >= killAfter {
				break
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if acks < killAfter {
			t.Fatalf("round %d: the child stopped after %d acknowledgements", round, acks)
		}
		checkAfterCrash(t, dir, acked, round)
	}
	if len(acked) != crashRuns {
		t.Fatalf("%d runs acknowledged steps, want %d", len(acked), crashRuns)
	}
}

func checkAfterCrash(t *testing.T, dir string, acked map[string]uint64, round int) {
	t.Helper()
	ctx := context.Background()
	store, err := tracestore.OpenSQLite(filepath.Join(dir, "traces.db"), tracestore.SQLiteOptions{})
	if err != nil {
		t.Fatalf("round %d: reopen: %v", round, err)
	}
	defer store.Close()
	keks, err := keyring.OpenKEKs(dir)
	if err != nil {
		t.Fatal(err)
	}
	svc := New(Options{Store: store, KEKs: keks})
	for id, seq := range acked {
		recs, err := store.Load(ctx, id)
		if err != nil {
			t.Fatalf("round %d: run %s: %v", round, id, err)
		}
		// The chain and every leaf hash hold, and the index row's tree and
		// head are those of the whole trace: nothing half-written.
		if _, err := receipt.Derive(recs, uint64(len(recs)), "check"); err != nil {
			t.Fatalf("round %d: run %s: %v", round, id, err)
		}
		info, err := store.Run(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		tree := trace.NewTree()
		for _, r := range recs {
			tree.Append(r.Hash)
		}
		want, _ := tree.Root()
		stored, err := trace.UnmarshalTree(info.Tree)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := stored.Root()
		if !bytes.Equal(got, want) || info.Events != uint64(len(recs)) || !bytes.Equal(info.Head, recs[len(recs)-1].Hash) {
			t.Fatalf("round %d: run %s: the index row does not match the trace", round, id)
		}
		// Every acknowledged step is there: the run has moved past it.
		run, _, err := svc.Get(ctx, id)
		if err != nil {
			t.Fatalf("round %d: run %s: %v", round, id, err)
		}
		if run.Seq <= seq {
			t.Fatalf("round %d: run %s is at task %d, but task %d was acknowledged", round, id, run.Seq, seq)
		}
	}
}
