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
