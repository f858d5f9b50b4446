package runtime

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Four-eyes approvals: testdata/four-eyes.yaml routes an amount up to 1000
// to release (two officers, a one-hour timeout) and a larger one to board
// (three directors).

const (
	smallPayment = `{"amount": 10, "payee": {"id": "p-1"}}`
	largePayment = `{"amount": 5000}`
)

func fourEyes(t testing.TB) *program.Program {
	t.Helper()
	return loadTestProgram(t, "testdata/four-eyes.yaml")
}

// decide submits a decision for the open task as principal, with the
// state's role unless role is given.
func (d *driver) decide(principal, decision string, role ...string) (Result, error) {
	d.t.Helper()
	r := d.p.States[d.run.State].Role
	if len(role) > 0 {
		r = role[0]
	}
	return d.apply(Decide{Seq: d.run.Seq, Role: r, Principal: principal, Decision: js(d.t, decision), At: d.now})
}

func types(events []Event) string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = string(e.Type)
	}
	return strings.Join(out, " ")
}

func lastOf(events []Event, typ EventType) *Event {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Type == typ {
			return &events[i]
		}
	}
	return nil
}

func TestTwoOfTwoApprovalsTakeEffectOnTheSecondDistinctApprover(t *testing.T) {
	d := newDriver(t, fourEyes(t), smallPayment)
	if d.run.State != "release" || d.run.ApprovalsNeeded != 2 || d.run.ApprovalsGiven != 0 {
		t.Fatalf("at %s, approvals %d/%d: want release, 0/2", d.run.State, d.run.ApprovalsGiven, d.run.ApprovalsNeeded)
	}
	seq := d.run.Seq
	res, err := d.decide("alice", `{"release": true, "note": "invoice 7"}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := types(res.Events); got != "input_received approval_recorded" {
		t.Fatalf("first approval: events %s", got)
	}
	rec := res.Events[1]
	if rec.Seq != seq || rec.State != "release" || rec.Approval.Principal != "alice" || rec.Approval.Role != "officer" ||
		rec.Approval.Count != 1 || rec.Approval.Needed != 2 || rec.Approval.Discarded != 0 || rec.Approval.Actor != ActorHuman {
		t.Fatalf("approval_recorded %+v %+v", rec, rec.Approval)
	}
	if in := res.Events[0].Input; in.Kind != "decide" || in.Principal != "alice" || in.Role != "officer" {
		t.Fatalf("input record %+v does not carry the approver", in)
	}
	if d.run.State != "release" || d.run.Seq != seq || d.run.Task == nil || d.run.ApprovalsGiven != 1 || d.run.Data["release"] != nil {
		t.Fatalf("a partial approval moved the run: %+v", d.run)
	}
	// The second officer sends the same decision, spelt differently.
	res, err = d.decide("bob", `{"note": "invoice 7", "release": true}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := types(res.Events); got != "input_received submission_accepted guard_evaluated transitioned run_finished" {
		t.Fatalf("second approval: events %s", got)
	}
	sub := res.Events[1].Submission
	if sub.Principal != "bob" || !slices.Equal(sub.Approvers, []string{"alice", "bob"}) || sub.Role != "officer" {
		t.Fatalf("submission %+v", sub)
	}
	if d.run.Outcome != "RELEASED" || d.run.Pending != nil || d.run.ApprovalsNeeded != 0 || d.run.ApprovalsGiven != 0 {
		t.Fatalf("run %+v", d.run)
	}
}

func TestSameApproverTwiceIsADuplicate(t *testing.T) {
	d := newDriver(t, fourEyes(t), smallPayment)
	if _, err := d.decide("alice", `{"release": true}`); err != nil {
		t.Fatal(err)
	}
	n := len(d.events)
	res, err := d.decide("alice", `{"release": true}`)
	if err != nil || !res.Duplicate || !res.PendingApproval || len(res.Events) != 0 {
		t.Fatalf("repeat: duplicate=%v pending=%v events=%d err=%v", res.Duplicate, res.PendingApproval, len(res.Events), err)
	}
	if len(d.events) != n || d.run.State != "release" || d.run.ApprovalsGiven != 1 {
		t.Fatalf("a repeated approval counted: at %s with %d approvals", d.run.State, d.run.ApprovalsGiven)
	}
	if _, err := d.decide("bob", `{"release": true}`); err != nil || d.run.Outcome != "RELEASED" {
		t.Fatalf("second approver: %v, outcome %s", err, d.run.Outcome)
	}
	// After the decision took effect, each of its approvers may retry; a
	// bystander sending the same decision is no duplicate.
	for _, who := range []string{"alice", "bob"} {
		if res, err := d.decide(who, `{"release": true}`, "officer"); err != nil || !res.Duplicate || res.PendingApproval {
			t.Fatalf("%s retrying after the decision: duplicate=%v err=%v", who, res.Duplicate, err)
		}
	}
	if res, err := d.decide("carol", `{"release": true}`, "officer"); res.Duplicate || code(err) != CodeRunFinished {
		t.Fatalf("a bystander: duplicate=%v err=%v", res.Duplicate, err)
	}
}

func TestDisagreeingApproverRestartsTheCount(t *testing.T) {
	d := newDriver(t, fourEyes(t), smallPayment)
	d.decide("alice", `{"release": true}`)
	res, err := d.decide("bob", `{"release": false}`)
	if err != nil {
		t.Fatal(err)
	}
	rec := lastOf(res.Events, EventApprovalRecorded)
	if rec == nil || rec.Approval.Count != 1 || rec.Approval.Discarded != 1 || rec.Approval.Principal != "bob" {
		t.Fatalf("disagreement: events %s, record %+v", types(res.Events), rec)
	}
	if pd := d.run.Pending; pd == nil || !slices.Equal(pd.Approvers, []string{"bob"}) || !sameJSON(pd.Decision, js(t, `{"release": false}`)) {
		t.Fatalf("pending %+v", d.run.Pending)
	}
	// Alice's earlier approval is gone: sending it again starts over.
	res, _ = d.decide("alice", `{"release": true}`)
	if rec := lastOf(res.Events, EventApprovalRecorded); rec == nil || rec.Approval.Count != 1 || rec.Approval.Discarded != 1 {
		t.Fatalf("alice again: events %s", types(res.Events))
	}
	// Changing one's mind counts as a new decision too.
	res, _ = d.decide("alice", `{"release": false}`)
	if rec := lastOf(res.Events, EventApprovalRecorded); rec == nil || rec.Approval.Count != 1 || rec.Approval.Discarded != 1 {
		t.Fatalf("alice changing her mind: events %s", types(res.Events))
	}
	res, err = d.decide("carol", `{"release": false}`)
	if err != nil || d.run.Outcome != "HELD" {
		t.Fatalf("carol: %v, outcome %s", err, d.run.Outcome)
	}
	if sub := res.Events[1].Submission; !slices.Equal(sub.Approvers, []string{"alice", "carol"}) {
		t.Fatalf("approvers %v", sub.Approvers)
	}
}

func TestFourEyesRejectionsKeepThePendingDecision(t *testing.T) {
	tests := []struct {
		name    string
		in      func(d *driver) Input
		code    Code
		counted bool
	}{
		{"wrong role", func(d *driver) Input {
			return Decide{Seq: d.run.Seq, Role: "clerk", Principal: "bob", Decision: js(t, `{"release": true}`), At: t0}
		}, CodeCapabilityDenied, true},
		{"no principal", func(d *driver) Input {
			return Decide{Seq: d.run.Seq, Role: "officer", Decision: js(t, `{"release": true}`), At: t0}
		}, CodeInvalidInput, false},
		{"schema violation", func(d *driver) Input {
			return Decide{Seq: d.run.Seq, Role: "officer", Principal: "bob", Decision: js(t, `{"release": "yes"}`), At: t0}
		}, CodeSchemaViolation, true},
		{"stale seq", func(d *driver) Input {
			return Decide{Seq: d.run.Seq + 1, Role: "officer", Principal: "bob", Decision: js(t, `{"release": true}`), At: t0}
		}, CodeStaleSeq, false},
		{"a model step", func(d *driver) Input {
			// Not bob's: a submitter may not approve (separation of duties).
			return Submit{Seq: d.run.Seq, Principal: "agent", Output: js(t, `{"release": true}`), At: t0}
		}, CodeApprovalRequired, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, fourEyes(t), smallPayment)
			d.decide("alice", `{"release": true}`)
			pending := d.run.Pending
			res, err := d.apply(tt.in(d))
			if code(err) != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
			if rec := res.Events[len(res.Events)-1].Rejection; rec.Counted != tt.counted {
				t.Fatalf("counted %v, want %v", rec.Counted, tt.counted)
			}
			if d.run.Pending != pending || d.run.ApprovalsGiven != 1 {
				t.Fatalf("the rejection touched the pending decision: %+v", d.run.Pending)
			}
			if _, err := d.decide("bob", `{"release": true}`); err != nil || d.run.Outcome != "RELEASED" {
				t.Fatalf("second approver after the rejection: %v, outcome %s", err, d.run.Outcome)
			}
		})
	}
}

