package tracestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sqlBackend is what the migration tests need of a SQL backend; one test
// body runs against each.
type sqlBackend struct {
	name    string
	steps   []string
	dialect dialect
	// opens is how many stores open an old schema at once. PostgreSQL's
	// advisory lock is what lets several processes do so; SQLite's file is
	// opened by one process at a time.
	opens int
	// fresh makes an empty database and returns how to reach it: raw opens
	// a database/sql handle without the store's migrations (closed when
	// the test ends), open opens the store.
	fresh func(t *testing.T) (raw func() *sql.DB, open func() (Store, error))
	// indexes lists the names of the runs listing indexes, in order.
	indexes string
}

var sqlBackends = []sqlBackend{
	{
		name: "sqlite", steps: sqliteMigrations, dialect: sqliteDialect, opens: 1,
		fresh: func(t *testing.T) (func() *sql.DB, func() (Store, error)) {
			path := filepath.Join(t.TempDir(), "traces.db")
			return func() *sql.DB { return rawSQLite(t, path) },
				func() (Store, error) { return OpenSQLite(path, SQLiteOptions{}) }
		},
		indexes: `SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'runs_by_%' ORDER BY name`,
	},
	{
		name: "postgres", steps: postgresMigrations, dialect: postgresDialect, opens: 4,
		fresh: func(t *testing.T) (func() *sql.DB, func() (Store, error)) {
			dsn := pgTestDSN(t)
			raw := func() *sql.DB {
				db, err := sql.Open("pgx", dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
			return raw, func() (Store, error) { return OpenPostgres(context.Background(), dsn) }
		},
		indexes: `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname LIKE 'runs\_by\_%' ORDER BY indexname`,
	},
}

// execAll runs each statement with its arguments on db.
func execAll(t *testing.T, db *sql.DB, stmts [][]any) {
	t.Helper()
	for _, s := range stmts {
		if _, err := db.Exec(s[0].(string), s[1:]...); err != nil {
			t.Fatalf("%s: %v", s[0], err)
		}
	}
}

// A store left by an older binary, at any earlier schema version, upgrades
// on open, once however many processes open it together, and keeps its
// runs; runs from before principals have none.
func TestSQLStoresMigrateFromEveryEarlierVersion(t *testing.T) {
	ctx := context.Background()
	const (
		event = `INSERT INTO events VALUES ($1, $2, $3, $4, $5)`
		run   = `INSERT INTO runs (run_id, program, definition_hash, status, outcome, started_at, updated_at, events, head, tree) VALUES ($1, 'p', 'sha256:d', 'running', '', $2, $2, $3, $4, 'tree')`
	)
	// A run written by that version's binary, naming the columns every
	// version has; "waits" waits for an approval, "moved" was decided.
	started, approval := []byte(`{"started":{}}`), []byte(`{"task":{"kind":"approval","role":"officer"}}`)
	fixture := [][]any{
		{event, "old", 0, "e", []byte(`{"i":0}`), []byte{0, 1, 2}},
		{event, "old2", 0, "run_started", []byte(`{"started":{"subjects":{"customer":"abc","agent":"def"}}}`), []byte{0, 1, 2}},
		{`INSERT INTO subject_keys (subject, key) VALUES ($1, $2)`, "abc", []byte("plainkey")},
		{event, "waits", 0, "run_started", started, []byte{0}},
		{event, "waits", 1, "task_issued", approval, []byte{1}},
		{event, "moved", 0, "run_started", started, []byte{0}},
		{event, "moved", 1, "task_issued", approval, []byte{1}},
		{event, "moved", 2, "submission_accepted", []byte(`{}`), []byte{2}},
		{run, "waits", t0.UnixNano(), 2, []byte{1}},
		{run, "moved", t0.UnixNano(), 3, []byte{1}},
		{run, "old", t0.UnixNano(), 1, []byte{1}},
	}
	for _, b := range sqlBackends {
		t.Run(b.name, func(t *testing.T) {
			for from := 1; from < len(b.steps); from++ {
				t.Run(fmt.Sprintf("fromVersion%d", from), func(t *testing.T) {
					raw, open := b.fresh(t)
					db := raw()
					if err := migrate(ctx, db, b.name, b.dialect, b.steps[:from]); err != nil {
						t.Fatal(err)
					}
					execAll(t, db, fixture)
					db.Close()

					var wg sync.WaitGroup
					errs := make(chan error, b.opens)
					for range b.opens {
						wg.Go(func() {
							s, err := open()
							if err == nil {
								err = s.Close()
							}
							errs <- err
						})
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						if err != nil {
							t.Fatal(err)
						}
					}
					s, err := open()
					if err != nil {
						t.Fatal(err)
					}
					defer s.Close()
					checkMigrated(t, b, from, raw(), s)
				})
			}
		})
	}
}

// checkMigrated checks a store migrated from version from, holding the
// fixture of TestSQLStoresMigrateFromEveryEarlierVersion. A fixture row
// written at a version that had the index a later step backfills is not
// in that index, as its binary would have filled it: those checks apply
// below that version.
func checkMigrated(t *testing.T, b sqlBackend, from int, db *sql.DB, s Store) {
	t.Helper()
	ctx := context.Background()
	var version, steps int
	if err := db.QueryRow(`SELECT max(version), count(*) FROM schema_version`).Scan(&version, &steps); err != nil {
		t.Fatal(err)
	}
	if version != len(b.steps) || steps != len(b.steps) {
		t.Fatalf("schema at version %d after %d steps, want %d", version, steps, len(b.steps))
	}
	rows, err := db.Query(b.indexes)
	if err != nil {
		t.Fatal(err)
	}
	var indexes []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, name)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if want := "runs_by_definition runs_by_outcome runs_by_principal runs_by_program runs_by_start runs_by_status"; strings.Join(indexes, " ") != want {
		t.Fatalf("listing indexes after migrating: %v, want %s", indexes, want)
	}
	if got, err := s.Load(ctx, "old"); err != nil || len(got) != 1 || string(got[0].Body) != `{"i":0}` || string(got[0].Hash) != "\x00\x01\x02" {
		t.Fatalf("Load of the old run = %v, %v", got, err)
	}
	// Runs from before are found by their subjects, and keys written
	// unwrapped read as epoch 0.
	if got, err := s.RunsOfSubject(ctx, "def"); from < subjectsVersion && (err != nil || fmt.Sprint(got) != "[old2]") {
		t.Fatalf("RunsOfSubject after migrating = %v, %v", got, err)
	}
	if k, err := s.Key(ctx, "abc"); err != nil || k.Epoch != 0 || string(k.Wrapped) != "plainkey" {
		t.Fatalf("an old key after migrating = %+v, %v", k, err)
	}
	// A run waiting for an approval is in the inbox, its deadline unknown;
	// one whose approval was decided is not.
	if got, _, err := s.ListAwaiting(ctx, AwaitingFilter{}); from < awaitingVersion && (err != nil || awaitingIDs(got) != "waits" || got[0].AwaitingRole != "officer" || !got[0].AwaitingDeadline.IsZero()) {
		t.Fatalf("ListAwaiting after migrating = %+v, %v", got, err)
	}
	// Every running run from before is due by its start, since its
	// deadline needs the program: the sweeper looks at each once, and
	// none whose task expired before its next append is left unswept.
	if from < dueBackfillVersion {
		if got, _, err := s.ListDue(ctx, DueFilter{By: t0}); err != nil || awaitingIDs(got) != "moved old waits" {
			t.Fatalf("ListDue after migrating = %+v, %v; want every running run", got, err)
		}
		if got, _, err := s.ListDue(ctx, DueFilter{By: t0.Add(-time.Nanosecond)}); err != nil || len(got) != 0 {
			t.Fatalf("ListDue before the runs started = %+v, %v; want none", got, err)
		}
	}
	// No run from before has an open runtime call; a new append opens one,
	// leased, and recovery's listing finds it once the lease expires.
	if got, _, err := s.ListOpenCalls(ctx, OpenCallFilter{ExpiredBy: t0.Add(24 * time.Hour)}); err != nil || len(got) != 0 {
		t.Fatalf("ListOpenCalls after migrating = %+v, %v; want none", got, err)
	}
	if err := s.Append(ctx, "waits", recs(2, 1), withCall(3, "call-3", "A", time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _, err := s.ListOpenCalls(ctx, OpenCallFilter{ExpiredBy: t0.Add(time.Minute)}); err != nil || awaitingIDs(got) != "waits" || got[0].LeaseHolder != "A" {
		t.Fatalf("ListOpenCalls after opening a call = %+v, %v; want waits, leased to A", got, err)
	}
	// The old run keeps no principal, even when a later append names one.
	later := info(3)
	later.Principal, later.Lab = "alice", true
	if err := s.Append(ctx, "old", recs(1, 2), later); err != nil {
		t.Fatal(err)
	}
	if ri, err := s.Run(ctx, "old"); err != nil || ri.Principal != "" || ri.Lab || ri.Events != 3 {
		t.Fatalf("Run of the old run = %+v, %v; want no principal, not a lab run, 3 events", ri, err)
	}
	fresh := info(1)
	fresh.Principal, fresh.Lab = "alice", true
	if err := s.Append(ctx, "new", recs(0, 1), fresh); err != nil {
		t.Fatal(err)
	}
	if page, _, err := s.ListRuns(ctx, ListFilter{Principal: "alice", Program: "p"}); err != nil || len(page) != 1 || page[0].RunID != "new" || !page[0].Lab {
		t.Fatalf("alice's runs after migrating = %+v, %v", page, err)
	}
	if page, _, err := s.ListRuns(ctx, ListFilter{Program: "p"}); err != nil || len(page) != 4 {
		t.Fatalf("ListRuns after migrating = %+v, %v", page, err)
	}
}

// A store whose schema is newer than the binary's is refused, naming its
// version.
func TestSQLStoresRefuseAStoreFromTheFuture(t *testing.T) {
	for _, b := range sqlBackends {
		t.Run(b.name, func(t *testing.T) {
			raw, open := b.fresh(t)
			s, err := open()
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			future := len(b.steps) + 1
			db := raw()
			if _, err := db.Exec(`INSERT INTO schema_version VALUES ($1, 0)`, future); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if _, err := open(); !errors.Is(err, errSchemaTooNew) || !strings.Contains(err.Error(), fmt.Sprint(future)) {
				t.Fatalf("opening a version-%d store: %v, want errSchemaTooNew naming the version", future, err)
			}
		})
	}
}
