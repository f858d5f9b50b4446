package service

import (
	"context"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// TestRecordFaultChangesNothingButTheTrace pins the fault record: one
// fault_injected event, the run's state, seq, data, attempts and status as
// they were, replay identical with the record in the middle of the trace.
func TestRecordFaultChangesNothingButTheTrace(t *testing.T) {
	ctx := context.Background()
	svc, p, _ := newTestService(t, tracestore.NewMemory())
	a, err := svc.Start(ctx, "test-review", js(t, `{"limit": 5, "author": {"id": "A-1", "name": "Ada"}}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	// An attack first (a capability claim the task does not grant), then
	// its record.
	if _, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Tool: "approve_customer", Output: js(t, `{"score": 1}`)}); code(err) != runtime.CodeCapabilityDenied {
		t.Fatalf("attack: %v", err)
	}
	before, _, _ := svc.Get(ctx, a.RunID)
	rec := runtime.FaultRecord{Fault: "tool_injection", SubAttack: "undeclared_tool", Expected: "capability_denied", Observed: "capability_denied", Detail: "d"}
	fa, err := svc.RecordFault(ctx, a.RunID, rec)
	if err != nil {
		t.Fatal(err)
	}
	after, _, _ := svc.Get(ctx, a.RunID)
	if fa.State != before.State || fa.Seq != before.Seq || len(fa.Transitions) != 0 {
		t.Fatalf("answer moved: %+v", fa)
	}
	same := func(x, y any) bool {
		cx, _ := jsonvalue.Canonical(x)
		cy, _ := jsonvalue.Canonical(y)
		return string(cx) == string(cy)
	}
	if after.State != before.State || after.Seq != before.Seq || after.Status != before.Status || after.Attempts != before.Attempts ||
		after.Rejections != before.Rejections || after.Steps != before.Steps || !same(after.Data, before.Data) || !same(after.Task, before.Task) {
		t.Fatalf("the record changed the run: before %+v, after %+v", before, after)
	}
	if after.NextIndex != before.NextIndex+1 {
		t.Fatalf("events %d → %d, want one more", before.NextIndex, after.NextIndex)
	}
	events, err := svc.Events(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if last.Type != runtime.EventFaultInjected || last.Fault == nil || *last.Fault != rec || last.Seq != a.Seq || last.State != a.State {
		t.Fatalf("last event %+v", last)
	}
	// The run goes on normally after the record, and replays identically.
	n, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: js(t, `{"score": 1}`)})
	if err != nil || len(n.Transitions) == 0 {
		t.Fatalf("continue: %+v %v", n, err)
	}
	if _, err := svc.RecordFault(ctx, a.RunID, runtime.FaultRecord{Fault: "reorder_steps", SubAttack: "exact_duplicate", Expected: "duplicate", Observed: "duplicate"}); err != nil {
		t.Fatal(err)
	}
	// The duplicate of the last accepted answer still gets the original
	// answer after a record.
	dup, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: js(t, `{"score": 1}`)})
	if err != nil || !dup.Duplicate || dup.State != n.State {
		t.Fatalf("duplicate after a record: %+v %v", dup, err)
	}
	events, _ = svc.Events(ctx, a.RunID)
	if d, err := runtime.Replay(p, events); err != nil || d != nil {
		t.Fatalf("replay: %+v %v", d, err)
	}
	if d, err := runtime.CheckPolicy(p, events); err != nil || d != nil {
		t.Fatalf("policy check: %+v %v", d, err)
	}
	// A record without names is refused, and nothing is written.
	if _, err := svc.RecordFault(ctx, a.RunID, runtime.FaultRecord{}); code(err) != runtime.CodeInvalidInput {
		t.Fatalf("empty record: %v", err)
	}
	if again, _ := svc.Events(ctx, a.RunID); len(again) != len(events) {
		t.Fatal("an empty record was written")
	}
}
