package analyzer

import (
	"math"
	"slices"
)

// Ratio is an exact ratio of two integer counts, never reduced, so that
// the denominator keeps its meaning (transitions, runs, answers). Den is 0
// only when there was nothing to measure, and then Num is 0 too.
type Ratio struct {
	Num int64 `json:"num"`
	Den int64 `json:"den"`
}

// Float is Num/Den, and 0 for 0/0. For display only: reports carry the
// integers.
func (r Ratio) Float() float64 {
	if r.Den == 0 {
		return 0
	}
	return float64(r.Num) / float64(r.Den)
}

// entropy is the Shannon entropy, in bits, of the distribution whose
// (positive) counts are given: −Σ p·log2 p with p = c/Σc. It sorts counts,
// so the float sum, and hence the result, depends only on the multiset of
// counts, never on their order. It is clamped to [0, log2 k], k = len(counts),
// against rounding; 0 for fewer than two counts.
func entropy(counts []int64) float64 {
	if len(counts) < 2 {
		return 0
	}
	slices.Sort(counts)
	var total float64
	for _, c := range counts {
		total += float64(c)
	}
	var h float64
	for _, c := range counts {
		p := float64(c) / total
		h -= p * math.Log2(p)
	}
	return clamp(h, 0, math.Log2(float64(len(counts))))
}

// normalised is h/log2(k), in [0, 1], and 0 when k ≤ 1.
func normalised(h float64, k int) float64 {
	if k <= 1 {
		return 0
	}
	return clamp(h/math.Log2(float64(k)), 0, 1)
}

// clamp bounds x to [lo, hi]; a NaN becomes lo. The formulas cannot give a
// NaN; this is the last line of the "never NaN or infinite" guarantee.
func clamp(x, lo, hi float64) float64 {
	switch {
	case x > hi:
		return hi
	case x >= lo:
		return x
	}
	return lo
}

// sumSorted adds xs in ascending order, so that the result depends only on
// the multiset of values. It sorts xs.
func sumSorted(xs []float64) float64 {
	slices.Sort(xs)
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

// editDistance is the Levenshtein distance between two sequences of state
// ids: the fewest insertions, deletions and substitutions of one state
// that turn a into b. row is scratch space, reused when large enough.
func editDistance(a, b []int32, row []int) (int, []int) {
	if len(a) < len(b) {
		a, b = b, a // the row follows the shorter sequence
	}
	if cap(row) < len(b)+1 {
		row = make([]int, len(b)+1)
	}
	row = row[:len(b)+1]
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		diag := row[0] // d[i-1][j-1]
		row[0] = i
		for j := 1; j <= len(b); j++ {
			up := row[j] // d[i-1][j]
			best := diag
			if a[i-1] != b[j-1] {
				best = min(diag, up, row[j-1]) + 1
			}
			diag, row[j] = up, best
		}
	}
	return row[len(b)], row
}

// normalisedEditDistance is editDistance(a, b) / max(len a, len b), in
// [0, 1], and 0 when both are empty.
func normalisedEditDistance(a, b []int32, row []int) (float64, []int) {
	n := max(len(a), len(b))
	if n == 0 {
		return 0, row
	}
	d, row := editDistance(a, b, row)
	return float64(d) / float64(n), row
}

// jsd is the Jensen–Shannon divergence, base 2, between the distributions
// with counts p and q over the same keys (p[i] and q[i] belong to key i; a
// count ≤ 0 is absent). It is in [0, 1]. The caller orders the keys
// deterministically. Both totals must be positive.
//
//	JSD(P, Q) = ½ Σ P(x) log2(P(x)/M(x)) + ½ Σ Q(x) log2(Q(x)/M(x)),  M = ½(P + Q)
func jsd(p, q []float64) float64 {
	var tp, tq float64
	for i := range p {
		tp += max(p[i], 0)
		tq += max(q[i], 0)
	}
	if !(tp > 0) || !(tq > 0) || math.IsInf(tp, 0) || math.IsInf(tq, 0) {
		return 0
	}
	var d float64
	for i := range p {
		pi, qi := max(p[i], 0)/tp, max(q[i], 0)/tq
		m := (pi + qi) / 2
		if pi > 0 {
			d += pi * math.Log2(pi/m)
		}
		if qi > 0 {
			d += qi * math.Log2(qi/m)
		}
	}
	return clamp(d/2, 0, 1)
}
