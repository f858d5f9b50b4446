package tracestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/nano-vm/nano-vm-mcp/internal/pgtest"
)

// pgTestDSN is a DSN for a fresh schema of its own (internal/pgtest).
func pgTestDSN(tb testing.TB) string {
	tb.Helper()
	dsn, _ := pgtest.Schema(tb, "tracestore_test_")
	return dsn
}

// openTestPostgres opens a store in a fresh schema, closed when tb ends.
func openTestPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	dsn := pgTestDSN(tb)
	s, err := OpenPostgres(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// A store left by an older binary, at any earlier schema version, upgrades
// on open, once however many processes open it together, and keeps its
// runs; runs from before principals have none.
func TestPostgresMigratesFromEveryEarlierVersion(t *testing.T) {
	ctx := context.Background()
	for from := 1; from < len(postgresMigrations); from++ {
		t.Run(fmt.Sprintf("fromVersion%d", from), func(t *testing.T) {
			dsn := pgTestDSN(t)
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)

			// The store as that version's binary left it, with a run in it.
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			qs := []string{`CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`}
			for v := 1; v <= from; v++ {
				qs = append(qs, postgresMigrations[v-1], fmt.Sprintf(`INSERT INTO schema_version VALUES (%d, 0)`, v))
			}
			qs = append(qs,
				`INSERT INTO events VALUES ('old', 0, 'e', '{"i":0}', '\x000102')`,
				`INSERT INTO events VALUES ('old2', 0, 'run_started', convert_to('{"started":{"subjects":{"customer":"abc","agent":"def"}}}', 'UTF8'), '\x000102')`,
				`INSERT INTO subject_keys (subject, key) VALUES ('abc', 'plainkey')`,
				`INSERT INTO events VALUES ('waits', 0, 'run_started', convert_to('{"started":{}}', 'UTF8'), '\x00'), ('waits', 1, 'task_issued', convert_to('{"task":{"kind":"approval","role":"officer"}}', 'UTF8'), '\x01'),
					('moved', 0, 'run_started', convert_to('{"started":{}}', 'UTF8'), '\x00'), ('moved', 1, 'task_issued', convert_to('{"task":{"kind":"approval","role":"officer"}}', 'UTF8'), '\x01'),
					('moved', 2, 'submission_accepted', convert_to('{}', 'UTF8'), '\x02')`,
				fmt.Sprintf(`INSERT INTO runs (run_id, program, definition_hash, status, outcome, started_at, updated_at, events, head, tree)
					VALUES ('waits', 'p', 'sha256:d', 'running', '', %d, %d, 2, '\x01', 'tree'), ('moved', 'p', 'sha256:d', 'running', '', %d, %d, 3, '\x01', 'tree')`, t0.UnixNano(), t0.UnixNano(), t0.UnixNano(), t0.UnixNano()),
				fmt.Sprintf(`INSERT INTO runs (run_id, program, definition_hash, status, outcome, started_at, updated_at, events, head, tree)
					VALUES ('old', 'p', 'sha256:d', 'running', '', %d, %d, 1, '\x01', 'tree')`, t0.UnixNano(), t0.UnixNano()))
			for _, q := range qs {
				if _, err := tx.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}

			// Several processes' worth of opens at once: the advisory lock
			// lets each step apply once.
			const opens = 4
			errs := make(chan error, opens)
			for range opens {
				go func() {
					s, err := OpenPostgres(ctx, dsn)
					if err == nil {
						s.Close()
					}
					errs <- err
				}()
			}
			for range opens {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			var version, steps int
			if err := conn.QueryRow(ctx, `SELECT max(version), count(*) FROM schema_version`).Scan(&version, &steps); err != nil {
				t.Fatal(err)
			}
			if version != len(postgresMigrations) || steps != len(postgresMigrations) {
				t.Fatalf("schema at version %d after %d steps, want %d", version, steps, len(postgresMigrations))
			}
			var indexes int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname LIKE 'runs\_by\_%'`).Scan(&indexes); err != nil {
				t.Fatal(err)
			}
			if indexes != 6 {
				t.Fatalf("%d listing indexes after migrating, want 6", indexes)
			}
			s, err := OpenPostgres(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := s.Load(ctx, "old"); err != nil || len(got) != 1 || string(got[0].Hash) != "\x00\x01\x02" {
				t.Fatalf("Load of the old run = %v, %v", got, err)
			}
			// Runs from before are found by their subjects, and keys
			// written unwrapped read as epoch 0.
			if got, err := s.RunsOfSubject(ctx, "def"); from < subjectsVersion && (err != nil || fmt.Sprint(got) != "[old2]") {
				t.Fatalf("RunsOfSubject after migrating = %v, %v", got, err)
			}
			if k, err := s.Key(ctx, "abc"); err != nil || k.Epoch != 0 || string(k.Wrapped) != "plainkey" {
				t.Fatalf("an old key after migrating = %+v, %v", k, err)
			}
			// A run waiting for an approval is in the inbox, its deadline
			// unknown; one whose approval was decided is not.
			if got, _, err := s.ListAwaiting(ctx, AwaitingFilter{}); from < awaitingVersion && (err != nil || awaitingIDs(got) != "waits" || got[0].AwaitingRole != "officer" || !got[0].AwaitingDeadline.IsZero()) {
				t.Fatalf("ListAwaiting after migrating = %+v, %v", got, err)
			}
			// The old run keeps no principal, even when a later append
			// names one.
			later := info(2)
			later.Principal, later.Lab = "alice", true
			if err := s.Append(ctx, "old", recs(1, 1), later); err != nil {
				t.Fatal(err)
			}
			if ri, err := s.Run(ctx, "old"); err != nil || ri.Principal != "" || ri.Lab || ri.Events != 2 {
				t.Fatalf("Run of the old run = %+v, %v; want no principal, not a lab run, 2 events", ri, err)
			}
			fresh := info(1)
			fresh.Principal, fresh.Lab = "alice", true
			if err := s.Append(ctx, "new", recs(0, 1), fresh); err != nil {
				t.Fatal(err)
			}
			if page, _, err := s.ListRuns(ctx, ListFilter{Principal: "alice", Program: "p"}); err != nil || len(page) != 1 || page[0].RunID != "new" || !page[0].Lab {
				t.Fatalf("alice's runs after migrating = %+v, %v", page, err)
			}
			s.Close()
		})
	}
}

func TestPostgresRefusesAStoreFromTheFuture(t *testing.T) {
	ctx := context.Background()
	dsn := pgTestDSN(t)
	s, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	future := len(postgresMigrations) + 1
	if _, err := conn.Exec(ctx, `INSERT INTO schema_version VALUES ($1, 0)`, future); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPostgres(ctx, dsn); !errors.Is(err, errSchemaTooNew) || !strings.Contains(err.Error(), fmt.Sprint(future)) {
		t.Fatalf("opening a version-%d store: %v, want errSchemaTooNew naming the version", future, err)
	}
}

func TestPostgresListsRunIDsInByteOrder(t *testing.T) {
	// In most locales "a-b" sorts after "ab" (punctuation is ignored at
	// first); in byte order it comes before, as in the other backends.
	ctx := context.Background()
	s := openTestPostgres(t)
	for _, id := range []string{"ab", "a-b", "B", "a_b"} {
		appendN(t, s, id, 0, 1)
	}
	page, _, err := s.ListRuns(ctx, ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ri := range page {
		got = append(got, ri.RunID)
	}
	if want := "ab a_b a-b B"; strings.Join(got, " ") != want {
		t.Fatalf("listing order %v, want %s", got, want)
	}
}