func TestThreeOfThreeApprovals(t *testing.T) {
	d := newDriver(t, fourEyes(t), largePayment)
	if d.run.State != "board" || d.run.ApprovalsNeeded != 3 {
		t.Fatalf("at %s needing %d", d.run.State, d.run.ApprovalsNeeded)
	}
	for i, who := range []string{"ann", "ben"} {
		res, err := d.decide(who, `{"release": true}`)
		if err != nil || lastOf(res.Events, EventApprovalRecorded).Approval.Count != i+1 || d.run.ApprovalsGiven != i+1 {
			t.Fatalf("%s: %v, events %s", who, err, types(res.Events))
		}
	}
	res, err := d.decide("cat", `{"release": true}`)
	if err != nil || d.run.Outcome != "RELEASED" {
		t.Fatalf("third: %v, outcome %s", err, d.run.Outcome)
	}
	if sub := lastOf(res.Events, EventSubmissionAccepted).Submission; !slices.Equal(sub.Approvers, []string{"ann", "ben", "cat"}) {
		t.Fatalf("approvers %v", sub.Approvers)
	}
}

func TestTimeoutAndCancelWhileApprovalsArePending(t *testing.T) {
	t.Run("tick", func(t *testing.T) {
		d := newDriver(t, fourEyes(t), smallPayment)
		d.decide("alice", `{"release": true}`)
		res, err := d.apply(Tick{At: t0.Add(time.Hour)})
		if err != nil || types(res.Events) != "input_received task_expired transitioned run_finished" || d.run.Outcome != "EXPIRED" {
			t.Fatalf("tick: %v, events %s, outcome %s", err, types(res.Events), d.run.Outcome)
		}
		if d.run.Pending != nil || d.run.ApprovalsGiven != 0 {
			t.Fatalf("pending decision survived the timeout: %+v", d.run.Pending)
		}
	})
	t.Run("late second approver", func(t *testing.T) {
		d := newDriver(t, fourEyes(t), smallPayment)
		d.decide("alice", `{"release": true}`)
		d.now = t0.Add(2 * time.Hour)
		if _, err := d.decide("bob", `{"release": true}`); code(err) != CodeDeadlineExceeded || d.run.Outcome != "EXPIRED" {
			t.Fatalf("late: %v, outcome %s", err, d.run.Outcome)
		}
	})
	t.Run("late repeat of a counted approval", func(t *testing.T) {
		d := newDriver(t, fourEyes(t), smallPayment)
		d.decide("alice", `{"release": true}`)
		d.now = t0.Add(2 * time.Hour)
		if res, err := d.decide("alice", `{"release": true}`); res.Duplicate || code(err) != CodeDeadlineExceeded {
			t.Fatalf("late repeat: duplicate=%v %v", res.Duplicate, err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		d := newDriver(t, fourEyes(t), smallPayment)
		d.decide("alice", `{"release": true}`)
		if _, err := d.apply(Cancel{Principal: "ops", At: t0}); err != nil || d.run.Status != StatusCancelled || d.run.Pending != nil {
			t.Fatalf("cancel: %v, %+v", err, d.run)
		}
	})
	t.Run("attempts exhausted", func(t *testing.T) {
		d := newDriver(t, fourEyes(t), smallPayment)
		d.decide("alice", `{"release": true}`)
		d.decide("bob", `{"release": true}`, "clerk")
		d.decide("bob", `{"release": true}`, "clerk")
		if d.run.Status != StatusFailed || d.run.Pending != nil {
			t.Fatalf("two counted rejections: %s, pending %+v", d.run.Status, d.run.Pending)
		}
	})
}

func TestFoldRefusesApprovalsThatDoNotAddUp(t *testing.T) {
	p := fourEyes(t)
	d := newDriver(t, p, smallPayment)
	d.decide("alice", `{"release": true}`)
	d.decide("bob", `{"release": false}`)
	for _, tamper := range []func(a *ApprovalRecord){
		func(a *ApprovalRecord) { a.Count = 2 },
		func(a *ApprovalRecord) { a.Count = 0 },
	} {
		events := slices.Clone(d.events)
		rec := *events[len(events)-1].Approval
		tamper(&rec)
		events[len(events)-1].Approval = &rec
		if _, err := Fold(p, events); err == nil {
			t.Errorf("fold accepted approval count %d", rec.Count)
		}
	}
}

// fourEyesService runs the small payment to a decision: alice approves
// through one service, bob through another that shares the store (a
// restart between the two).
func fourEyesService(t *testing.T) (tracestore.Store, *Service, string) {
	t.Helper()
	ctx := context.Background()
	store := tracestore.NewMemory()
	p := fourEyes(t)
	newSvc := func() *Service {
		return NewService(Options{Store: store, Clock: func() time.Time { return t0 }, Secret: bytes.Repeat([]byte{7}, 32),
			Rand: rand.NewChaCha8([32]byte{5}), NewID: func() string { return "run-4e" }})
	}
	svc := newSvc()
	src := readTestdata(t, "testdata/four-eyes.yaml")
	if err := svc.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	a, err := svc.Start(ctx, p.Name, js(t, smallPayment), "ops")
	if err != nil || a.ApprovalsNeeded != 2 || a.ApprovalsGiven != 0 {
		t.Fatalf("start: %+v %v", a, err)
	}
	first, err := svc.Decide(ctx, a.RunID, Decide{Seq: a.Seq, Role: "officer", Principal: "alice", Decision: js(t, `{"release": true, "note": "Pay Ms Payee"}`)})
	if err != nil || first.State != "release" || first.Seq != a.Seq || first.Task == nil || first.ApprovalsNeeded != 2 || first.ApprovalsGiven != 1 || len(first.Transitions) != 0 {
		t.Fatalf("first approval: %+v %v", first, err)
	}
	again, err := svc.Decide(ctx, a.RunID, Decide{Seq: a.Seq, Role: "officer", Principal: "alice", Decision: js(t, `{"note": "Pay Ms Payee", "release": true}`)})
	if err != nil || !again.Duplicate || again.ApprovalsGiven != 1 || again.State != "release" || again.Task == nil {
		t.Fatalf("repeated approval: %+v %v", again, err)
	}

	fresh := newSvc()
	run, _, err := fresh.Get(ctx, a.RunID)
	if err != nil || run.Pending == nil || !slices.Equal(run.Pending.Approvers, []string{"alice"}) || run.ApprovalsGiven != 1 {
		t.Fatalf("reloaded run: %+v %v", run, err)
	}
	done, err := fresh.Decide(ctx, a.RunID, Decide{Seq: a.Seq, Role: "officer", Principal: "bob", Decision: js(t, `{"release": true, "note": "Pay Ms Payee"}`)})
	if err != nil || done.Outcome != "RELEASED" || done.ApprovalsNeeded != 0 {
		t.Fatalf("second approval: %+v %v", done, err)
	}
	dup, err := fresh.Decide(ctx, a.RunID, Decide{Seq: a.Seq, Role: "officer", Principal: "alice", Decision: js(t, `{"release": true, "note": "Pay Ms Payee"}`)})
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
		if r.Type == string(EventApprovalRecorded) {
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
	if rec := lastOf(events, EventApprovalRecorded); rec == nil || !sameJSON(rec.Approval.Output, js(t, `{"release": true, "note": "Pay Ms Payee"}`)) {
		t.Fatalf("approval_recorded does not open: %+v", rec)
	}
	if d, err := Replay(fourEyes(t), events); err != nil || d != nil {
		t.Fatalf("replay: divergence %+v, error %v", d, err)
	}
	if d, err := CheckPolicy(fourEyes(t), events); err != nil || d != nil {
		t.Fatalf("policy: divergence %+v, error %v", d, err)
	}
	// Replay notices a changed approver: the recorded events name alice.
	for i := range events {
		if events[i].Type == EventInputReceived && events[i].Input.Principal == "alice" {
			in := *events[i].Input
			in.Principal = "mallory"
			events[i].Input = &in
			break
		}
	}
	if d, _ := Replay(fourEyes(t), events); d == nil || d.Field != "approval" {
		t.Fatalf("a changed approver replayed identically: %+v", d)
	}
}

func TestFourEyesTracesAreByteIdentical(t *testing.T) {
	p := fourEyes(t)
	trace := func() []byte {
		d := newDriver(t, p, largePayment)
		d.decide("ann", `{"release": true}`)
		d.decide("ben", `{"release": false}`)
		d.decide("ben", `{"release": false}`)
		d.decide("ann", `{"release": false}`)
		d.decide("cat", `{"release": false}`)
		recs, err := EncodeEvents(d.events)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		for _, r := range recs {
			b.Write(r.Body)
			b.WriteByte('\n')
		}
		return b.Bytes()
	}
	a, b := trace(), trace()
	if !bytes.Equal(a, b) {
		t.Fatal("two identical runs gave different traces")
	}
	if !bytes.Contains(a, []byte(`"approvers":["ben","ann","cat"]`)) {
		t.Fatalf("no approvers in\n%s", a)
	}
}

// FuzzDecide feeds the four-eyes states a sequence of decisions from a few
// approvers. Whatever arrives, the run equals the fold of its trace, an
// accepted decision names distinct approvers, as many as needed, and the
// pending count never reaches the number needed.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{0, 1}, false)
	f.Add([]byte{0, 0, 1, 2}, true)
	f.Add([]byte{0, 5, 1, 4, 2, 7, 3}, true)
	f.Add([]byte{8, 9, 0, 1}, false)
	p := loadTestProgram(f, "testdata/four-eyes.yaml")
	f.Fuzz(func(t *testing.T, script []byte, large bool) {
		input := map[string]any{"amount": int64(10)}
		if large {
			input["amount"] = int64(5000)
		}
		start, err := Apply(p, nil, Start{RunID: "f", Input: input, At: t0})
		if err != nil {
			t.Fatal(err)
		}
		run, events := start.Run, slices.Clone(start.Events)
		for i, b := range script {
			if i > 32 {
				break
			}
			// Low bits: the approver (3 is anonymous); next: the decision;
			// next: the wrong role; high bit: a stale seq.
			who := []string{"ann", "ben", "cat", ""}[b&3]
			role := p.States[run.State].Role
			if b&8 != 0 {
				role = "clerk"
			}
			seq := run.Seq
			if b&128 != 0 {
				seq++
			}
			in := Decide{Seq: seq, Role: role, Principal: who, Decision: map[string]any{"release": b&4 != 0}, At: t0}
			res, err := Apply(p, run, in)
			var rej *Rejection
			if err != nil && !errors.As(err, &rej) {
				t.Fatalf("untyped error %v", err)
			}
			if res.Duplicate {
				if len(res.Events) != 0 {
					t.Fatal("a duplicate wrote events")
				}
				continue
			}
			events = append(events, res.Events...)
			folded, ferr := Fold(p, events)
			if ferr != nil {
				t.Fatalf("fold: %v", ferr)
			}
			if !reflect.DeepEqual(folded, res.Run) {
				t.Fatal("result differs from the fold of its events")
			}
			run = res.Run
			if pd := run.Pending; pd != nil && len(pd.Approvers) >= p.States[run.State].Approvals {
				t.Fatalf("pending count %d reached %d", len(pd.Approvers), p.States[run.State].Approvals)
			}
			if e := lastOf(res.Events, EventSubmissionAccepted); e != nil {
				ap := e.Submission.Approvers
				if st := p.States[e.State]; len(ap) != st.Approvals || len(slices.Compact(slices.Sorted(slices.Values(ap)))) != len(ap) || slices.Contains(ap, "") {
					t.Fatalf("accepted with approvers %v at %s", ap, e.State)
				}
			}
		}
		if _, err := EncodeEvents(events); err != nil {
			t.Fatalf("events do not encode: %v", err)
		}
	})
}

func readTestdata(t testing.TB, path string) []byte {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return src
}
