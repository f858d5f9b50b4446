package receipt

import (
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// chained turns a run's events into trace records, chained as the shell
// chains them (docs/trace-format.md §5).
func chained(t *testing.T, events []runtime.Event) []tracestore.Record {
	t.Helper()
	recs := make([]tracestore.Record, len(events))
	var prev []byte
	for i, e := range events {
		if prev != nil {
			e.Prev = trace.Hex(prev)
		}
		body, err := runtime.EncodeEvent(&e)
		if err != nil {
			t.Fatal(err)
		}
		prev = trace.LeafHash(body)
		recs[i] = tracestore.Record{Index: uint64(i), Type: string(e.Type), Body: body, Hash: prev}
	}
	return recs
}

// TestToolCallCounts pins counts.tool_calls_executed (results the runtime
// attests: executed, or resolved by an operator with a result) and
// counts.tool_calls_reported (tool results a caller claimed).
func TestToolCallCounts(t *testing.T) {
	p, err := program.LoadFile("../runtime/testdata/toolcalls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	type step func(r *runtime.Run) runtime.Input
	result := func(out string) step {
		return func(r *runtime.Run) runtime.Input {
			c := r.Call
			return runtime.ToolResult{Seq: c.Seq, CallID: c.CallID, Attempt: c.Attempt, Output: decode(t, out), At: at}
		}
	}
	unknown := func(r *runtime.Run) runtime.Input {
		c := r.Call
		return runtime.ToolUnknown{Seq: c.Seq, CallID: c.CallID, Attempt: c.Attempt, At: at}
	}
	resolve := func(failed bool) step {
		return func(r *runtime.Run) runtime.Input {
			in := runtime.ResolveTool{CallID: r.Call.CallID, Principal: "ops", Failed: failed, At: at}
			if !failed {
				in.Output = decode(t, `{"id": "r", "ok": true}`)
			}
			return in
		}
	}
	report := func(out string) step {
		return func(r *runtime.Run) runtime.Input {
			return runtime.Submit{Seq: r.Seq, Tool: r.Task.Tool.Name, Output: decode(t, out), At: at}
		}
	}
	tests := []struct {
		name               string
		executors          map[string]string
		steps              []step
		executed, reported int
	}{
		{"executed twice, reported once", map[string]string{"refund": "http", "notify": "mcp"},
			[]step{result(`{"id": "r", "ok": true}`), result(`{"sent": true}`), report(`{"logged": true}`)}, 2, 1},
		{"caller runs every tool", nil,
			[]step{report(`{"id": "r", "ok": true}`), report(`{"sent": true}`), report(`{"logged": true}`)}, 0, 3},
		{"resolved with a result counts as executed", map[string]string{"refund": "http", "notify": "mcp"},
			[]step{unknown, resolve(false)}, 1, 0},
		{"resolved as failed does not", map[string]string{"refund": "http"},
			[]step{unknown, resolve(true)}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := runtime.Apply(p, nil, runtime.Start{RunID: "run-1", Input: decode(t, `{"amount": 5}`), Executors: tt.executors, At: at})
			if err != nil {
				t.Fatal(err)
			}
			events, run := res.Events, res.Run
			for _, s := range tt.steps {
				res, err := runtime.Apply(p, run, s(run))
				if err != nil {
					t.Fatal(err)
				}
				events, run = append(events, res.Events...), res.Run
			}
			recs := chained(t, events)
			body, err := Derive(recs, uint64(len(recs)), "k")
			if err != nil {
				t.Fatal(err)
			}
			if body.Format != Format || body.Counts.ToolCallsExecuted != tt.executed || body.Counts.ToolCallsReported != tt.reported {
				t.Fatalf("format %s, executed %d, reported %d; want %s, %d, %d", body.Format, body.Counts.ToolCallsExecuted, body.Counts.ToolCallsReported, Format, tt.executed, tt.reported)
			}
			pub, priv := testKey()
			_, env, err := Issue(Slice(recs), 0, priv)
			if err != nil {
				t.Fatal(err)
			}
			if rep := Verify(env, recs, pub); !rep.Valid {
				t.Fatalf("the receipt does not verify: %v", rep.Problems)
			}
		})
	}
}
