// Package analyzer computes the execution-topology metrics of a window of
// runs of one program: transition entropy (the conditional entropy of the
// next state given the current one), path entropy and variance, the
// transition sequence variance, rollback density, rejection rate, retry
// density, drift from a saved baseline, and the alerts they raise.
//
// It is pure: the caller chooses the runs (typically the last N runs of one
// program definition), derives each run's RunStats from its trace with
// FromEvents, and calls Analyze. Nothing here reads a store, a clock or a
// file. The output is deterministic: the same multiset of runs gives the
// same report, byte for byte once encoded, whatever their order, and no
// value in it is ever NaN or infinite. docs/metrics.md gives every formula.
package analyzer

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"strings"
)

// DefaultThreshold is the transition-entropy alert threshold, in bits.
const DefaultThreshold = 2.5

// MetricTransitionEntropy names the transition entropy in alerts.
const MetricTransitionEntropy = "transition_entropy"

// Options tune Analyze.
type Options struct {
	// Threshold is the transition-entropy alert threshold in bits. A value
	// that is not a positive finite number (0 included) means
	// DefaultThreshold.
	Threshold float64
	// Baseline, when set, is the saved window the drift is measured
	// against. Without it the report's drift is null.
	Baseline *Baseline
	// Program and DefinitionHash label the report. When empty, each is
	// taken from the runs if every run has the same non-empty value.
	Program        string
	DefinitionHash string
}

// Report is the analysis of one window of runs.
type Report struct {
	Program        string `json:"program"`
	DefinitionHash string `json:"definition_hash"`
	Runs           int    `json:"runs"`
	Counts         Counts `json:"counts"`

	// TransitionEntropyBits is H(next | state): each state's entropy
	// weighted by the transitions leaving it (visit-weighted).
	TransitionEntropyBits float64 `json:"transition_entropy_bits"`
	// PathEntropyBits is the entropy of the distribution of whole paths.
	PathEntropyBits float64 `json:"path_entropy_bits"`
	DistinctPaths   int     `json:"distinct_paths"`
	// PathVariance is distinct paths / runs.
	PathVariance Ratio `json:"path_variance"`
	// ModalPath is the most common path (ties: the lexicographically
	// smallest); empty for an empty window.
	ModalPath []string `json:"modal_path"`
	// TransitionSequenceVariance is the mean, over the runs, of the
	// normalised edit distance between a run's path and ModalPath, in [0, 1].
	TransitionSequenceVariance float64 `json:"transition_sequence_variance"`

	RollbackDensity Ratio `json:"rollback_density"` // rollbacks / transitions
	RejectionRate   Ratio `json:"rejection_rate"`   // rejections / (accepted + rejections)
	RetryDensity    Ratio `json:"retry_density"`    // attempts / (transitions + attempts)

	// Drift compares the window's transition distribution with the
	// baseline's; nil (null) without a baseline or without transitions.
	Drift *Drift `json:"drift"`

	ThresholdBits float64 `json:"threshold_bits"`
	// States has one entry per state that some transition in the window
	// leaves, sorted by name.
	States []StateMetrics `json:"states"`
	// Outcomes counts the runs by status and outcome, sorted.
	Outcomes []OutcomeCount `json:"outcomes"`
	Alerts   []Alert        `json:"alerts"`
}

// Counts are the window's totals, the sums of the runs' receipt counts
// (transitions, rejections, attempts, rollbacks, faults) plus the accepted
// answers. A sum that would overflow stays at the largest int64.
type Counts struct {
	Transitions int64 `json:"transitions"`
	Rollbacks   int64 `json:"rollbacks"`
	Accepted    int64 `json:"accepted"`
	Rejections  int64 `json:"rejections"`
	Attempts    int64 `json:"attempts"`
	Faults      int64 `json:"faults"`
}

