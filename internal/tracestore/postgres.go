package tracestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// Postgres is the shared Store: several server instances, in several
// processes, append to the runs of one database. Its correctness rests on
// the database's row locks and keys alone, never on a lock in this process.
type Postgres struct {
	// sqlDB's r and w are one database/sql handle over pool (pgx's
	// stdlib), which Append uses too: a pgx-native append measured no
	// faster (docs/performance.md).
	sqlDB
	pool *pgxpool.Pool
}

// postgresMigrations are the schema's forward steps, as sqliteMigrations.
var postgresMigrations = []string{
	// 1: the tables.
	postgresTypes.spell(tables),
	// 2: listing; see sqliteMigrations.
	listingIndexes,
	// 3: principal and lab; see sqliteMigrations. A constant default adds
	// the columns without rewriting the table.
	`ALTER TABLE runs ADD COLUMN principal TEXT NOT NULL DEFAULT '', ADD COLUMN lab BOOLEAN NOT NULL DEFAULT false;
	CREATE INDEX runs_by_principal ON runs (principal, started_at DESC, run_id DESC)`,
	// 4: the analyzer's drift baselines; see sqliteMigrations. A sequence
	// numbers the saves, so that concurrent saves never tie.
	`CREATE SEQUENCE baselines_saved;
	` + postgresTypes.spell(baselinesTable),
	// 5: crypto-shredding; see sqliteMigrations.
	`ALTER TABLE subject_keys ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
	CREATE TABLE key_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL, epoch BIGINT NOT NULL);
	INSERT INTO key_epoch (id, store_id, epoch) VALUES (1, replace(gen_random_uuid()::text, '-', ''), 0);
	CREATE TABLE run_subjects (
		subject TEXT NOT NULL,
		run_id TEXT COLLATE "C" NOT NULL,
		PRIMARY KEY (subject, run_id)
	);
	INSERT INTO run_subjects (subject, run_id)
		SELECT j.value, e.run_id FROM events e,
			jsonb_each_text(convert_from(e.body, 'UTF8')::jsonb -> 'started' -> 'subjects') j
		WHERE e.idx = 0 AND e.type = 'run_started'
		ON CONFLICT DO NOTHING`,
	// 6: the approvers' inbox; see sqliteMigrations.
	`ALTER TABLE runs ADD COLUMN awaiting_role TEXT NOT NULL DEFAULT '', ADD COLUMN awaiting_deadline BIGINT NOT NULL DEFAULT 0;
	UPDATE runs SET awaiting_role = t.role, awaiting_deadline = 9223372036854775807
		FROM (SELECT e.run_id, convert_from(e.body, 'UTF8')::jsonb #>> '{task,role}' AS role FROM events e
			WHERE e.type = 'task_issued' AND convert_from(e.body, 'UTF8')::jsonb #>> '{task,kind}' = 'approval'
			AND NOT EXISTS (SELECT 1 FROM events l WHERE l.run_id = e.run_id AND l.idx > e.idx
				AND l.type IN ('task_issued', 'submission_accepted', 'transitioned', 'run_finished'))) t
		WHERE runs.run_id = t.run_id AND runs.status = 'running' AND t.role <> '';
	` + awaitingIndexes,
	// 7: the deadline sweeper's index; see sqliteMigrations.
	dueStep,
	// 8: a due time for the running runs from before step 7; see
	// sqliteMigrations.
	dueBackfillStep,
	// 9: runtime tool calls; see sqliteMigrations.
	openCallStep,
}

// migrationLock is the advisory lock key that serialises migrations of
// stores in one database ("nanovmts" in ASCII).
const migrationLock int64 = 0x6e616e6f766d7473

// postgresDialect: row locks on the key epoch, byte order for text, a
// sequence for baseline saves, and an advisory lock around each migration
// step so that processes starting together neither race to create
// schema_version nor apply a step twice.
var postgresDialect = dialect{
	conflict:      postgresConflict,
	shareEpoch:    " FOR SHARE",
	lockEpoch:     " FOR UPDATE",
	byteOrder:     `COLLATE "C"`,
	nextSaved:     "nextval('baselines_saved')",
	migrationLock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLock),
	deleteKeys:    postgresDeleteKeys,
	rewrapKeys:    postgresRewrapKeys,
}

