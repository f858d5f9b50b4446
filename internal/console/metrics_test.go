package console

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/analysis"
	"github.com/nano-vm/nano-vm-mcp/internal/analyzer"
	"github.com/nano-vm/nano-vm-mcp/internal/lab"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// driveScripts starts a run of program for each of its example scripts
// whose name contains one of the given parts (all of them when none is
// given) and answers its tasks with the script's answers, as a client
// would. It returns the run ids.
func driveScripts(t testing.TB, svc *service.Service, name string, parts ...string) []string {
	t.Helper()
	ctx := context.Background()
	scripts, err := lab.ExampleScripts(name)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range scripts {
		if len(parts) > 0 && !scriptMatches(s.Name, parts) {
			continue
		}
		ans, err := svc.StartRun(ctx, service.StartOptions{Program: name, Input: s.Input, Principal: "test"})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range s.Answers {
			r, _, err := svc.Get(ctx, ans.RunID)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != runtime.StatusRunning || r.Task == nil {
				break
			}
			// A rejected answer is part of the script: it uses an attempt
			// and the task takes the next line.
			if r.Task.Kind == string(program.KindApproval) {
				_, _ = svc.Decide(ctx, r.ID, runtime.Decide{Seq: r.Task.Seq, State: r.Task.State, Role: r.Task.Role, Principal: "test", Decision: a})
			} else {
				in := runtime.Submit{Seq: r.Task.Seq, State: r.Task.State, Principal: "test", Output: a, Actor: runtime.ActorModel}
				if r.Task.Tool != nil {
					in.Tool, in.Actor = r.Task.Tool.Name, runtime.ActorTool
				}
				_, _ = svc.Submit(ctx, r.ID, in)
			}
		}
		ids = append(ids, ans.RunID)
	}
	if len(ids) == 0 {
		t.Fatalf("no script of %s matches %v", name, parts)
	}
	return ids
}

