package analyzer

import (
	"math/rand/v2"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

// syntheticKYC returns n runs shaped like the KYC example's: about ten
// states per path, a decision that escalates or rejects some runs early,
// a guard_denied retry now and then, an optional due-diligence state on
// three paths in ten, and a rollback from the approval back to data
// collection on one approval in five (at most three per run). The seed
// fixes the window.
func syntheticKYC(n int) []RunStats {
	rng := rand.New(rand.NewPCG(1, 2))
	ref := runtime.ProgramRef{Name: "kyc-onboarding", Version: "1", DefinitionHash: "sha256:0123"}
	runs := make([]RunStats, n)
	for i := range runs {
		var path []string
		var rollbacks []int
		var rejections, attempts, accepted int64
		enter := func(s ...string) { path = append(path, s...) }
	loop:
		for {
			enter("collect_customer_data", "screen_sanctions", "sanctions_gate")
			accepted += 2
			switch x := rng.IntN(100); {
			case x < 4:
				enter("escalated")
				break loop
			case x < 7:
				enter("rejected")
				break loop
			}
			enter("adverse_media_search", "agent_review")
			accepted += 2
			if rng.IntN(10) == 0 {
				rejections, attempts = rejections+1, attempts+1
			}
			if rng.IntN(10) < 3 {
				enter("enhanced_due_diligence")
				accepted++
			}
			enter("human_approval")
			accepted++
			if len(rollbacks) < 3 && rng.IntN(5) == 0 {
				rollbacks = append(rollbacks, len(path)-1) // human_approval → collect_customer_data
				continue
			}
			enter("governance_seal")
			accepted++
			if rng.IntN(5) == 0 {
				enter("rejected")
			} else {
				enter("approved")
			}
			break
		}
		r := FromPath(path...)
		for _, at := range rollbacks {
			r.Transitions[at].Rollback = true
		}
		r.Program, r.Status, r.Outcome = ref, runtime.StatusCompleted, "APPROVED"
		r.Accepted, r.Rejections, r.Attempts = accepted, rejections, attempts
		runs[i] = r
	}
	return runs
}

// BenchmarkAnalyze10k analyses a window of 10,000 runs of about ten
// states each, against a baseline.
func BenchmarkAnalyze10k(b *testing.B) {
	runs := syntheticKYC(10_000)
	base := Analyze(syntheticKYC(1_000), Options{}).Baseline()
	var states int
	for _, r := range runs {
		states += len(r.Path)
	}
	var paths int
	b.ReportAllocs()
	for b.Loop() {
		r := Analyze(runs, Options{Baseline: &base})
		if r.Runs != len(runs) || r.Drift == nil {
			b.Fatal(r.Runs)
		}
		paths = r.DistinctPaths
	}
	b.ReportMetric(float64(states)/float64(len(runs)), "states/run")
	b.ReportMetric(float64(paths), "paths")
}

// TestSyntheticWindow keeps the benchmark's window realistic and sane.
func TestSyntheticWindow(t *testing.T) {
	runs := syntheticKYC(2_000)
	var states int
	for i := range runs {
		if err := runs[i].Validate(); err != nil {
			t.Fatal(err)
		}
		states += len(runs[i].Path)
	}
	if mean := float64(states) / float64(len(runs)); mean < 8 || mean > 12 {
		t.Errorf("mean path length %.1f, want about 10", mean)
	}
	r := Analyze(runs, Options{})
	checkReport(t, r)
	if r.TransitionEntropyBits <= 0 || r.TransitionEntropyBits > 1 || len(r.Alerts) != 0 {
		t.Errorf("transition entropy %v, alerts %+v", r.TransitionEntropyBits, r.Alerts)
	}
}
