package runtime

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
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

func lastOf(events []Event, typ EventType) *Event {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Type == typ {
			return &events[i]
		}
	}
	return nil
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
