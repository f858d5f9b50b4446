package analysis

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// benchStore fills st with n refund runs, alternately refunded and denied,
// cloned from two real traces, and returns the events per run.
func benchStore(b *testing.B, st tracestore.Store, n int) float64 {
	b.Helper()
	ctx := context.Background()
	f := newFixture(b, st)
	tmpl := []string{f.run(b, true), f.run(b, false)}
	var events int
	for i := range n - len(tmpl) {
		src := tmpl[i%2]
		recs, err := st.Load(ctx, src)
		if err != nil {
			b.Fatal(err)
		}
		info, err := st.Run(ctx, src)
		if err != nil {
			b.Fatal(err)
		}
		info.StartedAt = info.StartedAt.Add(-time1(i))
		if err := st.Append(ctx, fmt.Sprintf("clone%06d", i), recs, info); err != nil {
			b.Fatal(err)
		}
		events += len(recs)
	}
	return float64(events) / float64(n-len(tmpl))
}

// BenchmarkAnalyzeStore10k is `analyze --window 10000`: list 10,000 runs,
// load and decode their traces, fold and analyse them.
func BenchmarkAnalyzeStore10k(b *testing.B) {
	for _, backend := range []string{"memory", "sqlite"} {
		b.Run(backend, func(b *testing.B) {
			var st tracestore.Store = tracestore.NewMemory()
			if backend == "sqlite" {
				s, err := tracestore.OpenSQLite(filepath.Join(b.TempDir(), "traces.db"), tracestore.SQLiteOptions{Synchronous: "NORMAL"})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				st = s
			}
			const n = 10_000
			perRun := benchStore(b, st, n)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rep, err := Analyze(ctx, st, Query{Program: "refund", Window: n})
				if err != nil || rep.Runs != n {
					b.Fatal(rep.Runs, err)
				}
			}
			b.ReportMetric(perRun, "events/run")
		})
	}
}

// time1 is i+1 seconds: clones start before the templates, each a second
// apart, so listing order is fixed.
func time1(i int) time.Duration { return time.Duration(i+1) * time.Second }
