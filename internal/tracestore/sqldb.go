package tracestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"math"
	"sort"
	"time"
)

// sqlDB is the one implementation of what SQLite and PostgreSQL do alike,
// over database/sql: the trace and run reads, the listings, programs,
// baselines, key reads and writes, and the migration runner. Its queries
// use $N placeholders, which pgx's stdlib driver and modernc SQLite both
// bind. Each backend embeds it and keeps only what really differs: opening,
// Append, and key rotation.
//
// The trace's read path is Scan; Load and LoadPrefix read through it. A
// backend that stores the trace its own way overrides all three.
type sqlDB struct {
	backend string // "sqlite" or "postgres", in errors
	// r serves reads; w takes writes. They differ for SQLite (one writing
	// connection beside a pool of readers) and are one pool for PostgreSQL.
	r, w *sql.DB
	d    dialect
	// write is the backend's part of Append: the records and the run's
	// row, in one transaction, given the row's times.
	write func(ctx context.Context, runID string, records []Record, info RunInfo, started, updated int64) error
}

// dialect is what the shared queries need spelled per database.
type dialect struct {
	// conflict tells the database's word for a lost race (a key already
	// taken, a serialisation failure) from other errors.
	conflict func(error) bool
	// shareEpoch and lockEpoch end a key write's and a rotation's read of
	// the key epoch: PostgreSQL locks the row, so that a key write waits
	// for a rotation in progress and then sees its new epoch, and key
	// writes wait for a rotation; SQLite's write transaction already holds
	// the database's write lock.
	shareEpoch, lockEpoch string
	// deleteKeys deletes the subjects' keys in a rotation and returns the
	// subjects whose keys it deleted; rewrapKeys replaces keys[i] by
	// wrapped[i] under epoch to.
	deleteKeys func(ctx context.Context, tx *sql.Tx, subjects []string) ([]string, error)
	rewrapKeys func(ctx context.Context, tx *sql.Tx, keys []WrappedKey, wrapped [][]byte, to uint64) error
	// byteOrder collates program hashes by bytes, as the other backends
	// sort them, whatever the database's locale.
	byteOrder string
	// nextSaved numbers a baseline save, the latest highest.
	nextSaved string
	// migrationLock, when set, runs first in each migration transaction,
	// so that processes opening one store together apply each step once.
	migrationLock string
}

// Append implements Store: the checks every SQL store makes, around the
// backend's write.
func (s *sqlDB) Append(ctx context.Context, runID string, records []Record, info RunInfo) error {
	if len(records) == 0 {
		return nil
	}
	started, updated, err := rowNanos(runID, info)
	if err != nil {
		return err
	}
	if err := s.write(ctx, runID, records, info, started, updated); err != nil {
		if s.d.conflict(err) {
			return fmt.Errorf("%w: run %s: %w", ErrConflict, runID, err)
		}
		return err
	}
	return nil
}

// Load implements Store.
func (s *sqlDB) Load(ctx context.Context, runID string) ([]Record, error) {
	return s.LoadPrefix(ctx, runID, math.MaxUint64)
}

// LoadPrefix implements Store.
func (s *sqlDB) LoadPrefix(ctx context.Context, runID string, n uint64) ([]Record, error) {
	return collect(s.Scan(ctx, runID, n))
}

// Scan implements Scanner.
func (s *sqlDB) Scan(ctx context.Context, runID string, n uint64) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		rows, err := s.r.QueryContext(ctx, `SELECT idx, type, body, hash FROM events WHERE run_id = $1 AND idx < $2 ORDER BY idx`, runID, idxBound(n))
		if err != nil {
			yield(Record{}, fmt.Errorf("tracestore: %s load %s: %w", s.backend, runID, err))
			return
		}
		defer rows.Close()
		yieldRows(rows, s.backend, runID, yield)
	}
}

