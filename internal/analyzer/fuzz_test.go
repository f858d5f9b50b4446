package analyzer

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"
)

// checkReport fails t unless every value of r is finite and within its
// documented range.
func checkReport(t *testing.T, r Report) {
	t.Helper()
	finite := func(name string, x, lo, hi float64) {
		t.Helper()
		if math.IsNaN(x) || math.IsInf(x, 0) || x < lo || x > hi {
			t.Errorf("%s = %v, want a finite value in [%v, %v]", name, x, lo, hi)
		}
	}
	ratio := func(name string, q Ratio) {
		t.Helper()
		if q.Num < 0 || q.Num > q.Den {
			t.Errorf("%s = %d/%d, want 0 ≤ num ≤ den", name, q.Num, q.Den)
		}
	}
	var maxH float64
	var n int64
	for i, s := range r.States {
		if i > 0 && r.States[i-1].State >= s.State {
			t.Errorf("states out of order: %q then %q", r.States[i-1].State, s.State)
		}
		if s.Successors != len(s.Next) || s.Successors < 1 {
			t.Errorf("state %q: %d successors, %d next", s.State, s.Successors, len(s.Next))
		}
		var sum int64
		for j, x := range s.Next {
			if x.Count < 1 || j > 0 && s.Next[j-1].To >= x.To {
				t.Errorf("state %q: next %+v", s.State, s.Next)
			}
			sum += x.Count
		}
		if sum != s.Transitions {
			t.Errorf("state %q: %d transitions, next sum to %d", s.State, s.Transitions, sum)
		}
		finite("entropy_bits of "+s.State, s.EntropyBits, 0, math.Log2(float64(s.Successors)))
		finite("normalized_entropy of "+s.State, s.NormalizedEntropy, 0, 1)
		if s.Successors == 1 && (s.EntropyBits != 0 || s.NormalizedEntropy != 0) {
			t.Errorf("state %q: one successor, entropy %v (%v)", s.State, s.EntropyBits, s.NormalizedEntropy)
		}
		maxH = max(maxH, s.EntropyBits)
		n += s.Transitions
	}
	if n != r.Counts.Transitions {
		t.Errorf("states sum to %d transitions, counts say %d", n, r.Counts.Transitions)
	}
	finite("transition_entropy_bits", r.TransitionEntropyBits, 0, maxH+1e-9)
	finite("path_entropy_bits", r.PathEntropyBits, 0, math.Log2(float64(max(r.DistinctPaths, 1))))
	finite("transition_sequence_variance", r.TransitionSequenceVariance, 0, 1)
	finite("threshold_bits", r.ThresholdBits, math.SmallestNonzeroFloat64, math.MaxFloat64)
	if r.Drift != nil {
		finite("drift", r.Drift.JSDBits, 0, 1)
	}
	ratio("path_variance", r.PathVariance)
	ratio("rollback_density", r.RollbackDensity)
	ratio("rejection_rate", r.RejectionRate)
	ratio("retry_density", r.RetryDensity)
	if r.PathVariance != (Ratio{int64(r.DistinctPaths), int64(r.Runs)}) {
		t.Errorf("path_variance %v with %d distinct paths over %d runs", r.PathVariance, r.DistinctPaths, r.Runs)
	}
	for _, a := range r.Alerts {
		if !(a.Value > a.Threshold) || a.Threshold != r.ThresholdBits {
			t.Errorf("alert %+v at threshold %v", a, r.ThresholdBits)
		}
	}
	if r.ModalPath == nil || r.States == nil || r.Outcomes == nil || r.Alerts == nil {
		t.Error("a nil slice would encode as null")
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("encoding: %v", err)
	}
}

// fuzzNames are the state names fuzzed windows use: a few, so that paths
// repeat, and an empty one, which only hand-built stats can have.
var fuzzNames = []string{"a", "b", "c", "d", "e", "f", "", "B"}

// decodeWindow turns fuzz bytes into a window and maybe a baseline.
func decodeWindow(data []byte) ([]RunStats, *Baseline) {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	int64At := func() int64 {
		var buf [8]byte
		for i := range buf {
			buf[i] = next()
		}
		return int64(binary.LittleEndian.Uint64(buf[:]))
	}
	var base *Baseline
	if mode := next(); mode&1 == 1 {
		base = &Baseline{Format: BaselineFormat, Runs: int(next())}
		for range int(next() % 12) {
			c := int64(next()) - 16 // some counts ≤ 0
			if next()&1 == 1 {
				c = int64At()
			}
			base.Transitions = append(base.Transitions, EdgeCount{From: fuzzNames[next()%8], To: fuzzNames[next()%8], Count: c})
		}
	}
	var runs []RunStats
	for len(data) > 0 && len(runs) < 64 {
		h := next()
		path := make([]string, 0, h%24)
		var rollback []bool
		for range int(h % 24) {
			b := next()
			path = append(path, fuzzNames[b%8])
			rollback = append(rollback, b&0x80 != 0)
		}
		r := FromPath(path...)
		for i := range r.Transitions {
			r.Transitions[i].Rollback = rollback[i+1]
		}
		f := next()
		if f&1 != 0 {
			r.Accepted = int64At()
		} else {
			r.Accepted = int64(f >> 4)
		}
		if f&2 != 0 {
			r.Rejections = int64At()
		} else {
			r.Rejections = int64(f >> 5)
		}
		if f&4 != 0 {
			r.Attempts = int64At()
		} else {
			r.Attempts = int64(f >> 6)
		}
		if f&8 != 0 && len(r.Transitions) > 0 {
			// inconsistent stats: a transition that is not on the path
			r.Transitions[0].To = fuzzNames[next()%8]
		}
		r.Outcome = fuzzNames[f%3]
		runs = append(runs, r)
	}
	return runs, base
}

// FuzzAnalyze checks that no window, however odd, gives a NaN, an
// infinity or a value out of its range, and that the order of the runs
// never changes the report.
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{0}, 0.0)
	f.Add([]byte{1, 3, 2, 1, 2, 3, 1, 5, 3, 0, 1, 2, 0, 3, 0, 1, 2}, 2.5)
	f.Add([]byte{0, 4, 0, 1, 0, 2, 0, 4, 0, 1, 0, 3, 0, 4, 0, 1, 0x81, 1, 0}, 1.0)
	f.Add([]byte{1, 9, 2, 0, 0, 1, 2, 1, 1, 255, 255, 255, 255, 255, 255, 255, 127, 0, 2, 3, 0, 1, 0x0f}, math.NaN())
	f.Fuzz(func(t *testing.T, data []byte, threshold float64) {
		runs, base := decodeWindow(data)
		opts := Options{Threshold: threshold, Baseline: base}
		r := Analyze(runs, opts)
		checkReport(t, r)
		if base != nil && r.Counts.Transitions > 0 && r.Drift == nil {
			t.Error("a baseline and transitions, but no drift")
		}
		b := r.Baseline()
		if err := b.Validate(); err != nil && r.Counts.Transitions > 0 && !hasEmptyName(runs) {
			t.Errorf("the report's own baseline: %v", err)
		}
		want, _ := json.Marshal(r)
		got, _ := json.Marshal(Analyze(reversed(runs), opts))
		if string(got) != string(want) {
			t.Errorf("reversing the runs changed the report:\n got %s\nwant %s", got, want)
		}
	})
}

func hasEmptyName(runs []RunStats) bool {
	for _, r := range runs {
		for _, t := range r.Transitions {
			if t.From == "" || t.To == "" {
				return true
			}
		}
	}
	return false
}
