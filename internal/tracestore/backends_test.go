package tracestore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

// What the contract does not cover, on every backend: an append that would
// leave a gap, a run's first append, where there is no index row to lock
// yet, and racing subject keys.
func TestBackendsBeyondTheContract(t *testing.T) {
	ctx := context.Background()
	const n = 16
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Run("ConcurrentFirstAppendsExactlyOneWins", func(t *testing.T) {
				s := open(t)
				errs := make([]error, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						rs := recs(0, 2)
						rs[1].Body = fmt.Appendf(nil, `{"writer":%d}`, i)
						errs[i] = s.Append(ctx, "fresh", rs, info(2))
					})
				}
				wg.Wait()
				winner := -1
				for i, err := range errs {
					switch {
					case err == nil && winner >= 0:
						t.Fatalf("writers %d and %d both won", winner, i)
					case err == nil:
						winner = i
					case !errors.Is(err, ErrConflict):
						t.Fatalf("writer %d: %v, want ErrConflict", i, err)
					}
				}
				got, err := s.Load(ctx, "fresh")
				if err != nil || winner < 0 || len(got) != 2 || string(got[1].Body) != fmt.Sprintf(`{"writer":%d}`, winner) {
					t.Fatalf("winner %d, trace %v, %v", winner, got, err)
				}
			})
			t.Run("AppendPastTheEndConflicts", func(t *testing.T) {
				// A consistent batch that leaves a gap: only the store
				// knows the trace is shorter.
				s := open(t)
				appendN(t, s, "r", 0, 2)
				for _, c := range []struct {
					run  string
					from uint64
				}{{"r", 3}, {"r", 1}, {"new", 1}} {
					if err := s.Append(ctx, c.run, recs(c.from, 2), info(c.from+2)); !errors.Is(err, ErrConflict) {
						t.Fatalf("append to %s at %d: %v, want ErrConflict", c.run, c.from, err)
					}
				}
				got, _ := s.Load(ctx, "r")
				ri, _ := s.Run(ctx, "r")
				if _, err := s.Run(ctx, "new"); len(got) != 2 || ri.Events != 2 || !errors.Is(err, ErrNotFound) {
					t.Fatalf("conflicting appends wrote: %d records, index says %d; new run: %v", len(got), ri.Events, err)
				}
			})
			t.Run("ConcurrentPutKeysAgreeOnOne", func(t *testing.T) {
				s := open(t)
				got := make([][]byte, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						k, err := s.PutKey(ctx, WrappedKey{Subject: "subj", Wrapped: fmt.Appendf(nil, "key-%d", i)})
						if err != nil {
							t.Error(err)
						}
						got[i] = k.Wrapped
					})
				}
				wg.Wait()
				stored, err := s.Key(ctx, "subj")
				if err != nil {
					t.Fatal(err)
				}
				for i, k := range got {
					if string(k) != string(stored.Wrapped) {
						t.Fatalf("writer %d was told the key is %q; the store holds %q", i, k, stored.Wrapped)
					}
				}
			})
		})
	}
}

// The index row is replaced by each append: listing must follow a run whose
// status, outcome, program or start changes, and only the latest values
// may match a filter.
func TestIndexRowFollowsTheLatestAppend(t *testing.T) {
	ctx := context.Background()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			appendN(t, s, "r", 0, 1)
			appendN(t, s, "r", 1, 1) // nothing listed changes
			done := info(3)
			done.Status, done.Outcome, done.Program, done.DefinitionHash = "completed", "DONE", "p2", "sha256:e"
			done.StartedAt, done.UpdatedAt = t0.Add(time.Hour), t0.Add(2*time.Hour)
			if err := s.Append(ctx, "r", recs(2, 1), done); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				f    ListFilter
				want int
			}{
				{ListFilter{Status: "completed", Outcome: "DONE", Program: "p2", DefinitionHash: "sha256:e"}, 1},
				{ListFilter{Since: t0.Add(time.Hour)}, 1},
				{ListFilter{Status: "running"}, 0},
				{ListFilter{Program: "p"}, 0},
				{ListFilter{DefinitionHash: "sha256:d"}, 0},
				{ListFilter{Until: t0.Add(time.Hour)}, 0},
			} {
				page, _, err := s.ListRuns(ctx, c.f)
				if err != nil || len(page) != c.want {
					t.Fatalf("filter %+v: %d runs (%v), want %d", c.f, len(page), err, c.want)
				}
			}
			ri, err := s.Run(ctx, "r")
			if err != nil || ri.Events != 3 || !ri.UpdatedAt.Equal(done.UpdatedAt) || ri.Status != "completed" {
				t.Fatalf("index row %+v, %v", ri, err)
			}
		})
	}
}

