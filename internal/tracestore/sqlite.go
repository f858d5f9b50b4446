package tracestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded Store: one database file in WAL mode. Several
// processes may open the same file; SQLite's locks serialise their appends.
type SQLite struct {
	path string
	// w is the one writing connection, so that this process's writes queue
	// in Go rather than spin on SQLite's busy handler; its transactions
	// begin IMMEDIATE, taking the write lock before reading the trace's
	// length.
	w *sql.DB
	// r serves reads, which WAL lets run beside the writer.
	r *sql.DB

	// The append's statements, compiled once on the writer: the run row's
	// read, the event insert, the run row's insert, and its updates by the
	// listed columns they assign (see runUpdate).
	rowStmt, eventStmt, insertStmt *sql.Stmt
	updateStmts                    map[listedMask]*sql.Stmt
}

// SQLiteOptions tune an SQLite store. The zero value is the durable default.
type SQLiteOptions struct {
	// Synchronous is "FULL" (the default, when empty) or "NORMAL". FULL
	// syncs the log on every commit: an acknowledged append survives power
	// loss. NORMAL syncs only at checkpoints, which is faster, but a power
	// loss or OS crash can lose the last acknowledged appends (the store
	// stays consistent, ending at an earlier step). A process crash loses
	// nothing either way.
	Synchronous string
}

// busyTimeout bounds how long a writer waits for another process's write
// lock before failing.
const busyTimeout = 10 * time.Second

// sqliteMigrations are the schema's forward steps; version n is the first n
// applied. Never edit a released step: add one.
var sqliteMigrations = []string{
	// 1: the tables.
	`CREATE TABLE events (
		run_id TEXT NOT NULL,
		idx INTEGER NOT NULL,
		type TEXT NOT NULL,
		body BLOB,
		hash BLOB,
		PRIMARY KEY (run_id, idx)
	);
	CREATE TABLE runs (
		run_id TEXT PRIMARY KEY,
		program TEXT NOT NULL,
		definition_hash TEXT NOT NULL,
		status TEXT NOT NULL,
		outcome TEXT NOT NULL,
		started_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		events INTEGER NOT NULL,
		head BLOB,
		tree BLOB
	);
	CREATE TABLE programs (hash TEXT PRIMARY KEY, source BLOB);
	CREATE TABLE subject_keys (subject TEXT PRIMARY KEY, key BLOB)`,
	// 2: listing. Each filter leads an index that continues in listing
	// order, so a filtered page is an index range scan too. updated_at is
	// not indexed: every append changes it.
	`CREATE INDEX runs_by_start ON runs (started_at DESC, run_id DESC);
	CREATE INDEX runs_by_program ON runs (program, started_at DESC, run_id DESC);
	CREATE INDEX runs_by_definition ON runs (definition_hash, started_at DESC, run_id DESC);
	CREATE INDEX runs_by_status ON runs (status, started_at DESC, run_id DESC);
	CREATE INDEX runs_by_outcome ON runs (outcome, started_at DESC, run_id DESC)`,
	// 3: who started a run, and whether as a laboratory run. Runs from
	// before have neither: '' and false. Indexed like every filter.
	`ALTER TABLE runs ADD COLUMN principal TEXT NOT NULL DEFAULT '';
	ALTER TABLE runs ADD COLUMN lab INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX runs_by_principal ON runs (principal, started_at DESC, run_id DESC)`,
	// 4: the analyzer's drift baselines, one per program and definition;
	// saved orders a program's baselines, the latest highest.
	`CREATE TABLE baselines (
		program TEXT NOT NULL,
		definition_hash TEXT NOT NULL,
		data BLOB NOT NULL,
		saved INTEGER NOT NULL,
		PRIMARY KEY (program, definition_hash)
	);
	CREATE INDEX baselines_by_saved ON baselines (program, saved DESC)`,
	// 5: crypto-shredding. Keys carry the epoch of the key-encryption key
	// that wraps them (0: written unwrapped, before wrapping existed), the
	// store one epoch; runs are indexed by their data subjects, filled in
	// from the traces' run_started events for runs from before.
	`ALTER TABLE subject_keys ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
	CREATE TABLE key_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL, epoch INTEGER NOT NULL);
	INSERT INTO key_epoch (id, store_id, epoch) VALUES (1, lower(hex(randomblob(16))), 0);
	CREATE TABLE run_subjects (
		subject TEXT NOT NULL,
		run_id TEXT NOT NULL,
		PRIMARY KEY (subject, run_id)
	) WITHOUT ROWID;
	INSERT OR IGNORE INTO run_subjects (subject, run_id)
		SELECT j.value, e.run_id FROM events e, json_each(CAST(e.body AS TEXT), '$.started.subjects') j
		WHERE e.idx = 0 AND e.type = 'run_started' AND json_valid(CAST(e.body AS TEXT))`,
	// 6: the approvers' inbox. A run whose open task is an approval keeps
	// the task's role and deadline in its row (awaiting_deadline: Unix
	// nanoseconds, the largest int64 for none, 0 when awaiting nothing),
	// and two partial indexes hold only those runs, by role and by
	// deadline. Runs waiting since before are found from their last
	// task_issued event; their deadline, which needs the program, is
	// unknown until their next append and sorts as none.
	`ALTER TABLE runs ADD COLUMN awaiting_role TEXT NOT NULL DEFAULT '';
	ALTER TABLE runs ADD COLUMN awaiting_deadline INTEGER NOT NULL DEFAULT 0;
	UPDATE runs SET awaiting_role = t.role, awaiting_deadline = 9223372036854775807
		FROM (SELECT e.run_id AS run_id, json_extract(CAST(e.body AS TEXT), '$.task.role') AS role FROM events e
			WHERE e.type = 'task_issued' AND json_valid(CAST(e.body AS TEXT))
			AND json_extract(CAST(e.body AS TEXT), '$.task.kind') = 'approval'
			AND NOT EXISTS (SELECT 1 FROM events l WHERE l.run_id = e.run_id AND l.idx > e.idx
				AND l.type IN ('task_issued', 'submission_accepted', 'transitioned', 'run_finished'))) t
		WHERE runs.run_id = t.run_id AND runs.status = 'running' AND t.role <> '';
	CREATE INDEX runs_awaiting_by_role ON runs (awaiting_role, awaiting_deadline, run_id) WHERE awaiting_role <> '';
	CREATE INDEX runs_awaiting_by_deadline ON runs (awaiting_deadline, run_id) WHERE awaiting_role <> ''`,
}