// OpenPostgres connects to the database at dsn (a libpq URL or key=value
// string; search_path selects the schema) and migrates an older schema to
// the current one.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("tracestore: postgres: %w", err)
	}
	// database/sql must keep no idle connections of its own (OpenDBFromPool
	// sets none): holding the pool's connections idle while another
	// opening waits on the pool deadlocks once the pool is exhausted.
	db := stdlib.OpenDBFromPool(pool)
	p := &Postgres{sqlDB: sqlDB{backend: "postgres", r: db, w: db, d: postgresDialect}, pool: pool}
	p.sqlDB.write = p.write
	if err := migrate(ctx, db, "postgres", postgresDialect, postgresMigrations); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// write is Append's PostgreSQL part (see sqlDB.Append): one statement,
// and so one round trip and one transaction, through database/sql. The run's row holds the trace's length: the UPDATE matches
// only if the trace ends where records begin, and its row lock makes a
// concurrent append to the run wait and then find the length changed. A
// run's first append has no row to lock; there the runs primary key lets
// one INSERT through and turns the others into no-ops. Events are written
// only if one of the two took effect. Nothing here depends on a lock in
// this process. Only the INSERT writes principal and lab: the first append
// sets them for good.
func (p *Postgres) write(ctx context.Context, runID string, records []Record, info RunInfo, started, updated int64) error {
	first := records[0].Index
	if err := checkAppend(runID, first, records, info); err != nil {
		// As in Memory, a stale index is a conflict before a wrong count
		// is a mistake; only this error path needs the trace's length.
		var next int64
		switch qerr := p.r.QueryRowContext(ctx, `SELECT events FROM runs WHERE run_id = $1`, runID).Scan(&next); {
		case qerr == nil, errors.Is(qerr, sql.ErrNoRows):
			return checkAppend(runID, uint64(next), records, info)
		}
		return err
	}
	// The lease, should this append insert the run's row; an update
	// decides it in the statement, from the row it locks (leaseOf).
	insHolder, insLease := leaseOf(RunInfo{}, false, info)
	// A conditional append (RunInfo.IfLease) updates only a row that
	// holds the lease, and never inserts one.
	var cond Lease
	if info.IfLease != nil {
		cond = *info.IfLease
	}
	var (
		idx            = make([]int64, len(records))
		types          = make([]string, len(records))
		bodies, hashes = make([][]byte, len(records)), make([][]byte, len(records))
	)
	for i, r := range records {
		idx[i], types[i], bodies[i], hashes[i] = int64(r.Index), r.Type, r.Body, r.Hash
	}
	res, err := p.w.ExecContext(ctx, `WITH upd AS (
			UPDATE runs SET program = $2, definition_hash = $3, status = $4, outcome = $5, started_at = $6,
			updated_at = $7, events = $8, head = $9, tree = $10, awaiting_role = $19, awaiting_deadline = $20, due = $21,
			call_id = $22,
			lease_holder = CASE WHEN $22 = '' THEN '' WHEN $23 <> '' THEN $23 WHEN runs.call_id = $22 THEN runs.lease_holder ELSE '' END,
			lease_expires = CASE WHEN $22 = '' THEN 0 WHEN $23 <> '' THEN $24::bigint WHEN runs.call_id = $22 THEN runs.lease_expires ELSE $25::bigint END
			WHERE run_id = $1 AND events = $11::bigint AND ($28::text = '' OR (runs.call_id = $28 AND runs.lease_holder = $29::text))
			RETURNING 1
		), ins AS (
			INSERT INTO runs (`+runColumns+`) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $16, $17, $19, $20, $21, $22, $26, $27 WHERE $11::bigint = 0 AND $28::text = ''
			ON CONFLICT (run_id) DO NOTHING
			RETURNING 1
		), subjects AS (
			INSERT INTO run_subjects (subject, run_id) SELECT unnest($18::text[]), $1 WHERE EXISTS (SELECT 1 FROM ins)
			ON CONFLICT DO NOTHING
		)
		INSERT INTO events (run_id, idx, type, body, hash)
		SELECT $1, * FROM unnest($12::bigint[], $13::text[], $14::bytea[], $15::bytea[])
		WHERE EXISTS (SELECT 1 FROM upd UNION ALL SELECT 1 FROM ins)`,
		runID, info.Program, info.DefinitionHash, info.Status, info.Outcome, started, updated, int64(info.Events), info.Head, info.Tree,
		int64(first), idx, types, bodies, hashes, info.Principal, info.Lab, subjectsArg(info.Subjects), info.AwaitingRole, awaitingNanos(info), dueNanos(info),
		info.Call, info.LeaseHolder, max(boundOf(info.LeaseExpires), unheld), int64(unheld), insHolder, insLease, cond.Call, cond.Holder)
	if err != nil {
		return fmt.Errorf("tracestore: postgres append: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("tracestore: postgres append: %w", err)
	}
	if n == 0 {
		return p.refused(ctx, runID, first, info)
	}
	return nil
}

// refused says why write's statement changed nothing: the trace did not
// end at first (a conflict, as Memory and SQLite report it first), or else
// the lease the append was conditional on is no longer held. The row is
// read after the statement; either answer is one the row has shown.
func (p *Postgres) refused(ctx context.Context, runID string, first uint64, info RunInfo) error {
	conflict := fmt.Errorf("%w: run %s: the trace does not end at index %d", ErrConflict, runID, first)
	if info.IfLease == nil {
		return conflict
	}
	var (
		next int64
		row  RunInfo
	)
	err := p.r.QueryRowContext(ctx, `SELECT events, call_id, lease_holder FROM runs WHERE run_id = $1`, runID).Scan(&next, &row.Call, &row.LeaseHolder)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return checkLease(runID, row, false, info)
	case err != nil:
		return fmt.Errorf("tracestore: postgres append: %w", err)
	case uint64(next) != first:
		return conflict
	}
	if err := checkLease(runID, row, true, info); err != nil {
		return err
	}
	return conflict
}

