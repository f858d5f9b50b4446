package runtime

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func loadTestProgram(t testing.TB, path string) *program.Program {
	t.Helper()
	p, err := program.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func js(t testing.TB, s string) any {
	t.Helper()
	v, err := jsonvalue.Decode([]byte(s))
	if err != nil {
		t.Fatalf("bad JSON %s: %v", s, err)
	}
	return v
}

// driver applies inputs to one run, checking the core's invariants on
// every step: the result's run equals the fold of all events, and a
// rejection changes nothing but the rejection counters.
type driver struct {
	t      testing.TB
	p      *program.Program
	run    *Run
	events []Event
	now    time.Time
}

func newDriver(t testing.TB, p *program.Program, input string) *driver {
	t.Helper()
	d := &driver{t: t, p: p, now: t0}
	res, err := Apply(p, nil, Start{RunID: "run-1", Input: js(t, input), At: d.now})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	d.adopt(res)
	return d
}

func (d *driver) adopt(res Result) {
	d.t.Helper()
	d.events = append(d.events, res.Events...)
	folded, err := Fold(d.p, d.events)
	if err != nil {
		d.t.Fatalf("fold: %v", err)
	}
	if !reflect.DeepEqual(folded, res.Run) {
		d.t.Fatalf("result run differs from the fold of the events:\nfold:   %+v\nresult: %+v", folded, res.Run)
	}
	d.run = res.Run
}

func (d *driver) apply(in Input) (Result, error) {
	d.t.Helper()
	before := d.run.Clone()
	res, err := Apply(d.p, d.run, in)
	if !reflect.DeepEqual(before, d.run) {
		d.t.Fatalf("Apply modified the run it was given")
	}
	var rej *Rejection
	if errors.As(err, &rej) && !d.run.Finished() && !res.Run.Finished() && rej.Code != CodeDeadlineExceeded {
		after := res.Run.Clone()
		if rej.Code.CountsAsAttempt() && before.Task != nil {
			if after.Task.AttemptsLeft != before.Task.AttemptsLeft-1 {
				d.t.Fatalf("attempts_left %d after a counted rejection, want %d", after.Task.AttemptsLeft, before.Task.AttemptsLeft-1)
			}
			after.Task = before.Task
		}
		after.Attempts, after.Rejections, after.NextIndex, after.UpdatedAt = before.Attempts, before.Rejections, before.NextIndex, before.UpdatedAt
		// A refused answer still records who submitted it.
		after.Submitters = before.Submitters
		after.Uncounted, after.UncountedSeq = before.Uncounted, before.UncountedSeq
		if !reflect.DeepEqual(before, after) {
			d.t.Fatalf("rejection %s changed the run:\nbefore %+v\nafter  %+v", rej.Code, before, after)
		}
		// Past the cap a throttled refusal records nothing, by design.
		unrecorded := len(res.Events) == 0 && rej.Code == CodeThrottled
		if last := lastEvent(res.Events); !unrecorded && (last.Type != EventSubmissionRejected || last.Rejection.Code != rej.Code) {
			d.t.Fatalf("rejection %s is not recorded: last event %+v", rej.Code, last)
		}
	}
	if res.Run != nil {
		d.adopt(res)
	}
	return res, err
}

func lastEvent(events []Event) Event {
	if len(events) == 0 {
		return Event{}
	}
	return events[len(events)-1]
}

func (d *driver) submit(out string, opts ...func(*Submit)) (Result, error) {
	s := Submit{Seq: d.run.Seq, State: d.run.State, Output: js(d.t, out), At: d.now}
	for _, o := range opts {
		o(&s)
	}
	return d.apply(s)
}

func code(err error) Code {
	var rej *Rejection
	if errors.As(err, &rej) {
		return rej.Code
	}
	return ""
}

func tool(name string) func(*Submit) {
	return func(s *Submit) { s.Tool = name; s.Actor = ActorTool }
}

func TestSameInputsGiveByteIdenticalEvents(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	trace := func() []byte {
		d := newDriver(t, p, `{"limit": 5, "author": {"id": "a1", "name": "Ada"}}`)
		d.submit(`{"score": -1}`)
		d.submit(`{"score": 9, "text": "x"}`)
		d.submit(`{"ok": true}`, tool("linter"))
		d.apply(Decide{Seq: d.run.Seq, Role: "editor", Decision: js(t, `{"approved": true}`), At: t0})
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
	if !bytes.Contains(a, []byte(`"cel_version"`)) || !bytes.Contains(a, []byte(`"runtime_version"`)) {
		t.Fatal("run_started does not record the runtime and CEL versions")
	}
}

// encodeAll is each event's bytes as a trace holds them.
func encodeAll(events []Event) ([][]byte, error) {
	out := make([][]byte, len(events))
	for i := range events {
		b, err := EncodeEvent(&events[i])
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}
