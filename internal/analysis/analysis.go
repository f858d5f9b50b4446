// Package analysis runs the analyzer over a store: it chooses a window of a
// program's runs, reads their traces, and measures them against the
// program's saved baseline. The metrics themselves are the analyzer's
// (internal/analyzer, pure); this package is the imperative shell around
// it that the analyze command, tool and resource share.
package analysis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nano-vm/nano-vm-mcp/internal/analyzer"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// DefaultWindow is how many runs a window holds unless told otherwise.
const DefaultWindow = 100

// ErrUnknownProgram: the store holds no run of the program (under the
// definition asked for, if one was).
var ErrUnknownProgram = errors.New("analysis: no runs")

// Query chooses a window and how to analyse it.
type Query struct {
	// Program is the program's name, as its runs record it.
	Program string
	// DefinitionHash selects the definition; "" means the definition of
	// the program's newest run (see Newest).
	DefinitionHash string
	// Window is the number of runs, newest first; 0 or less means
	// DefaultWindow.
	Window int
	// Threshold is the alert threshold in bits; see analyzer.Options.
	Threshold float64
	// IncludeLab counts fault-laboratory runs too. By default they are
	// left out, of the window and of the choice of the newest definition:
	// fault experiments must not drive the instability alert.
	IncludeLab bool
}

// Store is what analysis reads: the runs and their traces, and the
// baselines they are measured against.
type Store interface {
	tracestore.TraceReader
	tracestore.Baselines
}

// loaders bounds how many traces are read at once.
const loaders = 8

// Newest returns the definition hash of the program's newest run, in the
// store's listing order (started_at, then run id, descending): the
// definition the program runs now. The store has no other notion of a
// program's versions: programs are stored by hash, without a name.
// Laboratory runs are passed over unless includeLab.
func Newest(ctx context.Context, st tracestore.TraceReader, program string, includeLab bool) (string, error) {
	runs, _, err := st.ListRuns(ctx, tracestore.ListFilter{Program: program, ExcludeLab: !includeLab, Limit: 1})
	if err != nil {
		return "", err
	}
	if len(runs) == 0 {
		return "", fmt.Errorf("%w of program %q in the store%s", ErrUnknownProgram, program, labNote(includeLab))
	}
	return runs[0].DefinitionHash, nil
}

// labNote completes ErrUnknownProgram's message when laboratory runs were
// left out, since they may be the only ones.
func labNote(includeLab bool) string {
	if includeLab {
		return ""
	}
	return " outside the fault laboratory (its runs are left out unless included)"
}

// Window is a window of a program's runs as read from the store, with the
// baseline to measure it against: what Analyze reports on. A caller that
// needs more of the runs than the report holds (the console's path
// distribution) reads the window with Read and reports with Report, and
// so shows the same figures as the analyze tool.
type Window struct {
	Program        string
	DefinitionHash string
	// Runs are the runs' stats, newest first by the store's listing order.
	Runs []analyzer.RunStats
	// Baseline is the program's baseline (see Analyze); nil for none.
	Baseline *analyzer.Baseline
}

// Read reads the window q chooses: the last q.Window runs of q.Program
// under one definition, newest first by the store's listing order, and
// the program's baseline (see Analyze). It fails with ErrUnknownProgram
// when there is no run to read, and on a trace the analyzer cannot read.
func Read(ctx context.Context, st Store, q Query) (Window, error) {
	def := q.DefinitionHash
	if def == "" {
		var err error
		if def, err = Newest(ctx, st, q.Program, q.IncludeLab); err != nil {
			return Window{}, err
		}
	}
	n := q.Window
	if n <= 0 {
		n = DefaultWindow
	}
	ids, err := windowIDs(ctx, st, tracestore.ListFilter{Program: q.Program, DefinitionHash: def, ExcludeLab: !q.IncludeLab}, n)
	if err != nil {
		return Window{}, err
	}
	if len(ids) == 0 {
		return Window{}, fmt.Errorf("%w of program %q under definition %s in the store%s", ErrUnknownProgram, q.Program, def, labNote(q.IncludeLab))
	}
	runs, err := load(ctx, st, ids)
	if err != nil {
		return Window{}, err
	}
	base, err := LoadBaseline(ctx, st, q.Program, def)
	if err != nil {
		return Window{}, err
	}
	return Window{Program: q.Program, DefinitionHash: def, Runs: runs, Baseline: base}, nil
}

