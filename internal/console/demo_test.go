package console

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

var auditor = &access.Principal{ID: access.IDAuditor, Profile: access.ProfileAuditor}

// decode parses a JSON answer into v, failing the test on a bad body.
func decode(t testing.TB, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
}

func TestDemoPageOffersTheButtonToTheOperatorOnly(t *testing.T) {
	c, _, _ := newTestConsole(t)
	res, body := get(t, c, "GET", "/ui/demo", operator)
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	for _, want := range []string{`id="demo-start"`, `<ol id="demo-steps"`, `id="demo-outcome"`, `id="demo-run-link"`, `src="/ui/static/demo.js"`, "kyc-onboarding.approved.answers.jsonl"} {
		if !strings.Contains(body, want) {
			t.Errorf("the operator's demo page lacks %q", want)
		}
	}
	if strings.Contains(body, `id="demo-start" disabled`) {
		t.Error("the operator's button is disabled")
	}
	for _, who := range []*access.Principal{nil, auditor} {
		_, body = get(t, c, "GET", "/ui/demo", who)
		if !strings.Contains(body, `id="demo-start" disabled`) || !strings.Contains(body, `href="/ui/login"`) {
			t.Errorf("the auditor's demo page has no disabled button with a sign-in note:\n%s", body)
		}
	}
	if res, body := get(t, c, "GET", "/ui/static/demo.js", nil); res.StatusCode != 200 || !strings.Contains(body, `nc.on("#demo-start"`) {
		t.Errorf("demo.js: %d", res.StatusCode)
	}
}

func TestDemoActionsAreForTheOperatorOnly(t *testing.T) {
	c, svc, _ := newTestConsole(t)
	started, _ := svc.Start(context.Background(), demoProgram, demoTestInput(t), demoPrincipal)
	for _, target := range []string{"/ui/demo/start", "/ui/demo/" + started.RunID + "/step"} {
		for _, who := range []*access.Principal{nil, auditor} {
			if res, body := get(t, c, "POST", target, who); res.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s as %v: %d %s, want 403", target, who, res.StatusCode, body)
			}
		}
	}
	if run, _, _ := svc.Get(context.Background(), started.RunID); run.Steps != 0 || run.Rejections != 0 {
		t.Errorf("a refused step changed the run: %d steps, %d rejections", run.Steps, run.Rejections)
	}
}

