package runtime

import (
	"reflect"
	"testing"
)

// Separation of duties: a decision under it (Decide without AllowSelf) is
// forbidden to the run's owner and to anyone recorded submitting one of
// its answers, and the refusal is recorded without the decision.

// toReview drives testdata/review.yaml, started by owner, to its approval
// state, the draft submitted by drafter and the tool result by runner.
func toReview(t *testing.T, owner, drafter, runner string) *driver {
	t.Helper()
	d := &driver{t: t, p: loadTestProgram(t, "testdata/review.yaml"), now: t0}
	res, err := Apply(d.p, nil, Start{RunID: "run-1", Principal: owner, Input: js(t, `{"limit": 1}`), At: d.now})
	if err != nil {
		t.Fatal(err)
	}
	d.adopt(res)
	if _, err := d.submit(`{"score": 5, "text": "x"}`, func(s *Submit) { s.Principal = drafter }); err != nil {
		t.Fatal(err)
	}
	if _, err := d.submit(`{"ok": true}`, tool("linter"), func(s *Submit) { s.Principal = runner }); err != nil {
		t.Fatal(err)
	}
	if d.run.State != "review" {
		t.Fatalf("at %s, want review", d.run.State)
	}
	return d
}

func TestSeparationOfDutiesForbidsOwnerAndSubmitters(t *testing.T) {
	tests := []struct {
		name      string
		principal string
		allowSelf bool
		want      Code // "" when the decision takes effect
	}{
		{"the owner", "alice", false, CodeForbidden},
		{"the model's submitter", "bob", false, CodeForbidden},
		{"the tool result's submitter", "tina", false, CodeForbidden},
		{"a bystander approver", "carol", false, ""},
		{"the owner through an exempt channel", "alice", true, ""},
		{"a submitter through an exempt channel", "bob", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := toReview(t, "alice", "bob", "tina")
			before := d.run.clone()
			res, err := d.apply(Decide{Seq: d.run.Seq, Role: "editor", Principal: tt.principal,
				Decision: js(t, `{"approved": true}`), Size: 17, AllowSelf: tt.allowSelf, At: d.now})
			if got := code(err); got != tt.want {
				t.Fatalf("decision by %s: %v, want %q", tt.principal, err, tt.want)
			}
			in := res.Events[0].Input
			if in.Kind != "decide" || in.Principal != tt.principal || in.SeparateDuties == tt.allowSelf || in.Size != 17 {
				t.Fatalf("input record %+v", in)
			}
			if tt.want == "" {
				if d.run.Outcome != "DONE" {
					t.Fatalf("outcome %q, want DONE", d.run.Outcome)
				}
				return
			}
			if got := types(res.Events); got != "input_received submission_rejected" {
				t.Fatalf("events %s", got)
			}
			rej := res.Events[1].Rejection
			if rej.Output != nil || rej.Digest != nil || rej.Counted || rej.Principal != tt.principal {
				t.Fatalf("rejection %+v: want no output, not counted", rej)
			}
			if d.run.State != "review" || d.run.Task == nil || d.run.Task.AttemptsLeft != before.Task.AttemptsLeft || d.run.Seq != before.Seq {
				t.Fatalf("a forbidden decision moved the run: %+v", d.run)
			}
		})
	}
}

func TestSeparationOfDutiesCountsRejectedSubmissions(t *testing.T) {
	d := toReview(t, "alice", "bob", "tina")
	// mallory's answer to the closed draft task is refused, but recorded.
	if _, err := d.apply(Submit{Seq: 1, Principal: "mallory", Output: js(t, `{"score": 9}`), At: d.now}); code(err) != CodeStaleSeq {
		t.Fatalf("stale submission: %v", err)
	}
	_, err := d.decide("mallory", `{"approved": true}`)
	if code(err) != CodeForbidden {
		t.Fatalf("a submitter of a refused answer decided: %v", err)
	}
}

func TestSeparationOfDutiesRefusalReplays(t *testing.T) {
	d := toReview(t, "alice", "bob", "tina")
	if _, err := d.decide("alice", `{"approved": true}`); code(err) != CodeForbidden {
		t.Fatalf("owner: %v", err)
	}
	if _, err := d.decide("carol", `{"approved": false}`); err != nil {
		t.Fatal(err)
	}
	div, err := Replay(d.p, d.events)
	if err != nil || div != nil {
		t.Fatalf("replay: %v, divergence %+v", err, div)
	}
}

func TestOwnerDoesNotCountTowardFourEyes(t *testing.T) {
	d := &driver{t: t, p: fourEyes(t), now: t0}
	res, err := Apply(d.p, nil, Start{RunID: "run-1", Principal: "olga", Input: js(t, smallPayment), At: d.now})
	if err != nil {
		t.Fatal(err)
	}
	d.adopt(res)
	if _, err := d.decide("alice", `{"release": true}`); err != nil {
		t.Fatal(err)
	}
	if _, err := d.decide("olga", `{"release": true}`); code(err) != CodeForbidden {
		t.Fatalf("the owner as second approver: %v", err)
	}
	if d.run.ApprovalsGiven != 1 || d.run.State != "release" || !reflect.DeepEqual(d.run.Pending.Approvers, []string{"alice"}) {
		t.Fatalf("the owner counted: %d given, pending %+v", d.run.ApprovalsGiven, d.run.Pending)
	}
	if _, err := d.decide("bob", `{"release": true}`); err != nil || d.run.Outcome != "RELEASED" {
		t.Fatalf("second distinct approver: %v, outcome %s", err, d.run.Outcome)
	}
}

func TestElicitationCountsOnceTowardFourEyes(t *testing.T) {
	d := newDriver(t, fourEyes(t), smallPayment)
	elicit := func(principal string) error {
		_, err := d.apply(Decide{Seq: d.run.Seq, Role: "officer", Principal: ElicitedPrefix + principal,
			Decision: js(t, `{"release": true}`), AllowSelf: true, At: d.now})
		return err
	}
	if err := elicit("agent"); err != nil {
		t.Fatal(err)
	}
	if err := elicit("operator"); code(err) != CodeForbidden {
		t.Fatalf("a second elicited approval: %v", err)
	}
	if d.run.ApprovalsGiven != 1 {
		t.Fatalf("%d approvals given, want 1", d.run.ApprovalsGiven)
	}
	if _, err := d.decide("alice", `{"release": true}`); err != nil || d.run.Outcome != "RELEASED" {
		t.Fatalf("an approver beside the elicited decision: %v, outcome %s", err, d.run.Outcome)
	}
}
