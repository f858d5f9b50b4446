package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// report is one run of the benchmark.
type report struct {
	Started   string      `json:"started"`
	GOOS      string      `json:"goos"`
	GOARCH    string      `json:"goarch"`
	CPUs      int         `json:"cpus"`
	Go        string      `json:"go"`
	Duration  string      `json:"duration"`
	Warmup    string      `json:"warmup"`
	LoadAvg   []string    `json:"load_average"` // at the start and at the end
	Fdatasync *syncResult `json:"fdatasync"`
	Rows      []*row      `json:"rows"`
	Notes     []string    `json:"notes,omitempty"`
}

// row is one target (a store, or echo) at one C.
type row struct {
	Target       string   `json:"target"`
	C            int      `json:"sessions"`
	Calls        int      `json:"calls"`
	Seconds      float64  `json:"seconds"`
	CallsPerSec  float64  `json:"calls_per_second"`
	P50us        float64  `json:"p50_us"`
	P99us        float64  `json:"p99_us"`
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	ServerCPUus  *float64 `json:"server_cpu_us_per_call,omitempty"` // absent where /proc is not
	PeakRSSBytes *int64   `json:"peak_rss_bytes,omitempty"`
}

// targetOrder puts the rows of one C in the order stores run, echo last.
func targetOrder(t string) int {
	if i := slices.Index(stores, t); i >= 0 {
		return i
	}
	return len(stores)
}

// writeTable prints the report as an aligned table, one block per C so
// that the targets sit side by side, each with its calls/s as a multiple
// of the memory store's at the same C.
func (r *report) writeTable(w io.Writer) {
	fmt.Fprintf(w, "# %s %s/%s, %d CPUs, %s; %s measured per row after %s warm-up; load average %s\n",
		r.Started, r.GOOS, r.GOARCH, r.CPUs, r.Go, r.Duration, r.Warmup, strings.Join(r.LoadAvg, " → "))
	if s := r.Fdatasync; s != nil {
		fs := ""
		if s.Filesystem != "" {
			fs = " (" + s.Filesystem + ")"
		}
		fmt.Fprintf(w, "# 4 KiB overwrite + fdatasync in %s%s: p50 %s, p99 %s (%d samples)\n",
			s.Dir, fs, fmtMicros(s.P50us), fmtMicros(s.P99us), s.Samples)
	}
	fmt.Fprintln(w, "# a call: start_run or step on nano-vm-mcp (a refund run is one of each), echo on the reference")
	for _, n := range r.Notes {
		fmt.Fprintf(w, "# %s\n", n)
	}
	rows := slices.Clone(r.Rows)
	slices.SortStableFunc(rows, func(a, b *row) int {
		return cmp.Or(cmp.Compare(a.C, b.C), cmp.Compare(targetOrder(a.Target), targetOrder(b.Target)))
	})
	memory := map[int]float64{}
	for _, x := range rows {
		if x.Target == "memory" {
			memory[x.C] = x.CallsPerSec
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "C\ttarget\tcalls/s\t× memory\tp50\tp99\terrors\tserver CPU/call\tpeak RSS\t")
	for _, x := range rows {
		ratio := "—"
		if m := memory[x.C]; m > 0 && x.Target != "memory" {
			ratio = fmt.Sprintf("%.2f×", x.CallsPerSec/m)
		}
		cpu, rss := "—", "—"
		if x.ServerCPUus != nil {
			cpu = fmtMicros(*x.ServerCPUus)
		}
		if x.PeakRSSBytes != nil {
			rss = fmt.Sprintf("%.0f MiB", float64(*x.PeakRSSBytes)/(1<<20))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", x.C, x.Target, fmtCount(x.CallsPerSec),
			ratio, fmtMicros(x.P50us), fmtMicros(x.P99us), x.Errors, cpu, rss)
	}
	tw.Flush()
}

// fmtMicros prints a duration given in µs: in µs below 10 ms, in ms
// below 10 s, else in seconds.
func fmtMicros(us float64) string {
	switch {
	case us < 10_000:
		return fmtCount(us) + " µs"
	case us < 10_000_000:
		return fmt.Sprintf("%.1f ms", us/1000)
	default:
		return fmt.Sprintf("%.1f s", us/1_000_000)
	}
}

// fmtCount prints a rate rounded to a whole number, with thousands
// separated by commas.
func fmtCount(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
