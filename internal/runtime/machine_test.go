package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
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
	before := d.run.clone()
	res, err := Apply(d.p, d.run, in)
	if !reflect.DeepEqual(before, d.run) {
		d.t.Fatalf("Apply modified the run it was given")
	}
	var rej *Rejection
	if errors.As(err, &rej) && !d.run.Finished() && !res.Run.Finished() && rej.Code != CodeDeadlineExceeded {
		after := res.Run.clone()
		if rej.Code.CountsAsAttempt() {
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

func TestRunReachesEachOutcome(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	tests := []struct {
		name    string
		steps   func(d *driver)
		status  Status
		outcome string
		path    string
	}{
		{"low score goes straight to done", func(d *driver) {
			d.submit(`{"score": 1, "text": "hi"}`)
			d.submit(`{"ok": true}`, tool("linter"))
		}, StatusCompleted, "DONE", "draft check route done"},
		{"high score needs approval, approved", func(d *driver) {
			d.submit(`{"score": 9}`)
			d.submit(`{"ok": true}`, tool("linter"))
			d.apply(Decide{Seq: d.run.Seq, Role: "editor", Decision: js(t, `{"approved": true}`), At: d.now})
		}, StatusCompleted, "DONE", "draft check route review done"},
		{"approval refused", func(d *driver) {
			d.submit(`{"score": 9}`)
			d.submit(`{"ok": true}`, tool("linter"))
			d.apply(Decide{Seq: d.run.Seq, Role: "editor", Decision: js(t, `{"approved": false}`), At: d.now})
		}, StatusCompleted, "REJECTED", "draft check route review rejected"},
		{"approval times out to its on_timeout state", func(d *driver) {
			d.submit(`{"score": 9}`)
			d.submit(`{"ok": true}`, tool("linter"))
			d.apply(Tick{At: d.now.Add(time.Hour)})
		}, StatusCompleted, "EXPIRED", "draft check route review expired"},
		{"failed check rolls back, second rollback exceeds the budget", func(d *driver) {
			d.submit(`{"score": 1}`)
			d.submit(`{"ok": false}`, tool("linter"))
			d.submit(`{"score": 2}`)
			d.submit(`{"ok": false}`, tool("linter"))
		}, StatusFailed, "FAILED", "draft check draft check"},
		{"attempts exhausted", func(d *driver) {
			d.submit(`{"score": -1}`)
			d.submit(`{"nope": 1}`)
		}, StatusFailed, "FAILED", "draft"},
		{"cancel", func(d *driver) {
			d.apply(Cancel{Reason: "test", At: d.now})
		}, StatusCancelled, "CANCELLED", "draft"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, p, `{"limit": 5, "author": {"id": "a1", "name": "Ada"}}`)
			tt.steps(d)
			if d.run.Status != tt.status || d.run.Outcome != tt.outcome {
				t.Fatalf("status %s outcome %s (%s), want %s %s", d.run.Status, d.run.Outcome, d.run.Reason, tt.status, tt.outcome)
			}
			if got := strings.Join(d.run.Path, " "); got != tt.path {
				t.Fatalf("path %q, want %q", got, tt.path)
			}
		})
	}
}

func tool(name string) func(*Submit) {
	return func(s *Submit) { s.Tool = name; s.Actor = ActorTool }
}

