package runtime

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
)

// startCalls starts a run of testdata/toolcalls.yaml with refund and
// notify run by the runtime.
func startCalls(t *testing.T, executors map[string]string) *driver {
	t.Helper()
	p := loadTestProgram(t, "testdata/toolcalls.yaml")
	d := &driver{t: t, p: p, now: t0}
	res, err := Apply(p, nil, Start{RunID: "run-1", Input: js(t, `{"amount": 5}`), Executors: executors, At: t0})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	d.adopt(res)
	return d
}

func TestStartRecordsExecutorsOnlyWhenThereAreSome(t *testing.T) {
	tests := []struct {
		name      string
		executors map[string]string
		recorded  bool
		firstType EventType
	}{
		{"none", nil, false, EventTaskIssued},
		{"empty", map[string]string{}, false, EventTaskIssued},
		{"refund", map[string]string{"refund": "http"}, true, EventToolCallStarted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startCalls(t, tt.executors)
			body, err := EncodeEvent(&d.events[0])
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.Contains(body, []byte(`"executors"`)); got != tt.recorded {
				t.Fatalf("run_started records executors: %t, want %t:\n%s", got, tt.recorded, body)
			}
			if d.events[1].Type != tt.firstType {
				t.Fatalf("entering refund recorded %s, want %s", d.events[1].Type, tt.firstType)
			}
			if (d.run.Call != nil) != tt.recorded || (d.run.Task != nil) == tt.recorded {
				t.Fatalf("call %+v, task %+v", d.run.Call, d.run.Task)
			}
		})
	}
}

func TestIdempotencyKeyIsStableAcrossAttemptsAndDiffersBetweenVisitsAndRuns(t *testing.T) {
	d := startCalls(t, map[string]string{"refund": "http"})
	first := d.run.Call.IdempotencyKey
	if _, err := d.apply(ToolFailure{Seq: 1, CallID: "call-1", Attempt: 1, Class: "transport", Retry: true, At: t0}); err != nil {
		t.Fatal(err)
	}
	if d.run.Call.Attempt != 2 || d.run.Call.IdempotencyKey != first {
		t.Fatalf("retry: attempt %d key %s, want 2 and %s", d.run.Call.Attempt, d.run.Call.IdempotencyKey, first)
	}
	if first != IdempotencyKey("run-1", "refund", 1, "call-1") {
		t.Fatal("the key is not IdempotencyKey(run, state, visit 1, call id)")
	}
	for _, other := range []string{
		IdempotencyKey("run-2", "refund", 1, "call-1"),
		IdempotencyKey("run-1", "refund", 2, "call-1"),
		IdempotencyKey("run-1", "refund", 1, "call-5"),
	} {
		if other == first {
			t.Fatal("another run, visit or call has the same key")
		}
	}
}

func TestStartRefusesExecutorsThatAreNoToolStates(t *testing.T) {
	p := loadTestProgram(t, "testdata/toolcalls.yaml")
	for _, ex := range []map[string]string{{"manual": "http"}, {"nowhere": "http"}, {"refund": ""}} {
		res, err := Apply(p, nil, Start{RunID: "run-1", Input: js(t, `{"amount": 5}`), Executors: ex, At: t0})
		rej, ok := err.(*Rejection)
		if !ok || rej.Code != CodeInvalidInput || len(res.Events) != 0 {
			t.Fatalf("executors %v: %v, %d events; want invalid_input and nothing recorded", ex, err, len(res.Events))
		}
	}
}

// CheckPolicy re-checks the transitions after executed calls: a trace
// whose on_error hop goes elsewhere than the program's edge diverges.
func TestCheckPolicyRefusesAForgedOnErrorEdge(t *testing.T) {
	d := startCalls(t, map[string]string{"refund": "http"})
	if _, err := d.apply(ToolFailure{Seq: 1, CallID: "call-1", Attempt: 1, Class: "tool_error", At: t0}); err != nil {
		t.Fatal(err)
	}
	if div, err := CheckPolicy(d.p, d.events); div != nil || err != nil {
		t.Fatalf("the recorded trace: %+v, %v", div, err)
	}
	forged := append([]Event(nil), d.events...)
	for i := range forged {
		if forged[i].Type == EventTransitioned {
			tr := *forged[i].Transition
			tr.To = "done"
			forged[i].Transition = &tr
		}
	}
	div, err := CheckPolicy(d.p, forged)
	if err != nil || div == nil || div.Field != "transition" {
		t.Fatalf("forged on_error edge: %+v, %v; want a transition divergence", div, err)
	}
}

// Replay feeds recorded outcomes back: a trace whose recorded result was
// altered after the fact diverges where the guards read it.
func TestReplayDivergesOnAnAlteredToolResult(t *testing.T) {
	d := startCalls(t, map[string]string{"refund": "http", "notify": "mcp"})
	if _, err := d.apply(ToolResult{Seq: 1, CallID: "call-1", Attempt: 1, Output: js(t, `{"id": "r", "ok": true}`), At: t0}); err != nil {
		t.Fatal(err)
	}
	if div, err := Replay(d.p, d.events); div != nil || err != nil {
		t.Fatalf("the recorded trace: %+v, %v", div, err)
	}
	altered := append([]Event(nil), d.events...)
	c := *altered[2].Call
	c.Result = js(t, `{"id": "r", "ok": false}`)
	altered[2].Call = &c
	div, err := Replay(d.p, altered)
	if err != nil || div == nil {
		t.Fatalf("altered result: %+v, %v; want a divergence", div, err)
	}
}

