package tools

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

// BenchmarkStepHandler is one governed step through the tools layer, in
// process on a memory store: argument checks, the service, the result's
// encoding. Runs are started outside the timer.
func BenchmarkStepHandler(b *testing.B) {
	h := newHarness(b, nil)
	hd := &handlers{Config: h.cfg, inputs: compileInputs(), stateKey: []byte("k")}
	ctx := context.Background()
	c := access.Principal{ID: access.IDLocal, Profile: access.ProfileAgent}
	input := exampleInput(b, "refund.input.json")
	output := answers(b, "refund.refunded.answers.jsonl")[0]
	start := specByName("start_run")
	step := specByName("step")
	args := make([][]byte, b.N)
	for i := range args {
		raw, _ := json.Marshal(map[string]any{"program": "refund", "input": json.RawMessage(input)})
		req := mcp.CallToolRequest{}
		req.Params.RawArguments = raw
		out, err := hd.call(ctx, start, c, req)
		if err != nil {
			b.Fatal(err)
		}
		r := out.(RunResult)
		args[i], _ = json.Marshal(map[string]any{"run_id": r.RunID, "seq": r.Task.Seq, "output": output})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req := mcp.CallToolRequest{}
		req.Params.RawArguments = args[i]
		out, err := hd.call(ctx, step, c, req)
		if res := hd.render(step, out, err); res.IsError {
			b.Fatal(res.Content)
		}
	}
}