func TestRejectionsAreTypedAndCountedOnlyForAttempts(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	tests := []struct {
		name    string
		setup   func(d *driver)
		in      func(d *driver) Input
		code    Code
		counted bool
	}{
		{"schema violation", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, Output: js(t, `{"score": "x"}`), At: t0}
		}, CodeSchemaViolation, true},
		{"extra field is a schema violation", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, Output: js(t, `{"score": 1, "approve_customer": true}`), At: t0}
		}, CodeSchemaViolation, true},
		{"no guard holds with on_no_match reject", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, Output: js(t, `{"score": -3}`), At: t0}
		}, CodeGuardDenied, true},
		{"tool claimed on an llm task", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, Tool: "linter", Output: js(t, `{"score": 1}`), At: t0}
		}, CodeCapabilityDenied, true},
		{"wrong tool", func(d *driver) { d.submit(`{"score": 1}`) }, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, Tool: "shell", Output: js(t, `{"ok": true}`), At: t0}
		}, CodeCapabilityDenied, true},
		{"stale seq", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq - 1, Output: js(t, `{"score": 1}`), At: t0}
		}, CodeStaleSeq, false},
		{"future seq", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq + 1, Output: js(t, `{"score": 1}`), At: t0}
		}, CodeStaleSeq, false},
		{"wrong state", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, State: "check", Output: js(t, `{"ok": true}`), At: t0}
		}, CodeWrongState, false},
		{"definition mismatch", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, DefinitionHash: "sha256:00", Output: js(t, `{"score": 1}`), At: t0}
		}, CodeDefinitionMismatch, false},
		{"approval answered by a step", func(d *driver) {
			d.submit(`{"score": 9}`)
			d.submit(`{"ok": true}`, tool("linter"))
		}, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, Output: js(t, `{"approved": true}`), At: t0}
		}, CodeApprovalRequired, false},
		{"approval by the wrong role", func(d *driver) {
			d.submit(`{"score": 9}`)
			d.submit(`{"ok": true}`, tool("linter"))
		}, func(d *driver) Input {
			return Decide{Seq: d.run.Seq, Role: "intern", Decision: js(t, `{"approved": true}`), At: t0}
		}, CodeCapabilityDenied, true},
		{"decision on a non-approval state", nil, func(d *driver) Input {
			return Decide{Seq: d.run.Seq, Role: "editor", Decision: js(t, `{"approved": true}`), At: t0}
		}, CodeWrongState, false},
		{"a step claiming a human actor", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, Actor: ActorHuman, Output: js(t, `{"score": 1}`), At: t0}
		}, CodeCapabilityDenied, true},
		{"a tool runner answering an llm task", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, Actor: ActorTool, Output: js(t, `{"score": 1}`), At: t0}
		}, CodeCapabilityDenied, true},
		{"decision under another definition", func(d *driver) {
			d.submit(`{"score": 9}`)
			d.submit(`{"ok": true}`, tool("linter"))
		}, func(d *driver) Input {
			return Decide{Seq: d.run.Seq, Role: "editor", DefinitionHash: "sha256:00", Decision: js(t, `{"approved": true}`), At: t0}
		}, CodeDefinitionMismatch, false},
		{"oversized output", nil, func(d *driver) Input {
			return Submit{Seq: d.run.Seq, Output: js(t, `{"score": 1}`), Size: 2 << 20, At: t0}
		}, CodeSchemaViolation, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, p, `{"limit": 5}`)
			if tt.setup != nil {
				tt.setup(d)
			}
			seq, attempts := d.run.Seq, d.run.Attempts
			res, err := d.apply(tt.in(d))
			if code(err) != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
			rec := res.Events[len(res.Events)-1].Rejection
			if rec.Counted != tt.counted {
				t.Fatalf("counted = %v, want %v", rec.Counted, tt.counted)
			}
			wantAttempts := attempts
			if tt.counted {
				wantAttempts++
			}
			if d.run.Attempts != wantAttempts || d.run.Seq != seq {
				t.Fatalf("attempts %d seq %d, want %d and %d", d.run.Attempts, d.run.Seq, wantAttempts, seq)
			}
		})
	}
}

