package service

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
)

// TestReplayUnderThePinnedDefinitionIsIdentical replays the KYC run (a
// rejected answer, a rollback, tool tasks, an approval) from its stored,
// sealed and reopened trace.
func TestReplayUnderThePinnedDefinitionIsIdentical(t *testing.T) {
	svc, _, id := kycService(t, 1)
	events, err := svc.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	d, err := runtime.Replay(exampleProgram(t, "kyc-onboarding"), events)
	if err != nil || d != nil {
		t.Fatalf("replay: divergence %+v, error %v", d, err)
	}
}

func TestReplayUnderAnotherDefinitionNamesTheFirstDivergence(t *testing.T) {
	svc, _, id := kycService(t, 1)
	events, _ := svc.Events(context.Background(), id)
	src, _ := examples.Program("kyc-onboarding")
	changed := strings.Replace(string(src), `version: "1.0"`, `version: "1.1"`, 1)
	if changed == string(src) {
		t.Fatal("the example's version line moved")
	}
	p2, err := program.Load("kyc-v1.1", []byte(changed))
	if err != nil {
		t.Fatal(err)
	}
	d, err := runtime.Replay(p2, events)
	if err != nil {
		t.Fatal(err)
	}
	if d != nil {
		t.Fatalf("a version bump alone diverged: %+v", d)
	}
	// A stricter version: agent_review no longer routes a low-risk
	// approval, so the recorded review answer is refused.
	stricter := strings.Replace(changed, "output.risk_level == 'low' && output.recommendation == 'approve'", "output.risk_level == 'none' && output.recommendation == 'approve'", 1)
	p3, err := program.Load("kyc-v1.2", []byte(stricter))
	if err != nil {
		t.Fatal(err)
	}
	d, err = runtime.Replay(p3, events)
	if err != nil || d == nil {
		t.Fatalf("a stricter guard did not diverge: %v", err)
	}
	if events[d.Index].State != "agent_review" {
		t.Fatalf("divergence at event %d (%s), want agent_review: %+v", d.Index, events[d.Index].State, d)
	}
	// Tamper with one recorded transition: the replay names it.
	for i := range events {
		if events[i].Type == runtime.EventTransitioned {
			tr := *events[i].Transition
			tr.To = "rejected"
			events[i].Transition = &tr
			d, err := runtime.Replay(exampleProgram(t, "kyc-onboarding"), events)
			if err != nil || d == nil || d.Index != events[i].Index || d.Field != "transition" {
				t.Fatalf("tampered transition: %+v %v", d, err)
			}
			return
		}
	}
	t.Fatal("no transition")
}

// TestTraceFormatVersion: run_started records the trace format, and a run
// recorded before the member existed replays without divergence: its
// absence reads as the first version, and only that.
func TestTraceFormatVersion(t *testing.T) {
	svc, _, id := kycService(t, 1)
	events, err := svc.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got := events[0].Started.TraceFormat; got != trace.Format {
		t.Fatalf("run_started records trace format %q, want %q", got, trace.Format)
	}
	p := exampleProgram(t, "kyc-onboarding")
	for _, tt := range []struct {
		name     string
		recorded string
		diverges bool
	}{
		{"recorded as today", trace.Format, false},
		{"recorded before the member existed", "", false},
		{"another version", "nano-vm-trace/3", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			old := slices.Clone(events)
			st := *old[0].Started
			st.TraceFormat = tt.recorded
			old[0].Started = &st
			d, err := runtime.Replay(p, old)
			if err != nil || (d != nil) != tt.diverges {
				t.Fatalf("divergence %+v, error %v; want a divergence: %v", d, err, tt.diverges)
			}
		})
	}
}