// DefaultDataDir is where the server keeps its data unless told otherwise:
// $XDG_DATA_HOME/nano-vm-mcp, or ~/.local/share/nano-vm-mcp.
func DefaultDataDir() (string, error) {
	// The XDG spec says to ignore a relative XDG_DATA_HOME.
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "nano-vm-mcp"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("tracestore: no data directory: %w", err)
	}
	return filepath.Join(home, ".local", "share", "nano-vm-mcp"), nil
}

// SQLitePath is the SQLite store's file in a data directory.
func SQLitePath(dataDir string) string { return filepath.Join(dataDir, "traces.db") }

// OpenSQLite opens the store at path, creating it (0600, in a 0700
// directory) if missing, and migrates an older schema to the current one.
func OpenSQLite(path string, opts SQLiteOptions) (*SQLite, error) {
	syncMode := strings.ToUpper(opts.Synchronous)
	switch syncMode {
	case "":
		syncMode = "FULL"
	case "FULL", "NORMAL":
	default:
		return nil, fmt.Errorf("tracestore: sqlite synchronous %q: want FULL or NORMAL", opts.Synchronous)
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("tracestore: sqlite path: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("tracestore: sqlite directory: %w", err)
	}
	// Create the file ourselves so that SQLite never creates it under the
	// umask; SQLite gives the -wal and -shm files the database's mode. Only
	// when it is missing: closing a descriptor of a file drops every POSIX
	// lock this process holds on it, SQLite's included, should another
	// store here have it open.
	switch f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); {
	case err == nil:
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("tracestore: sqlite: %w", err)
		}
	case !errors.Is(err, os.ErrExist):
		return nil, fmt.Errorf("tracestore: sqlite: %w", err)
	}
	// The file holds subject keys: keep it private even if it was made
	// readable since.
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("tracestore: sqlite: %w", err)
	}

	s := &SQLite{path: path}
	// secure_delete zeroes deleted rows in the file, so that a destroyed
	// subject key does not linger in free space.
	s.w, err = sql.Open("sqlite", sqliteDSN(path, "_txlock=immediate", "_pragma=synchronous("+syncMode+")", "_pragma=secure_delete(ON)"))
	if err != nil {
		return nil, fmt.Errorf("tracestore: sqlite: %w", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := enableWAL(s.w); err != nil {
		s.w.Close()
		return nil, err
	}
	if err := migrateSQLite(s.w, sqliteMigrations); err != nil {
		s.w.Close()
		return nil, err
	}
	s.r, err = sql.Open("sqlite", sqliteDSN(path, "_query_only=1"))
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("tracestore: sqlite: %w", err)
	}
	s.r.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	s.r.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))
	if err := s.prepare(); err != nil {
		s.Close()
		return nil, err
	}
	// SQLite gives new -wal and -shm files the database's mode; these may
	// be older.
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Chmod(path+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.Close()
			return nil, fmt.Errorf("tracestore: sqlite: %w", err)
		}
	}
	return s, nil
}

