package tracestore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the shared Store: several server instances, in several
// processes, append to the runs of one database. Its correctness rests on
// the database's row locks and keys alone, never on a lock in this process.
type Postgres struct {
	pool *pgxpool.Pool
}

// postgresMigrations are the schema's forward steps, as sqliteMigrations.
// run_id sorts in the "C" collation so that listing orders run ids by
// bytes, as the other backends and the cursor do, whatever the database's
// locale.
var postgresMigrations = []string{
	// 1: the tables.
	`CREATE TABLE events (
		run_id TEXT COLLATE "C" NOT NULL,
		idx BIGINT NOT NULL,
		type TEXT NOT NULL,
		body BYTEA,
		hash BYTEA,
		PRIMARY KEY (run_id, idx)
	);
	CREATE TABLE runs (
		run_id TEXT COLLATE "C" PRIMARY KEY,
		program TEXT NOT NULL,
		definition_hash TEXT NOT NULL,
		status TEXT NOT NULL,
		outcome TEXT NOT NULL,
		started_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL,
		events BIGINT NOT NULL,
		head BYTEA,
		tree BYTEA
	);
	CREATE TABLE programs (hash TEXT PRIMARY KEY, source BYTEA);
	CREATE TABLE subject_keys (subject TEXT PRIMARY KEY, key BYTEA)`,
	// 2: listing; see sqliteMigrations.
	`CREATE INDEX runs_by_start ON runs (started_at DESC, run_id DESC);
	CREATE INDEX runs_by_program ON runs (program, started_at DESC, run_id DESC);
	CREATE INDEX runs_by_definition ON runs (definition_hash, started_at DESC, run_id DESC);
	CREATE INDEX runs_by_status ON runs (status, started_at DESC, run_id DESC);
	CREATE INDEX runs_by_outcome ON runs (outcome, started_at DESC, run_id DESC)`,
	// 3: principal and lab; see sqliteMigrations. A constant default adds
	// the columns without rewriting the table.
	`ALTER TABLE runs ADD COLUMN principal TEXT NOT NULL DEFAULT '', ADD COLUMN lab BOOLEAN NOT NULL DEFAULT false;
	CREATE INDEX runs_by_principal ON runs (principal, started_at DESC, run_id DESC)`,
	// 4: the analyzer's drift baselines; see sqliteMigrations. A sequence
	// numbers the saves, so that concurrent saves never tie.
	`CREATE SEQUENCE baselines_saved;
	CREATE TABLE baselines (
		program TEXT NOT NULL,
		definition_hash TEXT NOT NULL,
		data BYTEA NOT NULL,
		saved BIGINT NOT NULL,
		PRIMARY KEY (program, definition_hash)
	);
	CREATE INDEX baselines_by_saved ON baselines (program, saved DESC)`,
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
	CREATE INDEX runs_awaiting_by_role ON runs (awaiting_role, awaiting_deadline, run_id) WHERE awaiting_role <> '';
	CREATE INDEX runs_awaiting_by_deadline ON runs (awaiting_deadline, run_id) WHERE awaiting_role <> ''`,
}

// migrationLock is the advisory lock key that serialises migrations of
// stores in one database ("nanovmts" in ASCII).
const migrationLock int64 = 0x6e616e6f766d7473

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
	if err := migratePostgres(ctx, pool, postgresMigrations); err != nil {
		pool.Close()
		return nil, err
	}
	return &Postgres{pool: pool}, nil
}

// migratePostgres applies the steps the schema lacks, one transaction each,
// holding the advisory lock so that processes starting together neither
// race to create schema_version nor apply a step twice.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, steps []string) error {
	for {
		done, err := migratePostgresStep(ctx, pool, steps)
		if err != nil || done {
			return err
		}
	}
}

func migratePostgresStep(ctx context.Context, pool *pgxpool.Pool, steps []string) (done bool, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("tracestore: postgres migration: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return false, fmt.Errorf("tracestore: postgres migration: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return false, fmt.Errorf("tracestore: postgres migration: %w", err)
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return false, fmt.Errorf("tracestore: postgres migration: %w", err)
	}
	switch {
	case v > len(steps):
		return false, fmt.Errorf("%w (store version %d, this binary knows %d)", errSchemaTooNew, v, len(steps))
	case v == len(steps):
		return true, tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, steps[v]); err != nil {
		return false, fmt.Errorf("tracestore: postgres migration to version %d: %w", v+1, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)`, v+1, time.Now().UnixNano()); err != nil {
		return false, fmt.Errorf("tracestore: postgres migration to version %d: %w", v+1, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("tracestore: postgres migration to version %d: %w", v+1, err)
	}
	return false, nil
}

