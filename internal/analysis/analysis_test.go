package analysis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// fixture is a service over a store with the refund example loaded.
type fixture struct {
	st  tracestore.Store
	svc *service.Service
	p   *program.Program
}

func newFixture(t testing.TB, st tracestore.Store) *fixture {
	t.Helper()
	var (
		mu  sync.Mutex
		now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		ids int
	)
	svc := service.New(service.Options{
		Store: st, Secret: bytes.Repeat([]byte{7}, 32), Rand: bytes.NewReader(bytes.Repeat([]byte{1}, 1<<20)),
		Clock: func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Second); return now },
		NewID: func() string { mu.Lock(); defer mu.Unlock(); ids++; return fmt.Sprintf("run%06d", ids) },
	})
	p, src := examples.MustLoad("refund")
	if err := svc.AddProgram(context.Background(), p, src); err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, svc: svc, p: p}
}

func decode(t testing.TB, name string) any {
	t.Helper()
	data, err := examples.FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonvalue.Decode(bytes.TrimSpace(data))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// run drives one refund run to its end: refunded or denied at the check.
func (f *fixture) run(t testing.TB, refunded bool) string {
	t.Helper()
	return f.runAs(t, refunded, false)
}

// runAs is run, as a fault-laboratory run if lab.
func (f *fixture) runAs(t testing.TB, refunded, lab bool) string {
	t.Helper()
	ctx := context.Background()
	input, answer := "refund.input.json", "refund.refunded.answers.jsonl"
	if !refunded {
		input, answer = "refund.late.input.json", "refund.late.denied.answers.jsonl"
	}
	a, err := f.svc.StartRun(ctx, service.StartOptions{Program: "refund", Input: decode(t, input), Principal: "test", Lab: lab})
	if err != nil {
		t.Fatal(err)
	}
	a, err = f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Task.Seq, Principal: "test", Output: decode(t, answer)})
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != runtime.StatusCompleted {
		t.Fatalf("run %s: %s", a.RunID, a.Status)
	}
	return a.RunID
}

func TestAnalyzeAWindowOfStoredRuns(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, tracestore.NewMemory())
	if _, err := Analyze(ctx, f.st, Query{Program: "refund"}); !errors.Is(err, ErrUnknownProgram) {
		t.Fatalf("no runs: %v, want ErrUnknownProgram", err)
	}
	for _, refunded := range []bool{true, false, true, false} {
		f.run(t, refunded)
	}
	rep, err := Analyze(ctx, f.st, Query{Program: "refund"})
	if err != nil {
		t.Fatal(err)
	}
	// assess_refund → check four times; check → refunded twice and →
	// denied twice: H(check) = 1 bit, weighted (4/8)·1.
	if rep.Runs != 4 || rep.Program != "refund" || rep.DefinitionHash != f.p.Hash || rep.TransitionEntropyBits != 0.5 ||
		rep.PathEntropyBits != 1 || rep.Drift != nil || len(rep.Alerts) != 0 || rep.Counts.Transitions != 8 {
		t.Fatalf("report %+v", rep)
	}
	rep, err = Analyze(ctx, f.st, Query{Program: "refund", Window: 3, Threshold: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	// The newest three: denied, refunded, denied.
	if rep.Runs != 3 || len(rep.Alerts) != 1 || rep.Alerts[0].State != "check" {
		t.Fatalf("window of 3: %+v", rep)
	}
	if _, err := Analyze(ctx, f.st, Query{Program: "refund", DefinitionHash: "sha256:other"}); !errors.Is(err, ErrUnknownProgram) {
		t.Fatalf("another definition: %v, want ErrUnknownProgram", err)
	}
	if _, err := Analyze(ctx, f.st, Query{Program: "nope"}); !errors.Is(err, ErrUnknownProgram) {
		t.Fatalf("unknown program: %v, want ErrUnknownProgram", err)
	}
}

// Laboratory runs are fault experiments: they stay out of the window
// unless asked for, so that they cannot raise the instability alert.
func TestLabRunsAreLeftOutUnlessIncluded(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		real, lab  []bool // refunded or denied, one per run
		includeLab bool
		wantRuns   int // 0: ErrUnknownProgram
		wantH      float64
	}{
		{name: "real runs only count", real: []bool{true, true}, lab: []bool{false, false, false}, wantRuns: 2, wantH: 0},
		{name: "included, the lab runs count", real: []bool{true, true}, lab: []bool{false, false, false}, includeLab: true, wantRuns: 5,
			// check → refunded 2, → denied 3 of 5 visits; weighted by 5/10.
			wantH: 0.5 * -(0.4*math.Log2(0.4) + 0.6*math.Log2(0.6))},
		{name: "only lab runs is no runs", lab: []bool{true}},
		{name: "only lab runs, included", lab: []bool{true}, includeLab: true, wantRuns: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tracestore.NewMemory())
			// Real runs first, lab runs newest: a lab click after real use.
			for _, refunded := range tc.real {
				f.runAs(t, refunded, false)
			}
			for _, refunded := range tc.lab {
				f.runAs(t, refunded, true)
			}
			rep, err := Analyze(ctx, f.st, Query{Program: "refund", IncludeLab: tc.includeLab})
			if tc.wantRuns == 0 {
				if !errors.Is(err, ErrUnknownProgram) || !strings.Contains(err.Error(), "laboratory") {
					t.Fatalf("err = %v, want ErrUnknownProgram that mentions the laboratory", err)
				}
				return
			}
			if err != nil || rep.Runs != tc.wantRuns || math.Abs(rep.TransitionEntropyBits-tc.wantH) > 1e-12 {
				t.Fatalf("report: %d runs, H %v, %v; want %d runs, H %v", rep.Runs, rep.TransitionEntropyBits, err, tc.wantRuns, tc.wantH)
			}
		})
	}
}