// sqliteDSN is a file: URI, so that any character may appear in path, with
// the settings every connection needs and params.
func sqliteDSN(path string, params ...string) string {
	u := url.URL{Scheme: "file", Path: path}
	params = append([]string{"_pragma=busy_timeout(" + fmt.Sprint(busyTimeout.Milliseconds()) + ")"}, params...)
	return "file:" + u.EscapedPath() + "?" + strings.Join(params, "&")
}

// enableWAL puts the file in WAL mode, which the file keeps. When two
// processes create a store at once, SQLite fails the switch of the one that
// loses the lock with SQLITE_BUSY at once rather than wait (it upgrades from
// a read lock, where waiting could deadlock). BEGIN IMMEDIATE, from no lock,
// does wait, through the busy timeout, until the winner's switch is done;
// then the switch is a no-op.
func enableWAL(db *sql.DB) error {
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		var se *sqlite.Error
		switch {
		case err == nil && mode == "wal":
			return nil
		case err == nil:
			return fmt.Errorf("tracestore: sqlite: the file system keeps the store in %s mode, not WAL", mode)
		case !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || attempt == 3:
			return fmt.Errorf("tracestore: sqlite: WAL mode: %w", err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("tracestore: sqlite: WAL mode: %w", err)
		}
		tx.Rollback() //nolint:errcheck // only waited for the lock
	}
}

// migrateSQLite applies the steps db's schema lacks, one transaction each.
// Each transaction rereads the version under the write lock, so two
// processes opening one old store apply each step once.
func migrateSQLite(db *sql.DB, steps []string) error {
	ctx := context.Background()
	for {
		done, err := migrateSQLiteStep(ctx, db, steps)
		if err != nil || done {
			return err
		}
	}
}

