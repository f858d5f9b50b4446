package tools

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/mcptest"
)

// The catalog's handlers behind mcp-go's own test server (mcptest), which
// speaks JSON-RPC over in-memory pipes with a stdio transport.
func TestToolsUnderMCPTest(t *testing.T) {
	h := newHarness(t, nil)
	srv := mcptest.NewUnstartedServer(t)
	for _, st := range h.srv.ListTools() {
		srv.AddTool(st.Tool, st.Handler)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := srv.Client()
	ctx := context.Background()
	list, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	// approve and list_approvals are registered on the agent server too,
	// for callers holding an approver token; the server's filter, not used
	// here, hides them.
	if err != nil || len(list.Tools) != len(agentTools)+2 {
		t.Fatalf("tools/list: %v, %d tools", err, len(list.Tools))
	}
	res := callRaw(t, c, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json")})
	var started RunResult
	if err := json.Unmarshal([]byte(res.Content[0].(mcp.TextContent).Text), &started); err != nil || started.Task == nil {
		t.Fatalf("start_run: %v %+v", err, started)
	}
	res = callRaw(t, c, "step", map[string]any{"run_id": started.RunID, "seq": started.Task.Seq, "output": answers(t, "refund.refunded.answers.jsonl")[0]})
	var stepped RunResult
	if err := json.Unmarshal([]byte(res.Content[0].(mcp.TextContent).Text), &stepped); err != nil || stepped.Status != "completed" || stepped.Outcome != "REFUNDED" {
		t.Fatalf("step: %v %+v", err, stepped)
	}
}

func callRaw(t *testing.T, c *client.Client, name string, args any) *mcp.CallToolResult {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(context.Background(), req)
	if err != nil || res.IsError {
		t.Fatalf("%s: %v %+v", name, err, res)
	}
	return res
}

// Every protocol revision mcp-go knows is served: the handshake era from
// 2024-11-05 to 2025-11-25 and the stateless 2026-07-28.
func TestEveryProtocolRevision(t *testing.T) {
	for _, version := range mcp.ValidProtocolVersions {
		t.Run(version, func(t *testing.T) {
			h := newHarnessAt(t, version, nil)
			res := h.mustCall(context.Background(), "list_programs", map[string]any{})
			if len(res["programs"].([]any)) != 3 {
				t.Fatalf("%s: %v", version, res)
			}
		})
	}
	if len(mcp.ValidProtocolVersions) < 5 {
		t.Fatalf("mcp-go knows %d revisions: %v", len(mcp.ValidProtocolVersions), mcp.ValidProtocolVersions)
	}
}
