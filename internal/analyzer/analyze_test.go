package analyzer

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

const eps = 1e-12

func near(a, b float64) bool { return math.Abs(a-b) <= eps }

// h is the entropy in bits of the probabilities ps, for expected values.
func h(ps ...float64) float64 {
	var s float64
	for _, p := range ps {
		s -= p * math.Log2(p)
	}
	return s
}

// linear is the path s00 → s01 → … of n states.
func linear(prefix string, n int) []string {
	p := make([]string, n)
	for i := range p {
		p[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return p
}

// times repeats a run n times.
func times(n int, r RunStats) []RunStats {
	out := make([]RunStats, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// withRollbacks marks the transitions at the given indexes as rollbacks.
func withRollbacks(r RunStats, at ...int) RunStats {
	r.Transitions = slices.Clone(r.Transitions)
	for _, i := range at {
		r.Transitions[i].Rollback = true
	}
	return r
}

// fan8 is one run through each of eight equally likely branches after the
// given prefix.
func fan8(prefix []string) []RunStats {
	var runs []RunStats
	for i := 1; i <= 8; i++ {
		runs = append(runs, FromPath(append(slices.Clone(prefix), fmt.Sprintf("b%d", i))...))
	}
	return runs
}

// rollbackLoop is a draft → review loop: review rolls back to draft or
// ends at done. Four runs with 0, 1, 2 and 0 rollbacks.
func rollbackLoop() []RunStats {
	return []RunStats{
		FromPath("draft", "review", "done"),
		withRollbacks(FromPath("draft", "review", "draft", "review", "done"), 1),
		withRollbacks(FromPath("draft", "review", "draft", "review", "draft", "review", "done"), 1, 3),
		FromPath("draft", "review", "done"),
	}
}

// TestAnalyzeHandComputed pins every metric on windows whose values are
// computed by hand.
func TestAnalyzeHandComputed(t *testing.T) {
	type want struct {
		transitionH, pathH, tsv float64
		pathVar, rollback       Ratio
		modal                   []string
		alerts                  []Alert
	}
	cases := []struct {
		name string
		runs []RunStats
		opts Options
		want want
	}{
		{
			// Deterministic of any length: 0 bits. The prototype's pair
			// entropy scores log2(59) = 5.88 bits on one such run and alerts.
			name: "60-state linear program scores 0 and raises no alert",
			runs: times(10, FromPath(linear("s", 60)...)),
			want: want{pathVar: Ratio{1, 10}, rollback: Ratio{0, 590}, modal: linear("s", 60)},
		},
		{
			name: "8-way uniform branch scores 3 bits and raises the alert",
			runs: fan8([]string{"start"}),
			want: want{
				transitionH: 3, pathH: 3,
				// modal: all tie at one run, [start b1] is smallest; the
				// seven others are at distance 1 of 2.
				tsv:     7 * 0.5 / 8,
				pathVar: Ratio{8, 8}, rollback: Ratio{0, 8},
				modal: []string{"start", "b1"},
				alerts: []Alert{
					{Metric: "transition_entropy", Value: 3, Threshold: 2.5},
					{Metric: "transition_entropy", Value: 3, Threshold: 2.5, State: "start"},
				},
			},
		},
		{
			name: "8-way branch at a threshold of 3 raises nothing (strictly above)",
			runs: fan8([]string{"start"}),
			opts: Options{Threshold: 3},
			want: want{transitionH: 3, pathH: 3, tsv: 7 * 0.5 / 8, pathVar: Ratio{8, 8}, rollback: Ratio{0, 8}, modal: []string{"start", "b1"}},
		},
		{
			// 30 linear states then the branch: 8 runs × 30 transitions; only
			// c29 is uncertain: H = (8/240)·3 = 0.1 overall, 3 at c29.
			name: "8-way branch deep in a long program alerts on its state only",
			runs: fan8(linear("c", 30)),
			want: want{
				transitionH: 0.1, pathH: 3,
				tsv:     7 * (1.0 / 31) / 8,
				pathVar: Ratio{8, 8}, rollback: Ratio{0, 240},
				modal:  append(linear("c", 30), "b1"),
				alerts: []Alert{{Metric: "transition_entropy", Value: 3, Threshold: 2.5, State: "c29"}},
			},
		},
		{
			// draft → review 7 times (H 0); review → draft 3, → done 4.
			// Paths: P1 ×2 (len 3), P2 (len 5, distance 2), P3 (len 7, distance 4).
			name: "rollback loop",
			runs: rollbackLoop(),
			want: want{
				transitionH: 7.0 / 14 * h(3.0/7, 4.0/7),
				pathH:       h(0.5, 0.25, 0.25),
				tsv:         (0 + 0 + 2.0/5 + 4.0/7) / 4,
				pathVar:     Ratio{3, 4}, rollback: Ratio{3, 14},
				modal: []string{"draft", "review", "done"},
			},
		},
		{
			// a → b → c three times, a → b → d once.
			name: "small window: path entropy and variance",
			runs: append(times(3, FromPath("a", "b", "c")), FromPath("a", "b", "d")),
			want: want{
				transitionH: 4.0 / 8 * h(0.75, 0.25),
				pathH:       h(0.75, 0.25),
				tsv:         (1.0 / 3) / 4,
				pathVar:     Ratio{2, 4}, rollback: Ratio{0, 8},
				modal: []string{"a", "b", "c"},
			},
		},
		{
			name: "empty window",
			want: want{modal: []string{}},
		},
		{
			name: "runs that never left their initial state",
			runs: times(3, FromPath("a")),
			want: want{pathVar: Ratio{1, 3}, modal: []string{"a"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Analyze(c.runs, c.opts)
			if r.Runs != len(c.runs) {
				t.Errorf("runs %d, want %d", r.Runs, len(c.runs))
			}
			for _, m := range []struct {
				name      string
				got, want float64
			}{
				{"transition_entropy_bits", r.TransitionEntropyBits, c.want.transitionH},
				{"path_entropy_bits", r.PathEntropyBits, c.want.pathH},
				{"transition_sequence_variance", r.TransitionSequenceVariance, c.want.tsv},
			} {
				if !near(m.got, m.want) {
					t.Errorf("%s = %v, want %v", m.name, m.got, m.want)
				}
			}
			if r.PathVariance != c.want.pathVar {
				t.Errorf("path_variance %v, want %v", r.PathVariance, c.want.pathVar)
			}
			if r.RollbackDensity != c.want.rollback {
				t.Errorf("rollback_density %v, want %v", r.RollbackDensity, c.want.rollback)
			}
			if !slices.Equal(r.ModalPath, c.want.modal) {
				t.Errorf("modal_path %v, want %v", r.ModalPath, c.want.modal)
			}
			if len(r.Alerts) != len(c.want.alerts) {
				t.Fatalf("alerts %+v, want %+v", r.Alerts, c.want.alerts)
			}
			for i, a := range r.Alerts {
				w := c.want.alerts[i]
				if a.Metric != w.Metric || a.State != w.State || a.Threshold != w.Threshold || !near(a.Value, w.Value) {
					t.Errorf("alert %d: %+v, want %+v", i, a, w)
				}
			}
		})
	}
}

// TestPerStateEntropy pins H(s) and H(s)/log2(k_s) per state.
func TestPerStateEntropy(t *testing.T) {
	runs := []RunStats{
		FromPath("x", "y"), FromPath("x", "y"), FromPath("x", "y"), FromPath("x", "z"),
		FromPath("w", "a"), FromPath("w", "b"), FromPath("w", "c"), FromPath("w", "c"),
		FromPath("lone", "next"),
	}
	r := Analyze(runs, Options{})
	want := []struct {
		state      string
		n          int64
		k          int
		h, norm    float64
		successors []Successor
	}{
		{"lone", 1, 1, 0, 0, []Successor{{"next", 1}}},
		{"w", 4, 3, 1.5, 1.5 / math.Log2(3), []Successor{{"a", 1}, {"b", 1}, {"c", 2}}},
		{"x", 4, 2, h(0.75, 0.25), h(0.75, 0.25), []Successor{{"y", 3}, {"z", 1}}},
	}
	if len(r.States) != len(want) {
		t.Fatalf("states %+v", r.States)
	}
	for i, w := range want {
		s := r.States[i]
		if s.State != w.state || s.Transitions != w.n || s.Successors != w.k || !near(s.EntropyBits, w.h) || !near(s.NormalizedEntropy, w.norm) || !slices.Equal(s.Next, w.successors) {
			t.Errorf("state %d: %+v, want %+v", i, s, w)
		}
	}
	// (1·0 + 4·1.5 + 4·0.811…)/9
	if wantH := (4*1.5 + 4*h(0.75, 0.25)) / 9; !near(r.TransitionEntropyBits, wantH) {
		t.Errorf("transition_entropy_bits %v, want %v", r.TransitionEntropyBits, wantH)
	}
}

// TestModalPathTieBreak pins the lexicographic order that breaks ties.
func TestModalPathTieBreak(t *testing.T) {
	cases := []struct {
		name  string
		paths [][]string
		want  []string
	}{
		{"first differing state decides", [][]string{{"a", "c"}, {"a", "b", "c"}}, []string{"a", "b", "c"}},
		{"a proper prefix comes first", [][]string{{"a", "b", "c"}, {"a", "b"}}, []string{"a", "b"}},
		{"byte order, not length order", [][]string{{"b"}, {"aa", "z", "z"}}, []string{"aa", "z", "z"}},
		{"byte order: upper case before lower", [][]string{{"a"}, {"B"}}, []string{"B"}},
		{"the most common path wins over a smaller one", [][]string{{"z"}, {"z"}, {"a"}}, []string{"z"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var runs []RunStats
			for _, p := range c.paths {
				runs = append(runs, FromPath(p...))
			}
			for _, order := range [][]RunStats{runs, reversed(runs)} {
				if got := Analyze(order, Options{}).ModalPath; !slices.Equal(got, c.want) {
					t.Errorf("modal path %v, want %v", got, c.want)
				}
			}
		})
	}
}

func reversed(runs []RunStats) []RunStats {
	out := slices.Clone(runs)
	slices.Reverse(out)
	return out
}

func TestEditDistance(t *testing.T) {
	cases := []struct {
		a, b string // one state per letter
		d    int
		norm float64
	}{
		{"", "", 0, 0},
		{"abc", "", 3, 1},
		{"", "ab", 2, 1},
		{"abc", "abc", 0, 0},
		{"kitten", "sitting", 3, 3.0 / 7},
		{"abc", "acb", 2, 2.0 / 3},
		{"abcd", "bcd", 1, 1.0 / 4},
		{"abab", "baba", 2, 2.0 / 4},
		{"xyz", "abc", 3, 1},
	}
	ids := func(s string) []int32 {
		var out []int32
		for _, r := range s {
			out = append(out, r)
		}
		return out
	}
	var row []int
	for _, c := range cases {
		for _, swap := range []bool{false, true} {
			a, b := ids(c.a), ids(c.b)
			if swap {
				a, b = b, a
			}
			var d int
			d, row = editDistance(a, b, row)
			n, _ := normalisedEditDistance(a, b, nil)
			if d != c.d || !near(n, c.norm) {
				t.Errorf("d(%q, %q) = %d (%v), want %d (%v)", c.a, c.b, d, n, c.d, c.norm)
			}
		}
	}
}

// TestDrift pins the Jensen–Shannon divergence on known distributions.
func TestDrift(t *testing.T) {
	ab := times(4, FromPath("a", "b"))
	window := Analyze(ab, Options{})
	self := window.Baseline()
	cases := []struct {
		name     string
		runs     []RunStats
		baseline *Baseline
		want     *float64
	}{
		{"no baseline: null", ab, nil, nil},
		{"identical distributions: 0", ab, &self, ptr(0)},
		{"same distribution, other scale: 0", times(40, FromPath("a", "b")), &self, ptr(0)},
		{"disjoint distributions: 1", times(2, FromPath("x", "y")), &self, ptr(1)},
		{
			// P = {ab: 1}, Q = {ab: ½, ac: ½}, M = {ab: ¾, ac: ¼}:
			// ½·log2(4/3) + ½·(½·log2(2/3) + ½·log2 2)
			"half overlap",
			ab,
			&Baseline{Format: BaselineFormat, Runs: 2, Transitions: []EdgeCount{{"a", "b", 1}, {"a", "c", 1}}},
			ptr(0.5*math.Log2(4.0/3) + 0.5*(0.5*math.Log2(2.0/3)+0.5)),
		},
		{"baseline without transitions: 1", ab, &Baseline{Format: BaselineFormat, Runs: 3}, ptr(1)},
		{"window without transitions: null", times(2, FromPath("a")), &self, nil},
		{"empty window: null", nil, &self, nil},
		{
			"invalid baseline counts are ignored, repeats added up",
			ab,
			&Baseline{Transitions: []EdgeCount{{"a", "b", 2}, {"a", "z", -5}, {"a", "c", 0}, {"a", "b", 1}}},
			ptr(0),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Analyze(c.runs, Options{Baseline: c.baseline})
			switch {
			case c.want == nil && r.Drift != nil:
				t.Fatalf("drift %+v, want null", r.Drift)
			case c.want == nil:
			case r.Drift == nil:
				t.Fatalf("drift null, want %v", *c.want)
			case !near(r.Drift.JSDBits, *c.want):
				t.Fatalf("drift %v, want %v", r.Drift.JSDBits, *c.want)
			}
		})
	}
}

func ptr(f float64) *float64 { return &f }

// TestRates pins the rejection rate and retry density.
func TestRates(t *testing.T) {
	a := FromPath("a", "b", "c")
	a.Accepted, a.Rejections, a.Attempts = 2, 3, 2 // one protocol rejection
	b := FromPath("a")
	b.Rejections, b.Attempts, b.Faults = 3, 3, 1 // failed before its first hop
	r := Analyze([]RunStats{a, b}, Options{})
	if want := (Counts{Transitions: 2, Accepted: 2, Rejections: 6, Attempts: 5, Faults: 1}); r.Counts != want {
		t.Errorf("counts %+v, want %+v", r.Counts, want)
	}
	if want := (Ratio{6, 8}); r.RejectionRate != want {
		t.Errorf("rejection_rate %v, want %v", r.RejectionRate, want)
	}
	if want := (Ratio{5, 7}); r.RetryDensity != want {
		t.Errorf("retry_density %v, want %v", r.RetryDensity, want)
	}
	// A negative counter (only possible in stats built by hand) counts as 0.
	c := FromPath("a")
	c.Rejections, c.Accepted = -4, math.MaxInt64
	r = Analyze([]RunStats{a, c, c}, Options{})
	if r.Counts.Rejections != 3 || r.Counts.Accepted != math.MaxInt64 || r.RejectionRate.Den != math.MaxInt64 {
		t.Errorf("counts %+v, rejection_rate %v", r.Counts, r.RejectionRate)
	}
}

// TestEmptyWindowJSON pins the JSON of an empty window: zeros, 0/0
// ratios, empty arrays, null drift.
func TestEmptyWindowJSON(t *testing.T) {
	got, err := json.Marshal(Analyze(nil, Options{Program: "refund"}))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"program":"refund","definition_hash":"","runs":0,` +
		`"counts":{"transitions":0,"rollbacks":0,"accepted":0,"rejections":0,"attempts":0,"faults":0},` +
		`"transition_entropy_bits":0,"path_entropy_bits":0,"distinct_paths":0,"path_variance":{"num":0,"den":0},` +
		`"modal_path":[],"transition_sequence_variance":0,"rollback_density":{"num":0,"den":0},` +
		`"rejection_rate":{"num":0,"den":0},"retry_density":{"num":0,"den":0},"drift":null,` +
		`"threshold_bits":2.5,"states":[],"outcomes":[],"alerts":[]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestReportJSON pins the shape of a full report.
func TestReportJSON(t *testing.T) {
	runs := fan8([]string{"start"})
	for i := range runs {
		runs[i].Program = runtime.ProgramRef{Name: "fan", Version: "1", DefinitionHash: "sha256:ff"}
		runs[i].Status, runs[i].Outcome = runtime.StatusCompleted, "DONE"
		runs[i].Accepted = 1
	}
	runs = runs[:2]
	base := Baseline{Format: BaselineFormat, Runs: 1, DefinitionHash: "sha256:ee", Transitions: []EdgeCount{{"start", "b1", 1}}}
	got, err := json.Marshal(Analyze(runs, Options{Baseline: &base, Threshold: 0.5}))
	if err != nil {
		t.Fatal(err)
	}
	// JSD({b1: ½, b2: ½}, {b1: 1}) = ½·(½·log2(2/3)·… ) = 1.5 − ¾·log2 3
	const want = `{"program":"fan","definition_hash":"sha256:ff","runs":2,` +
		`"counts":{"transitions":2,"rollbacks":0,"accepted":2,"rejections":0,"attempts":0,"faults":0},` +
		`"transition_entropy_bits":1,"path_entropy_bits":1,"distinct_paths":2,"path_variance":{"num":2,"den":2},` +
		`"modal_path":["start","b1"],"transition_sequence_variance":0.25,"rollback_density":{"num":0,"den":2},` +
		`"rejection_rate":{"num":0,"den":2},"retry_density":{"num":0,"den":2},` +
		`"drift":{"jsd_bits":0.3112781244591328,"baseline_runs":1,"baseline_transitions":1,"baseline_definition_hash":"sha256:ee"},` +
		`"threshold_bits":0.5,` +
		`"states":[{"state":"start","transitions":2,"successors":2,"entropy_bits":1,"normalized_entropy":1,"next":[{"to":"b1","count":1},{"to":"b2","count":1}]}],` +
		`"outcomes":[{"status":"completed","outcome":"DONE","runs":2}],` +
		`"alerts":[{"metric":"transition_entropy","value":1,"threshold":0.5},{"metric":"transition_entropy","value":1,"threshold":0.5,"state":"start"}]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if wantJSD := 1.5 - 0.75*math.Log2(3); !near(0.3112781244591328, wantJSD) {
		t.Errorf("JSD by hand %v", wantJSD)
	}
}

// TestThresholdDefault checks that a threshold that is not a positive
// finite number falls back to the default.
func TestThresholdDefault(t *testing.T) {
	for _, th := range []float64{0, -1, math.NaN(), math.Inf(1), math.Inf(-1)} {
		r := Analyze(fan8([]string{"s"}), Options{Threshold: th})
		if r.ThresholdBits != DefaultThreshold || len(r.Alerts) != 2 {
			t.Errorf("threshold %v: used %v, %d alerts", th, r.ThresholdBits, len(r.Alerts))
		}
		if _, err := json.Marshal(r); err != nil {
			t.Errorf("threshold %v: %v", th, err)
		}
	}
}

// TestProgramLabel checks where the report's program and definition come
// from.
func TestProgramLabel(t *testing.T) {
	a, b := FromPath("s"), FromPath("s")
	a.Program = runtime.ProgramRef{Name: "p", DefinitionHash: "sha256:1"}
	b.Program = runtime.ProgramRef{Name: "p", DefinitionHash: "sha256:2"}
	r := Analyze([]RunStats{a, b}, Options{})
	if r.Program != "p" || r.DefinitionHash != "" {
		t.Errorf("from runs: %q %q, want p and none (they differ)", r.Program, r.DefinitionHash)
	}
	r = Analyze([]RunStats{a, b}, Options{Program: "q", DefinitionHash: "sha256:3"})
	if r.Program != "q" || r.DefinitionHash != "sha256:3" {
		t.Errorf("from options: %q %q", r.Program, r.DefinitionHash)
	}
}

// TestOrderDoesNotMatter checks that the report, byte for byte, depends
// only on the multiset of runs.
func TestOrderDoesNotMatter(t *testing.T) {
	runs := append(append(rollbackLoop(), fan8([]string{"draft"})...), times(3, FromPath("draft", "review", "done"))...)
	base := Analyze(fan8([]string{"draft"}), Options{}).Baseline()
	enc := func(rs []RunStats) string {
		b, err := json.Marshal(Analyze(rs, Options{Baseline: &base}))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := enc(runs)
	for i := range 20 {
		perm := slices.Clone(runs)
		// a fixed sequence of rotations and swaps: deterministic, varied
		for j := range perm {
			k := (j*7 + i*13) % len(perm)
			perm[j], perm[k] = perm[k], perm[j]
		}
		if got := enc(perm); got != want {
			t.Fatalf("permutation %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestBaselineRoundTrip checks that a baseline survives JSON unchanged and
// measures zero drift against its own window.
func TestBaselineRoundTrip(t *testing.T) {
	runs := rollbackLoop()
	rep := Analyze(runs, Options{Program: "loop", DefinitionHash: "sha256:aa"})
	b := rep.Baseline()
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"format":"nano-vm-baseline/1","program":"loop","definition_hash":"sha256:aa","runs":4,` +
		`"transitions":[{"from":"draft","to":"review","count":7},{"from":"review","to":"done","count":4},{"from":"review","to":"draft","count":3}]}`
	if string(data) != want {
		t.Errorf("got  %s\nwant %s", data, want)
	}
	var back Baseline
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(back)
	if string(again) != string(data) {
		t.Errorf("round trip changed it: %s", again)
	}
	if d := Analyze(runs, Options{Baseline: &back}).Drift; d == nil || d.JSDBits != 0 || d.BaselineRuns != 4 || d.BaselineTransitions != 14 || d.BaselineDefinitionHash != "sha256:aa" {
		t.Errorf("drift against itself: %+v", d)
	}
	empty := Analyze(nil, Options{}).Baseline()
	if data, _ := json.Marshal(empty); string(data) != `{"format":"nano-vm-baseline/1","program":"","definition_hash":"","runs":0,"transitions":[]}` {
		t.Errorf("empty baseline: %s", data)
	}
}

func TestBaselineValidate(t *testing.T) {
	ok := Baseline{Format: BaselineFormat, Runs: 1, Transitions: []EdgeCount{{"a", "b", 1}, {"a", "c", 2}, {"b", "a", 1}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]Baseline{
		"format":        {Format: "x", Transitions: ok.Transitions},
		"runs":          {Format: BaselineFormat, Runs: -1},
		"empty name":    {Format: BaselineFormat, Transitions: []EdgeCount{{"", "b", 1}}},
		"zero count":    {Format: BaselineFormat, Transitions: []EdgeCount{{"a", "b", 0}}},
		"out of order":  {Format: BaselineFormat, Transitions: []EdgeCount{{"b", "a", 1}, {"a", "b", 1}}},
		"repeated pair": {Format: BaselineFormat, Transitions: []EdgeCount{{"a", "b", 1}, {"a", "b", 1}}},
	}
	for name, b := range cases {
		if err := b.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestInconsistentStats checks that Analyze measures stats whose
// transitions do not follow their path (only possible when built by hand)
// without failing: path metrics read Path, transition metrics Transitions.
func TestInconsistentStats(t *testing.T) {
	r := FromPath("a", "b")
	r.Transitions = []Transition{{"x", "y", true}, {"x", "z", false}}
	if err := r.Validate(); err == nil {
		t.Error("Validate accepted it")
	}
	rep := Analyze([]RunStats{r}, Options{})
	if !slices.Equal(rep.ModalPath, []string{"a", "b"}) || rep.RollbackDensity != (Ratio{1, 2}) || rep.TransitionEntropyBits != 1 {
		t.Errorf("report %+v", rep)
	}
}