// Report analyses the window with the alert threshold given in bits (see
// analyzer.Options).
func (w Window) Report(threshold float64) analyzer.Report {
	return analyzer.Analyze(w.Runs, analyzer.Options{Threshold: threshold, Baseline: w.Baseline, Program: w.Program, DefinitionHash: w.DefinitionHash})
}

// Analyze measures the last q.Window runs of q.Program under one
// definition, newest first by the store's listing order, against the
// program's baseline: the one saved for that definition, else the
// program's latest (states are matched by name), else none and the drift
// is null. Every run in the window counts, finished or not; laboratory
// runs only with q.IncludeLab. It fails with ErrUnknownProgram when there is no run to
// analyse, and on a trace the analyzer cannot read.
func Analyze(ctx context.Context, st Store, q Query) (analyzer.Report, error) {
	w, err := Read(ctx, st, q)
	if err != nil {
		return analyzer.Report{}, err
	}
	return w.Report(q.Threshold), nil
}

// windowIDs lists the ids of the newest n runs that f selects.
func windowIDs(ctx context.Context, st tracestore.TraceReader, f tracestore.ListFilter, n int) ([]string, error) {
	ids := make([]string, 0, min(n, 1000))
	for len(ids) < n {
		f.Limit = min(n-len(ids), 1000)
		page, next, err := st.ListRuns(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			ids = append(ids, r.RunID)
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	return ids, nil
}

// load reads and folds the runs' traces, a few at a time. The order of the
// result is the order of ids (the report does not depend on it).
func load(ctx context.Context, st tracestore.TraceReader, ids []string) ([]analyzer.RunStats, error) {
	out := make([]analyzer.RunStats, len(ids))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	fail := func(err error) {
		once.Do(func() { first = err; cancel() })
	}
	for range min(loaders, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s, err := stats(ctx, st, ids[i])
				if err != nil {
					fail(err)
					continue
				}
				out[i] = s
			}
		}()
	}
feed:
	for i := range ids {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// structural are the event types whose payload the analyzer reads; of the
// others it counts only the type, which the record carries.
var structural = map[string]bool{
	string(runtime.EventRunStarted):         true,
	string(runtime.EventTransitioned):       true,
	string(runtime.EventSubmissionRejected): true,
	string(runtime.EventRunFinished):        true,
}

// stats folds one run's trace. The events are decoded as stored, personal
// data sealed: the analyzer reads only their structure. Only the events
// whose payload it reads are decoded; the rest (inputs, tasks, guard
// evaluations, outputs: most of a trace's bytes) stay undecoded, which
// makes reading a window about three times faster.
func stats(ctx context.Context, st tracestore.TraceReader, runID string) (analyzer.RunStats, error) {
	recs, err := st.Load(ctx, runID)
	if err != nil {
		return analyzer.RunStats{}, err
	}
	events := make([]runtime.Event, len(recs))
	for i, r := range recs {
		if !structural[r.Type] {
			events[i] = runtime.Event{RunID: runID, Index: r.Index, Type: runtime.EventType(r.Type)}
			continue
		}
		e, err := service.DecodeEvents(recs[i : i+1])
		if err != nil {
			return analyzer.RunStats{}, fmt.Errorf("analysis: run %s: %w", runID, err)
		}
		events[i] = e[0]
	}
	s, err := analyzer.FromEvents(events)
	if err != nil {
		return analyzer.RunStats{}, fmt.Errorf("analysis: run %s: %w", runID, err)
	}
	return s, nil
}

// LoadBaseline returns the baseline to measure program's definition def
// against: the one saved for def, else the program's latest, else nil. A
// stored baseline that does not validate is an error, not a silent null.
func LoadBaseline(ctx context.Context, st tracestore.Baselines, program, def string) (*analyzer.Baseline, error) {
	data, err := st.Baseline(ctx, program, def)
	if errors.Is(err, tracestore.ErrNotFound) {
		data, err = st.Baseline(ctx, program, "")
	}
	if errors.Is(err, tracestore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var b analyzer.Baseline
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("analysis: the stored baseline of %s is damaged: %w; save a new one", program, err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("analysis: the stored baseline of %s is damaged: %w; save a new one", program, err)
	}
	return &b, nil
}

// SaveBaseline stores the report's window as the baseline of its program
// and definition, replacing the one saved before for that definition.
func SaveBaseline(ctx context.Context, st tracestore.Baselines, rep analyzer.Report) (analyzer.Baseline, error) {
	b := rep.Baseline()
	data, err := json.Marshal(b)
	if err != nil {
		return b, err
	}
	return b, st.PutBaseline(ctx, rep.Program, rep.DefinitionHash, data)
}