// Append implements Store, in one statement and so one round trip and one
// transaction. The run's row holds the trace's length: the UPDATE matches
// only if the trace ends where records begin, and its row lock makes a
// concurrent append to the run wait and then find the length changed. A
// run's first append has no row to lock; there the runs primary key lets
// one INSERT through and turns the others into no-ops. Events are written
// only if one of the two took effect. Nothing here depends on a lock in
// this process. Only the INSERT writes principal and lab: the first append
// sets them for good.
func (p *Postgres) Append(ctx context.Context, runID string, records []Record, info RunInfo) (err error) {
	if len(records) == 0 {
		return nil
	}
	started, updated, err := rowNanos(runID, info)
	if err != nil {
		return err
	}
	defer func() {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && conflictCodes[pe.Code] {
			err = fmt.Errorf("%w: run %s: %w", ErrConflict, runID, err)
		}
	}()
	first := records[0].Index
	if err := checkAppend(runID, first, records, info); err != nil {
		// As in Memory, a stale index is a conflict before a wrong count
		// is a mistake; only this error path needs the trace's length.
		var next int64
		switch qerr := p.pool.QueryRow(ctx, `SELECT events FROM runs WHERE run_id = $1`, runID).Scan(&next); {
		case qerr == nil, errors.Is(qerr, pgx.ErrNoRows):
			return checkAppend(runID, uint64(next), records, info)
		}
		return err
	}
	var (
		idx            = make([]int64, len(records))
		types          = make([]string, len(records))
		bodies, hashes = make([][]byte, len(records)), make([][]byte, len(records))
	)
	for i, r := range records {
		idx[i], types[i], bodies[i], hashes[i] = int64(r.Index), r.Type, r.Body, r.Hash
	}
	tag, err := p.pool.Exec(ctx, `WITH upd AS (
			UPDATE runs SET program = $2, definition_hash = $3, status = $4, outcome = $5, started_at = $6,
			updated_at = $7, events = $8, head = $9, tree = $10, awaiting_role = $19, awaiting_deadline = $20
			WHERE run_id = $1 AND events = $11::bigint
			RETURNING 1
		), ins AS (
			INSERT INTO runs (`+runColumns+`) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $16, $17, $19, $20 WHERE $11::bigint = 0
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
		int64(first), idx, types, bodies, hashes, info.Principal, info.Lab, subjectsArg(info.Subjects), info.AwaitingRole, awaitingNanos(info))
	if err != nil {
		return fmt.Errorf("tracestore: postgres append: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: run %s: the trace does not end at index %d", ErrConflict, runID, first)
	}
	return nil
}

// conflictCodes are the errors by which PostgreSQL says another
// transaction won: unique_violation (an event already at an index the
// index row said was free), serialization_failure (under a serializable
// default isolation) and deadlock_detected. The statement wrote nothing, so
// reloading and retrying is right for all three.
var conflictCodes = map[string]bool{"23505": true, "40001": true, "40P01": true}

// Load implements Store.
func (p *Postgres) Load(ctx context.Context, runID string) ([]Record, error) {
	return p.LoadPrefix(ctx, runID, math.MaxUint64)
}

// LoadPrefix implements Store.
func (p *Postgres) LoadPrefix(ctx context.Context, runID string, n uint64) ([]Record, error) {
	return collect(p.Scan(ctx, runID, n))
}

// Scan implements Scanner.
func (p *Postgres) Scan(ctx context.Context, runID string, n uint64) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		rows, err := p.pool.Query(ctx, `SELECT idx, type, body, hash FROM events WHERE run_id = $1 AND idx < $2 ORDER BY idx`, runID, idxBound(n))
		if err != nil {
			yield(Record{}, fmt.Errorf("tracestore: postgres load %s: %w", runID, err))
			return
		}
		defer rows.Close()
		yieldRows(rows, "postgres", runID, yield)
	}
}

// Run implements Store.
func (p *Postgres) Run(ctx context.Context, runID string) (RunInfo, error) {
	ri, err := scanRun(p.pool.QueryRow(ctx, `SELECT `+runColumns+` FROM runs WHERE run_id = $1`, runID).Scan)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return RunInfo{}, fmt.Errorf("%w: run %s", ErrNotFound, runID)
	case err != nil:
		return RunInfo{}, fmt.Errorf("tracestore: postgres run %s: %w", runID, err)
	}
	return ri, nil
}

// ListRuns implements Store.
func (p *Postgres) ListRuns(ctx context.Context, f ListFilter) ([]RunInfo, string, error) {
	limit, after, err := pageOf(f)
	if err != nil {
		return nil, "", err
	}
	q, args := listQuery(f, after, limit, func(n int) string { return fmt.Sprintf("$%d", n) })
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("tracestore: postgres list: %w", err)
	}
	defer rows.Close()
	var runs []RunInfo
	for rows.Next() {
		ri, err := scanRun(rows.Scan)
		if err != nil {
			return nil, "", fmt.Errorf("tracestore: postgres list: %w", err)
		}
		runs = append(runs, ri)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("tracestore: postgres list: %w", err)
	}
	runs, next := page(runs, limit)
	return runs, next, nil
}

// PutProgram implements Store.
func (p *Postgres) PutProgram(ctx context.Context, hash string, source []byte) error {
	if _, err := p.pool.Exec(ctx, `INSERT INTO programs (hash, source) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING`, hash, source); err != nil {
		return fmt.Errorf("tracestore: postgres put program %s: %w", hash, err)
	}
	return nil
}

// Program implements Store.
func (p *Postgres) Program(ctx context.Context, hash string) ([]byte, error) {
	var src []byte
	switch err := p.pool.QueryRow(ctx, `SELECT source FROM programs WHERE hash = $1`, hash).Scan(&src); {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("%w: program %s", ErrNotFound, hash)
	case err != nil:
		return nil, fmt.Errorf("tracestore: postgres program %s: %w", hash, err)
	}
	return src, nil
}

// ProgramHashes implements Store.
func (p *Postgres) ProgramHashes(ctx context.Context) ([]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT hash FROM programs ORDER BY hash COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres program hashes: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres program hashes: %w", err)
	}
	return out, nil
}

// subjectsArg is never nil: pgx sends a nil slice as NULL, which unnest
// would refuse.
func subjectsArg(subjects []string) []string {
	if subjects == nil {
		return []string{}
	}
	return subjects
}

// PutKey implements Store. FOR SHARE on the epoch's row makes the write
// wait for a rotation in progress, and then see its new epoch; the no-op
// update waits for a concurrent insert of the same subject and makes
// RETURNING give the key that won.
func (p *Postgres) PutKey(ctx context.Context, k WrappedKey) (WrappedKey, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: postgres put key: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var epoch int64
	if err := tx.QueryRow(ctx, `SELECT epoch FROM key_epoch WHERE id = 1 FOR SHARE`).Scan(&epoch); err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: postgres put key: %w", err)
	}
	if uint64(epoch) != k.Epoch {
		return WrappedKey{}, fmt.Errorf("%w: key of subject %s: epoch %d, the store's is %d", ErrKeyEpoch, k.Subject, k.Epoch, epoch)
	}
	stored := WrappedKey{Subject: k.Subject}
	if err := tx.QueryRow(ctx, `INSERT INTO subject_keys (subject, key, epoch) VALUES ($1, $2, $3)
		ON CONFLICT (subject) DO UPDATE SET key = subject_keys.key RETURNING key, epoch`, k.Subject, k.Wrapped, int64(k.Epoch)).Scan(&stored.Wrapped, &epoch); err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: postgres put key: %w", err)
	}
	stored.Epoch = uint64(epoch)
	if err := tx.Commit(ctx); err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: postgres put key: %w", err)
	}
	return stored, nil
}

// Key implements Store.
func (p *Postgres) Key(ctx context.Context, subject string) (WrappedKey, error) {
	k := WrappedKey{Subject: subject}
	var epoch int64
	switch err := p.pool.QueryRow(ctx, `SELECT key, epoch FROM subject_keys WHERE subject = $1`, subject).Scan(&k.Wrapped, &epoch); {
	case errors.Is(err, pgx.ErrNoRows):
		return WrappedKey{}, fmt.Errorf("%w: key of subject %s", ErrNotFound, subject)
	case err != nil:
		return WrappedKey{}, fmt.Errorf("tracestore: postgres key: %w", err)
	}
	k.Epoch = uint64(epoch)
	return k, nil
}

// KeyEpoch implements Store.
func (p *Postgres) KeyEpoch(ctx context.Context) (KeyState, error) {
	var ks KeyState
	var epoch int64
	if err := p.pool.QueryRow(ctx, `SELECT store_id, epoch FROM key_epoch WHERE id = 1`).Scan(&ks.Store, &epoch); err != nil {
		return KeyState{}, fmt.Errorf("tracestore: postgres key epoch: %w", err)
	}
	ks.Epoch = uint64(epoch)
	return ks, nil
}

// RotateKeys implements Store, in one transaction that holds the epoch's
// row FOR UPDATE: key writes wait for it. The deleted and replaced rows
// stay as dead tuples until VACUUM, and in the WAL and any backups, for as
// long as those live: what makes them useless is that they are wrapped
// under an epoch whose key-encryption key the caller destroys next.
func (p *Postgres) RotateKeys(ctx context.Context, from, to uint64, erase []string, rewrap func(WrappedKey) ([]byte, error)) ([]string, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres rotate keys: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var epoch int64
	if err := tx.QueryRow(ctx, `SELECT epoch FROM key_epoch WHERE id = 1 FOR UPDATE`).Scan(&epoch); err != nil {
		return nil, fmt.Errorf("tracestore: postgres rotate keys: %w", err)
	}
	if uint64(epoch) != from {
		return nil, fmt.Errorf("%w: rotation from epoch %d, the store's is %d", ErrKeyEpoch, from, epoch)
	}
	rows, err := tx.Query(ctx, `DELETE FROM subject_keys WHERE subject = ANY($1) RETURNING subject`, subjectsArg(erase))
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres rotate keys: %w", err)
	}
	deleted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres rotate keys: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT subject, key, epoch FROM subject_keys`)
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres rotate keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (WrappedKey, error) {
		var k WrappedKey
		var e int64
		err := r.Scan(&k.Subject, &k.Wrapped, &e)
		k.Epoch = uint64(e)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres rotate keys: %w", err)
	}
	subjects, wrapped := make([]string, len(keys)), make([][]byte, len(keys))
	for i, k := range keys {
		if wrapped[i], err = rewrap(k); err != nil {
			return nil, err
		}
		subjects[i] = k.Subject
	}
	if _, err := tx.Exec(ctx, `UPDATE subject_keys s SET key = u.key, epoch = $1
		FROM unnest($2::text[], $3::bytea[]) AS u(subject, key) WHERE s.subject = u.subject`, int64(to), subjects, wrapped); err != nil {
		return nil, fmt.Errorf("tracestore: postgres rotate keys: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE key_epoch SET epoch = $1 WHERE id = 1`, int64(to)); err != nil {
		return nil, fmt.Errorf("tracestore: postgres rotate keys: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("tracestore: postgres rotate keys: %w", err)
	}
	sort.Strings(deleted)
	return deleted, nil
}

// RunsOfSubject implements Store.
func (p *Postgres) RunsOfSubject(ctx context.Context, subject string) ([]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT run_id FROM run_subjects WHERE subject = $1 ORDER BY run_id`, subject)
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres runs of subject: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("tracestore: postgres runs of subject: %w", err)
	}
	return out, nil
}

// PutBaseline implements Store.
func (p *Postgres) PutBaseline(ctx context.Context, program, definitionHash string, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO baselines (program, definition_hash, data, saved)
		VALUES ($1, $2, $3, nextval('baselines_saved'))
		ON CONFLICT (program, definition_hash) DO UPDATE SET data = excluded.data, saved = excluded.saved`,
		program, definitionHash, data); err != nil {
		return fmt.Errorf("tracestore: postgres put baseline %s: %w", program, err)
	}
	return nil
}

// Baseline implements Store.
func (p *Postgres) Baseline(ctx context.Context, program, definitionHash string) ([]byte, error) {
	q, args := `SELECT data FROM baselines WHERE program = $1 AND definition_hash = $2`, []any{program, definitionHash}
	if definitionHash == "" {
		q, args = `SELECT data FROM baselines WHERE program = $1 ORDER BY saved DESC LIMIT 1`, []any{program}
	}
	var data []byte
	switch err := p.pool.QueryRow(ctx, q, args...).Scan(&data); {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("%w: baseline of program %s %s", ErrNotFound, program, definitionHash)
	case err != nil:
		return nil, fmt.Errorf("tracestore: postgres baseline %s: %w", program, err)
	}
	return data, nil
}

// Close implements Store.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}