func TestWaitingOperatorIsNeitherRunningNorFinished(t *testing.T) {
	d := startCalls(t, map[string]string{"refund": "http"})
	if _, err := d.apply(ToolUnknown{Seq: 1, CallID: "call-1", Attempt: 1, At: t0}); err != nil {
		t.Fatal(err)
	}
	r := d.run
	if r.Status != StatusWaitingOperator || r.Finished() || r.Reason != ReasonToolOutcomeUnknown || r.Call == nil {
		t.Fatalf("status %s finished %t reason %q call %+v", r.Status, r.Finished(), r.Reason, r.Call)
	}
	// A cancel still ends it.
	if _, err := d.apply(Cancel{Principal: "ops", At: t0}); err != nil {
		t.Fatal(err)
	}
	if d.run.Status != StatusCancelled || d.run.Call != nil {
		t.Fatalf("after cancel: %s, call %+v", d.run.Status, d.run.Call)
	}
}

// A trace of format 1 (no executed_by on tool tasks, trace_format /1)
// replays identically under this runtime, which writes both.
func TestFormatOneTraceReplaysIdentically(t *testing.T) {
	d := startCalls(t, nil)
	if _, err := d.submit(`{"id": "r", "ok": true}`, func(s *Submit) { s.Tool = "issue_refund" }); err != nil {
		t.Fatal(err)
	}
	if d.events[1].Task.ExecutedBy != projection.ExecutedByCaller {
		t.Fatalf("a caller's tool task says executed_by %q", d.events[1].Task.ExecutedBy)
	}
	old := append([]Event(nil), d.events...)
	st := *old[0].Started
	st.TraceFormat = trace.FormatV1
	old[0].Started = &st
	for i := range old {
		if old[i].Task != nil {
			task := *old[i].Task
			task.ExecutedBy = ""
			old[i].Task = &task
		}
	}
	if div, err := Replay(d.p, old); div != nil || err != nil {
		t.Fatalf("format 1 trace: %+v, %v", div, err)
	}
}

// The model's view of a run waiting on a runtime call names the call's
// state and that the runtime runs it: not its arguments, which read the
// run input the model's earlier tasks never showed.
func TestInspectShowsTheModelNoCallArguments(t *testing.T) {
	d := startCalls(t, map[string]string{"refund": "http"})
	v := Inspect(d.run, d.p, d.events, projection.Model)
	task, ok := v.Data.(*projection.Task)
	if !ok || task.State != "refund" || task.ExecutedBy != projection.ExecutedByRuntime || task.Tool != nil || len(task.View) != 0 {
		t.Fatalf("the model's view: %#v", v.Data)
	}
	body, _ := EncodeEvent(&Event{Task: task})
	if bytes.Contains(body, []byte(`"amount"`)) {
		t.Fatalf("the model's view holds the call's arguments: %s", body)
	}
}

// An operator's resolution the run cannot take is refused with the reason
// in the rejection's details, which reach the operator only, never in its
// message, which the shell logs: a validation message may quote the
// result, and logs hold no personal data above debug level.
func TestARefusedResolutionKeepsTheResultOutOfTheMessage(t *testing.T) {
	d := startCalls(t, map[string]string{"refund": "http"})
	if _, err := d.apply(ToolUnknown{Seq: 1, CallID: "call-1", Attempt: 1, At: t0}); err != nil {
		t.Fatal(err)
	}
	_, err := d.apply(ResolveTool{CallID: "call-1", Principal: "ops", Output: js(t, `{"ok": "Ada Lovelace"}`), Size: 22, At: t0})
	rej, ok := err.(*Rejection)
	if !ok || rej.Code != CodeSchemaViolation {
		t.Fatalf("resolution: %v, want a schema_violation rejection", err)
	}
	if strings.Contains(rej.Message, "/ok") || len(rej.Details) != 1 || !strings.Contains(rej.Details[0], "/ok") {
		t.Fatalf("rejection message %q, details %q; want the violation in the details only", rej.Message, rej.Details)
	}
	if d.run.Status != StatusWaitingOperator {
		t.Fatalf("run %s, want it still waiting for the operator", d.run.Status)
	}
}

// CheckPolicy takes the on_error edge only right after a call failed for
// good: a trace whose call completed, yet whose run took on_error,
// diverges at that hop.
func TestCheckPolicyRefusesAnOnErrorHopAfterACompletedCall(t *testing.T) {
	d := startCalls(t, map[string]string{"refund": "http"})
	if _, err := d.apply(ToolFailure{Seq: 1, CallID: "call-1", Attempt: 1, Class: "tool_error", At: t0}); err != nil {
		t.Fatal(err)
	}
	forged := append([]Event(nil), d.events...)
	hop := -1
	for i := range forged {
		if forged[i].Type == EventToolCallFailed {
			forged[i].Type = EventToolCallCompleted
			forged[i].Call = &ToolCallRecord{CallID: "call-1", Attempt: 1, Result: map[string]any{"ok": false}}
		}
		if forged[i].Type == EventTransitioned && forged[i].Transition.Cause == CauseOnError {
			hop = i
		}
	}
	div, err := CheckPolicy(d.p, forged)
	if err != nil || div == nil || div.Field != "transition" || div.Index != forged[hop].Index {
		t.Fatalf("on_error after a completed call: %+v, %v; want a transition divergence at event %d", div, err, hop)
	}
}