// Each listed column alone can change, in any append: SQLite writes each
// combination with an UPDATE of its own.
func TestIndexRowFollowsEachListedColumn(t *testing.T) {
	ctx := context.Background()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			for i, c := range []struct {
				change func(*RunInfo)
				f      ListFilter
			}{
				{func(ri *RunInfo) { ri.Program = "p2" }, ListFilter{Program: "p2"}},
				{func(ri *RunInfo) { ri.DefinitionHash = "sha256:e" }, ListFilter{DefinitionHash: "sha256:e"}},
				{func(ri *RunInfo) { ri.Status = "waiting" }, ListFilter{Status: "waiting"}},
				{func(ri *RunInfo) { ri.Outcome = "DONE" }, ListFilter{Outcome: "DONE"}},
				{func(ri *RunInfo) { ri.StartedAt = t0.Add(time.Hour) }, ListFilter{Since: t0.Add(time.Hour)}},
				{func(ri *RunInfo) { ri.Status, ri.Program = "completed", "p3" }, ListFilter{Status: "completed", Program: "p3"}},
			} {
				run := fmt.Sprintf("r%d", i)
				first := info(1)
				first.Principal = "alice"
				if err := s.Append(ctx, run, recs(0, 1), first); err != nil {
					t.Fatal(err)
				}
				next := info(2)
				c.change(&next)
				if err := s.Append(ctx, run, recs(1, 1), next); err != nil {
					t.Fatal(err)
				}
				got, err := s.Run(ctx, run)
				next.RunID, next.Principal = run, "alice"
				if err != nil || got.Program != next.Program || got.DefinitionHash != next.DefinitionHash || got.Status != next.Status ||
					got.Outcome != next.Outcome || !got.StartedAt.Equal(next.StartedAt) || got.Principal != "alice" || got.Events != 2 {
					t.Fatalf("change %d: Run = %+v, %v; want %+v", i, got, err, next)
				}
				c.f.Principal = "alice"
				if page, _, err := s.ListRuns(ctx, c.f); err != nil || len(page) != 1 || page[0].RunID != run {
					t.Fatalf("change %d: ListRuns(%+v) = %+v, %v; want %s alone", i, c.f, page, err, run)
				}
				// Move it back, so that the next case's filter sees one run.
				back := info(3)
				if err := s.Append(ctx, run, recs(2, 1), back); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// The SQL stores keep times as int64 nanoseconds; the zero time has its own
// value, and times int64 cannot hold are refused.
func TestSQLStoresKeepTimes(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			s := backends[name](t)
			zero := info(1)
			zero.StartedAt, zero.UpdatedAt = time.Time{}, time.Time{}
			if err := s.Append(ctx, "zero", recs(0, 1), zero); err != nil {
				t.Fatal(err)
			}
			local := info(1)
			local.StartedAt = time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
			if err := s.Append(ctx, "local", recs(0, 1), local); err != nil {
				t.Fatal(err)
			}
			appendN(t, s, "plain", 0, 1)
			if ri, err := s.Run(ctx, "zero"); err != nil || !ri.StartedAt.IsZero() || !ri.UpdatedAt.IsZero() {
				t.Fatalf("zero times read back as %v, %v (%v)", ri.StartedAt, ri.UpdatedAt, err)
			}
			if ri, err := s.Run(ctx, "local"); err != nil || !ri.StartedAt.Equal(local.StartedAt) {
				t.Fatalf("%v read back as %v (%v)", local.StartedAt, ri.StartedAt, err)
			}
			// Paging one by one passes through the zero time, which lists last.
			var order []string
			for cursor := ""; ; {
				page, next, err := s.ListRuns(ctx, ListFilter{Limit: 1, Cursor: cursor})
				if err != nil {
					t.Fatal(err)
				}
				for _, ri := range page {
					order = append(order, ri.RunID)
				}
				if next == "" {
					break
				}
				if len(order) > 3 {
					t.Fatalf("paging does not end: %v", order)
				}
				cursor = next
			}
			if fmt.Sprint(order) != "[local plain zero]" {
				t.Fatalf("listing order %v, want [local plain zero]", order)
			}
			for _, f := range []ListFilter{
				{Since: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)},
				{Until: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
			} {
				if page, _, err := s.ListRuns(ctx, f); err != nil || len(page) == 0 {
					t.Errorf("filter %+v: %d runs, %v", f, len(page), err)
				}
			}
			far := info(1)
			far.StartedAt = time.Unix(math.MaxInt64/int64(time.Second)+1, 0)
			if err := s.Append(ctx, "far", recs(0, 1), far); err == nil {
				t.Fatal("a start time past 2262 was accepted")
			}
			if _, err := s.Load(ctx, "far"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a refused append wrote records: %v", err)
			}
		})
	}
}
