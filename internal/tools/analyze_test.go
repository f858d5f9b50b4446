package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/analysis"
)

// refundRuns drives n refund runs to REFUNDED through the tools.
func refundRuns(t *testing.T, h *harness, ctx context.Context, n int) {
	t.Helper()
	for range n {
		res := h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json")})
		end, _ := h.drive(ctx, res["run_id"].(string), res, answers(t, "refund.refunded.answers.jsonl"))
		if end["outcome"] != "REFUNDED" {
			t.Fatalf("refund run ended %v", end)
		}
	}
}

func TestAnalyzeIsForOperatorsOnly(t *testing.T) {
	agent := newHarness(t, nil)
	if _, ok := toolNames(t, agent.c, context.Background())["analyze"]; ok {
		t.Fatal("the agent server lists analyze")
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "analyze"
	req.Params.Arguments = map[string]any{"program": "refund"}
	if res, err := agent.c.CallTool(context.Background(), req); err == nil && !res.IsError {
		t.Fatal("an agent called analyze")
	}
	// On an operator server, an agent caller (HTTP) sees and reaches
	// neither the tool nor the resource.
	op := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator })
	if _, ok := toolNames(t, op.c, as("agent", access.ProfileAgent))["analyze"]; ok {
		t.Fatal("an agent caller sees analyze")
	}
	if _, err := readResource(t, op, as("agent", access.ProfileAgent), "nano-vm://programs/refund/metrics"); err == nil {
		t.Fatal("an agent caller read the metrics resource")
	}
	tl := toolNames(t, op.c, context.Background())["analyze"]
	if a := tl.Annotations; a.ReadOnlyHint == nil || !*a.ReadOnlyHint || !*a.IdempotentHint || *a.DestructiveHint {
		t.Fatalf("analyze annotations %+v", a)
	}
}

func TestMetricsTemplateOnlyForOperators(t *testing.T) {
	for _, tc := range []struct {
		profile access.Profile
		want    bool
	}{{access.ProfileAgent, false}, {access.ProfileOperator, true}} {
		h := newHarness(t, func(c *Config) { c.Profile = tc.profile })
		tpl, err := h.c.ListResourceTemplates(context.Background(), mcp.ListResourceTemplatesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := false
		for _, x := range tpl.ResourceTemplates {
			if x.URITemplate.Raw() == metricsURI {
				got = true
			}
		}
		if got != tc.want {
			t.Errorf("%s: metrics template listed %v, want %v", tc.profile, got, tc.want)
		}
	}
}

func TestAnalyzeRuns(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator })
	h.mustFail(ctx, "analyze", map[string]any{"program": "refund"}, CodeUnknownProgram)
	if _, err := readResource(t, h, ctx, "nano-vm://programs/refund/metrics"); err == nil {
		t.Fatal("metrics of a program without runs")
	}
	refundRuns(t, h, ctx, 3)

	m := h.mustCall(ctx, "analyze", map[string]any{"program": "refund"})
	if m["runs"] != 3.0 || m["program"] != "refund" || m["transition_entropy_bits"] != 0.0 || m["drift"] != nil {
		t.Fatalf("report %v", m)
	}
	for _, k := range []string{"modal_path", "states", "outcomes", "alerts"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s is %v, not an array", k, m[k])
		}
	}
	if m := h.mustCall(ctx, "analyze", map[string]any{"program": "refund", "window": 2}); m["runs"] != 2.0 {
		t.Fatalf("window 2: %v", m["runs"])
	}
	h.mustFail(ctx, "analyze", map[string]any{"program": "refund", "definition_hash": "sha256:nope"}, CodeUnknownProgram)
	h.mustFail(ctx, "analyze", map[string]any{"program": "refund", "window": 0}, CodeInvalidArguments)
	h.mustFail(ctx, "analyze", map[string]any{"program": "refund", "threshold_bits": 0}, CodeInvalidArguments)

	// A baseline saved as the CLI saves it gives a drift; the resource
	// shows the same report.
	rep, err := analysis.Analyze(ctx, h.store, analysis.Query{Program: "refund"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := analysis.SaveBaseline(ctx, h.store, rep); err != nil {
		t.Fatal(err)
	}
	m = h.mustCall(ctx, "analyze", map[string]any{"program": "refund"})
	d, ok := m["drift"].(map[string]any)
	if !ok || d["jsd_bits"] != 0.0 || d["baseline_runs"] != 3.0 {
		t.Fatalf("drift %v", m["drift"])
	}
	text, err := readResource(t, h, ctx, "nano-vm://programs/refund/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(text), &res); err != nil || !jsonEqual(res, m) {
		t.Fatalf("the metrics resource differs from analyze: %v\n%s", err, text)
	}
	if _, err := readResource(t, h, ctx, "nano-vm://programs/nope/metrics"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("metrics of an unknown program: %v", err)
	}
}

// Laboratory runs stay out of analyze and the metrics resource unless
// include_lab asks for them: fault experiments must not drive the alerts.
func TestAnalyzeLeavesOutLabRuns(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator })
	h.mustCall(ctx, "start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json"), "lab": true})
	if res := h.mustFail(ctx, "analyze", map[string]any{"program": "refund"}, CodeUnknownProgram); !strings.Contains(res.Message, "include_lab") {
		t.Errorf("only lab runs: %v does not say how to count them", res)
	}
	refundRuns(t, h, ctx, 2)
	for _, tc := range []struct {
		args map[string]any
		runs float64
	}{
		{map[string]any{"program": "refund"}, 2},
		{map[string]any{"program": "refund", "include_lab": false}, 2},
		{map[string]any{"program": "refund", "include_lab": true}, 3},
	} {
		if m := h.mustCall(ctx, "analyze", tc.args); m["runs"] != tc.runs {
			t.Errorf("analyze %v: %v runs, want %v", tc.args, m["runs"], tc.runs)
		}
	}
	text, err := readResource(t, h, ctx, "nano-vm://programs/refund/metrics")
	var res map[string]any
	if err != nil || json.Unmarshal([]byte(text), &res) != nil || res["runs"] != 2.0 {
		t.Fatalf("the metrics resource: %v runs, %v; want 2", res["runs"], err)
	}
}