// LoadRange implements RangeLoader.
func (s *sqlDB) LoadRange(ctx context.Context, runID string, from, to uint64) ([]Record, error) {
	return collect(func(yield func(Record, error) bool) {
		if from >= to {
			yield(Record{}, fmt.Errorf("%w: run %s, the range [%d, %d) is empty", ErrNotFound, runID, from, to))
			return
		}
		rows, err := s.r.QueryContext(ctx, `SELECT idx, type, body, hash FROM events WHERE run_id = $1 AND idx >= $2 AND idx < $3 ORDER BY idx`,
			runID, idxBound(from), idxBound(to))
		if err != nil {
			yield(Record{}, fmt.Errorf("tracestore: %s load %s: %w", s.backend, runID, err))
			return
		}
		defer rows.Close()
		yieldRows(rows, s.backend, runID, yield)
	})
}

// Run implements Store.
func (s *sqlDB) Run(ctx context.Context, runID string) (RunInfo, error) {
	ri, err := scanRun(s.r.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE run_id = $1`, runID).Scan)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return RunInfo{}, fmt.Errorf("%w: run %s", ErrNotFound, runID)
	case err != nil:
		return RunInfo{}, fmt.Errorf("tracestore: %s run %s: %w", s.backend, runID, err)
	}
	return ri, nil
}

// dollar writes the n-th placeholder.
func dollar(n int) string { return fmt.Sprintf("$%d", n) }

// ListRuns implements Store.
func (s *sqlDB) ListRuns(ctx context.Context, f ListFilter) ([]RunInfo, string, error) {
	limit, after, err := pageOf(f)
	if err != nil {
		return nil, "", err
	}
	q, args := listQuery(f, after, limit, dollar)
	runs, err := s.runs(ctx, q, args)
	if err != nil {
		return nil, "", fmt.Errorf("tracestore: %s list: %w", s.backend, err)
	}
	runs, next := page(runs, limit)
	return runs, next, nil
}

// ListAwaiting implements Store.
func (s *sqlDB) ListAwaiting(ctx context.Context, f AwaitingFilter) ([]RunInfo, string, error) {
	limit, after, afterNs, err := awaitingPage(f)
	if err != nil {
		return nil, "", err
	}
	q, args := awaitingQuery(f, after, afterNs, limit, dollar)
	runs, err := s.runs(ctx, q, args)
	if err != nil {
		return nil, "", fmt.Errorf("tracestore: %s list awaiting: %w", s.backend, err)
	}
	runs, next := awaitingPageOf(runs, limit)
	return runs, next, nil
}

// runs reads every runs row of a listing query.
func (s *sqlDB) runs(ctx context.Context, q string, args []any) ([]RunInfo, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var runs []RunInfo
	for rows.Next() {
		ri, err := scanRun(rows.Scan)
		if err != nil {
			return nil, err
		}
		runs = append(runs, ri)
	}
	return runs, rows.Err()
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryStrings reads a query's one text column.
func queryStrings(ctx context.Context, db querier, q string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// PutProgram implements Store.
func (s *sqlDB) PutProgram(ctx context.Context, hash string, source []byte) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO programs (hash, source) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING`, hash, source); err != nil {
		return fmt.Errorf("tracestore: %s put program %s: %w", s.backend, hash, err)
	}
	return nil
}

// Program implements Store.
func (s *sqlDB) Program(ctx context.Context, hash string) ([]byte, error) {
	var src []byte
	switch err := s.r.QueryRowContext(ctx, `SELECT source FROM programs WHERE hash = $1`, hash).Scan(&src); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("%w: program %s", ErrNotFound, hash)
	case err != nil:
		return nil, fmt.Errorf("tracestore: %s program %s: %w", s.backend, hash, err)
	}
	return src, nil
}

// ProgramHashes implements Store.
func (s *sqlDB) ProgramHashes(ctx context.Context) ([]string, error) {
	out, err := queryStrings(ctx, s.r, `SELECT hash FROM programs ORDER BY hash `+s.d.byteOrder)
	if err != nil {
		return nil, fmt.Errorf("tracestore: %s program hashes: %w", s.backend, err)
	}
	return out, nil
}

