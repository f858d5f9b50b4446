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

// runColumns are the runs table's columns in the order scanRun reads them.
const runColumns = `run_id, program, definition_hash, status, outcome, started_at, updated_at, events, head, tree, principal, lab, awaiting_role, awaiting_deadline`

// scanRun reads one runs row through a driver's Scan.
func scanRun(scan func(dest ...any) error) (RunInfo, error) {
	var (
		ri               RunInfo
		started, updated int64
		events, deadline int64
	)
	if err := scan(&ri.RunID, &ri.Program, &ri.DefinitionHash, &ri.Status, &ri.Outcome, &started, &updated, &events, &ri.Head, &ri.Tree, &ri.Principal, &ri.Lab, &ri.AwaitingRole, &deadline); err != nil {
		return RunInfo{}, err
	}
	ri.StartedAt, ri.UpdatedAt, ri.Events = timeOf(started), timeOf(updated), uint64(events)
	ri.AwaitingDeadline = awaitingTime(ri.AwaitingRole, deadline)
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
