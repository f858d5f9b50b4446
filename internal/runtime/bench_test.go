package runtime

import (
	"testing"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

func exampleProgram(b testing.TB, name string) *program.Program {
	b.Helper()
	p, _ := examples.MustLoad(name)
	return p
}

func exampleJSON(b testing.TB, file string) any {
	b.Helper()
	data, err := examples.FS.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	v, err := jsonvalue.Decode(data)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkRefundRun is a whole in-process run of the refund example through
// the pure core: start, one model step validated against its schema, the
// decision's guards under their cost limit, the terminal. Program loading,
// persistence and hashing are outside it. runs/s = 1e9 / (ns/op).
func BenchmarkRefundRun(b *testing.B) {
	p := exampleProgram(b, "refund")
	input := exampleJSON(b, "refund.input.json")
	output, err := jsonvalue.Decode([]byte(`{"eligible": true, "amount_cents": 4990, "reason": "Item arrived damaged."}`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Apply(p, nil, Start{RunID: "r", Input: input, At: t0})
		if err != nil {
			b.Fatal(err)
		}
		res, err = Apply(p, res.Run, Submit{Seq: 1, Output: output, At: t0})
		if err != nil || res.Run.Outcome != "REFUNDED" {
			b.Fatalf("run ended %s: %v", res.Run.Outcome, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
}

// BenchmarkApplyKYCStep is one Apply of a typical step: the agent_review
// answer of the KYC example (schema validation, guards, the approval task).
func BenchmarkApplyKYCStep(b *testing.B) {
	p := exampleProgram(b, "kyc-onboarding")
	d := newDriver(b, p, string(mustRead(b, "kyc-onboarding.input.json")))
	answers := readLines(b, "kyc-onboarding.approved.answers.jsonl")
	// Drive the run to agent_review with the approved script (its first
	// line is a deliberate rejection).
	for _, line := range answers {
		if d.run.State == "agent_review" {
			break
		}
		s := Submit{Seq: d.run.Seq, Output: js(b, line), At: t0}
		if d.run.Task.Tool != nil {
			s.Tool = d.run.Task.Tool.Name
		}
		d.apply(s)
	}
	if d.run.State != "agent_review" {
		b.Fatalf("run is at %s, not agent_review", d.run.State)
	}
	review := js(b, `{"risk_level": "low", "recommendation": "approve", "risk_factors": [], "edd_measures": [], "rationale": "Nothing found."}`)
	run := d.run
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Apply(p, run, Submit{Seq: run.Seq, Output: review, At: t0})
		if err != nil || res.Run.State != "human_approval" {
			b.Fatalf("at %s: %v", res.Run.State, err)
		}
	}
}

func mustRead(b testing.TB, file string) []byte {
	data, err := examples.FS.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func readLines(b testing.TB, file string) []string {
	var out []string
	for _, l := range splitLines(string(mustRead(b, file))) {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// BenchmarkApplyToolLoopStep is the core's share of one executed tool
// call, as the service makes it: the caller's answer (which records the
// call's intent) and the tool's result (back to the caller's state), each
// applied to the run the one before left, so the run grows as a long run's
// does. BenchmarkExecutedToolCall in internal/service is the whole step.
func BenchmarkApplyToolLoopStep(b *testing.B) {
	p := sides(b)
	tool := map[string]any{"side": "tool"}
	result := map[string]any{"message": "hi"}
	run := startSides(b, p, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if run.Visits["ask"] == 10000 {
			b.StopTimer()
			run = startSides(b, p, 0)
			b.StartTimer()
		}
		res, err := Apply(p, run, Submit{Seq: run.Seq, Output: tool, Size: 15, At: t0})
		if err != nil || res.Run.Call == nil {
			b.Fatalf("submit at %s: %v", res.Run.State, err)
		}
		c := res.Run.Call
		if res, err = Apply(p, res.Run, ToolResult{Seq: c.Seq, CallID: c.CallID, Attempt: c.Attempt, Output: result, Size: 16, At: t0}); err != nil || res.Run.State != "ask" {
			b.Fatalf("result at %s: %v", res.Run.State, err)
		}
		run = res.Run
	}
}