// PutKey implements Store. One transaction: the epoch's check (under
// SQLite's write lock, or PostgreSQL's share lock on the epoch's row), and
// the insert whose no-op update waits for a concurrent insert of the same
// subject and makes RETURNING give the key that won.
func (s *sqlDB) PutKey(ctx context.Context, k WrappedKey) (WrappedKey, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: %s put key: %w", s.backend, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var epoch int64
	if err := tx.QueryRowContext(ctx, `SELECT epoch FROM key_epoch WHERE id = 1`+s.d.shareEpoch).Scan(&epoch); err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: %s put key: %w", s.backend, err)
	}
	if uint64(epoch) != k.Epoch {
		return WrappedKey{}, fmt.Errorf("%w: key of subject %s: epoch %d, the store's is %d", ErrKeyEpoch, k.Subject, k.Epoch, epoch)
	}
	stored := WrappedKey{Subject: k.Subject}
	if err := tx.QueryRowContext(ctx, `INSERT INTO subject_keys (subject, key, epoch) VALUES ($1, $2, $3)
		ON CONFLICT (subject) DO UPDATE SET key = subject_keys.key RETURNING key, epoch`, k.Subject, k.Wrapped, int64(k.Epoch)).Scan(&stored.Wrapped, &epoch); err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: %s put key: %w", s.backend, err)
	}
	stored.Epoch = uint64(epoch)
	if err := tx.Commit(); err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: %s put key: %w", s.backend, err)
	}
	return stored, nil
}

// Key implements Store.
func (s *sqlDB) Key(ctx context.Context, subject string) (WrappedKey, error) {
	k := WrappedKey{Subject: subject}
	var epoch int64
	switch err := s.r.QueryRowContext(ctx, `SELECT key, epoch FROM subject_keys WHERE subject = $1`, subject).Scan(&k.Wrapped, &epoch); {
	case errors.Is(err, sql.ErrNoRows):
		return WrappedKey{}, fmt.Errorf("%w: key of subject %s", ErrNotFound, subject)
	case err != nil:
		return WrappedKey{}, fmt.Errorf("tracestore: %s key: %w", s.backend, err)
	}
	k.Epoch = uint64(epoch)
	return k, nil
}

// KeyEpoch implements Store.
func (s *sqlDB) KeyEpoch(ctx context.Context) (KeyState, error) {
	var ks KeyState
	var epoch int64
	if err := s.r.QueryRowContext(ctx, `SELECT store_id, epoch FROM key_epoch WHERE id = 1`).Scan(&ks.Store, &epoch); err != nil {
		return KeyState{}, fmt.Errorf("tracestore: %s key epoch: %w", s.backend, err)
	}
	ks.Epoch = uint64(epoch)
	return ks, nil
}