// StateMetrics describes the transitions leaving one state.
type StateMetrics struct {
	State string `json:"state"`
	// Transitions is n_s, the number of transitions leaving the state.
	Transitions int64 `json:"transitions"`
	// Successors is k_s, the number of distinct states they entered.
	Successors int `json:"successors"`
	// EntropyBits is H(s) = −Σ_t p(t|s) log2 p(t|s), in [0, log2 k_s].
	EntropyBits float64 `json:"entropy_bits"`
	// NormalizedEntropy is H(s)/log2(k_s), in [0, 1]; 0 when k_s ≤ 1.
	NormalizedEntropy float64 `json:"normalized_entropy"`
	// Next counts the transitions to each successor, sorted by state.
	Next []Successor `json:"next"`
}

// Successor counts the transitions from one state to another.
type Successor struct {
	To    string `json:"to"`
	Count int64  `json:"count"`
}

// OutcomeCount is how many runs of the window ended (or stand) so.
type OutcomeCount struct {
	Status  string `json:"status"`
	Outcome string `json:"outcome"`
	Runs    int    `json:"runs"`
}

// Drift is the divergence of the window from a saved baseline.
type Drift struct {
	// JSDBits is the Jensen–Shannon divergence, base 2, between the
	// window's and the baseline's distributions of transitions (from, to):
	// 0 for identical distributions, 1 for disjoint ones.
	JSDBits                float64 `json:"jsd_bits"`
	BaselineRuns           int     `json:"baseline_runs"`
	BaselineTransitions    int64   `json:"baseline_transitions"`
	BaselineDefinitionHash string  `json:"baseline_definition_hash"`
}

