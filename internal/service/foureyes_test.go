package service

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// fourEyesService runs the small payment to a decision: alice approves
// through one service, bob through another that shares the store (a
// restart between the two).
func fourEyesService(t *testing.T) (tracestore.Store, *Service, string) {
	t.Helper()
	ctx := context.Background()
	store := tracestore.NewMemory()
	p := fourEyes(t)
	newSvc := func() *Service {
		return New(Options{Store: store, Clock: func() time.Time { return t0 }, Secret: bytes.Repeat([]byte{7}, 32),
			Rand: rand.NewChaCha8([32]byte{5}), NewID: func() string { return "run-4e" }})
	}
	svc := newSvc()
	src := readTestdata(t, "../runtime/testdata/four-eyes.yaml")
	if err := svc.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	a, err := svc.Start(ctx, p.Name, js(t, smallPayment), "ops")
	if err != nil || a.ApprovalsNeeded != 2 || a.ApprovalsGiven != 0 {
		t.Fatalf("start: %+v %v", a, err)
	}
	first, err := svc.Decide(ctx, a.RunID, runtime.Decide{Seq: a.Seq, Role: "officer", Principal: "alice", Decision: js(t, `{"release": true, "note": "Pay Ms Payee"}`)})
	if err != nil || first.State != "release" || first.Seq != a.Seq || first.Task == nil || first.ApprovalsNeeded != 2 || first.ApprovalsGiven != 1 || len(first.Transitions) != 0 {
		t.Fatalf("first approval: %+v %v", first, err)
	}
	again, err := svc.Decide(ctx, a.RunID, runtime.Decide{Seq: a.Seq, Role: "officer", Principal: "alice", Decision: js(t, `{"note": "Pay Ms Payee", "release": true}`)})
	if err != nil || !again.Duplicate || again.ApprovalsGiven != 1 || again.State != "release" || again.Task == nil {
		t.Fatalf("repeated approval: %+v %v", again, err)
	}

	fresh := newSvc()
	run, _, err := fresh.Get(ctx, a.RunID)
	if err != nil || run.Pending == nil || !slices.Equal(run.Pending.Approvers, []string{"alice"}) || run.ApprovalsGiven != 1 {
		t.Fatalf("reloaded run: %+v %v", run, err)
	}
	done, err := fresh.Decide(ctx, a.RunID, runtime.Decide{Seq: a.Seq, Role: "officer", Principal: "bob", Decision: js(t, `{"release": true, "note": "Pay Ms Payee"}`)})
	if err != nil || done.Outcome != "RELEASED" || done.ApprovalsNeeded != 0 {
		t.Fatalf("second approval: %+v %v", done, err)
	}
	dup, err := fresh.Decide(ctx, a.RunID, runtime.Decide{Seq: a.Seq, Role: "officer", Principal: "alice", Decision: js(t, `{"release": true, "note": "Pay Ms Payee"}`)})
	if err != nil || !dup.Duplicate || dup.Outcome != "RELEASED" {
		t.Fatalf("first approver retrying after the decision: %+v %v", dup, err)
	}
	return store, fresh, a.RunID
}

func TestFourEyesThroughTheService(t *testing.T) {
	store, svc, id := fourEyesService(t)
	ctx := context.Background()
	recs, err := store.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	// The pending decision's note is personal data: sealed at rest.
	var sealed bool
	for _, r := range recs {
		if bytes.Contains(r.Body, []byte("Pay Ms Payee")) {
			t.Fatalf("event %d holds personal data in clear: %s", r.Index, r.Body)
		}
		if r.Type == string(runtime.EventApprovalRecorded) {
			v, _ := jsonvalue.Decode(r.Body)
			note := v.(map[string]any)["approval"].(map[string]any)["output"].(map[string]any)["note"]
			sealed = projection.IsSealed(note)
		}
	}
	if !sealed {
		t.Fatal("approval_recorded's note is not sealed")
	}
	events, err := svc.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rec := lastOf(events, runtime.EventApprovalRecorded); rec == nil || !runtime.SameJSON(rec.Approval.Output, js(t, `{"release": true, "note": "Pay Ms Payee"}`)) {
		t.Fatalf("approval_recorded does not open: %+v", rec)
	}
	if d, err := runtime.Replay(fourEyes(t), events); err != nil || d != nil {
		t.Fatalf("replay: divergence %+v, error %v", d, err)
	}
	if d, err := runtime.CheckPolicy(fourEyes(t), events); err != nil || d != nil {
		t.Fatalf("policy: divergence %+v, error %v", d, err)
	}
	// Replay notices a changed approver: the recorded events name alice.
	for i := range events {
		if events[i].Type == runtime.EventInputReceived && events[i].Input.Principal == "alice" {
			in := *events[i].Input
			in.Principal = "mallory"
			events[i].Input = &in
			break
		}
	}
	if d, _ := runtime.Replay(fourEyes(t), events); d == nil || d.Field != "approval" {
		t.Fatalf("a changed approver replayed identically: %+v", d)
	}
}
