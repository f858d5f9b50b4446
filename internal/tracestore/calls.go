package tracestore

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Runtime-executed tool calls (docs/tools.md). A run whose trace ends with
// a started call and no outcome keeps the call's id in its row (the
// call_id column, "" when none), with the lease of the server instance
// that executes it: its holder and when the lease expires (lease_expires:
// Unix nanoseconds). The lease sits on the run's row, so the append that
// records the intent (tool_call_started) writes it in the same
// transaction: no other instance ever sees an open call without its
// holder. A partial index holds only the runs with an open call, by
// expiry, so that recovery finds the calls whose holder stopped renewing
// without reading any other run or any trace.

// OpenCallFilter selects runs with an open runtime tool call whose lease
// has expired.
type OpenCallFilter struct {
	ExpiredBy time.Time // leases that expire at or before it
	Cursor    string    // from the previous page
	Limit     int       // default 100, at most 1000
}

// unheld is the lease_expires of an open call nobody holds: expired since
// the epoch's first nanosecond, so any instance may take it.
const unheld = 1

// leaseOf is the call and lease a row holds after an append of info to a
// row that held old (exists false: the run's first append):
//   - no open call: no lease;
//   - the append names a holder: that holder, until info.LeaseExpires;
//   - the same call as before: the lease it had (another instance's
//     append, a rejection say, leaves the executing instance's lease be);
//   - a new call nobody claims: open, unheld.
func leaseOf(old RunInfo, exists bool, info RunInfo) (holder string, expires int64) {
	switch {
	case info.Call == "":
		return "", 0
	case info.LeaseHolder != "":
		return info.LeaseHolder, leaseNanos(info)
	case exists && old.Call == info.Call:
		return old.LeaseHolder, leaseNanos(old)
	}
	return "", unheld
}

// checkLease is a conditional append's precondition (RunInfo.IfLease),
// on the row as the append's transaction reads it (exists false: no row).
func checkLease(runID string, row RunInfo, exists bool, info RunInfo) error {
	c := info.IfLease
	if c == nil {
		return nil
	}
	if !exists || row.Call != c.Call || row.LeaseHolder != c.Holder {
		return fmt.Errorf("%w: run %s: call %s is not leased to %s (the row holds call %q, leased to %q)", ErrLeaseLost, runID, c.Call, c.Holder, row.Call, row.LeaseHolder)
	}
	return nil
}

// leaseNanos is an open call's lease_expires as a row holds it.
func leaseNanos(info RunInfo) int64 { return max(boundOf(info.LeaseExpires), unheld) }

func leaseTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return unixNano(ns)
}

// openCallPage reads the filter's limit and cursor.
func openCallPage(f OpenCallFilter) (limit int, afterNs int64, afterID string, err error) {
	return duePage(DueFilter{Cursor: f.Cursor, Limit: f.Limit})
}

// openCallPageOf cuts a listing of up to limit+1 runs to the page and its
// cursor.
func openCallPageOf(runs []RunInfo, limit int) ([]RunInfo, string) {
	if len(runs) <= limit {
		return runs, ""
	}
	last := runs[limit-1]
	return runs[:limit], strconv.FormatInt(leaseNanos(last), 10) + ":" + last.RunID
}

// openCallQuery is ListOpenCalls as one keyset query over the partial
// index runs_open_call, whose predicate it repeats so that SQLite sees it
// may use it.
func openCallQuery(f OpenCallFilter, afterNs int64, afterID string, limit int, ph func(n int) string) (string, []any) {
	args := []any{boundOf(f.ExpiredBy)}
	q := "SELECT " + runColumns + " FROM runs WHERE call_id <> '' AND lease_expires <= " + ph(1)
	if afterID != "" {
		args = append(args, afterNs, afterID)
		q += " AND (lease_expires, run_id) > (" + ph(2) + ", " + ph(3) + ")"
	}
	return q + " ORDER BY lease_expires, run_id LIMIT " + strconv.Itoa(limit+1), args
}

// openCallStep is the schema step of both SQL stores that adds the open
// call and its lease. No run from before can have one: runtime tool
// calls did not exist.
const openCallStep = `ALTER TABLE runs ADD COLUMN call_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE runs ADD COLUMN lease_holder TEXT NOT NULL DEFAULT '';
	ALTER TABLE runs ADD COLUMN lease_expires BIGINT NOT NULL DEFAULT 0;
	CREATE INDEX runs_open_call ON runs (lease_expires, run_id) WHERE call_id <> ''`

// takeLease is TakeLease's one statement: the compare-and-set that lets
// exactly one instance take an expired lease, and lets the holder renew
// its own.
const takeLease = `UPDATE runs SET lease_holder = $1, lease_expires = $2
	WHERE run_id = $3 AND call_id = $4 AND call_id <> '' AND (lease_holder = $1 OR lease_expires <= $5)`

// ListOpenCalls implements Store.
func (s *sqlDB) ListOpenCalls(ctx context.Context, f OpenCallFilter) ([]RunInfo, string, error) {
	limit, afterNs, afterID, err := openCallPage(f)
	if err != nil {
		return nil, "", err
	}
	q, args := openCallQuery(f, afterNs, afterID, limit, dollar)
	runs, err := s.runs(ctx, q, args)
	if err != nil {
		return nil, "", fmt.Errorf("tracestore: %s list open calls: %w", s.backend, err)
	}
	runs, next := openCallPageOf(runs, limit)
	return runs, next, nil
}

// TakeLease implements Store.
func (s *sqlDB) TakeLease(ctx context.Context, runID, callID, holder string, now, until time.Time) (bool, error) {
	if callID == "" || holder == "" {
		return false, fmt.Errorf("tracestore: take lease of run %s: a call id and a holder are required", runID)
	}
	res, err := s.w.ExecContext(ctx, takeLease, holder, max(boundOf(until), unheld), runID, callID, boundOf(now))
	if err != nil {
		return false, fmt.Errorf("tracestore: %s take lease of run %s: %w", s.backend, runID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("tracestore: %s take lease of run %s: %w", s.backend, runID, err)
	}
	return n == 1, nil
}

// ListOpenCalls implements Store.
func (m *Memory) ListOpenCalls(_ context.Context, f OpenCallFilter) ([]RunInfo, string, error) {
	limit, afterNs, afterID, err := openCallPage(f)
	if err != nil {
		return nil, "", err
	}
	all := m.byKey(leaseNanos, func(info RunInfo) bool { return info.Call != "" }, boundOf(f.ExpiredBy), afterNs, afterID)
	runs, next := openCallPageOf(all, limit)
	return runs, next, nil
}

// TakeLease implements Store.
func (m *Memory) TakeLease(_ context.Context, runID, callID, holder string, now, until time.Time) (bool, error) {
	if callID == "" || holder == "" {
		return false, fmt.Errorf("tracestore: take lease of run %s: a call id and a holder are required", runID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	info, ok := m.info[runID]
	if !ok || info.Call != callID || info.LeaseHolder != holder && boundOf(info.LeaseExpires) > boundOf(now) {
		return false, nil
	}
	info.LeaseHolder, info.LeaseExpires = holder, leaseTime(max(boundOf(until), unheld))
	m.info[runID] = info
	return true, nil
}
