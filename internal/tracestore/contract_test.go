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

// backends lists every Store under test; each backend joins here and must
// pass the whole contract. A backend that needs a service the machine does
// not have skips with the reason.
var backends = map[string]func(t *testing.T) Store{
	"memory":   func(t *testing.T) Store { return NewMemory() },
	"sqlite":   func(t *testing.T) Store { return openTestSQLite(t, SQLiteOptions{}) },
	"postgres": func(t *testing.T) Store { return openTestPostgres(t) },
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func recs(from uint64, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		k := from + uint64(i)
		out[i] = Record{Index: k, Type: "e", Body: []byte(fmt.Sprintf(`{"i":%d}`, k)), Hash: []byte{byte(k), 1, 2}}
	}
	return out
}

func info(events uint64) RunInfo {
	return RunInfo{Program: "p", DefinitionHash: "sha256:d", Status: "running", StartedAt: t0, UpdatedAt: t0, Events: events, Head: []byte{byte(events)}, Tree: []byte("tree")}
}

// appendN appends n records after the trace's current length from.
func appendN(t *testing.T, s Store, run string, from uint64, n int) {
	t.Helper()
	if err := s.Append(context.Background(), run, recs(from, n), info(from+uint64(n))); err != nil {
		t.Fatalf("append to %s: %v", run, err)
	}
}