// RotateKeys implements Store, in one transaction that holds the epoch
// (SQLite's write lock, or PostgreSQL's lock on the epoch's row, which key
// writes wait for). What makes the old keys' copies that the database may
// keep useless (see the backends' deleteKeys) is that they are wrapped
// under an epoch whose key-encryption key the caller destroys next.
func (s *sqlDB) RotateKeys(ctx context.Context, from, to uint64, erase []string, rewrap func(WrappedKey) ([]byte, error)) ([]string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("tracestore: %s rotate keys: %w", s.backend, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var epoch int64
	if err := tx.QueryRowContext(ctx, `SELECT epoch FROM key_epoch WHERE id = 1`+s.d.lockEpoch).Scan(&epoch); err != nil {
		return nil, fmt.Errorf("tracestore: %s rotate keys: %w", s.backend, err)
	}
	if uint64(epoch) != from {
		return nil, fmt.Errorf("%w: rotation from epoch %d, the store's is %d", ErrKeyEpoch, from, epoch)
	}
	deleted, err := s.d.deleteKeys(ctx, tx, erase)
	if err != nil {
		return nil, fmt.Errorf("tracestore: %s rotate keys: %w", s.backend, err)
	}
	keys, err := allKeys(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("tracestore: %s rotate keys: %w", s.backend, err)
	}
	wrapped := make([][]byte, len(keys))
	for i, k := range keys {
		if wrapped[i], err = rewrap(k); err != nil {
			return nil, err
		}
	}
	if err := s.d.rewrapKeys(ctx, tx, keys, wrapped, to); err != nil {
		return nil, fmt.Errorf("tracestore: %s rotate keys: %w", s.backend, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE key_epoch SET epoch = $1 WHERE id = 1`, int64(to)); err != nil {
		return nil, fmt.Errorf("tracestore: %s rotate keys: %w", s.backend, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("tracestore: %s rotate keys: %w", s.backend, err)
	}
	sort.Strings(deleted)
	return deleted, nil
}

// allKeys reads every stored key.
func allKeys(ctx context.Context, tx *sql.Tx) ([]WrappedKey, error) {
	rows, err := tx.QueryContext(ctx, `SELECT subject, key, epoch FROM subject_keys`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []WrappedKey
	for rows.Next() {
		var k WrappedKey
		var epoch int64
		if err := rows.Scan(&k.Subject, &k.Wrapped, &epoch); err != nil {
			return nil, err
		}
		k.Epoch = uint64(epoch)
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// RunsOfSubject implements Store.
func (s *sqlDB) RunsOfSubject(ctx context.Context, subject string) ([]string, error) {
	out, err := queryStrings(ctx, s.r, `SELECT run_id FROM run_subjects WHERE subject = $1 ORDER BY run_id`, subject)
	if err != nil {
		return nil, fmt.Errorf("tracestore: %s runs of subject: %w", s.backend, err)
	}
	return out, nil
}

// PutBaseline implements Store.
func (s *sqlDB) PutBaseline(ctx context.Context, program, definitionHash string, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO baselines (program, definition_hash, data, saved)
		VALUES ($1, $2, $3, `+s.d.nextSaved+`)
		ON CONFLICT (program, definition_hash) DO UPDATE SET data = excluded.data, saved = excluded.saved`,
		program, definitionHash, data); err != nil {
		return fmt.Errorf("tracestore: %s put baseline %s: %w", s.backend, program, err)
	}
	return nil
}

// Baseline implements Store.
func (s *sqlDB) Baseline(ctx context.Context, program, definitionHash string) ([]byte, error) {
	q, args := `SELECT data FROM baselines WHERE program = $1 AND definition_hash = $2`, []any{program, definitionHash}
	if definitionHash == "" {
		q, args = `SELECT data FROM baselines WHERE program = $1 ORDER BY saved DESC LIMIT 1`, []any{program}
	}
	var data []byte
	switch err := s.r.QueryRowContext(ctx, q, args...).Scan(&data); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("%w: baseline of program %s %s", ErrNotFound, program, definitionHash)
	case err != nil:
		return nil, fmt.Errorf("tracestore: %s baseline %s: %w", s.backend, program, err)
	}
	return data, nil
}

// migrate applies the steps the schema lacks, one transaction each; version
// n is the first n steps applied. Each transaction rereads the version
// under the lock (SQLite's write lock, which the writer's BEGIN IMMEDIATE
// takes, or the dialect's migration lock), so two processes opening one
// old store apply each step once.
func migrate(ctx context.Context, db *sql.DB, backend string, d dialect, steps []string) error {
	for {
		done, err := migrateStep(ctx, db, backend, d, steps)
		if err != nil || done {
			return err
		}
	}
}

func migrateStep(ctx context.Context, db *sql.DB, backend string, d dialect, steps []string) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("tracestore: %s migration: %w", backend, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if d.migrationLock != "" {
		if _, err := tx.ExecContext(ctx, d.migrationLock); err != nil {
			return false, fmt.Errorf("tracestore: %s migration: %w", backend, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return false, fmt.Errorf("tracestore: %s migration: %w", backend, err)
	}
	var v int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return false, fmt.Errorf("tracestore: %s migration: %w", backend, err)
	}
	switch {
	case v > len(steps):
		return false, fmt.Errorf("%w (store version %d, this binary knows %d)", errSchemaTooNew, v, len(steps))
	case v == len(steps):
		return true, tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, steps[v]); err != nil {
		return false, fmt.Errorf("tracestore: %s migration to version %d: %w", backend, v+1, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)`, v+1, time.Now().UnixNano()); err != nil {
		return false, fmt.Errorf("tracestore: %s migration to version %d: %w", backend, v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("tracestore: %s migration to version %d: %w", backend, v+1, err)
	}
	return false, nil
}
