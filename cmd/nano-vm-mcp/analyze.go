package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nano-vm/nano-vm-mcp/internal/analysis"
	"github.com/nano-vm/nano-vm-mcp/internal/analyzer"
)

// exitAlert: analyze --fail-on-alert found a metric above its threshold.
const exitAlert = 3

// analyzeLine is the --json line: the report, the window asked for, and
// whether this call saved the window as the baseline.
type analyzeLine struct {
	analyzer.Report
	Window        int  `json:"window"`
	BaselineSaved bool `json:"baseline_saved"`
}

func newAnalyzeCmd() *cobra.Command {
	var (
		window     int
		definition string
		threshold  float64
		save, fail bool
		asJSON     bool
		includeLab bool
		store      storeFlags
	)
	c := &cobra.Command{
		Use:   "analyze PROGRAM [--window N] [--definition HASH] [--include-lab] [--json]",
		Short: "Measure the execution topology of a program's recent runs (entropy, rollbacks, drift)",
		Long: `Analyze reads the last --window runs of PROGRAM, a program name as the
store's runs record it, and prints the metrics of docs/metrics.md: transition
entropy (H(next | state), visit-weighted, with the per-state values), path
entropy and variance, the transition sequence variance, rollback density,
rejection rate, retry density, drift from the saved baseline, and alerts.

The window holds the program's newest runs (newest first by start time) under
one definition: the definition of its newest run unless --definition names
another. Every run counts, finished or not. Runs of the fault laboratory (started
with lab: true, as the console's laboratory does) are left out, so that fault
experiments do not raise alerts; --include-lab counts them too.
--save-baseline stores the window as the baseline that later analyses measure
their drift against (in the store, per program and definition; a definition
without one is compared with the program's latest baseline). The report of
the call that saves is still measured against the baseline saved before.

With --json the output is one JSON object on one line: the report, window and
baseline_saved.

Exit status: 0 with or without alerts; 3 with --fail-on-alert when there is an
alert; 2 for an unknown program or definition, or bad flags; 1 otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if window < 1 {
				return &exitErr{exitUsage, fmt.Errorf("--window must be at least 1, not %d", window)}
			}
			if !(threshold > 0) || math.IsInf(threshold, 0) {
				return &exitErr{exitUsage, fmt.Errorf("--threshold must be a positive number of bits, not %v", threshold)}
			}
			ctx := cmd.Context()
			st, _, err := store.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			rep, err := analysis.Analyze(ctx, st, analysis.Query{Program: args[0], DefinitionHash: definition, Window: window, Threshold: threshold, IncludeLab: includeLab})
			if errors.Is(err, analysis.ErrUnknownProgram) {
				return &exitErr{exitUsage, err}
			}
			if err != nil {
				return &exitErr{exitError, err}
			}
			if save {
				if _, err := analysis.SaveBaseline(ctx, st, rep); err != nil {
					return &exitErr{exitError, err}
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				line, err := json.Marshal(analyzeLine{Report: rep, Window: window, BaselineSaved: save})
				if err != nil {
					return &exitErr{exitError, err}
				}
				fmt.Fprintln(out, string(line))
			} else {
				printReport(out, rep, window, save)
			}
			if fail && len(rep.Alerts) > 0 {
				return &exitErr{exitAlert, errors.New("")}
			}
			return nil
		},
	}
	c.Flags().IntVar(&window, "window", analysis.DefaultWindow, "analyse the program's last N runs")
	c.Flags().StringVar(&definition, "definition", "", "analyse the runs of this definition hash (default: the definition of the program's newest run)")
	c.Flags().Float64Var(&threshold, "threshold", analyzer.DefaultThreshold, "transition-entropy alert threshold, in bits")
	c.Flags().BoolVar(&save, "save-baseline", false, "store this window as the program's baseline for drift")
	c.Flags().BoolVar(&fail, "fail-on-alert", false, "exit 3 when there is an alert")
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object on one line")
	c.Flags().BoolVar(&includeLab, "include-lab", false, "count fault-laboratory runs too (left out by default)")
	store.register(c.Flags())
	return c
}

// printReport writes the human summary of a report.
func printReport(w io.Writer, r analyzer.Report, window int, saved bool) {
	fmt.Fprintf(w, "program %s, definition %s: %d runs (window %d)\n", r.Program, r.DefinitionHash, r.Runs, window)
	fmt.Fprintf(w, "  transition entropy  %.4f bits (visit-weighted H(next | state); alert above %g)\n", r.TransitionEntropyBits, r.ThresholdBits)
	fmt.Fprintf(w, "  path entropy        %.4f bits, %d distinct paths (path variance %s)\n", r.PathEntropyBits, r.DistinctPaths, ratio(r.PathVariance))
	fmt.Fprintf(w, "  sequence variance   %.4f (mean normalised edit distance to the modal path)\n", r.TransitionSequenceVariance)
	fmt.Fprintf(w, "  modal path          %s\n", strings.Join(r.ModalPath, " -> "))
	fmt.Fprintf(w, "  rollback density    %s\n", ratio(r.RollbackDensity))
	fmt.Fprintf(w, "  rejection rate      %s\n", ratio(r.RejectionRate))
	fmt.Fprintf(w, "  retry density       %s\n", ratio(r.RetryDensity))
	if d := r.Drift; d != nil {
		fmt.Fprintf(w, "  drift               %.4f bits (Jensen-Shannon) from a baseline of %d runs, %d transitions, of %s\n", d.JSDBits, d.BaselineRuns, d.BaselineTransitions, d.BaselineDefinitionHash)
	} else {
		fmt.Fprintf(w, "  drift               none: no baseline (save one with --save-baseline)\n")
	}
	fmt.Fprintf(w, "  counts              %d transitions, %d rollbacks, %d accepted, %d rejections (%d attempts), %d faults\n",
		r.Counts.Transitions, r.Counts.Rollbacks, r.Counts.Accepted, r.Counts.Rejections, r.Counts.Attempts, r.Counts.Faults)
	if len(r.States) > 0 {
		fmt.Fprintln(w, "states:")
		for _, s := range r.States {
			next := make([]string, len(s.Next))
			for i, n := range s.Next {
				next[i] = fmt.Sprintf("%s %d", n.To, n.Count)
			}
			fmt.Fprintf(w, "  %s: %.4f bits (normalised %.2f), %d transitions to %d successors: %s\n",
				s.State, s.EntropyBits, s.NormalizedEntropy, s.Transitions, s.Successors, strings.Join(next, ", "))
		}
	}
	fmt.Fprintln(w, "outcomes:")
	for _, o := range r.Outcomes {
		fmt.Fprintf(w, "  %s %s: %d\n", o.Status, o.Outcome, o.Runs)
	}
	if len(r.Alerts) == 0 {
		fmt.Fprintln(w, "alerts: none")
	}
	for _, a := range r.Alerts {
		where := "the window"
		if a.State != "" {
			where = "state " + a.State
		}
		fmt.Fprintf(w, "ALERT %s %.4f bits > %g at %s\n", a.Metric, a.Value, a.Threshold, where)
	}
	if saved {
		fmt.Fprintf(w, "baseline saved: this window (%d runs, %d transitions) for %s %s\n", r.Runs, r.Counts.Transitions, r.Program, r.DefinitionHash)
	}
}

func ratio(r analyzer.Ratio) string {
	if r.Den == 0 {
		return "0/0"
	}
	return fmt.Sprintf("%d/%d (%.4f)", r.Num, r.Den, r.Float())
}