func migrateSQLiteStep(ctx context.Context, db *sql.DB, steps []string) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("tracestore: sqlite migration: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return false, fmt.Errorf("tracestore: sqlite migration: %w", err)
	}
	var v int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return false, fmt.Errorf("tracestore: sqlite migration: %w", err)
	}
	switch {
	case v > len(steps):
		return false, fmt.Errorf("%w (store version %d, this binary knows %d)", errSchemaTooNew, v, len(steps))
	case v == len(steps):
		return true, tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, steps[v]); err != nil {
		return false, fmt.Errorf("tracestore: sqlite migration to version %d: %w", v+1, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES (?, ?)`, v+1, time.Now().UnixNano()); err != nil {
		return false, fmt.Errorf("tracestore: sqlite migration to version %d: %w", v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("tracestore: sqlite migration to version %d: %w", v+1, err)
	}
	return false, nil
}

// listedColumns are the runs columns that key a listing index, in the
// order of their bits in a listedMask. The other columns an append writes
// (updated_at, events, head, tree) are in no index.
var listedColumns = [...]string{"program", "definition_hash", "status", "outcome", "started_at", "awaiting_role", "awaiting_deadline"}

// listedMask says which listed columns an update assigns.
type listedMask uint8

const (
	setProgram listedMask = 1 << iota
	setDefinitionHash
	setStatus
	setOutcome
	setStartedAt
	setAwaitingRole
	setAwaitingDeadline
)

// setAwaiting is an approval task opened or closed: both columns change.
const setAwaiting = setAwaitingRole | setAwaitingDeadline

// runUpdate is the UPDATE of a run's row that assigns the unindexed columns
// and, of the listed ones, those in m. SQLite decides which indexes an
// UPDATE maintains from the columns it assigns, when it compiles the
// statement, not from whether their values change: assigning started_at
// deletes and reinserts the run's entry in all six listing indexes although
// every key stays where it was. Assigning only what changed spares those
// writes: a finishing step writes about 9 pages instead of 15 (see
// docs/performance.md). Principal and lab are never assigned: the run's
// first append set them.
func runUpdate(m listedMask) string {
	q := `UPDATE runs SET updated_at = ?, events = ?, head = ?, tree = ?`
	for i, c := range listedColumns {
		if m&(1<<i) != 0 {
			q += ", " + c + " = ?"
		}
	}
	return q + ` WHERE run_id = ?`
}

// preparedUpdates are the updates an append compiles once: the runtime's
// steps change a run's status and outcome, never its program, definition or
// start. Any other change compiles its statement when it happens.
var preparedUpdates = []listedMask{0, setStatus, setOutcome, setStatus | setOutcome,
	setAwaiting, setAwaiting | setStatus, setAwaiting | setStatus | setOutcome}

// prepare compiles the append's statements once, on the one writer.
func (s *SQLite) prepare() error {
	prep := func(q string) (*sql.Stmt, error) {
		stmt, err := s.w.Prepare(q)
		if err != nil {
			return nil, fmt.Errorf("tracestore: sqlite: %w", err)
		}
		return stmt, nil
	}
	var err error
	if s.rowStmt, err = prep(`SELECT events, program, definition_hash, status, outcome, started_at, awaiting_role, awaiting_deadline FROM runs WHERE run_id = ?`); err != nil {
		return err
	}
	if s.eventStmt, err = prep(`INSERT INTO events (run_id, idx, type, body, hash) VALUES (?, ?, ?, ?, ?)`); err != nil {
		return err
	}
	// Only a run's first append inserts its row, and so sets principal and
	// lab for good.
	if s.insertStmt, err = prep(`INSERT INTO runs (` + runColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`); err != nil {
		return err
	}
	s.updateStmts = make(map[listedMask]*sql.Stmt, len(preparedUpdates))
	for _, m := range preparedUpdates {
		if s.updateStmts[m], err = prep(runUpdate(m)); err != nil {
			return err
		}
	}
	return nil
}

// Append implements Store. The trace's length comes from the run's index
// row, so an append costs the same however long the trace is. One
// transaction: the row's read (under the write lock, which BEGIN IMMEDIATE
// took), the events' inserts, and the row's insert or narrowest update.
func (s *SQLite) Append(ctx context.Context, runID string, records []Record, info RunInfo) (err error) {
	if len(records) == 0 {
		return nil
	}
	started, updated, err := rowNanos(runID, info)
	if err != nil {
		return err
	}
	defer func() {
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
			err = fmt.Errorf("%w: run %s: %w", ErrConflict, runID, err)
		}
	}()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tracestore: sqlite append: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// The run's row: the trace's length, and what the listing indexes hold.
	var (
		next, was, wasDeadline int64
		old                    RunInfo
	)
	err = tx.StmtContext(ctx, s.rowStmt).QueryRowContext(ctx, runID).Scan(&next, &old.Program, &old.DefinitionHash, &old.Status, &old.Outcome, &was, &old.AwaitingRole, &wasDeadline)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("tracestore: sqlite append: %w", err)
	}
	if err := checkAppend(runID, uint64(next), records, info); err != nil {
		return err
	}
	ins := tx.StmtContext(ctx, s.eventStmt)
	for _, r := range records {
		if _, err := ins.ExecContext(ctx, runID, int64(r.Index), r.Type, r.Body, r.Hash); err != nil {
			return fmt.Errorf("tracestore: sqlite append: %w", err)
		}
	}
	if !exists {
		_, err = tx.StmtContext(ctx, s.insertStmt).ExecContext(ctx, runID, info.Program, info.DefinitionHash, info.Status, info.Outcome,
			started, updated, int64(info.Events), info.Head, info.Tree, info.Principal, info.Lab, info.AwaitingRole, awaitingNanos(info))
		for _, sub := range info.Subjects {
			if err != nil {
				break
			}
			_, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO run_subjects (subject, run_id) VALUES (?, ?)`, sub, runID)
		}
	} else {
		// Of the listed columns, only those whose values change.
		var m listedMask
		args := make([]any, 4, 4+len(listedColumns)+1)
		args[0], args[1], args[2], args[3] = updated, int64(info.Events), info.Head, info.Tree
		if old.Program != info.Program {
			m, args = m|setProgram, append(args, info.Program)
		}
		if old.DefinitionHash != info.DefinitionHash {
			m, args = m|setDefinitionHash, append(args, info.DefinitionHash)
		}
		if old.Status != info.Status {
			m, args = m|setStatus, append(args, info.Status)
		}
		if old.Outcome != info.Outcome {
			m, args = m|setOutcome, append(args, info.Outcome)
		}
		if was != started {
			m, args = m|setStartedAt, append(args, started)
		}
		if old.AwaitingRole != info.AwaitingRole {
			m, args = m|setAwaitingRole, append(args, info.AwaitingRole)
		}
		if deadline := awaitingNanos(info); wasDeadline != deadline {
			m, args = m|setAwaitingDeadline, append(args, deadline)
		}
		args = append(args, runID)
		if stmt, ok := s.updateStmts[m]; ok {
			_, err = tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, runUpdate(m), args...)
		}
	}
	if err != nil {
		return fmt.Errorf("tracestore: sqlite append: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("tracestore: sqlite append: %w", err)
	}
	return nil
}

// Load implements Store.
func (s *SQLite) Load(ctx context.Context, runID string) ([]Record, error) {
	return s.LoadPrefix(ctx, runID, math.MaxUint64)
}

// LoadPrefix implements Store.
func (s *SQLite) LoadPrefix(ctx context.Context, runID string, n uint64) ([]Record, error) {
	return collect(s.Scan(ctx, runID, n))
}

// Scan implements Scanner.
func (s *SQLite) Scan(ctx context.Context, runID string, n uint64) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		rows, err := s.r.QueryContext(ctx, `SELECT idx, type, body, hash FROM events WHERE run_id = ? AND idx < ? ORDER BY idx`, runID, idxBound(n))
		if err != nil {
			yield(Record{}, fmt.Errorf("tracestore: sqlite load %s: %w", runID, err))
			return
		}
		defer rows.Close()
		yieldRows(rows, "sqlite", runID, yield)
	}
}

// Run implements Store.
func (s *SQLite) Run(ctx context.Context, runID string) (RunInfo, error) {
	ri, err := scanRun(s.r.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE run_id = ?`, runID).Scan)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return RunInfo{}, fmt.Errorf("%w: run %s", ErrNotFound, runID)
	case err != nil:
		return RunInfo{}, fmt.Errorf("tracestore: sqlite run %s: %w", runID, err)
	}
	return ri, nil
}