// TestDemoWalksTheRunToApproved pins the whole flow as demo.js drives it:
// every answer used once, in order, the rejection and the rollback shown,
// and the run approved.
func TestDemoWalksTheRunToApproved(t *testing.T) {
	c, svc, _ := newTestConsole(t)
	res, body := get(t, c, "POST", "/ui/demo/start", operator)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("start: %d %s", res.StatusCode, body)
	}
	var started demoStarted
	decode(t, body, &started)
	if started.RunID == "" || started.State != "collect_customer_data" || started.Status != "running" || started.Steps != 12 {
		t.Fatalf("start answered %+v", started)
	}
	run, _, err := svc.Get(context.Background(), started.RunID)
	if err != nil || run.Principal != demoPrincipal {
		t.Fatalf("the demo run's principal: %v %v", run, err)
	}

	var steps []demoStepped
	for i := 0; i < started.Steps; i++ {
		res, body := get(t, c, "POST", "/ui/demo/"+started.RunID+"/step", operator)
		if res.StatusCode != 200 {
			t.Fatalf("step %d: %d %s", i+1, res.StatusCode, body)
		}
		if strings.Contains(body, "Lindqvist") || strings.Contains(body, "1988") {
			t.Fatalf("step %d shows personal data: %s", i+1, body)
		}
		var s demoStepped
		decode(t, body, &s)
		steps = append(steps, s)
		if s.Step != i+1 {
			t.Fatalf("step %d submitted answer %d", i+1, s.Step)
		}
		if s.Done {
			break
		}
	}
	if len(steps) != 12 {
		t.Fatalf("the demo took %d steps, want 12", len(steps))
	}
	first, last := steps[0], steps[len(steps)-1]
	if first.Rejected != "schema_violation" || first.Hop != nil || first.State != "collect_customer_data" || first.Kind != "llm" {
		t.Errorf("the first answer: %+v, want a schema_violation with the task still open", first)
	}
	if s := steps[1]; s.Hop == nil || s.Hop.From != "collect_customer_data" || s.Hop.To != "screen_sanctions" {
		t.Errorf("the second answer: %+v", s)
	}
	if s := steps[2]; s.Kind != "tool" || len(s.Hops) != 2 || s.Hops[1].From != "sanctions_gate" || s.Hops[1].To != "adverse_media_search" {
		t.Errorf("the screening: %+v, want screen_sanctions → sanctions_gate → adverse_media_search", s)
	}
	if s := steps[5]; s.Kind != "approval" || s.Actor != "compliance_officer" || s.Hop == nil || !s.Hop.Rollback || s.Hop.To != "collect_customer_data" {
		t.Errorf("the request for more information: %+v, want a rollback", s)
	}
	if !last.Done || last.Status != "completed" || last.Outcome != demoOutcome || last.State != "approved" || last.Hop == nil || last.Hop.To != "approved" {
		t.Errorf("the last step: %+v", last)
	}

	// A finished run: another step changes nothing and says so.
	res, body = get(t, c, "POST", "/ui/demo/"+started.RunID+"/step", operator)
	var again demoStepped
	decode(t, body, &again)
	if res.StatusCode != 200 || !again.Done || again.Outcome != demoOutcome || again.Step != 0 {
		t.Errorf("a step after the end: %d %+v", res.StatusCode, again)
	}
	run, _, _ = svc.Get(context.Background(), started.RunID)
	if run.Outcome != demoOutcome || run.Rejections != 1 || run.Rollbacks != 1 {
		t.Errorf("the run: %s, %d rejections, %d rollbacks", run.Outcome, run.Rejections, run.Rollbacks)
	}
}

// TestDemoStepsAtOnceUseEachAnswerOnce pins the lock: clicks that arrive
// together still submit the canned answers one by one, in order.
func TestDemoStepsAtOnceUseEachAnswerOnce(t *testing.T) {
	c, svc, _ := newTestConsole(t)
	_, body := get(t, c, "POST", "/ui/demo/start", operator)
	var started demoStarted
	decode(t, body, &started)
	var wg sync.WaitGroup
	for range started.Steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res, body := get(t, c, "POST", "/ui/demo/"+started.RunID+"/step", operator); res.StatusCode != 200 {
				t.Errorf("step: %d %s", res.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	run, _, _ := svc.Get(context.Background(), started.RunID)
	if run.Outcome != demoOutcome || run.Rejections != 1 {
		t.Errorf("after %d steps at once: %s %s, %d rejections", started.Steps, run.Status, run.Outcome, run.Rejections)
	}
}

func TestDemoStepRefusesRunsTheDemoDidNotStart(t *testing.T) {
	c, svc, _ := newTestConsole(t)
	other, err := svc.Start(context.Background(), demoProgram, demoTestInput(t), "someone-else")
	if err != nil {
		t.Fatal(err)
	}
	res, body := get(t, c, "POST", "/ui/demo/"+other.RunID+"/step", operator)
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("a step on another principal's run: %d %s, want 403", res.StatusCode, body)
	}
	if run, _, _ := svc.Get(context.Background(), other.RunID); run.Rejections != 0 || run.Steps != 0 {
		t.Error("the refused step changed the run")
	}
	res, body = get(t, c, "POST", "/ui/demo/run_nosuch/step", operator)
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body, `"no_such_run"`) {
		t.Errorf("a step on no run: %d %s, want 404 no_such_run", res.StatusCode, body)
	}
}

func demoTestInput(t testing.TB) any {
	t.Helper()
	b, err := examples.FS.ReadFile(demoInput)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonvalue.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