func TestDuplicateOfLastAcceptedSubmissionIsIdempotent(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	d := newDriver(t, p, `{"limit": 5}`)
	seq := d.run.Seq
	if _, err := d.submit(`{"score": 1, "text": "a"}`); err != nil {
		t.Fatal(err)
	}
	n := len(d.events)
	// Same output, different key order and number spelling: still exact.
	res, err := d.apply(Submit{Seq: seq, Output: js(t, `{"text": "a", "score": 1.0}`), At: t0})
	if err != nil || !res.Duplicate || len(res.Events) != 0 {
		t.Fatalf("duplicate: dup=%v events=%d err=%v", res.Duplicate, len(res.Events), err)
	}
	if len(d.events) != n {
		t.Fatal("a duplicate wrote events")
	}
	// A different output for the same seq is a stale submission.
	if _, err := d.apply(Submit{Seq: seq, Output: js(t, `{"score": 2}`), At: t0}); code(err) != CodeStaleSeq {
		t.Fatalf("changed resubmission: %v, want stale_seq", err)
	}
}

func TestReplayedDecisionFromAnotherRoleIsNoDuplicate(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	d := newDriver(t, p, `{"limit": 5}`)
	d.submit(`{"score": 9}`)
	d.submit(`{"ok": true}`, tool("linter"))
	seq := d.run.Seq
	if _, err := d.apply(Decide{Seq: seq, Role: "editor", Decision: js(t, `{"approved": true}`), At: t0}); err != nil {
		t.Fatal(err)
	}
	res, err := d.apply(Decide{Seq: seq, Role: "intruder", Decision: js(t, `{"approved": true}`), At: t0})
	if res.Duplicate || code(err) != CodeRunFinished {
		t.Fatalf("replay by another role: duplicate=%v err=%v", res.Duplicate, err)
	}
	res, err = d.apply(Decide{Seq: seq, Role: "editor", Decision: js(t, `{"approved": true}`), At: t0})
	if !res.Duplicate || err != nil {
		t.Fatalf("replay by the same role: duplicate=%v err=%v", res.Duplicate, err)
	}
}

func TestLateAnswerNamesTheDeadline(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	d := newDriver(t, p, `{"limit": 5}`)
	d.submit(`{"score": 9}`)
	d.submit(`{"ok": true}`, tool("linter"))
	_, err := d.apply(Decide{Seq: d.run.Seq, Role: "editor", Decision: js(t, `{"approved": true}`), At: t0.Add(2 * time.Hour)})
	if code(err) != CodeDeadlineExceeded || !strings.Contains(err.Error(), "2026-11-25T13:00:00Z") {
		t.Fatalf("late answer: %v", err)
	}
	if d.run.Outcome != "EXPIRED" {
		t.Fatalf("outcome %s", d.run.Outcome)
	}
}

func TestRollbackClearsLaterData(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	d := newDriver(t, p, `{"limit": 5}`)
	d.submit(`{"score": 1, "text": "a"}`)
	res, _ := d.submit(`{"ok": false}`, tool("linter"))
	var hop *TransitionRecord
	for _, e := range res.Events {
		if e.Type == EventTransitioned {
			hop = e.Transition
		}
	}
	if hop == nil || !hop.Rollback || hop.To != "draft" {
		t.Fatalf("no rollback hop: %+v", hop)
	}
	if _, ok := d.run.Data["check"]; ok {
		t.Fatal("data.check survived the rollback")
	}
	if d.run.Rollbacks != 1 {
		t.Fatalf("rollbacks = %d", d.run.Rollbacks)
	}
}

