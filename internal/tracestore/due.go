package tracestore

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// The deadline sweeper's index: every run whose open task has a deadline,
// of any kind, keeps it in its row (the due column: Unix nanoseconds, 0
// when none), and a partial index holds only those runs, by deadline. So
// the sweeper finds the runs due at a time without reading any other run
// or any trace.

// DueFilter selects runs whose open task's deadline has come.
type DueFilter struct {
	By     time.Time // deadlines at or before it
	Cursor string    // from the previous page
	Limit  int       // default 100, at most 1000
}

// dueNanos is a row's due column: 0 when the open task has no deadline.
func dueNanos(info RunInfo) int64 {
	if info.Deadline.IsZero() {
		return 0
	}
	return max(boundOf(info.Deadline), 1)
}

func dueTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return unixNano(ns)
}

// duePage reads the filter's limit and cursor.
func duePage(f DueFilter) (limit int, afterNs int64, afterID string, err error) {
	limit, _, err = pageOf(ListFilter{Limit: f.Limit})
	if err != nil || f.Cursor == "" {
		return limit, 0, "", err
	}
	ns, id, ok := cutCursor(f.Cursor)
	if !ok {
		return 0, 0, "", fmt.Errorf("%w %q", ErrBadCursor, f.Cursor)
	}
	return limit, ns, id, nil
}

// duePageOf cuts a listing of up to limit+1 runs to the page and its
// cursor.
func duePageOf(runs []RunInfo, limit int) ([]RunInfo, string) {
	if len(runs) <= limit {
		return runs, ""
	}
	last := runs[limit-1]
	return runs[:limit], strconv.FormatInt(dueNanos(last), 10) + ":" + last.RunID
}

// dueQuery is ListDue as one keyset query over the partial index runs_due,
// whose predicate (due <> 0) it repeats so that SQLite sees it may use it.
func dueQuery(f DueFilter, afterNs int64, afterID string, limit int, ph func(n int) string) (string, []any) {
	args := []any{boundOf(f.By)}
	q := "SELECT " + runColumns + " FROM runs WHERE due <> 0 AND due <= " + ph(1)
	if afterID != "" {
		args = append(args, afterNs, afterID)
		q += " AND (due, run_id) > (" + ph(2) + ", " + ph(3) + ")"
	}
	return q + " ORDER BY due, run_id LIMIT " + strconv.Itoa(limit+1), args
}

// ListDue implements Store.
func (s *sqlDB) ListDue(ctx context.Context, f DueFilter) ([]RunInfo, string, error) {
	limit, afterNs, afterID, err := duePage(f)
	if err != nil {
		return nil, "", err
	}
	q, args := dueQuery(f, afterNs, afterID, limit, dollar)
	runs, err := s.runs(ctx, q, args)
	if err != nil {
		return nil, "", fmt.Errorf("tracestore: %s list due: %w", s.backend, err)
	}
	runs, next := duePageOf(runs, limit)
	return runs, next, nil
}

// ListDue implements Store.
func (m *Memory) ListDue(_ context.Context, f DueFilter) ([]RunInfo, string, error) {
	limit, afterNs, afterID, err := duePage(f)
	if err != nil {
		return nil, "", err
	}
	all := m.byKey(dueNanos, func(info RunInfo) bool { return dueNanos(info) != 0 }, boundOf(f.By), afterNs, afterID)
	runs, next := duePageOf(all, limit)
	return runs, next, nil
}

// byKey lists, in the order (key, run id), the runs that have one (has)
// with a key at or before by, after the cursor's position (afterNs,
// afterID; none when afterID is ""): the Memory form of a keyset query
// over a partial index.
func (m *Memory) byKey(key func(RunInfo) int64, has func(RunInfo) bool, by, afterNs int64, afterID string) []RunInfo {
	m.mu.RLock()
	var all []RunInfo
	for _, info := range m.info {
		ns := key(info)
		switch {
		case !has(info), ns > by:
			continue
		case afterID != "" && (ns < afterNs || ns == afterNs && info.RunID <= afterID):
			continue
		}
		all = append(all, info)
	}
	m.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool {
		a, b := key(all[i]), key(all[j])
		return a < b || a == b && all[i].RunID < all[j].RunID
	})
	return all
}
