package tracestore

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// What the SQL backends share: how times are kept, and the listing query.

// errSchemaTooNew: the store was written by a newer nano-vm-mcp, and is
// refused rather than misread.
var errSchemaTooNew = errors.New("tracestore: the store's schema is newer than this binary; upgrade nano-vm-mcp")

// zeroNanos stands for the zero time, which has no Unix nanosecond form; the
// smallest int64 sorts it first, as Memory does.
const zeroNanos = math.MinInt64

var (
	minTime = time.Unix(0, zeroNanos+1).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

// nanosOf is how the SQL stores keep a time: Unix nanoseconds, the cursor's
// unit, so that ordering and paging happen in the database. ok is false for
// a time outside the years 1678-2262, which int64 nanoseconds cannot hold.
func nanosOf(t time.Time) (ns int64, ok bool) {
	switch {
	case t.IsZero():
		return zeroNanos, true
	case t.Before(minTime) || t.After(maxTime):
		return 0, false
	}
	return t.UnixNano(), true
}

// idxBound is LoadPrefix's n as the SQL stores' event index column holds
// it: a signed 64-bit integer, which no real index reaches.
func idxBound(n uint64) int64 {
	return int64(min(n, math.MaxInt64))
}

// boundOf is nanosOf for a filter's bound: out-of-range bounds clamp rather
// than fail, since they still order correctly against every stored time.
func boundOf(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return zeroNanos + 1
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func timeOf(ns int64) time.Time {
	if ns == zeroNanos {
		return time.Time{}
	}
	return unixNano(ns)
}

// rowNanos checks an index row's times before anything is written.
func rowNanos(runID string, info RunInfo) (started, updated int64, err error) {
	started, ok1 := nanosOf(info.StartedAt)
	updated, ok2 := nanosOf(info.UpdatedAt)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("tracestore: run %s: times %v and %v must lie between %v and %v", runID, info.StartedAt, info.UpdatedAt, minTime, maxTime)
	}
	return started, updated, nil
}

// tables is schema step 1 of both SQL stores, in the column types that
// sqlTypes.spell fills in.
const tables = `CREATE TABLE events (
		run_id {id} NOT NULL,
		idx {int} NOT NULL,
		type TEXT NOT NULL,
		body {bytes},
		hash {bytes},
		PRIMARY KEY (run_id, idx)
	);
	CREATE TABLE runs (
		run_id {id} PRIMARY KEY,
		program TEXT NOT NULL,
		definition_hash TEXT NOT NULL,
		status TEXT NOT NULL,
		outcome TEXT NOT NULL,
		started_at {int} NOT NULL,
		updated_at {int} NOT NULL,
		events {int} NOT NULL,
		head {bytes},
		tree {bytes}
	);
	CREATE TABLE programs (hash TEXT PRIMARY KEY, source {bytes});
	CREATE TABLE subject_keys (subject TEXT PRIMARY KEY, key {bytes})`

// baselinesTable is schema step 4 of both SQL stores (PostgreSQL's adds
// the sequence that numbers saves), in sqlTypes.spell's types.
const baselinesTable = `CREATE TABLE baselines (
		program TEXT NOT NULL,
		definition_hash TEXT NOT NULL,
		data {bytes} NOT NULL,
		saved {int} NOT NULL,
		PRIMARY KEY (program, definition_hash)
	);
	CREATE INDEX baselines_by_saved ON baselines (program, saved DESC)`

// sqlTypes are a database's spellings of tables' column types.
type sqlTypes struct {
	id    string // a run id: byte-ordered text
	int   string // a 64-bit integer
	bytes string // a byte string
}

var (
	sqliteTypes = sqlTypes{id: "TEXT", int: "INTEGER", bytes: "BLOB"}
	// postgresTypes: run_id sorts in the "C" collation so that listing
	// orders run ids by bytes, as the other backends and the cursor do,
	// whatever the database's locale.
	postgresTypes = sqlTypes{id: `TEXT COLLATE "C"`, int: "BIGINT", bytes: "BYTEA"}
)

// spell writes ddl's {id}, {int} and {bytes} in t's types.
func (t sqlTypes) spell(ddl string) string {
	return strings.NewReplacer("{id}", t.id, "{int}", t.int, "{bytes}", t.bytes).Replace(ddl)
}

// listingIndexes is schema step 2 of both SQL stores: each listing filter
// leads an index that continues in listing order, so a filtered page is an
// index range scan too. updated_at is not indexed: every append changes
// it.
const listingIndexes = `CREATE INDEX runs_by_start ON runs (started_at DESC, run_id DESC);
	CREATE INDEX runs_by_program ON runs (program, started_at DESC, run_id DESC);
	CREATE INDEX runs_by_definition ON runs (definition_hash, started_at DESC, run_id DESC);
	CREATE INDEX runs_by_status ON runs (status, started_at DESC, run_id DESC);
	CREATE INDEX runs_by_outcome ON runs (outcome, started_at DESC, run_id DESC)`

// awaitingIndexes end schema step 6 of both SQL stores: two partial
// indexes that hold only the runs awaiting an approval, by role and by
// deadline.
const awaitingIndexes = `CREATE INDEX runs_awaiting_by_role ON runs (awaiting_role, awaiting_deadline, run_id) WHERE awaiting_role <> '';
	CREATE INDEX runs_awaiting_by_deadline ON runs (awaiting_deadline, run_id) WHERE awaiting_role <> ''`

// dueStep is schema step 7 of both SQL stores: the open task's deadline,
// whatever its kind, for the deadline sweeper (ListDue), and a partial
// index that holds only the runs that have one. A run waiting for an
// approval since before takes its deadline from awaiting_deadline; other
// runs' deadlines need the program, and are unknown (0) until their next
// append: dueBackfillStep bounds them.
const dueStep = `ALTER TABLE runs ADD COLUMN due BIGINT NOT NULL DEFAULT 0;
	UPDATE runs SET due = awaiting_deadline WHERE awaiting_role <> '' AND awaiting_deadline <> 9223372036854775807 AND status = 'running';
	CREATE INDEX runs_due ON runs (due, run_id) WHERE due <> 0`

// dueBackfillStep is schema step 8 of both SQL stores. A running run whose
// row names no due time may be one from before step 7, whose deadline
// needs its program, which SQL cannot read; left at 0, such a run whose
// task expired would never be swept. It takes a bound never later than
// any deadline it may have: its start. The sweeper then looks at each such
// run once, times out those that are due, and passes over the others
// until their real deadline (service.Sweep); their next append writes it.
const dueBackfillStep = `UPDATE runs SET due = CASE WHEN started_at > 0 THEN started_at ELSE 1 END
	WHERE status = 'running' AND due = 0`

// runColumns are the runs table's columns in the order scanRun reads them.
const runColumns = `run_id, program, definition_hash, status, outcome, started_at, updated_at, events, head, tree, principal, lab, awaiting_role, awaiting_deadline, due, call_id, lease_holder, lease_expires`

// scanRun reads one runs row through a driver's Scan.
func scanRun(scan func(dest ...any) error) (RunInfo, error) {
	var (
		ri               RunInfo
		started, updated int64
		events, deadline int64
		due, lease       int64
	)
	if err := scan(&ri.RunID, &ri.Program, &ri.DefinitionHash, &ri.Status, &ri.Outcome, &started, &updated, &events, &ri.Head, &ri.Tree, &ri.Principal, &ri.Lab, &ri.AwaitingRole, &deadline, &due, &ri.Call, &ri.LeaseHolder, &lease); err != nil {
		return RunInfo{}, err
	}
	ri.StartedAt, ri.UpdatedAt, ri.Events = timeOf(started), timeOf(updated), uint64(events)
	ri.AwaitingDeadline = awaitingTime(ri.AwaitingRole, deadline)
	ri.Deadline = dueTime(due)
	ri.LeaseExpires = leaseTime(lease)
	return ri, nil
}

// listQuery is ListRuns as one keyset query: the filters, the position after
// the cursor, newest first, one row more than the page so that the caller
// knows whether there is a next page. Every filter column leads an index
// that continues with (started_at, run_id), so the database walks an index
// in order and stops after limit+1 rows, however many runs there are. ph
// writes the n-th placeholder in the driver's syntax.
func listQuery(f ListFilter, after *RunInfo, limit int, ph func(n int) string) (string, []any) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return ph(len(args))
	}
	for _, eq := range []struct{ col, val string }{
		{"program", f.Program}, {"definition_hash", f.DefinitionHash}, {"status", f.Status}, {"outcome", f.Outcome},
		{"principal", f.Principal},
	} {
		if eq.val != "" {
			where = append(where, eq.col+" = "+arg(eq.val))
		}
	}
	if !f.Since.IsZero() {
		where = append(where, "started_at >= "+arg(boundOf(f.Since)))
	}
	if !f.Until.IsZero() {
		where = append(where, "started_at < "+arg(boundOf(f.Until)))
	}
	if f.ExcludeLab {
		// lab is INTEGER 0/1 in SQLite and BOOLEAN in PostgreSQL: NOT
		// reads both.
		where = append(where, "NOT lab")
	}
	if after != nil {
		ns, _ := nanosOf(after.StartedAt) // zeroNanos for the zero time
		where = append(where, "(started_at, run_id) < ("+arg(ns)+", "+arg(after.RunID)+")")
	}
	q := "SELECT " + runColumns + " FROM runs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY started_at DESC, run_id DESC LIMIT " + strconv.Itoa(limit+1)
	return q, args
}

// page cuts a listing of up to limit+1 runs to the page and its cursor.
func page(runs []RunInfo, limit int) ([]RunInfo, string) {
	if len(runs) <= limit {
		return runs, ""
	}
	return runs[:limit], cursorOf(runs[limit-1])
}
