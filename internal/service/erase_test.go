package service

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

// erasedEverywhere fails if the name is readable anywhere in the run's
// opened events.
func erasedEverywhere(t *testing.T, svc *Service, runID, name string) {
	t.Helper()
	events, err := svc.Events(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		b, err := jsonvalue.Canonical(&e)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), name) {
			t.Fatalf("event %d (%s) still reads %q after erasure: %s", e.Index, e.Type, name, b)
		}
	}
}

func TestEraseSubject(t *testing.T) {
	ctx := context.Background()
	const name = "Johanna M. Lindqvist"
	svc, _, finished := kycService(t, 1)
	// A second run of the same customer, still running.
	running, err := svc.Start(ctx, "kyc-onboarding", exampleJSON(t, "kyc-onboarding.input.json"), "t")
	if err != nil {
		t.Fatal(err)
	}
	// Another customer, who must not be touched.
	other := exampleJSON(t, "kyc-onboarding.input.json").(map[string]any)
	other["customer"] = map[string]any{"id": "CUS-1", "name": "Ada Byron", "date_of_birth": "1815-12-10", "country_of_residence": "GB", "email": "ada@example.com"}
	bystander, err := svc.Start(ctx, "kyc-onboarding", other, "t")
	if err != nil {
		t.Fatal(err)
	}
	if r, _, err := svc.Get(ctx, running.RunID); err != nil || !strings.Contains(mustJSON(t, r.Input), name) {
		t.Fatalf("before erasure the operator reads the input: %v", err)
	}

	res, err := svc.EraseSubject(ctx, EraseOptions{SubjectID: "CUS-88213", Reason: "Art. 17 request", Principal: "dpo"})
	if err != nil {
		t.Fatal(err)
	}
	wantRuns := []string{finished, running.RunID}
	if res.Status != ErasureErased || len(res.Subjects) != 1 || strings.Join(res.Runs, ",") != strings.Join(wantRuns, ",") || strings.Join(res.Recorded, ",") != strings.Join(wantRuns, ",") {
		t.Fatalf("EraseSubject = %+v; want erased, runs %v", res, wantRuns)
	}
	for _, id := range wantRuns {
		erasedEverywhere(t, svc, id, name)
		r, _, err := svc.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(mustJSON(t, r.Input), name) || !strings.Contains(mustJSON(t, r.Input), `"$erased"`) {
			t.Fatalf("run %s input after erasure: %s", id, mustJSON(t, r.Input))
		}
	}
	// The running run is cancelled; the finished one keeps its outcome.
	if r, _, _ := svc.Get(ctx, running.RunID); r.Status != runtime.StatusCancelled {
		t.Fatalf("the running run is %s after erasure, want cancelled", r.Status)
	}
	if r, _, _ := svc.Get(ctx, finished); r.Outcome != "APPROVED" {
		t.Fatalf("the finished run's outcome is %s after erasure", r.Outcome)
	}
	events, _ := svc.Events(ctx, finished)
	last := events[len(events)-1]
	if last.Type != runtime.EventSubjectErased || last.Erasure.Reason != "Art. 17 request" || last.Erasure.Principal != "dpo" || last.Erasure.Subject != res.Subjects[0] {
		t.Fatalf("the finished run's last event is %+v", last)
	}
	// The bystander is untouched and goes on.
	if r, _, err := svc.Get(ctx, bystander.RunID); err != nil || !strings.Contains(mustJSON(t, r.Input), "Ada Byron") || r.Status != runtime.StatusRunning {
		t.Fatalf("another customer's run after the erasure: %v", err)
	}

	// Again: nothing left to destroy, nothing to record.
	again, err := svc.EraseSubject(ctx, EraseOptions{SubjectID: "CUS-88213", Reason: "again"})
	if err != nil || again.Status != ErasureAlreadyErased || len(again.Subjects) != 0 || len(again.Recorded) != 0 || len(again.Runs) != 2 {
		t.Fatalf("erasing twice = %+v, %v", again, err)
	}
	if n := len(mustEvents(t, svc, finished)); n != len(events) {
		t.Fatalf("erasing twice appended events: %d, was %d", n, len(events))
	}
	unknown, err := svc.EraseSubject(ctx, EraseOptions{SubjectID: "CUS-NOBODY", Reason: "x"})
	if err != nil || unknown.Status != ErasureUnknownSubject || len(unknown.Runs) != 0 {
		t.Fatalf("an unknown subject = %+v, %v", unknown, err)
	}
	for _, bad := range []EraseOptions{{}, {SubjectID: "CUS-1", Subject: "nobody"}} {
		if _, err := svc.EraseSubject(ctx, bad); code(err) != runtime.CodeInvalidInput {
			t.Errorf("EraseSubject(%+v) = %v, want invalid_input", bad, err)
		}
	}

	// A fresh process over the same store reads the erased marker too.
	fresh := New(Options{Store: svc.store})
	erasedEverywhere(t, fresh, finished, name)
}