// TestRollbackBudget: max_rollbacks N lets a run take N rollbacks, and the
// next one it would take ends it FAILED (rollback_budget_exceeded). At 0 a
// pipeline never goes back: its first rollback ends the run.
func TestRollbackBudget(t *testing.T) {
	src, err := os.ReadFile("testdata/review.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("max_rollbacks %d", limit), func(t *testing.T) {
			edited := strings.Replace(string(src), "max_rollbacks: 1}", fmt.Sprintf("max_rollbacks: %d}", limit), 1)
			p, err := program.Load("review.yaml", []byte(edited))
			if err != nil {
				t.Fatal(err)
			}
			if p.Limits.MaxRollbacks != limit {
				t.Fatalf("loaded max_rollbacks %d", p.Limits.MaxRollbacks)
			}
			d := newDriver(t, p, `{"limit": 5}`)
			for taken := 0; ; taken++ {
				d.submit(`{"score": 1}`)
				d.submit(`{"ok": false}`, tool("linter"))
				if d.run.Finished() {
					if taken != limit {
						t.Fatalf("the run ended after %d rollbacks, want %d", taken, limit)
					}
					break
				}
				if taken+1 > limit {
					t.Fatalf("the run took %d rollbacks under max_rollbacks %d", taken+1, limit)
				}
			}
			if d.run.Status != StatusFailed || d.run.Outcome != program.OutcomeFailed || !strings.HasPrefix(d.run.Reason, ReasonRollbackBudgetExceeded) {
				t.Fatalf("status %s outcome %s reason %q, want FAILED by %s", d.run.Status, d.run.Outcome, d.run.Reason, ReasonRollbackBudgetExceeded)
			}
			if d.run.Rollbacks != limit || d.run.State != "check" {
				t.Fatalf("rollbacks %d at %s, want %d at check: the refused rollback must not be taken", d.run.Rollbacks, d.run.State, limit)
			}
		})
	}
}

func TestSameInputsGiveByteIdenticalEvents(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	trace := func() []byte {
		d := newDriver(t, p, `{"limit": 5, "author": {"id": "a1", "name": "Ada"}}`)
		d.submit(`{"score": -1}`)
		d.submit(`{"score": 9, "text": "x"}`)
		d.submit(`{"ok": true}`, tool("linter"))
		d.apply(Decide{Seq: d.run.Seq, Role: "editor", Decision: js(t, `{"approved": true}`), At: t0})
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
	if !bytes.Contains(a, []byte(`"cel_version"`)) || !bytes.Contains(a, []byte(`"runtime_version"`)) {
		t.Fatal("run_started does not record the runtime and CEL versions")
	}
}

func TestToolTaskCarriesOnlyDeclaredArguments(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	d := newDriver(t, p, `{"limit": 5, "author": {"id": "a1", "name": "Ada"}}`)
	d.submit(`{"score": 1, "text": "draft text"}`)
	task := d.run.Task
	if task == nil || task.Tool == nil || task.Tool.Name != "linter" {
		t.Fatalf("tool task: %+v", task)
	}
	want := map[string]any{"text": "draft text", "author": "Ada"}
	if !reflect.DeepEqual(task.Tool.Arguments, want) {
		t.Fatalf("arguments %v, want %v", task.Tool.Arguments, want)
	}
	if len(task.View) != 0 {
		t.Fatalf("a tool task has no view, got %v", task.View)
	}
}

func TestModelViewHidesUnnamedPersonalData(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	d := newDriver(t, p, `{"limit": 5, "author": {"id": "a1", "name": "Ada"}}`)
	view := d.run.Task.View
	author, _ := view["input"].(map[string]any)["author"].(map[string]any)
	if _, ok := author["name"]; ok {
		t.Fatalf("view shows personal data the view does not name: %v", view)
	}
	if _, ok := author["id"]; ok {
		t.Fatalf("view shows the subject id: %v", view)
	}
}

func TestOversizedAnswerIsRefusedNotStored(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	d := newDriver(t, p, `{"limit": 5}`)
	res, err := d.apply(Submit{Seq: d.run.Seq, Output: js(t, `{"score": 1}`), Size: p.Limits.MaxDocumentBytes + 1, At: t0})
	if code(err) != CodeSchemaViolation {
		t.Fatalf("got %v", err)
	}
	if rec := res.Events[len(res.Events)-1].Rejection; rec.Output != nil {
		t.Fatalf("the oversized output was stored: %v", rec.Output)
	}
}
