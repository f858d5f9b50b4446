package receipt

import (
	"fmt"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// syntheticTrace builds a well-chained trace of n events: a start, then
// tasks, answers and transitions, and a finish.
func syntheticTrace(b *testing.B, n int) []tracestore.Record {
	recs := make([]tracestore.Record, 0, n)
	var prev []byte
	for i := 0; i < n; i++ {
		e := map[string]any{"run_id": "run-1", "index": i, "at": "2026-11-25T12:00:00Z", "state": "s"}
		switch {
		case i == 0:
			e["type"] = "run_started"
			e["started"] = map[string]any{"program": map[string]any{"name": "p", "version": "1", "definition_hash": "sha256:00"}, "input": map[string]any{"k": 1}}
		case i == n-1:
			e["type"] = "run_finished"
			e["finished"] = map[string]any{"status": "completed", "outcome": "DONE"}
		case i%3 == 0:
			e["type"] = "transitioned"
			e["transition"] = map[string]any{"from": "s", "to": "s", "transition": 0, "cause": "guard"}
		case i%3 == 1:
			e["type"] = "task_issued"
			e["task"] = map[string]any{"seq": i, "state": "s", "kind": "llm", "view": map[string]any{}, "output_schema": map[string]any{"type": "object"}, "attempts_left": 3}
		default:
			e["type"] = "submission_accepted"
			e["submission"] = map[string]any{"actor": "model", "output": map[string]any{"answer": fmt.Sprint("text of answer ", i)}}
		}
		if prev != nil {
			e["prev"] = trace.Hex(prev)
		}
		body, err := jsonvalue.Canonical(e)
		if err != nil {
			b.Fatal(err)
		}
		prev = trace.LeafHash(body)
		recs = append(recs, tracestore.Record{Index: uint64(i), Type: e["type"].(string), Body: body, Hash: prev})
	}
	return recs
}

func BenchmarkReceipt(b *testing.B) {
	pub, priv := testKey()
	for _, n := range []int{10, 1000, 100000} {
		recs := syntheticTrace(b, n)
		b.Run(fmt.Sprintf("derive/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				body, err := Derive(recs, uint64(n), KeyID(pub))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Sign(body, priv); err != nil {
					b.Fatal(err)
				}
			}
		})
		body, _ := Derive(recs, uint64(n), KeyID(pub))
		env, _ := Sign(body, priv)
		b.Run(fmt.Sprintf("verify/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if rep := Verify(env, recs, pub); !rep.Valid {
					b.Fatal(rep.Problems)
				}
			}
		})
	}
}