// TestReplayAfterErasure: replay re-derives every transition of a run
// whose subject was erased, from data the guards read (never personal),
// and reports the events whose values it could not recompute as erased.
func TestReplayAfterErasure(t *testing.T) {
	ctx := context.Background()
	svc, _, id := kycService(t, 1)
	if _, err := svc.EraseSubject(ctx, EraseOptions{SubjectID: "CUS-88213", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	events := mustEvents(t, svc, id)
	_, p, err := svc.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := runtime.ReplayReport(p, events)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Divergence != nil {
		t.Fatalf("replay after erasure diverged: %+v", rep.Divergence)
	}
	if len(rep.Erased) == 0 {
		t.Fatal("no event reported as erased")
	}
	t.Logf("%d transitions re-derived; %d of %d events checked by the guards instead of re-applied: %v", rep.Transitions, len(rep.Erased), len(events), rep.Erased)
	if rep.Transitions == 0 || rep.Transitions != countType(events, runtime.EventTransitioned) {
		t.Fatalf("replay re-derived %d transitions, the trace has %d", rep.Transitions, countType(events, runtime.EventTransitioned))
	}
	// A tampered transition is still caught.
	for i := range events {
		if events[i].Type == runtime.EventTransitioned {
			t2 := *events[i].Transition
			t2.To = "rejected"
			events[i].Transition = &t2
			break
		}
	}
	if rep, err := runtime.ReplayReport(p, events); err == nil && rep.Divergence == nil {
		t.Fatal("a tampered transition in an erased run replayed clean")
	} else {
		t.Logf("tampered: %+v, %v", rep.Divergence, err)
	}
}

func countType(events []runtime.Event, t runtime.EventType) int {
	n := 0
	for _, e := range events {
		if e.Type == t {
			n++
		}
	}
	return n
}

func mustEvents(t *testing.T, svc *Service, id string) []runtime.Event {
	t.Helper()
	events, err := svc.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := jsonvalue.Canonical(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEraseRacingSteps: steps submitted to the subject's runs while the
// erasure runs either land before it (and are erased with the rest) or
// meet a cancelled run; none leaves the subject's data readable, and no
// fresh key for the subject appears.
func TestEraseRacingSteps(t *testing.T) {
	ctx := context.Background()
	const name = "Johanna M. Lindqvist"
	svc, _, _ := kycService(t, 3)
	var ids []string
	for range 4 {
		a, err := svc.Start(ctx, "kyc-onboarding", exampleJSON(t, "kyc-onboarding.input.json"), "t")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.RunID)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				r, _, err := svc.Get(ctx, id)
				if err != nil || r.Task == nil {
					return
				}
				// An answer that repeats the customer's name: accepted or
				// refused, it is sealed under the subject's key.
				svc.Submit(ctx, id, runtime.Submit{Seq: r.Task.Seq, Output: map[string]any{"full_name": name}}) //nolint:errcheck // refusals are expected
			}
		})
	}
	res, err := svc.EraseSubject(ctx, EraseOptions{SubjectID: "CUS-88213", Reason: "race"})
	close(done)
	wg.Wait()
	if err != nil || res.Status != ErasureErased {
		t.Fatalf("EraseSubject = %+v, %v", res, err)
	}
	for _, id := range ids {
		erasedEverywhere(t, svc, id, name)
		if r, _, _ := svc.Get(ctx, id); r.Status == runtime.StatusRunning {
			t.Fatalf("run %s still runs after its subject was erased", id)
		}
	}
	if key, err := svc.sealer.keys.Get(ctx, res.Subjects[0], false); err != nil || key != nil {
		t.Fatalf("the erased subject has a key again: %v", err)
	}
}

// TestAnswersAfterErasureAreNotKept: an answer that reaches a run after its
// subject was erased (it is refused: the run was cancelled) is stored with
// the subject's values as the erased marker, and makes no fresh key.
func TestAnswersAfterErasureAreNotKept(t *testing.T) {
	ctx := context.Background()
	svc, store, _ := kycService(t, 4)
	a, err := svc.Start(ctx, "kyc-onboarding", exampleJSON(t, "kyc-onboarding.input.json"), "t")
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.EraseSubject(ctx, EraseOptions{SubjectID: "CUS-88213", Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	late := map[string]any{"full_name": "Johanna Late-Answer Lindqvist"}
	if _, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: late}); code(err) != runtime.CodeRunFinished {
		t.Fatalf("a late answer: %v, want run_finished", err)
	}
	if key, err := svc.sealer.keys.Get(ctx, res.Subjects[0], false); err != nil || key != nil {
		t.Fatalf("the late answer made the erased subject a key: %v", err)
	}
	recs, _ := store.Load(ctx, a.RunID)
	for _, r := range recs {
		if strings.Contains(string(r.Body), "Late-Answer") {
			t.Fatalf("the late answer is stored: %s", r.Body)
		}
	}
	erasedEverywhere(t, svc, a.RunID, "Late-Answer")
}