// Alert is a metric above its threshold. State is set for a per-state
// alert and empty (absent) for one about the whole window.
type Alert struct {
	Metric    string  `json:"metric"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	State     string  `json:"state,omitempty"`
}

// pathEntry is one distinct path of the window.
type pathEntry struct {
	ids  []int32
	runs int64
}

// window accumulates the runs.
type window struct {
	ids   map[string]int32 // state name → id
	names []string         // id → state name
	edges map[uint64]int64 // from<<32 | to → transitions
	paths map[string]int   // path key → index in distinct
	dist  []pathEntry
	outc  map[[2]string]int
}

func (w *window) id(name string) int32 {
	if id, ok := w.ids[name]; ok {
		return id
	}
	id := int32(len(w.names))
	w.ids[name] = id
	w.names = append(w.names, name)
	return id
}

// Analyze computes the metrics of a window of runs. The caller chooses
// the runs; their order does not matter. An empty window gives zeros,
// 0/0 ratios, an empty modal path, no drift and no alerts.
func Analyze(runs []RunStats, opts Options) Report {
	threshold := opts.Threshold
	if !(threshold > 0) || math.IsInf(threshold, 0) {
		threshold = DefaultThreshold
	}
	w := &window{
		ids:   map[string]int32{},
		edges: map[uint64]int64{},
		paths: map[string]int{},
		outc:  map[[2]string]int{},
	}
	var c Counts
	var seq []int32
	var key []byte
	for i := range runs {
		r := &runs[i]
		c.Accepted = addSat(c.Accepted, r.Accepted)
		c.Rejections = addSat(c.Rejections, r.Rejections)
		c.Attempts = addSat(c.Attempts, r.Attempts)
		c.Faults = addSat(c.Faults, r.Faults)

		seq, key = seq[:0], key[:0]
		for _, s := range r.Path {
			id := w.id(s)
			seq = append(seq, id)
			key = binary.LittleEndian.AppendUint32(key, uint32(id))
		}
		if j, ok := w.paths[string(key)]; ok {
			w.dist[j].runs++
		} else {
			w.paths[string(key)] = len(w.dist)
			w.dist = append(w.dist, pathEntry{ids: slices.Clone(seq), runs: 1})
		}

		for j, t := range r.Transitions {
			var from, to int32
			if j+1 < len(seq) && t.From == r.Path[j] && t.To == r.Path[j+1] {
				from, to = seq[j], seq[j+1] // the usual case: no lookups
			} else {
				from, to = w.id(t.From), w.id(t.To)
			}
			w.edges[uint64(from)<<32|uint64(uint32(to))]++
			c.Transitions++
			if t.Rollback {
				c.Rollbacks++
			}
		}
		w.outc[[2]string{string(r.Status), r.Outcome}]++
	}

	rep := Report{
		Program:        opts.Program,
		DefinitionHash: opts.DefinitionHash,
		Runs:           len(runs),
		Counts:         c,
		ThresholdBits:  threshold,
		ModalPath:      []string{},
		States:         []StateMetrics{},
		Outcomes:       []OutcomeCount{},
		Alerts:         []Alert{},
	}
	if rep.Program == "" {
		rep.Program = unanimous(runs, func(r *RunStats) string { return r.Program.Name })
	}
	if rep.DefinitionHash == "" {
		rep.DefinitionHash = unanimous(runs, func(r *RunStats) string { return r.Program.DefinitionHash })
	}

	w.states(&rep)
	w.pathMetrics(&rep)
	rep.RollbackDensity = Ratio{c.Rollbacks, c.Transitions}
	rep.RejectionRate = Ratio{c.Rejections, addSat(c.Accepted, c.Rejections)}
	rep.RetryDensity = Ratio{c.Attempts, addSat(c.Transitions, c.Attempts)}
	if opts.Baseline != nil && c.Transitions > 0 {
		rep.Drift = drift(rep.States, opts.Baseline)
	}
	for k, n := range w.outc {
		rep.Outcomes = append(rep.Outcomes, OutcomeCount{Status: k[0], Outcome: k[1], Runs: n})
	}
	slices.SortFunc(rep.Outcomes, func(a, b OutcomeCount) int {
		return cmp.Or(strings.Compare(a.Status, b.Status), strings.Compare(a.Outcome, b.Outcome))
	})

	if rep.TransitionEntropyBits > threshold {
		rep.Alerts = append(rep.Alerts, Alert{Metric: MetricTransitionEntropy, Value: rep.TransitionEntropyBits, Threshold: threshold})
	}
	for _, s := range rep.States {
		if s.EntropyBits > threshold {
			rep.Alerts = append(rep.Alerts, Alert{Metric: MetricTransitionEntropy, Value: s.EntropyBits, Threshold: threshold, State: s.State})
		}
	}
	return rep
}

// states fills the per-state metrics and the transition entropy.
func (w *window) states(rep *Report) {
	if len(w.edges) == 0 {
		return
	}
	// rank[id] is the state's place in name order, so that edges sort by
	// (from, to) name without comparing strings.
	order := make([]int32, len(w.names))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(w.names[a], w.names[b]) })
	rank := make([]int32, len(w.names))
	for r, id := range order {
		rank[id] = int32(r)
	}
	type edge struct {
		from, to int32
		n        int64
	}
	edges := make([]edge, 0, len(w.edges))
	for k, n := range w.edges {
		edges = append(edges, edge{int32(k >> 32), int32(uint32(k)), n})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		return cmp.Or(cmp.Compare(rank[a.from], rank[b.from]), cmp.Compare(rank[a.to], rank[b.to]))
	})

	var total float64
	var counts []int64
	maxK := 0
	for i := 0; i < len(edges); {
		j := i
		st := StateMetrics{State: w.names[edges[i].from], Next: []Successor{}}
		counts = counts[:0]
		for ; j < len(edges) && edges[j].from == edges[i].from; j++ {
			st.Next = append(st.Next, Successor{To: w.names[edges[j].to], Count: edges[j].n})
			st.Transitions += edges[j].n
			counts = append(counts, edges[j].n)
		}
		st.Successors = j - i
		st.EntropyBits = entropy(counts)
		st.NormalizedEntropy = normalised(st.EntropyBits, st.Successors)
		maxK = max(maxK, st.Successors)
		total += float64(st.Transitions)
		rep.States = append(rep.States, st)
		i = j
	}
	// Σ_s (n_s/N)·H(s), added in state-name order.
	var h float64
	for _, st := range rep.States {
		h += float64(st.Transitions) / total * st.EntropyBits
	}
	rep.TransitionEntropyBits = clamp(h, 0, math.Log2(float64(max(maxK, 1))))
}

// pathMetrics fills path entropy, path variance, the modal path and the
// transition sequence variance.
func (w *window) pathMetrics(rep *Report) {
	if len(w.dist) == 0 {
		return
	}
	counts := make([]int64, len(w.dist))
	modal := 0
	for i, p := range w.dist {
		counts[i] = p.runs
		if p.runs > w.dist[modal].runs || p.runs == w.dist[modal].runs && w.less(p.ids, w.dist[modal].ids) {
			modal = i
		}
	}
	rep.DistinctPaths = len(w.dist)
	rep.PathEntropyBits = entropy(counts)
	rep.PathVariance = Ratio{int64(len(w.dist)), int64(rep.Runs)}
	m := w.dist[modal].ids
	for _, id := range m {
		rep.ModalPath = append(rep.ModalPath, w.names[id])
	}
	terms := make([]float64, 0, len(w.dist))
	var row []int
	for _, p := range w.dist {
		var d float64
		d, row = normalisedEditDistance(p.ids, m, row)
		terms = append(terms, float64(p.runs)*d)
	}
	rep.TransitionSequenceVariance = clamp(sumSorted(terms)/float64(rep.Runs), 0, 1)
}

// less orders paths lexicographically by state name: the first differing
// state decides (byte-wise string order); a proper prefix comes first.
func (w *window) less(a, b []int32) bool {
	return slices.CompareFunc(a, b, func(x, y int32) int { return strings.Compare(w.names[x], w.names[y]) }) < 0
}

// drift measures the window's transitions (from the per-state counts)
// against the baseline's.
func drift(states []StateMetrics, b *Baseline) *Drift {
	type pair struct{ p, q float64 }
	dist := map[[2]string]*pair{}
	var keys [][2]string
	at := func(k [2]string) *pair {
		if e, ok := dist[k]; ok {
			return e
		}
		e := &pair{}
		dist[k] = e
		keys = append(keys, k)
		return e
	}
	for _, s := range states {
		for _, n := range s.Next {
			at([2]string{s.State, n.To}).p += float64(n.Count)
		}
	}
	d := &Drift{BaselineRuns: b.Runs, BaselineDefinitionHash: b.DefinitionHash}
	var tq float64
	for _, e := range b.Transitions {
		if e.Count > 0 {
			at([2]string{e.From, e.To}).q += float64(e.Count)
			d.BaselineTransitions = addSat(d.BaselineTransitions, e.Count)
			tq += float64(e.Count)
		}
	}
	if tq == 0 {
		d.JSDBits = 1 // the baseline has no transitions: nothing in common
		return d
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
	})
	p, q := make([]float64, len(keys)), make([]float64, len(keys))
	for i, k := range keys {
		p[i], q[i] = dist[k].p, dist[k].q
	}
	d.JSDBits = jsd(p, q)
	return d
}

// unanimous is the value every run gives, or "" when they differ or there
// are none.
func unanimous(runs []RunStats, f func(*RunStats) string) string {
	if len(runs) == 0 {
		return ""
	}
	v := f(&runs[0])
	for i := range runs[1:] {
		if f(&runs[i+1]) != v {
			return ""
		}
	}
	return v
}

// addSat is a + max(b, 0), staying at the largest int64 instead of
// overflowing; a is never negative.
func addSat(a, b int64) int64 {
	if b <= 0 {
		return a
	}
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
