package tracestore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// openTestSQLite opens a fresh store in a temporary directory, closed when
// tb ends.
func openTestSQLite(tb testing.TB, opts SQLiteOptions) *SQLite {
	tb.Helper()
	s, err := OpenSQLite(filepath.Join(tb.TempDir(), "traces.db"), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// rawSQLite opens path without the store's migrations, for tests that
// build or inspect a schema by hand.
func rawSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLiteFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := SQLitePath(dir)
	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			path string
			want os.FileMode
		}{
			{dir, 0o700 | os.ModeDir},
			{path, 0o600},
			{path + "-wal", 0o600},
			{path + "-shm", 0o600},
		} {
			fi, err := os.Stat(c.path)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if got := fi.Mode(); got != c.want {
				t.Errorf("%s: %s has mode %v, want %v", when, filepath.Base(c.path), got, c.want)
			}
		}
	}
	s, err := OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, "r", 0, 3)
	check("created")

	// Someone made the files readable while the store was open; the next
	// open, here a second store on the same file, makes them private again.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Chmod(path+suffix, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	appendN(t, s2, "r", 3, 1)
	check("reopened")
}

func TestSQLiteOptions(t *testing.T) {
	for _, c := range []struct {
		sync string
		want int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{
		{"", 2}, {"FULL", 2}, {"full", 2}, {"NORMAL", 1}, {"normal", 1},
	} {
		s := openTestSQLite(t, SQLiteOptions{Synchronous: c.sync})
		var sync, busy int
		var mode string
		if err := s.w.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := s.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := s.w.QueryRow(`PRAGMA busy_timeout`).Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if sync != c.want || mode != "wal" || busy != int(busyTimeout.Milliseconds()) {
			t.Errorf("Synchronous %q: synchronous=%d journal_mode=%s busy_timeout=%d, want %d, wal, %d", c.sync, sync, mode, busy, c.want, busyTimeout.Milliseconds())
		}
	}
	for _, bad := range []string{"OFF", "EXTRA", "0", "yes"} {
		if _, err := OpenSQLite(filepath.Join(t.TempDir(), "x.db"), SQLiteOptions{Synchronous: bad}); err == nil {
			t.Errorf("Synchronous %q was accepted", bad)
		}
	}
}

func TestSQLiteReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "odd dir?#%", "traces.db")
	s, err := OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "r", 0, 3)
	appendN(t, s, "q", 0, 1)
	if err := s.PutProgram(ctx, "sha256:d", []byte("source")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutKey(ctx, WrappedKey{Subject: "subj", Wrapped: []byte("k1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Load(ctx, "r"); err != nil || len(got) != 3 || string(got[2].Body) != `{"i":2}` {
		t.Fatalf("Load after reopen = %v, %v", got, err)
	}
	if ri, err := s.Run(ctx, "r"); err != nil || ri.Events != 3 || !ri.StartedAt.Equal(t0) {
		t.Fatalf("Run after reopen = %+v, %v", ri, err)
	}
	if page, _, err := s.ListRuns(ctx, ListFilter{}); err != nil || len(page) != 2 {
		t.Fatalf("ListRuns after reopen = %v, %v", page, err)
	}
	if src, err := s.Program(ctx, "sha256:d"); err != nil || string(src) != "source" {
		t.Fatalf("Program after reopen = %q, %v", src, err)
	}
	if k, err := s.Key(ctx, "subj"); err != nil || string(k.Wrapped) != "k1" {
		t.Fatalf("Key after reopen = %q, %v", k.Wrapped, err)
	}
	if err := s.Append(ctx, "r", recs(2, 1), info(3)); !errors.Is(err, ErrConflict) {
		t.Fatalf("append behind the end after reopen: %v", err)
	}
	appendN(t, s, "r", 3, 1)
}

func TestSQLiteListingWalksAnIndex(t *testing.T) {
	s := openTestSQLite(t, SQLiteOptions{})
	after := &RunInfo{RunID: "r", StartedAt: t0}
	for _, f := range []ListFilter{
		{},
		{Program: "p"},
		{DefinitionHash: "sha256:d"},
		{Status: "running", Outcome: "DONE"},
		{Outcome: "DONE"},
		{Since: t0, Until: t0.Add(time.Hour)},
		{Program: "p", Since: t0},
		{Principal: "alice"},
		{Principal: "alice", Since: t0, Until: t0.Add(time.Hour)},
		{Principal: "alice", Program: "p", Status: "running"},
	} {
		for _, cursor := range []*RunInfo{nil, after} {
			q, args := listQuery(f, cursor, 100, func(n int) string { return fmt.Sprintf("?%d", n) })
			p := queryPlan(t, s, q, args)
			if !strings.Contains(p, "USING INDEX runs_by_") || strings.Contains(p, "TEMP B-TREE") {
				t.Errorf("filter %+v, cursor %v: plan %q does not walk a listing index in order", f, cursor != nil, p)
			}
			// A principal's own listing, the common one, walks its index.
			if f.Principal != "" && f.Program == "" && f.Status == "" && !strings.Contains(p, "runs_by_principal") {
				t.Errorf("filter %+v, cursor %v: plan %q does not walk runs_by_principal", f, cursor != nil, p)
			}
		}
	}
}

// queryPlan is SQLite's plan for q, its steps joined by "; ".
func queryPlan(t *testing.T, s *SQLite, q string, args []any) string {
	t.Helper()
	rows, err := s.r.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

func TestDefaultDataDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, c := range []struct{ xdg, want string }{
		{"/srv/xdg", "/srv/xdg/nano-vm-mcp"},
		{"", filepath.Join(home, ".local/share/nano-vm-mcp")},
		{"relative/xdg", filepath.Join(home, ".local/share/nano-vm-mcp")},
	} {
		t.Setenv("XDG_DATA_HOME", c.xdg)
		got, err := DefaultDataDir()
		if err != nil || got != c.want {
			t.Errorf("XDG_DATA_HOME=%q: DefaultDataDir() = %q, %v; want %q", c.xdg, got, err, c.want)
		}
	}
	if got := SQLitePath("/d"); got != "/d/traces.db" {
		t.Errorf("SQLitePath = %q", got)
	}
}

// walPageSize is the page size of the store's log frames.
func walPageSize(t *testing.T, s *SQLite) int64 {
	t.Helper()
	var ps int64
	if err := s.w.QueryRow(`PRAGMA page_size`).Scan(&ps); err != nil {
		t.Fatal(err)
	}
	return ps
}

// noCheckpoints stops s's checkpoints, the checkpointer's and the
// automatic one, so that its log only grows.
func noCheckpoints(t *testing.T, s *SQLite) {
	t.Helper()
	if err := s.checkpoints.close(); err != nil {
		t.Fatal(err)
	}
	s.checkpoints = nil
	if _, err := s.w.Exec(`PRAGMA wal_autocheckpoint = 0`); err != nil {
		t.Fatal(err)
	}
}

// walFrames counts the frames in the store's log. With automatic
// checkpoints off the log only grows, so the frames a commit adds are the
// pages it wrote.
func walFrames(t *testing.T, s *SQLite) int64 {
	t.Helper()
	fi, err := os.Stat(s.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	return (fi.Size() - 32) / (walPageSize(t, s) + 24)
}

// walWrites names the b-tree of each page in the log's frames from frame
// on ("page 1" for the header page), and counts its frames.
func walWrites(t *testing.T, s *SQLite, from int64) map[string]int {
	t.Helper()
	b, err := os.ReadFile(s.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	owner := map[uint32]string{1: "page 1"}
	rows, err := s.w.Query(`SELECT pageno, name FROM dbstat WHERE pageno > 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			page uint32
			name string
		)
		if err := rows.Scan(&page, &name); err != nil {
			t.Fatal(err)
		}
		owner[page] = name
	}
	rows.Close()
	ps := walPageSize(t, s)
	out := map[string]int{}
	// A frame is a 24-byte header, which starts with the page number, and
	// the page.
	for off := 32 + from*(ps+24); off+24+ps <= int64(len(b)); off += ps + 24 {
		page := binary.BigEndian.Uint32(b[off : off+4])
		out[cmp.Or(owner[page], fmt.Sprintf("page %d (free)", page))]++
	}
	return out
}

// An append rewrites only the listing indexes whose keys it changes: a step
// that leaves the run's status alone writes none, one that changes status
// and outcome writes those two. SQLite maintains every index on a column an
// UPDATE assigns, changed or not, so this pins that the update assigns no
// more than it must.
func TestSQLiteAppendWritesOnlyTheIndexesItChanges(t *testing.T) {
	ctx := context.Background()
	s := openTestSQLite(t, SQLiteOptions{})
	noCheckpoints(t, s)
	const runs = 100
	head := bytes.Repeat([]byte{1}, 32)
	n := uint64(len(stepMix))
	for i := range runs {
		if err := s.Append(ctx, benchRun(i), mixStep(0, head), benchInfo(i, n, head)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name            string
		status, outcome string
		role            string   // the approval the run awaits after the step
		want            []string // the listing indexes it may write
	}{
		{"mid-run step", "running", "", "", nil},
		{"another mid-run step", "running", "", "", nil},
		{"step that opens an approval", "running", "", "officer", []string{"runs_awaiting_by_deadline", "runs_awaiting_by_role"}},
		{"approval recorded, the task still open", "running", "", "officer", nil},
		{"step that decides the approval", "running", "", "", []string{"runs_awaiting_by_deadline", "runs_awaiting_by_role"}},
		{"step that changes the status", "waiting", "", "", []string{"runs_by_status"}},
		{"finishing step", "completed", "DONE", "", []string{"runs_by_outcome", "runs_by_status"}},
		{"step after the finish", "completed", "DONE", "", nil},
	} {
		from := walFrames(t, s)
		for i := range runs {
			ri, err := s.Run(ctx, benchRun(i))
			if err != nil {
				t.Fatal(err)
			}
			next := benchInfo(i, ri.Events+n, head)
			next.Status, next.Outcome = c.status, c.outcome
			if c.role != "" {
				next.AwaitingRole, next.AwaitingDeadline = c.role, t0.Add(time.Hour)
			}
			// A later append's principal changes nothing either.
			next.Principal = "mallory"
			if err := s.Append(ctx, benchRun(i), mixStep(ri.Events, head), next); err != nil {
				t.Fatal(err)
			}
		}
		writes := walWrites(t, s, from)
		var listed []string
		total := 0
		for name, k := range writes {
			total += k
			if strings.HasPrefix(name, "runs_by_") || strings.HasPrefix(name, "runs_awaiting_") {
				listed = append(listed, name)
			}
		}
		slices.Sort(listed)
		if !slices.Equal(listed, c.want) {
			t.Errorf("a %s wrote the listing indexes %v, want %v (pages written: %v)", c.name, listed, c.want, writes)
		}
		t.Logf("%s: %.2f pages per append: %v", c.name, float64(total)/runs, writes)
	}
	if page, _, err := s.ListRuns(ctx, ListFilter{Principal: "alice", Status: "completed", Outcome: "DONE", Limit: 1000}); err != nil || len(page) != runs {
		t.Fatalf("finished runs of alice: %d, %v; want %d", len(page), err, runs)
	}
}
