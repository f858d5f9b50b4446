package tracestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded Store: one database file in WAL mode. Several
// processes may open the same file; SQLite's locks serialise their appends.
type SQLite struct {
	// sqlDB's w is the one writing connection, so that this process's
	// writes queue in Go rather than spin on SQLite's busy handler; its
	// transactions begin IMMEDIATE, taking the write lock before reading
	// the trace's length. Its r serves reads, which WAL lets run beside
	// the writer.
	sqlDB
	path string

	// The append's statements, compiled once on the writer: the run row's
	// read, the event insert, the run row's insert and its subjects', and
	// its updates by the listed columns they assign (see runUpdate).
	rowStmt, eventStmt, insertStmt, subjectStmt *sql.Stmt
	updateStmts                                 map[listedMask]*sql.Stmt
	// A batch's savepoint around each of its appends (groupcommit.go).
	savepoint, rollbackTo, release *sql.Stmt

	// group batches concurrent appends into one transaction (and one
	// sync); commit ends a batch's transaction of n appends, tx.Commit
	// but in the tests that make it fail.
	group  committer
	commit func(tx *sql.Tx, n int) error
	// checkpoints copies the log into the database file beside the writer
	// (checkpoint.go).
	checkpoints *checkpointer
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
	sqliteTypes.spell(tables),
	// 2: listing (see listingIndexes).
	listingIndexes,
	// 3: who started a run, and whether as a laboratory run. Runs from
	// before have neither: '' and false. Indexed like every filter.
	`ALTER TABLE runs ADD COLUMN principal TEXT NOT NULL DEFAULT '';
	ALTER TABLE runs ADD COLUMN lab INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX runs_by_principal ON runs (principal, started_at DESC, run_id DESC)`,
	// 4: the analyzer's drift baselines, one per program and definition;
	// saved orders a program's baselines, the latest highest.
	sqliteTypes.spell(baselinesTable),
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
	` + awaitingIndexes,
	// 7: the deadline sweeper's index (see dueStep).
	dueStep,
	// 8: a due time for the running runs from before step 7 (see
	// dueBackfillStep).
	dueBackfillStep,
	// 9: runtime tool calls: the open call and its lease (see openCallStep).
	openCallStep,
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

	s := &SQLite{sqlDB: sqlDB{backend: "sqlite", d: sqliteDialect}, path: path}
	s.sqlDB.write = s.write
	s.group.writeBatch = s.writeBatch
	s.commit = func(tx *sql.Tx, _ int) error { return tx.Commit() }
	// secure_delete zeroes deleted rows in the file, so that a destroyed
	// subject key does not linger in free space. temp_store keeps the
	// savepoints' journal of a group commit's batch (groupcommit.go) in
	// memory instead of a temporary file: it is never needed after a
	// crash, and writing it cost a write call per page. The automatic
	// checkpoint is only a backstop (checkpoint.go).
	s.w, err = sql.Open("sqlite", sqliteDSN(path, "_txlock=immediate", "_pragma=synchronous("+syncMode+")", "_pragma=secure_delete(ON)", "_pragma=temp_store(MEMORY)",
		"_pragma=wal_autocheckpoint("+strconv.Itoa(backstopPages)+")"))
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
	if s.checkpoints, err = startCheckpointer(path, &s.group.writing); err != nil {
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

// sqliteDialect: SQLite's write transaction holds the database's write
// lock, so neither key writes nor migrations need another lock, and the
// writer's one connection numbers baseline saves without a race.
var sqliteDialect = dialect{
	conflict:   sqliteConflict,
	byteOrder:  "COLLATE BINARY",
	nextSaved:  "(SELECT coalesce(max(saved), 0) + 1 FROM baselines)",
	deleteKeys: sqliteDeleteKeys,
	rewrapKeys: sqliteRewrapKeys,
}

// sqliteConflict: an event already at an index the run's row said was
// free, which the write lock makes a lost race with another process.
func sqliteConflict(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// migrateSQLite applies the steps db's schema lacks (see migrate); db
// begins its transactions IMMEDIATE.
func migrateSQLite(db *sql.DB, steps []string) error {
	return migrate(context.Background(), db, "sqlite", sqliteDialect, steps)
}

// listedColumns are the runs columns that key a listing index, in the
// order of their bits in a listedMask. The other columns an append writes
// (updated_at, events, head, tree) are in no index.
var listedColumns = [...]string{"program", "definition_hash", "status", "outcome", "started_at", "awaiting_role", "awaiting_deadline", "due", "call_id", "lease_holder", "lease_expires"}

// listedMask says which listed columns an update assigns.
type listedMask uint16

const (
	setProgram listedMask = 1 << iota
	setDefinitionHash
	setStatus
	setOutcome
	setStartedAt
	setAwaitingRole
	setAwaitingDeadline
	setDue
	setCall
	setLeaseHolder
	setLeaseExpires
)

// setAwaiting is an approval task opened or closed: both columns change.
const setAwaiting = setAwaitingRole | setAwaitingDeadline

// setLease is a runtime tool call opened or closed: the call and its
// lease change together. (lease_holder is in no index, but an append
// that names no holder must leave it be, so it is assigned only when it
// changes, like the listed columns.)
const setLease = setCall | setLeaseHolder | setLeaseExpires

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
	setAwaiting, setAwaiting | setStatus, setAwaiting | setStatus | setOutcome,
	setDue, setDue | setStatus, setDue | setStatus | setOutcome,
	setDue | setAwaiting, setDue | setAwaiting | setStatus, setDue | setAwaiting | setStatus | setOutcome,
	setLease, setLease | setDue, setLease | setStatus, setLease | setStatus | setOutcome, setLease | setStatus | setDue, setLease | setStatus | setOutcome | setDue,
	setLeaseHolder | setLeaseExpires, setLeaseExpires}

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
	if s.rowStmt, err = prep(`SELECT events, program, definition_hash, status, outcome, started_at, awaiting_role, awaiting_deadline, due, call_id, lease_holder, lease_expires FROM runs WHERE run_id = ?`); err != nil {
		return err
	}
	if s.eventStmt, err = prep(`INSERT INTO events (run_id, idx, type, body, hash) VALUES (?, ?, ?, ?, ?)`); err != nil {
		return err
	}
	// Only a run's first append inserts its row, and so sets principal and
	// lab for good.
	if s.insertStmt, err = prep(`INSERT INTO runs (` + runColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`); err != nil {
		return err
	}
	if s.subjectStmt, err = prep(`INSERT OR IGNORE INTO run_subjects (subject, run_id) VALUES (?, ?)`); err != nil {
		return err
	}
	if s.savepoint, err = prep(`SAVEPOINT append`); err != nil {
		return err
	}
	if s.rollbackTo, err = prep(`ROLLBACK TO append`); err != nil {
		return err
	}
	if s.release, err = prep(`RELEASE append`); err != nil {
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

// write is Append's SQLite part (see sqlDB.Append): the append joins the
// group committer's next batch (groupcommit.go), or is a batch alone.
func (s *SQLite) write(ctx context.Context, runID string, records []Record, info RunInfo, started, updated int64) error {
	return s.group.append(&appendReq{ctx: ctx, runID: runID, records: records, info: info, started: started, updated: updated})
}

// writeBatch writes a batch of appends in one transaction, each of a
// batch of several in a savepoint of its own, and commits it once; it sets
// each append's error.
func (s *SQLite) writeBatch(ctx context.Context, batch []*appendReq) {
	// When the batch does not commit, every append in it fails with the
	// batch's error, a conflict or a lost lease included: those may have
	// been decided against a batch-mate's write, which is now undone.
	// Only the appends left out because their callers gave up keep their
	// own error.
	fail := func(err error) {
		for _, r := range batch {
			if !r.skipped {
				r.err = fmt.Errorf("tracestore: sqlite append: %w", err)
			}
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		fail(err)
		return
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	several := len(batch) > 1
	written, size := 0, int64(0)
	for _, r := range batch {
		// An append whose caller gave up before its batch began is left
		// out, and told so.
		if r.err = r.ctx.Err(); r.err != nil {
			r.skipped = true
			continue
		}
		if several {
			if _, err := tx.StmtContext(ctx, s.savepoint).ExecContext(ctx); err != nil {
				fail(err)
				return
			}
		}
		r.err = s.writeOne(ctx, tx, r.runID, r.records, r.info, r.started, r.updated)
		if several {
			if r.err != nil {
				if _, err := tx.StmtContext(ctx, s.rollbackTo).ExecContext(ctx); err != nil {
					// The append's error ended the whole transaction
					// (SQLITE_FULL, an I/O error): say so to every
					// append of the batch.
					fail(fmt.Errorf("the batch's transaction was aborted by the append to run %s (%w), and could not be rolled back to it: %v", r.runID, r.err, err))
					return
				}
			}
			if _, err := tx.StmtContext(ctx, s.release).ExecContext(ctx); err != nil {
				fail(err)
				return
			}
		}
		if r.err == nil {
			written++
			for _, rec := range r.records {
				size += int64(len(rec.Body))
			}
		}
	}
	if written == 0 {
		return
	}
	if err := s.commit(tx, len(batch)); err != nil {
		fail(err)
		return
	}
	s.checkpoints.committed(written, size)
}

// writeOne is one append in a batch's transaction. The trace's length
// comes from the run's index row, so an append costs the same however long
// the trace is: the row's read (under the write lock, which BEGIN
// IMMEDIATE took), the events' inserts, and the row's insert or narrowest
// update.
func (s *SQLite) writeOne(ctx context.Context, tx *sql.Tx, runID string, records []Record, info RunInfo, started, updated int64) error {
	// The run's row: the trace's length, and what the listing indexes hold.
	var (
		next, was, wasDeadline, wasDue, wasLease int64
		old                                      RunInfo
	)
	err := tx.StmtContext(ctx, s.rowStmt).QueryRowContext(ctx, runID).Scan(&next, &old.Program, &old.DefinitionHash, &old.Status, &old.Outcome, &was, &old.AwaitingRole, &wasDeadline, &wasDue, &old.Call, &old.LeaseHolder, &wasLease)
	old.LeaseExpires = leaseTime(wasLease)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("tracestore: sqlite append: %w", err)
	}
	if err := checkAppend(runID, uint64(next), records, info); err != nil {
		return err
	}
	if err := checkLease(runID, old, exists, info); err != nil {
		return err
	}
	holder, lease := leaseOf(old, exists, info)
	ins := tx.StmtContext(ctx, s.eventStmt)
	for _, r := range records {
		if _, err := ins.ExecContext(ctx, runID, int64(r.Index), r.Type, r.Body, r.Hash); err != nil {
			return fmt.Errorf("tracestore: sqlite append: %w", err)
		}
	}
	if !exists {
		_, err = tx.StmtContext(ctx, s.insertStmt).ExecContext(ctx, runID, info.Program, info.DefinitionHash, info.Status, info.Outcome,
			started, updated, int64(info.Events), info.Head, info.Tree, info.Principal, info.Lab, info.AwaitingRole, awaitingNanos(info), dueNanos(info), info.Call, holder, lease)
		for _, sub := range info.Subjects {
			if err != nil {
				break
			}
			_, err = tx.StmtContext(ctx, s.subjectStmt).ExecContext(ctx, sub, runID)
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
		if due := dueNanos(info); wasDue != due {
			m, args = m|setDue, append(args, due)
		}
		if old.Call != info.Call {
			m, args = m|setCall, append(args, info.Call)
		}
		if old.LeaseHolder != holder {
			m, args = m|setLeaseHolder, append(args, holder)
		}
		if wasLease != lease {
			m, args = m|setLeaseExpires, append(args, lease)
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
	return nil
}

// sqliteDeleteKeys is a rotation's deletion. secure_delete zeroes the
// old rows in the database's pages, but older copies of those pages stay
// in the log until later checkpoints overwrite it.
func sqliteDeleteKeys(ctx context.Context, tx *sql.Tx, subjects []string) ([]string, error) {
	var deleted []string
	for _, sub := range subjects {
		res, err := tx.ExecContext(ctx, `DELETE FROM subject_keys WHERE subject = $1`, sub)
		if err != nil {
			return nil, err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			deleted = append(deleted, sub)
		}
	}
	return deleted, nil
}

// sqliteRewrapKeys is a rotation's rewrite, one prepared update a key.
func sqliteRewrapKeys(ctx context.Context, tx *sql.Tx, keys []WrappedKey, wrapped [][]byte, to uint64) error {
	upd, err := tx.PrepareContext(ctx, `UPDATE subject_keys SET key = $1, epoch = $2 WHERE subject = $3`)
	if err != nil {
		return err
	}
	defer upd.Close()
	for i, k := range keys {
		if _, err := upd.ExecContext(ctx, wrapped[i], int64(to), k.Subject); err != nil {
			return err
		}
	}
	return nil
}

// Close implements Store.
func (s *SQLite) Close() error {
	var errs []error
	if s.checkpoints != nil {
		errs = append(errs, s.checkpoints.close())
	}
	for _, st := range []*sql.Stmt{s.rowStmt, s.eventStmt, s.insertStmt, s.subjectStmt, s.savepoint, s.rollbackTo, s.release} {
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