// conflictCodes are the errors by which PostgreSQL says another
// transaction won: unique_violation (an event already at an index the
// index row said was free), serialization_failure (under a serializable
// default isolation) and deadlock_detected. The statement wrote nothing, so
// reloading and retrying is right for all three.
var conflictCodes = map[string]bool{"23505": true, "40001": true, "40P01": true}

func postgresConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && conflictCodes[pe.Code]
}

// subjectsArg is never nil: pgx sends a nil slice as NULL, which unnest
// would refuse.
func subjectsArg(subjects []string) []string {
	if subjects == nil {
		return []string{}
	}
	return subjects
}

// postgresDeleteKeys is a rotation's deletion, in one statement. The
// deleted and replaced rows stay as dead tuples until VACUUM, and in the
// WAL and any backups, for as long as those live.
func postgresDeleteKeys(ctx context.Context, tx *sql.Tx, subjects []string) ([]string, error) {
	return queryStrings(ctx, tx, `DELETE FROM subject_keys WHERE subject = ANY($1) RETURNING subject`, subjectsArg(subjects))
}

// postgresRewrapKeys is a rotation's rewrite, in one statement.
func postgresRewrapKeys(ctx context.Context, tx *sql.Tx, keys []WrappedKey, wrapped [][]byte, to uint64) error {
	subjects := make([]string, len(keys))
	for i, k := range keys {
		subjects[i] = k.Subject
	}
	_, err := tx.ExecContext(ctx, `UPDATE subject_keys s SET key = u.key, epoch = $1
		FROM unnest($2::text[], $3::bytea[]) AS u(subject, key) WHERE s.subject = u.subject`, int64(to), subjects, wrapped)
	return err
}

// Close implements Store.
func (p *Postgres) Close() error {
	err := p.r.Close()
	p.pool.Close()
	if err != nil {
		return fmt.Errorf("tracestore: postgres close: %w", err)
	}
	return nil
}
