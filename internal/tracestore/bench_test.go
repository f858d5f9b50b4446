package tracestore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// benchBackends are the stores the benchmarks compare, SQLite with and
// without a sync per commit.
var benchBackends = []struct {
	name string
	open func(b *testing.B) Store
}{
	{"memory", func(b *testing.B) Store { return NewMemory() }},
	{"sqlite-full", func(b *testing.B) Store { return openTestSQLite(b, SQLiteOptions{Synchronous: "FULL"}) }},
	{"sqlite-normal", func(b *testing.B) Store { return openTestSQLite(b, SQLiteOptions{Synchronous: "NORMAL"}) }},
	{"postgres", func(b *testing.B) Store { return openTestPostgres(b) }},
}

// BenchmarkAppendStep appends one step, three records of about 500 bytes,
// per iteration, to one growing run: the cost of a durable step.
func BenchmarkAppendStep(b *testing.B) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("x"), 500)
	head, tree := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32*20)
	for _, c := range benchBackends {
		b.Run(c.name, func(b *testing.B) {
			s := c.open(b)
			step := make([]Record, 3)
			ri := RunInfo{Program: "p", DefinitionHash: "sha256:d", Status: "running", StartedAt: t0, UpdatedAt: t0, Head: head, Tree: tree}
			b.ReportAllocs()
			for i := uint64(0); b.Loop(); i++ {
				for k := range step {
					step[k] = Record{Index: 3*i + uint64(k), Type: "step", Body: body, Hash: head}
				}
				ri.Events = 3*i + 3
				if err := s.Append(ctx, "bench", step, ri); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFdatasync is the disk's own cost of making 4 KiB durable, the
// floor under a durable append, on the file system of the SQLite
// benchmarks' files: "overwrite" rewrites one block, "append" grows the
// file, so that the sync also commits its new size, as a growing log's
// does. (f.Sync is fsync(2); on ext4 it measured the same as fdatasync(2)
// for both.)
func BenchmarkFdatasync(b *testing.B) {
	for _, grow := range []bool{false, true} {
		b.Run(map[bool]string{false: "overwrite", true: "append"}[grow], func(b *testing.B) {
			f, err := os.CreateTemp(b.TempDir(), "sync")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			block := bytes.Repeat([]byte{7}, 4096)
			if _, err := f.Write(block); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var off int64
			for b.Loop() {
				if grow {
					off += int64(len(block))
				}
				if _, err := f.WriteAt(block, off); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkListRuns lists the newest page of 100 of 10,000 runs, and a page
// with a filter and a cursor deep in the listing.
func BenchmarkListRuns(b *testing.B) {
	ctx := context.Background()
	const runs = 10_000
	for _, c := range benchBackends {
		if c.name == "sqlite-full" {
			continue // listing does not sync
		}
		b.Run(c.name, func(b *testing.B) {
			s := c.open(b)
			// Fill from a few goroutines: PostgreSQL commits them as a group.
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < runs; i += 8 {
						ri := info(1)
						ri.StartedAt = t0.Add(time.Duration(i) * time.Second)
						ri.Status = []string{"running", "completed", "failed"}[i%3]
						if err := s.Append(ctx, fmt.Sprintf("run-%05d", i), recs(0, 1), ri); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			deep := cursorOf(RunInfo{RunID: "run-02000", StartedAt: t0.Add(2000 * time.Second)})
			for _, f := range []struct {
				name string
				f    ListFilter
			}{
				{"newest", ListFilter{Limit: 100}},
				{"filtered-deep", ListFilter{Limit: 100, Status: "failed", Cursor: deep}},
			} {
				b.Run(f.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						page, _, err := s.ListRuns(ctx, f.f)
						if err != nil || len(page) != 100 {
							b.Fatalf("%d runs, %v", len(page), err)
						}
					}
				})
			}
		})
	}
}

// stepMix is a step as the examples' traces write it: the answer's input,
// its acceptance and the next task, at the mean sizes of those event types
// over the refund, KYC and code-change examples (the task, which carries
// its view and output schema, is the largest).
var stepMix = []int{350, 700, 2200}

// benchRun is a run id shaped like the runtime's.
func benchRun(i int) string { return fmt.Sprintf("run_%032x", i) }

// mixStep is the step of stepMix that starts at index from.
func mixStep(from uint64, head []byte) []Record {
	out := make([]Record, len(stepMix))
	for k, n := range stepMix {
		out[k] = Record{Index: from + uint64(k), Type: "step", Body: bytes.Repeat([]byte("x"), n), Hash: head}
	}
	return out
}

// benchInfo is the index row of benchRun(i) after events events.
func benchInfo(i int, events uint64, head []byte) RunInfo {
	return RunInfo{
		Program: "refund", DefinitionHash: "sha256:" + fmt.Sprintf("%064x", 7), Status: "running", Principal: "alice",
		StartedAt: t0.Add(time.Duration(i) * time.Millisecond), UpdatedAt: t0.Add(time.Hour),
		Events: events, Head: head, Tree: bytes.Repeat([]byte{2}, 32*7),
	}
}

// BenchmarkAppendFinishingStep appends the step that ends a run, three
// records of about 500 bytes that move the run's status and outcome, to a
// different run each iteration: the index row's listed columns change.
func BenchmarkAppendFinishingStep(b *testing.B) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("x"), 500)
	head := bytes.Repeat([]byte{1}, 32)
	step := func(from uint64) []Record {
		out := make([]Record, 3)
		for k := range out {
			out[k] = Record{Index: from + uint64(k), Type: "step", Body: body, Hash: head}
		}
		return out
	}
	for _, c := range benchBackends {
		b.Run(c.name, func(b *testing.B) {
			s := c.open(b)
			for i := range b.N {
				if err := s.Append(ctx, benchRun(i), step(0), benchInfo(i, 3, head)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ri := benchInfo(i, 6, head)
				ri.Status, ri.Outcome = "completed", "DONE"
				if err := s.Append(ctx, benchRun(i), step(3), ri); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendStepManyRuns appends mid-run steps of stepMix to 1,000
// runs in turn, as a server with many runs in flight does: each run's
// events land between other runs' in any index keyed by run.
func BenchmarkAppendStepManyRuns(b *testing.B) {
	ctx := context.Background()
	const runs = 1000
	head := bytes.Repeat([]byte{1}, 32)
	n := uint64(len(stepMix))
	for _, c := range benchBackends {
		b.Run(c.name, func(b *testing.B) {
			s := c.open(b)
			for i := range runs {
				if err := s.Append(ctx, benchRun(i), mixStep(0, head), benchInfo(i, n, head)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				run, from := i%runs, n*uint64(1+i/runs)
				if err := s.Append(ctx, benchRun(run), mixStep(from, head), benchInfo(run, from+n, head)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoad reads one run's whole trace, 20 steps of stepMix (60
// events, 65 KB), from a store of 200 such runs written step by step in
// turn, so that each run's events are spread among the others'.
func BenchmarkLoad(b *testing.B) {
	ctx := context.Background()
	const runs, steps = 200, 20
	head := bytes.Repeat([]byte{1}, 32)
	n := uint64(len(stepMix))
	for _, c := range benchBackends {
		if c.name == "sqlite-full" {
			continue // reading does not sync
		}
		b.Run(c.name, func(b *testing.B) {
			s := c.open(b)
			for st := range uint64(steps) {
				// A few writers at once, so that PostgreSQL commits them as
				// a group; each run's steps stay in order.
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for w := range 8 {
					wg.Go(func() {
						for i := w; i < runs; i += 8 {
							if err := s.Append(ctx, benchRun(i), mixStep(st*n, head), benchInfo(i, st*n+n, head)); err != nil {
								errs <- err
								return
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				recs, err := s.Load(ctx, benchRun(i%runs))
				if err != nil || len(recs) != steps*len(stepMix) {
					b.Fatalf("%d records, %v", len(recs), err)
				}
			}
		})
	}
}