func scriptMatches(s string, parts []string) bool {
	for _, p := range parts {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

var (
	barRE   = regexp.MustCompile(`<rect class="(bar(?: alert)?)" [^>]*data-value="([^"]*)"><title>([^<]*)</title>`)
	tableRE = regexp.MustCompile(`<tr(?: class="alert")?><th scope="row">([^<]*)</th><td class="num">([^<]*)</td>`)
)

// chartSVG cuts the svg element with the given id out of a page.
func chartSVG(t *testing.T, body, id string) string {
	t.Helper()
	i := strings.Index(body, `<svg id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no svg#%s in the page", id)
	}
	j := strings.Index(body[i:], "</svg>")
	return body[i : i+j+len("</svg>")]
}

func TestMetricsPageChartsTheWindow(t *testing.T) {
	c, svc, store := newTestConsole(t)
	driveScripts(t, svc, "refund")
	driveScripts(t, svc, "refund", "refund.refunded") // the commonest path, twice
	rep, err := analysis.Analyze(context.Background(), store, analysis.Query{Program: "refund"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.States) < 2 || rep.DistinctPaths < 3 {
		t.Fatalf("the fixture is too plain: %d states, %d paths", len(rep.States), rep.DistinctPaths)
	}

	res, body := get(t, c, "GET", "/ui/metrics/refund", nil)
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	svg := chartSVG(t, body, "entropy-chart")
	for _, want := range []string{`role="img"`, `aria-label="Transition entropy of each of`, `<line class="threshold"`, `threshold 2.5 bits`} {
		if !strings.Contains(svg, want) {
			t.Errorf("the entropy chart lacks %q", want)
		}
	}
	bars := barRE.FindAllStringSubmatch(svg, -1)
	if len(bars) != len(rep.States) {
		t.Fatalf("%d bars for %d states", len(bars), len(rep.States))
	}
	rows := tableRE.FindAllStringSubmatch(body, -1)
	if len(rows) < len(rep.States) {
		t.Fatalf("the entropy table has %d rows for %d states", len(rows), len(rep.States))
	}
	// The chart and its table are the analyzer's numbers, state by state.
	for i, s := range rep.States {
		want := fmt.Sprintf("%.3f", s.EntropyBits)
		if bars[i][1] != "bar" || bars[i][2] != want || !strings.HasPrefix(bars[i][3], s.State+": ") {
			t.Errorf("bar %d: %q %q %q, want state %s at %s bits and no alert", i, bars[i][1], bars[i][2], bars[i][3], s.State, want)
		}
		if rows[i][1] != s.State || rows[i][2] != want {
			t.Errorf("table row %d: %s %s, want %s %s", i, rows[i][1], rows[i][2], s.State, want)
		}
	}
	for _, want := range []string{
		`<svg id="path-chart"`, "(modal)", strings.Join(rep.ModalPath, " → "),
		`<div id="rollback-density"><dt>Rollback density</dt><dd>` + fmt.Sprintf("%.4f", rep.RollbackDensity.Float()),
		`<div id="rejection-rate">`, `<div id="retry-density">`,
		"no baseline saved", "None: no state", "auditor view",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, `class="alerts"`) {
		t.Error("alerts listed for a window without any")
	}
	// The modal path is the commonest: refunded, two runs of five.
	if !strings.Contains(body, "<td class=\"path\">assess_refund → check → refunded</td><td class=\"num\">2</td><td class=\"num\">40.0%</td>") {
		t.Error("the path table does not give the modal path 2 runs, 40.0%")
	}

	// A saved baseline gives the drift; a lower threshold raises alerts.
	if _, err := analysis.SaveBaseline(context.Background(), store, rep); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, c, "GET", "/ui/metrics/refund?window=4&threshold=0.5", nil)
	for _, want := range []string{"Jensen–Shannon divergence from a baseline of 5 runs", `<ul class="alerts"><li>transition entropy`, "threshold 0.5 bits", `class="bar alert"`, "The last 4 runs (window 4)",
		`<a href="/ui/metrics/refund?threshold=0.5&amp;window=100">100</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("with a baseline and threshold 0.5 the page lacks %q", want)
		}
	}
}

func TestMetricsIndexAndEdges(t *testing.T) {
	c, svc, _ := newTestConsole(t)
	driveScripts(t, svc, "refund")

	res, body := get(t, c, "GET", "/ui/metrics", nil)
	if res.StatusCode != 200 {
		t.Fatalf("index: %d", res.StatusCode)
	}
	for _, want := range []string{`<a href="/ui/metrics/refund">refund</a>`, `<a href="/ui/metrics/kyc-onboarding">kyc-onboarding</a>`, "no runs yet", `aria-current="page">Metrics`} {
		if !strings.Contains(body, want) {
			t.Errorf("the index lacks %q", want)
		}
	}
	if strings.Count(body, "no runs yet") != 2 {
		t.Errorf("%d programs without runs on the index, want 2", strings.Count(body, "no runs yet"))
	}

	res, body = get(t, c, "GET", "/ui/metrics/kyc-onboarding", nil)
	if res.StatusCode != 200 || !strings.Contains(body, "No runs yet") || strings.Contains(body, "<svg") {
		t.Errorf("a loaded program without runs: %d, page %q", res.StatusCode, body)
	}
	if res, body = get(t, c, "GET", "/ui/metrics/no-such-program", nil); res.StatusCode != 404 || !strings.Contains(body, "no-such-program") {
		t.Errorf("an unknown program: %d", res.StatusCode)
	}
	for _, q := range []string{"window=0", "window=x", "window=1001", "threshold=0", "threshold=-1", "threshold=Inf", "threshold=NaN"} {
		if res, _ := get(t, c, "GET", "/ui/metrics/refund?"+q, nil); res.StatusCode != 400 {
			t.Errorf("?%s: %d, want 400", q, res.StatusCode)
		}
	}
}

// An eight-way branch has three bits of transition entropy at its state:
// above the 2.5-bit threshold, so its bar is an alert, and the other's is
// not.
func TestEntropyChartMarksTheBarsAboveTheThreshold(t *testing.T) {
	var runs []analyzer.RunStats
	for i := range 8 {
		runs = append(runs, analyzer.FromPath("start", "fan", fmt.Sprintf("leaf_%d", i)))
	}
	rep := analyzer.Analyze(runs, analyzer.Options{})
	rows, svg := entropyFigures(rep)
	bars := barRE.FindAllStringSubmatch(string(svg), -1)
	if len(bars) != 2 || len(rows) != 2 {
		t.Fatalf("%d bars and %d rows, want 2", len(bars), len(rows))
	}
	if bars[0][1] != "bar alert" || bars[0][2] != "3.000" || !rows[0].Alert || rows[0].State != "fan" {
		t.Errorf("the fan-out: %q, row %+v", bars[0][:3], rows[0])
	}
	if bars[1][1] != "bar" || bars[1][2] != "0.000" || rows[1].Alert {
		t.Errorf("the start: %q, row %+v", bars[1][:3], rows[1])
	}
	// The threshold line sits at 2.5 on a 0–3 scale of 200 units, 16 down.
	if !strings.Contains(string(svg), `<line class="threshold" x1="52" y1="49.3"`) {
		t.Errorf("threshold line misplaced: %s", svg)
	}
	// The window's entropy is 1.5 bits (half the transitions leave the
	// fan): the only alert is the state's.
	if len(rep.Alerts) != 1 || rep.Alerts[0].State != "fan" {
		t.Errorf("alerts %+v", rep.Alerts)
	}
}

func TestBarChartIsDeterministicAndEscaped(t *testing.T) {
	c := barChart{ID: "x", Label: `a "quoted" <label>`, Unit: "bits", HasThreshold: true, Threshold: 1, ThresholdLabel: "t",
		Bars: []bar{{Label: "<script>", Value: 0.5}, {Label: "b&c", Value: 2, Alert: true}}}
	a, b := c.SVG(), c.SVG()
	if a != b {
		t.Fatal("the same chart drew twice differently")
	}
	s := string(a)
	if strings.Contains(s, "<script>") || strings.Contains(s, `"quoted"`) || !strings.Contains(s, "&lt;script&gt;") || !strings.Contains(s, "b&amp;c") {
		t.Errorf("text not escaped: %s", s)
	}
	for _, tc := range []struct {
		top, want, step float64
	}{{1, 1, 0.2}, {2.5, 2.5, 0.5}, {3, 3, 1}, {3.2, 4, 1}, {0, 1, 0.2}, {7, 8, 2}, {0.03, 0.03, 0.01}} {
		if top, step := niceScale(tc.top); top != tc.want || step != tc.step {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tc.top, top, step, tc.want, tc.step)
		}
	}
	if svgNum(-0.01) != "0" || svgNum(12.345) != "12.3" || tickText(0.5) != "0.5" || tickText(2) != "2" {
		t.Error("number formatting")
	}
}

// A click on the laboratory must not change the real runs' metrics or
// fill the runs list: its runs are left out of both unless the visitor
// asks for them (?lab=include, the toggle on each page).
func TestLabRunsAreLeftOutOfMetricsAndRunsUnlessIncluded(t *testing.T) {
	c, svc, store := newTestConsole(t)
	real := driveScripts(t, svc, "refund")
	if res, body := get(t, c, "POST", "/ui/lab/run?program=refund&fault=policy_bypass", operator); res.StatusCode != 200 {
		t.Fatalf("lab: %d %s", res.StatusCode, body)
	}
	all, _, err := store.ListRuns(context.Background(), tracestore.ListFilter{Program: "refund", Limit: 1000})
	if err != nil || len(all) <= len(real) {
		t.Fatalf("the lab added no runs: %d runs, %v", len(all), err)
	}
	realRep, err := analysis.Analyze(context.Background(), store, analysis.Query{Program: "refund"})
	if err != nil || realRep.Runs != len(real) {
		t.Fatalf("the real runs' report: %d runs, %v", realRep.Runs, err)
	}
	rejections := func(body string) string {
		m := regexp.MustCompile(`<div id="rejection-rate"><dt>Rejection rate</dt><dd>([^<]*) <span class="meta">(\d+) rejections / (\d+) answers`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no rejection rate on the page")
		}
		return m[2] + "/" + m[3]
	}
	runRow := regexp.MustCompile(`<tr data-run-id="`)
	for _, tc := range []struct {
		name, target string
		check        func(t *testing.T, body string)
	}{
		{"metrics leave them out", "/ui/metrics/refund", func(t *testing.T, body string) {
			want := fmt.Sprintf("%d/%d", realRep.RejectionRate.Num, realRep.RejectionRate.Den)
			if got := rejections(body); got != want || !strings.Contains(body, fmt.Sprintf("The last %d runs", len(real))) {
				t.Errorf("rejections %s, want the real runs' %s", got, want)
			}
			if !strings.Contains(body, `laboratory runs left out (<a id="lab-toggle" href="/ui/metrics/refund?lab=include">include them</a>)`) {
				t.Error("no toggle to include the laboratory runs")
			}
		}},
		{"metrics include them when asked", "/ui/metrics/refund?lab=include&window=500", func(t *testing.T, body string) {
			if !strings.Contains(body, fmt.Sprintf("The last %d runs", len(all))) || rejections(body) == fmt.Sprintf("%d/%d", realRep.RejectionRate.Num, realRep.RejectionRate.Den) {
				t.Errorf("with the lab's runs: the page does not count all %d runs and their rejections", len(all))
			}
			if !strings.Contains(body, `<a id="lab-toggle" href="/ui/metrics/refund?window=500">leave them out</a>`) ||
				!strings.Contains(body, `<a href="/ui/metrics/refund?lab=include&amp;window=100">100</a>`) {
				t.Error("the toggle or the window links lose the other parameters")
			}
		}},
		{"the metrics index leaves them out", "/ui/metrics", func(t *testing.T, body string) {
			m := regexp.MustCompile(`<a href="/ui/metrics/refund">refund</a> <span class="version">[^<]*</span></th>\s*<td class="num">(\d+)</td>`).FindStringSubmatch(body)
			if m == nil || m[1] != fmt.Sprint(len(real)) {
				t.Errorf("the index counts %v runs of refund, want the %d real ones", m, len(real))
			}
		}},
		{"the metrics index includes them when asked", "/ui/metrics?lab=include", func(t *testing.T, body string) {
			if !strings.Contains(body, `<a href="/ui/metrics/refund?lab=include">refund</a>`) || !strings.Contains(body, "laboratory runs included") {
				t.Error("the index with the lab's runs does not say so or keep it in its links")
			}
		}},
		{"the runs list leaves them out", "/ui/runs?program=refund", func(t *testing.T, body string) {
			if n := len(runRow.FindAllString(body, -1)); n != len(real) || strings.Contains(body, "<strong>lab</strong>") {
				t.Errorf("%d runs listed, want the %d real ones", n, len(real))
			}
			if !strings.Contains(body, `<input id="f-lab" name="lab" type="checkbox" value="include">`) {
				t.Error("no unticked toggle")
			}
		}},
		{"the runs list includes them when asked", "/ui/runs?program=refund&lab=include", func(t *testing.T, body string) {
			if n := len(runRow.FindAllString(body, -1)); n != len(all) || !strings.Contains(body, `value="include" checked>`) {
				t.Errorf("%d runs listed, want all %d, the toggle ticked", n, len(all))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := get(t, c, "GET", tc.target, nil)
			if res.StatusCode != 200 {
				t.Fatalf("%s: %d", tc.target, res.StatusCode)
			}
			tc.check(t, body)
		})
	}
	for _, target := range []string{"/ui/metrics?lab=yes", "/ui/metrics/refund?lab=1", "/ui/runs?lab=all"} {
		if res, _ := get(t, c, "GET", target, nil); res.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", target, res.StatusCode)
		}
	}
}