// ListRuns implements Store.
func (s *SQLite) ListRuns(ctx context.Context, f ListFilter) ([]RunInfo, string, error) {
	limit, after, err := pageOf(f)
	if err != nil {
		return nil, "", err
	}
	q, args := listQuery(f, after, limit, func(n int) string { return fmt.Sprintf("?%d", n) })
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("tracestore: sqlite list: %w", err)
	}
	defer rows.Close()
	var runs []RunInfo
	for rows.Next() {
		ri, err := scanRun(rows.Scan)
		if err != nil {
			return nil, "", fmt.Errorf("tracestore: sqlite list: %w", err)
		}
		runs = append(runs, ri)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("tracestore: sqlite list: %w", err)
	}
	runs, next := page(runs, limit)
	return runs, next, nil
}

// PutProgram implements Store.
func (s *SQLite) PutProgram(ctx context.Context, hash string, source []byte) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO programs (hash, source) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING`, hash, source); err != nil {
		return fmt.Errorf("tracestore: sqlite put program %s: %w", hash, err)
	}
	return nil
}

// Program implements Store.
func (s *SQLite) Program(ctx context.Context, hash string) ([]byte, error) {
	var src []byte
	switch err := s.r.QueryRowContext(ctx, `SELECT source FROM programs WHERE hash = ?`, hash).Scan(&src); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("%w: program %s", ErrNotFound, hash)
	case err != nil:
		return nil, fmt.Errorf("tracestore: sqlite program %s: %w", hash, err)
	}
	return src, nil
}

// ProgramHashes implements Store.
func (s *SQLite) ProgramHashes(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT hash FROM programs ORDER BY hash`)
	if err != nil {
		return nil, fmt.Errorf("tracestore: sqlite program hashes: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("tracestore: sqlite program hashes: %w", err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// PutKey implements Store. One transaction under the write lock: the
// epoch's check, and the insert whose no-op update makes RETURNING give the
// key that was there.
func (s *SQLite) PutKey(ctx context.Context, k WrappedKey) (WrappedKey, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: sqlite put key: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var epoch int64
	if err := tx.QueryRowContext(ctx, `SELECT epoch FROM key_epoch`).Scan(&epoch); err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: sqlite put key: %w", err)
	}
	if uint64(epoch) != k.Epoch {
		return WrappedKey{}, fmt.Errorf("%w: key of subject %s: epoch %d, the store's is %d", ErrKeyEpoch, k.Subject, k.Epoch, epoch)
	}
	stored := WrappedKey{Subject: k.Subject}
	if err := tx.QueryRowContext(ctx, `INSERT INTO subject_keys (subject, key, epoch) VALUES (?, ?, ?)
		ON CONFLICT (subject) DO UPDATE SET key = subject_keys.key RETURNING key, epoch`, k.Subject, k.Wrapped, int64(k.Epoch)).Scan(&stored.Wrapped, &epoch); err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: sqlite put key: %w", err)
	}
	stored.Epoch = uint64(epoch)
	if err := tx.Commit(); err != nil {
		return WrappedKey{}, fmt.Errorf("tracestore: sqlite put key: %w", err)
	}
	return stored, nil
}

