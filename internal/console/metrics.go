package console

import (
	"cmp"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/analysis"
	"github.com/nano-vm/nano-vm-mcp/internal/analyzer"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// The metrics pages show, per program, the analyzer's figures over a
// window of its newest runs (docs/metrics.md), as the analyze tool reports
// them: they read the window with analysis.Read and report with the same
// call, and add the path distribution, which needs the runs themselves.
const (
	// maxWindow bounds the window a page reads: every run in it is a
	// trace read from the store.
	maxWindow = 1000
	// topPaths is how many of the commonest paths the page lists.
	topPaths = 10
)

// metricsRoutes registers the routes of the metrics page.
func (c *Console) metricsRoutes() {
	c.mux.HandleFunc("GET /ui/metrics", c.metricsIndex)
	c.mux.HandleFunc("GET /ui/metrics/{program}", c.metricsProgram)
}

// metricsSummary is one program's line on the metrics index.
type metricsSummary struct {
	Program, Version string
	NoRuns           bool
	Runs             int
	Entropy          string // transition entropy, bits
	DistinctPaths    int
	Rollback         ratioView
	Drift            string // "" without a baseline
	Alerts           int
}

// metricsIndex lists the loaded programs with the headline figures of
// their default window.
func (c *Console) metricsIndex(w http.ResponseWriter, r *http.Request) {
	lab, msg := labParam(r.URL.Query().Get("lab"))
	if msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	progs := c.cfg.Service.Programs()
	sort.Slice(progs, func(i, j int) bool { return progs[i].Name < progs[j].Name })
	out := make([]metricsSummary, 0, len(progs))
	for _, p := range progs {
		s := metricsSummary{Program: p.Name, Version: p.Version}
		win, err := analysis.Read(r.Context(), c.cfg.Store, analysis.Query{Program: p.Name, IncludeLab: lab})
		switch {
		case errors.Is(err, analysis.ErrUnknownProgram):
			s.NoRuns = true
		case err != nil:
			c.fail(w, r, err)
			return
		default:
			rep := win.Report(0)
			s.Runs, s.DistinctPaths, s.Alerts = rep.Runs, rep.DistinctPaths, len(rep.Alerts)
			s.Entropy = bitsText(rep.TransitionEntropyBits)
			s.Rollback = newRatioView(rep.RollbackDensity)
			if rep.Drift != nil {
				s.Drift = decimalText(rep.Drift.JSDBits, 4)
			}
		}
		out = append(out, s)
	}
	v := metricsView{IsIndex: true, Index: out, Window: analysis.DefaultWindow}
	v.setLab(lab, "/ui/metrics", url.Values{})
	c.render(w, r, "metrics", "Metrics", "metrics", v)
}

// metricsView is the page of one program.
type metricsView struct {
	IsIndex   bool // the index of programs, not a program's page
	Index     []metricsSummary
	Program   string
	Version   string // the loaded definition's; "" when none is loaded
	Window    int
	Windows   []windowLink // other windows to offer
	Threshold string
	NoRuns    bool

	// IncludeLab: laboratory runs count (?lab=include); by default they
	// are left out, so that fault experiments do not raise alerts.
	IncludeLab bool
	LabQuery   string // "?lab=include" when they count, for links to programs' pages
	LabToggle  string // this page with the other choice

	Report  analyzer.Report
	Current bool // the window's definition is the one loaded now

	Entropy      string // transition entropy, bits
	PathEntropy  string // bits
	SeqVariance  string
	EntropyChart template.HTML
	States       []stateRow
	Paths        []pathRow
	OtherPaths   int // distinct paths beyond the listed ones
	OtherRuns    int // and their runs
	PathChart    template.HTML
	Rollback     ratioView
	Rejection    ratioView
	Retry        ratioView
	Drift        string // JSD in bits; "" without a baseline
	Alerts       []string
}

// windowLink offers another window, keeping the threshold.
type windowLink struct {
	N   int
	URL string
}

// stateRow is one state in the entropy table, in the chart's words.
type stateRow struct {
	State       string
	Transitions int64
	Successors  int
	Bits        string
	Normalized  string
	Next        string
	Alert       bool
}

// pathRow is one distinct path of the window.
type pathRow struct {
	Rank   int
	States []string
	Runs   int
	Share  string // of the window's runs, in per cent
	Modal  bool
	share  float64
}

// ratioView is an analyzer ratio as the page writes it.
type ratioView struct {
	Num, Den int64
	Value    string // Num/Den to four decimals; "–" for 0/0
}

func newRatioView(r analyzer.Ratio) ratioView {
	v := ratioView{Num: r.Num, Den: r.Den, Value: "–"}
	if r.Den != 0 {
		v.Value = decimalText(r.Float(), 4)
	}
	return v
}

func (c *Console) metricsProgram(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("program")
	n, threshold, msg := metricsParams(r)
	lab, labMsg := labParam(r.URL.Query().Get("lab"))
	if msg == "" {
		msg = labMsg
	}
	if msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	var loaded *program.Program
	for _, p := range c.cfg.Service.Programs() {
		if p.Name == name {
			loaded = p
		}
	}
	v := metricsView{Program: name, Window: n, Threshold: thresholdText(threshold)}
	for _, o := range []int{25, analysis.DefaultWindow, 500} {
		if o == n {
			continue
		}
		q := url.Values{"window": {strconv.Itoa(o)}}
		if threshold != analyzer.DefaultThreshold {
			q.Set("threshold", thresholdText(threshold))
		}
		if lab {
			q.Set("lab", labInclude)
		}
		v.Windows = append(v.Windows, windowLink{o, "/ui/metrics/" + url.PathEscape(name) + "?" + q.Encode()})
	}
	keep := url.Values{}
	if n != analysis.DefaultWindow {
		keep.Set("window", strconv.Itoa(n))
	}
	if threshold != analyzer.DefaultThreshold {
		keep.Set("threshold", thresholdText(threshold))
	}
	v.setLab(lab, "/ui/metrics/"+url.PathEscape(name), keep)
	if loaded != nil {
		v.Version = loaded.Version
	}
	win, err := analysis.Read(r.Context(), c.cfg.Store, analysis.Query{Program: name, Window: n, IncludeLab: lab})
	switch {
	case errors.Is(err, analysis.ErrUnknownProgram) && loaded == nil:
		c.notFound(w, r, fmt.Sprintf("No program named %q is loaded, and the store holds no runs of one.", name))
		return
	case errors.Is(err, analysis.ErrUnknownProgram):
		v.NoRuns = true
		c.render(w, r, "metrics", "Metrics · "+name, "metrics", v)
		return
	case err != nil:
		c.fail(w, r, err)
		return
	}
	rep := win.Report(threshold)
	v.Report = rep
	v.Current = loaded != nil && loaded.Hash == rep.DefinitionHash
	v.Entropy, v.PathEntropy = bitsText(rep.TransitionEntropyBits), bitsText(rep.PathEntropyBits)
	v.SeqVariance = decimalText(rep.TransitionSequenceVariance, 4)
	v.States, v.EntropyChart = entropyFigures(rep)
	v.Paths, v.OtherPaths, v.OtherRuns = pathDistribution(win.Runs, rep.ModalPath, topPaths)
	v.PathChart = pathChart(v.Paths)
	v.Rollback, v.Rejection, v.Retry = newRatioView(rep.RollbackDensity), newRatioView(rep.RejectionRate), newRatioView(rep.RetryDensity)
	if rep.Drift != nil {
		v.Drift = decimalText(rep.Drift.JSDBits, 4)
	}
	for _, a := range rep.Alerts {
		where := "over the window"
		if a.State != "" {
			where = "at state " + a.State
		}
		v.Alerts = append(v.Alerts, fmt.Sprintf("%s %s bits %s: above the threshold of %s bits", metricName(a.Metric), bitsText(a.Value), where, thresholdText(a.Threshold)))
	}
	c.render(w, r, "metrics", "Metrics · "+name, "metrics", v)
}

// metricsParams reads ?window= (1 to maxWindow, default
// analysis.DefaultWindow) and ?threshold= (positive bits, default
// analyzer.DefaultThreshold); msg says what is wrong with them.
func metricsParams(r *http.Request) (n int, threshold float64, msg string) {
	q := r.URL.Query()
	n, threshold = analysis.DefaultWindow, analyzer.DefaultThreshold
	if s := q.Get("window"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > maxWindow {
			return 0, 0, fmt.Sprintf("window must be a whole number of runs from 1 to %d, not %q", maxWindow, s)
		}
	}
	if s := q.Get("threshold"); s != "" {
		var err error
		if threshold, err = strconv.ParseFloat(s, 64); err != nil || !(threshold > 0) || math.IsInf(threshold, 0) {
			return 0, 0, fmt.Sprintf("threshold must be a positive number of bits, not %q", s)
		}
	}
	return n, threshold, ""
}

// labInclude is the value of ?lab= that counts laboratory runs, on the
// metrics pages and the runs list.
const labInclude = "include"

// labParam reads the value of ?lab=, on the metrics pages and the runs
// list: "include" counts laboratory runs, "" (the default) leaves them
// out; msg says what is wrong with another value.
func labParam(s string) (include bool, msg string) {
	switch s {
	case "":
		return false, ""
	case labInclude:
		return true, ""
	default:
		return false, fmt.Sprintf("lab must be %q to include laboratory runs, or absent to leave them out, not %q", labInclude, s)
	}
}

// setLab records the laboratory choice and links to path with the other
// one, keeping the page's other parameters.
func (v *metricsView) setLab(include bool, path string, keep url.Values) {
	v.IncludeLab = include
	if include {
		v.LabQuery = "?lab=" + labInclude
	} else {
		keep.Set("lab", labInclude)
	}
	v.LabToggle = path
	if len(keep) > 0 {
		v.LabToggle += "?" + keep.Encode()
	}
}

// entropyFigures are the per-state transition entropies as a table and
// as a bar chart of the same numbers, with the alert threshold.
func entropyFigures(rep analyzer.Report) ([]stateRow, template.HTML) {
	rows := make([]stateRow, 0, len(rep.States))
	chart := barChart{
		ID: "entropy-chart",
		Label: fmt.Sprintf("Transition entropy of each of %d states, in bits; the dashed line is the alert threshold of %s bits; %d above it",
			len(rep.States), thresholdText(rep.ThresholdBits), countAbove(rep)),
		Unit:           "bits",
		Threshold:      rep.ThresholdBits,
		HasThreshold:   true,
		ThresholdLabel: "threshold " + thresholdText(rep.ThresholdBits) + " bits",
		Max:            1,
	}
	for _, s := range rep.States {
		next := make([]string, len(s.Next))
		for i, n := range s.Next {
			next[i] = fmt.Sprintf("%s %d", n.To, n.Count)
		}
		row := stateRow{State: s.State, Transitions: s.Transitions, Successors: s.Successors,
			Bits: bitsText(s.EntropyBits), Normalized: decimalText(s.NormalizedEntropy, 2), Next: strings.Join(next, ", "),
			Alert: s.EntropyBits > rep.ThresholdBits}
		rows = append(rows, row)
		chart.Bars = append(chart.Bars, bar{Label: s.State, Value: s.EntropyBits, Text: row.Bits, Alert: row.Alert})
	}
	return rows, chart.SVG()
}

func countAbove(rep analyzer.Report) int {
	n := 0
	for _, s := range rep.States {
		if s.EntropyBits > rep.ThresholdBits {
			n++
		}
	}
	return n
}

// pathDistribution counts the window's distinct paths and returns the
// top commonest (ties: the lexicographically smaller path first, as the
// analyzer chooses the modal path), and how many paths and runs are
// beyond them.
func pathDistribution(runs []analyzer.RunStats, modal []string, top int) (rows []pathRow, otherPaths, otherRuns int) {
	counts := map[string]int{}
	var paths [][]string
	for _, r := range runs {
		k := strings.Join(r.Path, "\x00")
		if counts[k] == 0 {
			paths = append(paths, r.Path)
		}
		counts[k]++
	}
	count := func(p []string) int { return counts[strings.Join(p, "\x00")] }
	slices.SortFunc(paths, func(a, b []string) int {
		return cmp.Or(cmp.Compare(count(b), count(a)), slices.Compare(a, b))
	})
	for i, p := range paths {
		if i >= top {
			otherPaths++
			otherRuns += count(p)
			continue
		}
		share := 100 * float64(count(p)) / float64(len(runs))
		rows = append(rows, pathRow{Rank: i + 1, States: p, Runs: count(p),
			Share: decimalText(share, 1), share: share, Modal: slices.Equal(p, modal)})
	}
	return rows, otherPaths, otherRuns
}

// pathChart draws the listed paths' shares of the window.
func pathChart(rows []pathRow) template.HTML {
	if len(rows) == 0 {
		return ""
	}
	c := barChart{ID: "path-chart", Horizontal: true, Max: 100,
		Label: fmt.Sprintf("Share of the window's runs taking each of the %d commonest paths", len(rows))}
	for _, p := range rows {
		c.Bars = append(c.Bars, bar{Label: "path " + strconv.Itoa(p.Rank), Value: p.share,
			Text:  fmt.Sprintf("%s (%s%%)", runsWord(p.Runs), p.Share),
			Title: fmt.Sprintf("path %d: %s, %s%% of the window", p.Rank, runsWord(p.Runs), p.Share)})
	}
	return c.SVG()
}

func runsWord(n int) string {
	if n == 1 {
		return "1 run"
	}
	return strconv.Itoa(n) + " runs"
}

func metricName(m string) string {
	if m == analyzer.MetricTransitionEntropy {
		return "transition entropy"
	}
	return strings.ReplaceAll(m, "_", " ")
}

// bitsText writes an entropy: three decimals, in the table and on the chart.
func bitsText(v float64) string { return decimalText(v, 3) }

// thresholdText writes a threshold as given: 2.5, 0.25, 3.
func thresholdText(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func decimalText(v float64, decimals int) string { return strconv.FormatFloat(v, 'f', decimals, 64) }