func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Run("LoadUnknownRunIsNotFound", func(t *testing.T) {
				s := open(t)
				if _, err := s.Load(ctx, "nope"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Load unknown: got %v, want ErrNotFound", err)
				}
				if _, err := s.Run(ctx, "nope"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Run unknown: got %v, want ErrNotFound", err)
				}
			})
			t.Run("AppendThenLoadReturnsRecordsInOrder", func(t *testing.T) {
				s := open(t)
				appendN(t, s, "r", 0, 3)
				appendN(t, s, "r", 3, 2)
				got, err := s.Load(ctx, "r")
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 5 {
					t.Fatalf("got %d records, want 5", len(got))
				}
				for i, r := range got {
					if r.Index != uint64(i) || string(r.Body) != fmt.Sprintf(`{"i":%d}`, i) || r.Type != "e" || len(r.Hash) != 3 || r.Hash[0] != byte(i) {
						t.Fatalf("record %d = %+v", i, r)
					}
				}
				ri, err := s.Run(ctx, "r")
				if err != nil {
					t.Fatal(err)
				}
				if ri.RunID != "r" || ri.Events != 5 || ri.Head[0] != 5 || string(ri.Tree) != "tree" || !ri.StartedAt.Equal(t0) || ri.Program != "p" {
					t.Fatalf("index row %+v", ri)
				}
			})
			t.Run("LoadPrefixReturnsTheFirstRecords", func(t *testing.T) {
				s := open(t)
				appendN(t, s, "r", 0, 3)
				appendN(t, s, "r", 3, 2)
				for _, c := range []struct{ n, want uint64 }{{1, 1}, {3, 3}, {4, 4}, {5, 5}, {6, 5}, {math.MaxUint64, 5}} {
					got, err := s.LoadPrefix(ctx, "r", c.n)
					if err != nil || uint64(len(got)) != c.want {
						t.Fatalf("LoadPrefix(%d): %d records, %v; want %d", c.n, len(got), err, c.want)
					}
					for i, r := range got {
						if r.Index != uint64(i) || string(r.Body) != fmt.Sprintf(`{"i":%d}`, i) || r.Hash[0] != byte(i) {
							t.Fatalf("LoadPrefix(%d): record %d = %+v", c.n, i, r)
						}
					}
				}
				for _, c := range []struct {
					run string
					n   uint64
				}{{"r", 0}, {"nope", 1}, {"nope", math.MaxUint64}} {
					if _, err := s.LoadPrefix(ctx, c.run, c.n); !errors.Is(err, ErrNotFound) {
						t.Fatalf("LoadPrefix(%s, %d): %v, want ErrNotFound", c.run, c.n, err)
					}
				}
			})
			t.Run("LoadRangeReturnsOnlyTheRecordsAsked", func(t *testing.T) {
				s := open(t)
				rl, ok := s.(RangeLoader)
				if !ok {
					t.Fatal("the backend is not a RangeLoader")
				}
				appendN(t, s, "r", 0, 3)
				appendN(t, s, "r", 3, 2)
				for _, c := range []struct{ from, to, want uint64 }{{0, 1, 1}, {2, 4, 2}, {3, 5, 2}, {4, 6, 1}, {1, math.MaxUint64, 4}} {
					got, err := rl.LoadRange(ctx, "r", c.from, c.to)
					if err != nil || uint64(len(got)) != c.want {
						t.Fatalf("LoadRange(%d, %d): %d records, %v; want %d", c.from, c.to, len(got), err, c.want)
					}
					for i, r := range got {
						if j := c.from + uint64(i); r.Index != j || string(r.Body) != fmt.Sprintf(`{"i":%d}`, j) || r.Hash[0] != byte(j) {
							t.Fatalf("LoadRange(%d, %d): record %d = %+v", c.from, c.to, i, r)
						}
					}
					// The fallback for wrappers that only read prefixes agrees.
					prefixOnly := struct{ TraceReader }{s}
					if fb, err := Range(ctx, prefixOnly, "r", c.from, c.to); err != nil || fmt.Sprint(fb) != fmt.Sprint(got) {
						t.Fatalf("Range over LoadPrefix (%d, %d) = %v, %v; LoadRange = %v", c.from, c.to, fb, err, got)
					}
				}
				for _, c := range []struct {
					run      string
					from, to uint64
				}{{"r", 5, 9}, {"r", 2, 2}, {"r", 3, 1}, {"nope", 0, 1}} {
					if _, err := rl.LoadRange(ctx, c.run, c.from, c.to); !errors.Is(err, ErrNotFound) {
						t.Fatalf("LoadRange(%s, %d, %d): %v, want ErrNotFound", c.run, c.from, c.to, err)
					}
					if _, err := Range(ctx, struct{ TraceReader }{s}, c.run, c.from, c.to); !errors.Is(err, ErrNotFound) {
						t.Fatalf("Range over LoadPrefix (%s, %d, %d): %v, want ErrNotFound", c.run, c.from, c.to, err)
					}
				}
			})
			t.Run("ScanYieldsTheRecordsOneByOne", func(t *testing.T) {
				s := open(t)
				sc, ok := s.(Scanner)
				if !ok {
					t.Fatal("the backend is not a Scanner")
				}
				appendN(t, s, "r", 0, 3)
				appendN(t, s, "r", 3, 2)
				for _, c := range []struct{ n, want uint64 }{{1, 1}, {4, 4}, {5, 5}, {math.MaxUint64, 5}} {
					var got []Record
					for r, err := range sc.Scan(ctx, "r", c.n) {
						if err != nil {
							t.Fatalf("Scan(%d): %v", c.n, err)
						}
						got = append(got, r)
					}
					want, _ := s.LoadPrefix(ctx, "r", c.n)
					if uint64(len(got)) != c.want || fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("Scan(%d) = %v, LoadPrefix = %v", c.n, got, want)
					}
				}
				// A consumer that stops early gets no more, and the store
				// goes on serving (no connection left busy).
				seen := 0
				for range sc.Scan(ctx, "r", math.MaxUint64) {
					seen++
					break
				}
				if seen != 1 {
					t.Fatalf("a consumer that stopped at once saw %d records", seen)
				}
				appendN(t, s, "r", 5, 1)
				if got, err := s.Load(ctx, "r"); err != nil || len(got) != 6 {
					t.Fatalf("after an early stop: %d records, %v", len(got), err)
				}
				for _, c := range []struct {
					run string
					n   uint64
				}{{"r", 0}, {"nope", 1}} {
					n := 0
					for _, err := range sc.Scan(ctx, c.run, c.n) {
						n++
						if !errors.Is(err, ErrNotFound) {
							t.Fatalf("Scan(%s, %d): %v, want ErrNotFound", c.run, c.n, err)
						}
					}
					if n != 1 {
						t.Fatalf("Scan(%s, %d) yielded %d times, want one error", c.run, c.n, n)
					}
				}
			})
			t.Run("AppendAtWrongIndexConflictsAndWritesNothing", func(t *testing.T) {
				s := open(t)
				appendN(t, s, "r", 0, 2)
				for _, bad := range [][]Record{recs(1, 2), recs(3, 1), {{Index: 2}, {Index: 4}}} {
					if err := s.Append(ctx, "r", bad, info(2+uint64(len(bad)))); !errors.Is(err, ErrConflict) {
						t.Fatalf("Append %v: got %v, want ErrConflict", bad, err)
					}
				}
				if err := s.Append(ctx, "new", recs(1, 1), info(2)); !errors.Is(err, ErrConflict) {
					t.Fatalf("first append not at 0: %v", err)
				}
				got, _ := s.Load(ctx, "r")
				ri, _ := s.Run(ctx, "r")
				if len(got) != 2 || ri.Events != 2 {
					t.Fatalf("conflicting appends wrote: %d records, index says %d", len(got), ri.Events)
				}
			})
			t.Run("AppendWithWrongEventCountWritesNothing", func(t *testing.T) {
				s := open(t)
				if err := s.Append(ctx, "r", recs(0, 2), info(3)); err == nil {
					t.Fatal("an index row that disagrees with the trace was accepted")
				}
				if _, err := s.Load(ctx, "r"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("a refused append wrote records: %v", err)
				}
			})
			t.Run("ConcurrentAppendsAtSameIndexExactlyOneWins", func(t *testing.T) {
				s := open(t)
				appendN(t, s, "r", 0, 1)
				const n = 32
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for i := 0; i < n; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- s.Append(ctx, "r", recs(1, 2), info(3))
					}()
				}
				wg.Wait()
				close(errs)
				wins := 0
				for err := range errs {
					switch {
					case err == nil:
						wins++
					case !errors.Is(err, ErrConflict):
						t.Fatalf("unexpected error %v", err)
					}
				}
				if wins != 1 {
					t.Fatalf("%d appends won, want exactly 1", wins)
				}
				if got, _ := s.Load(ctx, "r"); len(got) != 3 {
					t.Fatalf("trace has %d records, want 3", len(got))
				}
			})
			t.Run("ListRunsFiltersAndPages", func(t *testing.T) {
				s := open(t)
				for i := 0; i < 25; i++ {
					ri := info(1)
					ri.StartedAt = t0.Add(time.Duration(i) * time.Minute)
					if i%2 == 0 {
						ri.Status, ri.Outcome = "completed", "DONE"
					}
					if i%5 == 0 {
						ri.Program = "q"
					}
					if err := s.Append(ctx, fmt.Sprintf("run-%02d", i), recs(0, 1), ri); err != nil {
						t.Fatal(err)
					}
				}
				var all []string
				cursor := ""
				for pages := 0; ; pages++ {
					page, next, err := s.ListRuns(ctx, ListFilter{Limit: 10, Cursor: cursor})
					if err != nil {
						t.Fatal(err)
					}
					for _, ri := range page {
						all = append(all, ri.RunID)
					}
					if next == "" {
						break
					}
					if pages > 5 {
						t.Fatal("paging does not end")
					}
					cursor = next
				}
				if len(all) != 25 || all[0] != "run-24" || all[24] != "run-00" {
					t.Fatalf("listing %v: want 25 runs, newest first", all)
				}
				count := func(f ListFilter) int {
					f.Limit = 1000
					page, _, err := s.ListRuns(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					return len(page)
				}
				for _, c := range []struct {
					f    ListFilter
					want int
				}{
					{ListFilter{Status: "completed"}, 13},
					{ListFilter{Outcome: "DONE", Program: "q"}, 3},
					{ListFilter{DefinitionHash: "sha256:x"}, 0},
					{ListFilter{Since: t0.Add(20 * time.Minute)}, 5},
					{ListFilter{Since: t0.Add(5 * time.Minute), Until: t0.Add(10 * time.Minute)}, 5},
				} {
					if got := count(c.f); got != c.want {
						t.Errorf("filter %+v: %d runs, want %d", c.f, got, c.want)
					}
				}
				if _, _, err := s.ListRuns(ctx, ListFilter{Cursor: "garbage"}); !errors.Is(err, ErrBadCursor) {
					t.Error("a malformed cursor was accepted")
				}
			})
			t.Run("ListRunsPagesRunsWithoutAStartTime", func(t *testing.T) {
				s := open(t)
				for i := 0; i < 3; i++ {
					ri := info(1)
					ri.StartedAt, ri.UpdatedAt = time.Time{}, time.Time{}
					if err := s.Append(ctx, fmt.Sprintf("z-%d", i), recs(0, 1), ri); err != nil {
						t.Fatal(err)
					}
				}
				first, next, err := s.ListRuns(ctx, ListFilter{Limit: 2})
				if err != nil || len(first) != 2 || next == "" {
					t.Fatalf("first page %v, next %q, %v", first, next, err)
				}
				rest, next2, err := s.ListRuns(ctx, ListFilter{Limit: 2, Cursor: next})
				if err != nil || len(rest) != 1 || next2 != "" || rest[0].RunID != "z-0" {
					t.Fatalf("second page %v, next %q, %v", rest, next2, err)
				}
			})
			t.Run("PrincipalAndLabAreStoredAndReturned", func(t *testing.T) {
				s := open(t)
				for _, c := range []struct {
					run, principal string
					lab            bool
				}{
					{"none", "", false},
					{"alice", "alice", false},
					{"lab", "alice", true},
					{"unicode", "Zoë <ops@example.org>", true},
				} {
					ri := info(1)
					ri.Principal, ri.Lab = c.principal, c.lab
					if err := s.Append(ctx, c.run, recs(0, 1), ri); err != nil {
						t.Fatal(err)
					}
					got, err := s.Run(ctx, c.run)
					if err != nil || got.Principal != c.principal || got.Lab != c.lab {
						t.Fatalf("Run(%s) = %+v, %v; want principal %q, lab %v", c.run, got, err, c.principal, c.lab)
					}
					page, _, err := s.ListRuns(ctx, ListFilter{Principal: c.principal, Limit: 1000})
					if err != nil {
						t.Fatal(err)
					}
					found := false
					for _, ri := range page {
						if ri.RunID == c.run {
							found = ri.Principal == c.principal && ri.Lab == c.lab
						}
					}
					if !found {
						t.Fatalf("ListRuns{Principal: %q} = %+v: want %s with principal %q, lab %v", c.principal, page, c.run, c.principal, c.lab)
					}
				}
			})
			t.Run("PrincipalAndLabKeepTheFirstAppendsValues", func(t *testing.T) {
				s := open(t)
				for _, c := range []struct {
					name   string
					change func(*RunInfo)
				}{
					// SQLite writes a step without listed changes by a
					// narrower statement than one that changes the status.
					{"listedColumnsUnchanged", func(*RunInfo) {}},
					{"statusChanges", func(ri *RunInfo) { ri.Status, ri.Outcome = "completed", "DONE" }},
				} {
					first := info(1)
					first.Principal, first.Lab = "alice", true
					if err := s.Append(ctx, c.name, recs(0, 1), first); err != nil {
						t.Fatal(err)
					}
					for i, later := range []struct {
						principal string
						lab       bool
					}{{"mallory", false}, {"", false}} {
						ri := info(uint64(i) + 2)
						ri.Principal, ri.Lab = later.principal, later.lab
						c.change(&ri)
						if err := s.Append(ctx, c.name, recs(uint64(i)+1, 1), ri); err != nil {
							t.Fatal(err)
						}
					}
					got, err := s.Run(ctx, c.name)
					if err != nil || got.Principal != "alice" || !got.Lab || got.Events != 3 {
						t.Fatalf("%s: Run = %+v, %v; want alice's lab run of 3 events", c.name, got, err)
					}
					if page, _, err := s.ListRuns(ctx, ListFilter{Principal: "mallory"}); err != nil || len(page) != 0 {
						t.Fatalf("%s: a later append's principal lists the run: %+v, %v", c.name, page, err)
					}
				}
				if page, _, err := s.ListRuns(ctx, ListFilter{Principal: "alice"}); err != nil || len(page) != 2 {
					t.Fatalf("alice's runs = %+v, %v; want both", page, err)
				}
			})
			t.Run("ListRunsFiltersByPrincipalAcrossPages", func(t *testing.T) {
				s := open(t)
				type spec struct {
					id, principal, program, status string
					lab                            bool
					started                        time.Time
				}
				var specs []spec
				for i := range 30 {
					sp := spec{
						id:        fmt.Sprintf("run-%02d", i),
						principal: []string{"alice", "bob", ""}[i%3],
						program:   []string{"p", "q"}[i%2],
						status:    "running",
						lab:       i%4 == 1,
						// Runs share a start in sixes, each principal's twice
						// or more, so that filtered pages break inside ties.
						started: t0.Add(time.Duration(i/6) * time.Minute),
					}
					if i%5 < 2 {
						sp.status = "completed"
					}
					specs = append(specs, sp)
					ri := info(1)
					ri.Principal, ri.Program, ri.Status, ri.Lab, ri.StartedAt = sp.principal, sp.program, sp.status, sp.lab, sp.started
					if err := s.Append(ctx, sp.id, recs(0, 1), ri); err != nil {
						t.Fatal(err)
					}
				}
				for _, f := range []ListFilter{
					{Principal: "alice"},
					{Principal: "bob"},
					{Principal: "alice", Program: "q"},
					{Principal: "bob", Status: "completed"},
					{Principal: "alice", Program: "p", Status: "running"},
					{Principal: "bob", Since: t0.Add(time.Minute), Until: t0.Add(4 * time.Minute)},
					{Principal: "carol"},
					{Program: "q", Status: "completed"}, // every principal's
					{ExcludeLab: true},
					{Principal: "alice", ExcludeLab: true},
					{Program: "q", Status: "running", ExcludeLab: true},
				} {
					var want []spec
					for _, sp := range specs {
						if (f.Principal == "" || sp.principal == f.Principal) && (f.Program == "" || sp.program == f.Program) &&
							(f.Status == "" || sp.status == f.Status) && (f.Since.IsZero() || !sp.started.Before(f.Since)) &&
							(f.Until.IsZero() || sp.started.Before(f.Until)) && (!f.ExcludeLab || !sp.lab) {
							want = append([]spec{sp}, want...) // newest first: later ids start no earlier
						}
					}
					if f.Principal != "carol" && len(want) < 2 {
						t.Fatalf("filter %+v selects %d runs: too few to page", f, len(want))
					}
					for _, limit := range []int{1, 2, 3, 1000} {
						lf := f
						lf.Limit = limit
						var got []RunInfo
						pages := 0
						for {
							page, next, err := s.ListRuns(ctx, lf)
							if err != nil {
								t.Fatal(err)
							}
							got = append(got, page...)
							pages++
							if next == "" {
								break
							}
							if pages > len(specs) {
								t.Fatalf("filter %+v: paging does not end", lf)
							}
							lf.Cursor = next
						}
						if len(got) != len(want) {
							t.Fatalf("filter %+v: %d runs, want %d", lf, len(got), len(want))
						}
						for i, ri := range got {
							w := want[i]
							if ri.RunID != w.id || ri.Principal != w.principal || ri.Lab != w.lab || ri.Program != w.program || ri.Status != w.status {
								t.Fatalf("filter %+v: run %d is %+v, want %+v", lf, i, ri, w)
							}
						}
						if wantPages := max(1, (len(want)+limit-1)/limit); pages != wantPages {
							t.Errorf("filter %+v: %d pages, want %d", lf, pages, wantPages)
						}
					}
				}
			})
			t.Run("ProgramsAreStoredByHash", func(t *testing.T) {
				s := open(t)
				if _, err := s.Program(ctx, "sha256:x"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("unknown program: %v", err)
				}
				if err := s.PutProgram(ctx, "sha256:x", []byte("a")); err != nil {
					t.Fatal(err)
				}
				if err := s.PutProgram(ctx, "sha256:x", []byte("a")); err != nil {
					t.Fatalf("second put: %v", err)
				}
				got, err := s.Program(ctx, "sha256:x")
				if err != nil || string(got) != "a" {
					t.Fatalf("Program = %q, %v", got, err)
				}
			})
			t.Run("SubjectKeysAreWrittenOnceAndCanBeDestroyed", func(t *testing.T) {
				s := open(t)
				state, err := s.KeyEpoch(ctx)
				if err != nil || state.Epoch != 0 || len(state.Store) != 32 {
					t.Fatalf("a new store's key state = %+v, %v; want epoch 0 and a 128-bit id", state, err)
				}
				if _, err := s.Key(ctx, "subj"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("unknown key: %v", err)
				}
				k, err := s.PutKey(ctx, WrappedKey{Subject: "subj", Wrapped: []byte("k1")})
				if err != nil || string(k.Wrapped) != "k1" || k.Subject != "subj" {
					t.Fatalf("PutKey = %+v, %v", k, err)
				}
				if k, err := s.PutKey(ctx, WrappedKey{Subject: "subj", Wrapped: []byte("k2")}); err != nil || string(k.Wrapped) != "k1" {
					t.Fatalf("second PutKey = %+v, %v: want the first key back", k, err)
				}
				if _, err := s.PutKey(ctx, WrappedKey{Subject: "other", Wrapped: []byte("o1")}); err != nil {
					t.Fatal(err)
				}
				// A rotation from the wrong epoch changes nothing.
				if _, err := s.RotateKeys(ctx, 3, 4, []string{"subj"}, func(w WrappedKey) ([]byte, error) { return w.Wrapped, nil }); !errors.Is(err, ErrKeyEpoch) {
					t.Fatalf("rotation from a stale epoch: %v", err)
				}
				// A failing rewrap changes nothing either.
				if _, err := s.RotateKeys(ctx, 0, 1, []string{"subj"}, func(WrappedKey) ([]byte, error) { return nil, errors.New("no") }); err == nil {
					t.Fatal("a failing rewrap did not fail the rotation")
				}
				if k, err := s.Key(ctx, "subj"); err != nil || string(k.Wrapped) != "k1" || k.Epoch != 0 {
					t.Fatalf("after failed rotations: %+v, %v", k, err)
				}
				deleted, err := s.RotateKeys(ctx, 0, 1, []string{"subj", "never"}, func(w WrappedKey) ([]byte, error) {
					if w.Epoch != 0 {
						t.Errorf("rewrap got epoch %d", w.Epoch)
					}
					return append([]byte("re:"), w.Wrapped...), nil
				})
				if err != nil || len(deleted) != 1 || deleted[0] != "subj" {
					t.Fatalf("RotateKeys = %v, %v; want [subj]", deleted, err)
				}
				if _, err := s.Key(ctx, "subj"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("erased key: %v", err)
				}
				if k, err := s.Key(ctx, "other"); err != nil || string(k.Wrapped) != "re:o1" || k.Epoch != 1 {
					t.Fatalf("re-wrapped key = %+v, %v", k, err)
				}
				if st, err := s.KeyEpoch(ctx); err != nil || st.Epoch != 1 || st.Store != state.Store {
					t.Fatalf("key state after rotation = %+v, %v", st, err)
				}
				if _, err := s.PutKey(ctx, WrappedKey{Subject: "new", Wrapped: []byte("n"), Epoch: 0}); !errors.Is(err, ErrKeyEpoch) {
					t.Fatalf("a key wrapped under the old epoch was stored: %v", err)
				}
				if k, err := s.PutKey(ctx, WrappedKey{Subject: "new", Wrapped: []byte("n"), Epoch: 1}); err != nil || k.Epoch != 1 {
					t.Fatalf("PutKey at the new epoch = %+v, %v", k, err)
				}
			})
			t.Run("RunsAreFoundByTheirSubjects", func(t *testing.T) {
				s := open(t)
				first := info(1)
				first.Subjects = []string{"s1", "s2"}
				if err := s.Append(ctx, "r1", recs(0, 1), first); err != nil {
					t.Fatal(err)
				}
				second := info(1)
				second.Subjects = []string{"s2"}
				if err := s.Append(ctx, "r0", recs(0, 1), second); err != nil {
					t.Fatal(err)
				}
				// Later appends cannot add subjects.
				later := info(2)
				later.Subjects = []string{"s3"}
				if err := s.Append(ctx, "r1", recs(1, 1), later); err != nil {
					t.Fatal(err)
				}
				for sub, want := range map[string]string{"s1": "[r1]", "s2": "[r0 r1]", "s3": "[]", "none": "[]"} {
					got, err := s.RunsOfSubject(ctx, sub)
					if err != nil || fmt.Sprint(got) != want {
						t.Errorf("RunsOfSubject(%s) = %v, %v; want %s", sub, got, err, want)
					}
				}
			})
			t.Run("ProgramHashesListEveryProgram", func(t *testing.T) {
				s := open(t)
				for _, h := range []string{"sha256:b", "sha256:a", "sha256:b"} {
					if err := s.PutProgram(ctx, h, []byte(h)); err != nil {
						t.Fatal(err)
					}
				}
				if got, err := s.ProgramHashes(ctx); err != nil || fmt.Sprint(got) != "[sha256:a sha256:b]" {
					t.Fatalf("ProgramHashes = %v, %v", got, err)
				}
			})
		})
	}
}
