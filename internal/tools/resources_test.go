package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

func readResource(t *testing.T, h *harness, ctx context.Context, uri string) (string, error) {
	t.Helper()
	req := mcp.ReadResourceRequest{}
	req.Params.URI = uri
	res, err := h.c.ReadResource(ctx, req)
	if err != nil {
		return "", err
	}
	if len(res.Contents) != 1 {
		t.Fatalf("%s: %d contents", uri, len(res.Contents))
	}
	return res.Contents[0].(mcp.TextResourceContents).Text, nil
}

// Evaluator blindness holds for resources: an agent reading a program
// learns its name, description and input schema, never a guard.
func TestProgramResourceByProfile(t *testing.T) {
	agent := newHarness(t, nil)
	text, err := readResource(t, agent, context.Background(), "nano-vm://programs/kyc-onboarding")
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"when:", "sanctions.status", "transitions", "mermaid", "max_attempts"} {
		if strings.Contains(text, leak) {
			t.Errorf("the agent's program resource shows %q", leak)
		}
	}
	var info ProgramInfo
	if err := json.Unmarshal([]byte(text), &info); err != nil || info.Name != "kyc-onboarding" || info.InputSchema == nil {
		t.Fatalf("agent program resource: %v %+v", err, info)
	}

	op := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator })
	text, err = readResource(t, op, context.Background(), "nano-vm://programs/kyc-onboarding")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"```mermaid", "flowchart", "transitions:", "when:"} {
		if !strings.Contains(text, want) {
			t.Errorf("the operator's program resource lacks %q", want)
		}
	}
	if _, err := readResource(t, op, context.Background(), "nano-vm://programs/nope"); err == nil {
		t.Fatal("an unknown program was read")
	}
}

func TestResourceListsByProfile(t *testing.T) {
	for _, tc := range []struct {
		profile access.Profile
		trace   bool
	}{{access.ProfileAgent, false}, {access.ProfileOperator, true}} {
		h := newHarness(t, func(c *Config) { c.Profile = tc.profile })
		ctx := context.Background()
		res, err := h.c.ListResources(ctx, mcp.ListResourcesRequest{})
		if err != nil || len(res.Resources) != 3 {
			t.Fatalf("%s: resources %v %v", tc.profile, res, err)
		}
		tpl, err := h.c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		hasTrace := false
		for _, x := range tpl.ResourceTemplates {
			if strings.Contains(x.URITemplate.Raw(), "/trace") {
				hasTrace = true
			}
		}
		if hasTrace != tc.trace {
			t.Errorf("%s: trace template listed %v, want %v", tc.profile, hasTrace, tc.trace)
		}
	}
}

func TestTraceResourcePages(t *testing.T) {
	defer func(n int) { tracePageEvents = n }(tracePageEvents)
	tracePageEvents = 3
	h := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator })
	ctx := context.Background()
	res := h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json")})
	runID := res["run_id"].(string)
	// Rejected steps lengthen the trace past one page.
	tk := task(t, res)
	for range 2 {
		h.call(ctx, "step", map[string]any{"run_id": runID, "seq": seqOf(t, tk) + 7, "output": map[string]any{}})
	}
	recs, _ := h.store.Load(ctx, runID)
	uri := "nano-vm://runs/" + runID + "/trace"
	var all []json.RawMessage
	for uri != "" {
		text, err := readResource(t, h, ctx, uri)
		if err != nil {
			t.Fatal(err)
		}
		var page TracePage
		if err := json.Unmarshal([]byte(text), &page); err != nil {
			t.Fatal(err)
		}
		if page.Total != len(recs) {
			t.Fatalf("total %d, want %d", page.Total, len(recs))
		}
		all = append(all, page.Events...)
		uri = page.Next
	}
	if len(all) != len(recs) {
		t.Fatalf("pages hold %d events, want %d", len(all), len(recs))
	}
	for i := range recs {
		if string(all[i]) != string(recs[i].Body) {
			t.Fatalf("event %d differs from the stored record", i)
		}
	}
	rec, err := readResource(t, h, ctx, "nano-vm://runs/"+runID+"/receipt")
	if err != nil || !strings.Contains(rec, `"signature"`) {
		t.Fatalf("receipt resource: %v %s", err, rec)
	}
	// An agent cannot read traces, nor another principal's receipt.
	agent := newHarness(t, nil)
	if _, err := readResource(t, agent, ctx, "nano-vm://runs/"+runID+"/trace"); err == nil {
		t.Fatal("an agent read a trace")
	}
	if _, err := readResource(t, h, as("mallory", access.ProfileAgent), "nano-vm://runs/"+runID+"/receipt"); err == nil {
		t.Fatal("mallory read another principal's receipt")
	}
}

func TestDriveRunPrompt(t *testing.T) {
	h := newHarness(t, nil)
	req := mcp.GetPromptRequest{}
	req.Params.Name = "drive_run"
	req.Params.Arguments = map[string]string{"program": "refund"}
	res, err := h.c.GetPrompt(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	text := res.Messages[0].Content.(mcp.TextContent).Text
	for _, want := range []string{"start_run", "step", "seq", `"refund"`, "waiting_approval", "stale_seq"} {
		if !strings.Contains(text, want) {
			t.Errorf("drive_run does not mention %s", want)
		}
	}
}