// Key implements Store.
func (s *SQLite) Key(ctx context.Context, subject string) (WrappedKey, error) {
	k := WrappedKey{Subject: subject}
	var epoch int64
	switch err := s.r.QueryRowContext(ctx, `SELECT key, epoch FROM subject_keys WHERE subject = ?`, subject).Scan(&k.Wrapped, &epoch); {
	case errors.Is(err, sql.ErrNoRows):
		return WrappedKey{}, fmt.Errorf("%w: key of subject %s", ErrNotFound, subject)
	case err != nil:
		return WrappedKey{}, fmt.Errorf("tracestore: sqlite key: %w", err)
	}
	k.Epoch = uint64(epoch)
	return k, nil
}

// KeyEpoch implements Store.
func (s *SQLite) KeyEpoch(ctx context.Context) (KeyState, error) {
	var ks KeyState
	var epoch int64
	if err := s.r.QueryRowContext(ctx, `SELECT store_id, epoch FROM key_epoch`).Scan(&ks.Store, &epoch); err != nil {
		return KeyState{}, fmt.Errorf("tracestore: sqlite key epoch: %w", err)
	}
	ks.Epoch = uint64(epoch)
	return ks, nil
}

// RotateKeys implements Store, in one transaction under the write lock.
// secure_delete zeroes the old rows in the database's pages, but older
// copies of those pages stay in the log until later checkpoints overwrite
// it: what makes them useless is that they are wrapped under an epoch
// whose key-encryption key the caller destroys next.
func (s *SQLite) RotateKeys(ctx context.Context, from, to uint64, erase []string, rewrap func(WrappedKey) ([]byte, error)) ([]string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var epoch int64
	if err := tx.QueryRowContext(ctx, `SELECT epoch FROM key_epoch`).Scan(&epoch); err != nil {
		return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
	}
	if uint64(epoch) != from {
		return nil, fmt.Errorf("%w: rotation from epoch %d, the store's is %d", ErrKeyEpoch, from, epoch)
	}
	var deleted []string
	for _, sub := range erase {
		res, err := tx.ExecContext(ctx, `DELETE FROM subject_keys WHERE subject = ?`, sub)
		if err != nil {
			return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			deleted = append(deleted, sub)
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT subject, key, epoch FROM subject_keys`)
	if err != nil {
		return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
	}
	var keys []WrappedKey
	for rows.Next() {
		var k WrappedKey
		if err := rows.Scan(&k.Subject, &k.Wrapped, &epoch); err != nil {
			rows.Close()
			return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
		}
		k.Epoch = uint64(epoch)
		keys = append(keys, k)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
	}
	upd, err := tx.PrepareContext(ctx, `UPDATE subject_keys SET key = ?, epoch = ? WHERE subject = ?`)
	if err != nil {
		return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
	}
	defer upd.Close()
	for _, k := range keys {
		w, err := rewrap(k)
		if err != nil {
			return nil, err
		}
		if _, err := upd.ExecContext(ctx, w, int64(to), k.Subject); err != nil {
			return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE key_epoch SET epoch = ?`, int64(to)); err != nil {
		return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("tracestore: sqlite rotate keys: %w", err)
	}
	sort.Strings(deleted)
	return deleted, nil
}

// RunsOfSubject implements Store.
func (s *SQLite) RunsOfSubject(ctx context.Context, subject string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT run_id FROM run_subjects WHERE subject = ? ORDER BY run_id`, subject)
	if err != nil {
		return nil, fmt.Errorf("tracestore: sqlite runs of subject: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("tracestore: sqlite runs of subject: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// PutBaseline implements Store. The one writer, and SQLite's write lock
// across processes, make max(saved) + 1 the latest.
func (s *SQLite) PutBaseline(ctx context.Context, program, definitionHash string, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO baselines (program, definition_hash, data, saved)
		VALUES (?1, ?2, ?3, (SELECT coalesce(max(saved), 0) + 1 FROM baselines))
		ON CONFLICT (program, definition_hash) DO UPDATE SET data = excluded.data, saved = excluded.saved`,
		program, definitionHash, data); err != nil {
		return fmt.Errorf("tracestore: sqlite put baseline %s: %w", program, err)
	}
	return nil
}

// Baseline implements Store.
func (s *SQLite) Baseline(ctx context.Context, program, definitionHash string) ([]byte, error) {
	q, args := `SELECT data FROM baselines WHERE program = ?1 AND definition_hash = ?2`, []any{program, definitionHash}
	if definitionHash == "" {
		q, args = `SELECT data FROM baselines WHERE program = ?1 ORDER BY saved DESC LIMIT 1`, []any{program}
	}
	var data []byte
	switch err := s.r.QueryRowContext(ctx, q, args...).Scan(&data); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("%w: baseline of program %s %s", ErrNotFound, program, definitionHash)
	case err != nil:
		return nil, fmt.Errorf("tracestore: sqlite baseline %s: %w", program, err)
	}
	return data, nil
}

// Close implements Store.
func (s *SQLite) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.rowStmt, s.eventStmt, s.insertStmt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, st := range s.updateStmts {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tracestore: sqlite close: %w", err)
	}
	return nil
}
