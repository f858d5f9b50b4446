package runtime

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
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

func TestFourEyesTracesAreByteIdentical(t *testing.T) {
	p := fourEyes(t)
	trace := func() []byte {
		d := newDriver(t, p, largePayment)
		d.decide("ann", `{"release": true}`)
		d.decide("ben", `{"release": false}`)
		d.decide("ben", `{"release": false}`)
		d.decide("ann", `{"release": false}`)
		d.decide("cat", `{"release": false}`)
		recs, err := encodeAll(d.events)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		for _, r := range recs {
			b.Write(r)
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
		if _, err := encodeAll(events); err != nil {
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