func TestBaselineGivesDrift(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, tracestore.NewMemory())
	f.run(t, true)
	f.run(t, true)
	rep, err := Analyze(ctx, f.st, Query{Program: "refund"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SaveBaseline(ctx, f.st, rep); err != nil {
		t.Fatal(err)
	}
	rep, err = Analyze(ctx, f.st, Query{Program: "refund"})
	if err != nil || rep.Drift == nil || rep.Drift.JSDBits != 0 || rep.Drift.BaselineRuns != 2 || rep.Drift.BaselineDefinitionHash != f.p.Hash {
		t.Fatalf("same window against its baseline: %+v, %v", rep.Drift, err)
	}
	// Two denials: P = {ac: 1/2, cr: 1/4, cd: 1/4} against Q = {ac: 1/2,
	// cr: 1/2}; M = {1/2, 3/8, 1/8}.
	// JSD = ½[(1/4)log2(2/3) + (1/4)log2 2] + ½[(1/2)log2(4/3)].
	f.run(t, false)
	f.run(t, false)
	rep, err = Analyze(ctx, f.st, Query{Program: "refund"})
	if err != nil {
		t.Fatal(err)
	}
	want := 0.5*(0.25*math.Log2(2.0/3)+0.25) + 0.5*(0.5*math.Log2(4.0/3))
	if rep.Drift == nil || math.Abs(rep.Drift.JSDBits-want) > 1e-12 {
		t.Fatalf("drift %+v, want jsd %v", rep.Drift, want)
	}
}

func TestBaselineOfAnotherDefinitionIsTheFallback(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, tracestore.NewMemory())
	f.run(t, true)
	old := `{"format":"nano-vm-baseline/1","program":"refund","definition_hash":"sha256:old","runs":1,
		"transitions":[{"from":"assess_refund","to":"check","count":1},{"from":"check","to":"refunded","count":1}]}`
	if err := f.st.PutBaseline(ctx, "refund", "sha256:old", []byte(old)); err != nil {
		t.Fatal(err)
	}
	rep, err := Analyze(ctx, f.st, Query{Program: "refund"})
	if err != nil || rep.Drift == nil || rep.Drift.BaselineDefinitionHash != "sha256:old" || rep.Drift.JSDBits != 0 {
		t.Fatalf("drift against the old definition's baseline: %+v, %v", rep.Drift, err)
	}
	if err := f.st.PutBaseline(ctx, "refund", f.p.Hash, []byte(`{"format":"other"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := Analyze(ctx, f.st, Query{Program: "refund"}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a damaged baseline: %v, want an error", err)
	}
}

// A window larger than a listing page is read page by page.
func TestWindowSpansListingPages(t *testing.T) {
	if testing.Short() {
		t.Skip("1,003 runs")
	}
	ctx := context.Background()
	f := newFixture(t, tracestore.NewMemory())
	tmpl := f.run(t, true)
	cloneRuns(t, f.st, tmpl, 1002)
	rep, err := Analyze(ctx, f.st, Query{Program: "refund", Window: 1003})
	if err != nil || rep.Runs != 1003 || rep.Counts.Transitions != 2006 {
		t.Fatalf("1,003 runs: %d runs, %d transitions, %v", rep.Runs, rep.Counts.Transitions, err)
	}
	rep, err = Analyze(ctx, f.st, Query{Program: "refund", Window: 5000})
	if err != nil || rep.Runs != 1003 {
		t.Fatalf("a window beyond the runs: %d runs, %v", rep.Runs, err)
	}
}

// cloneRuns stores n copies of run tmpl's trace under new run ids, each
// started a second after the last: cheap fixtures for large windows.
func cloneRuns(t testing.TB, st tracestore.Store, tmpl string, n int) {
	t.Helper()
	ctx := context.Background()
	recs, err := st.Load(ctx, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Run(ctx, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		info.StartedAt = info.StartedAt.Add(time.Second)
		info.UpdatedAt = info.StartedAt
		if err := st.Append(ctx, fmt.Sprintf("clone%06d", i), recs, info); err != nil {
			t.Fatal(err)
		}
	}
}
