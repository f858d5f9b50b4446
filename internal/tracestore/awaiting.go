package tracestore

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The approvers' inbox: runs whose open task is an approval, found through
// two columns of the run index (awaiting_role, awaiting_deadline) and two
// partial indexes that hold only such runs, so that listing them reads
// neither every run nor any trace.

// AwaitingFilter selects runs waiting for an approval.
type AwaitingFilter struct {
	Role string // only decisions of this role; "" for every role
	// After keeps only tasks whose deadline is later than it (or that have
	// none); zero keeps every one.
	After  time.Time
	Lab    bool   // include laboratory runs
	Cursor string // from the previous page
	Limit  int    // default 100, at most 1000
}

// noDeadline is the awaiting_deadline of an approval without a deadline
// (or, for runs waiting since before the column existed, with an unknown
// one): it sorts after every real deadline.
const noDeadline = math.MaxInt64

// awaitingNanos is a row's awaiting_deadline: 0 when the run awaits no
// approval.
func awaitingNanos(info RunInfo) int64 {
	switch {
	case info.AwaitingRole == "":
		return 0
	case info.AwaitingDeadline.IsZero():
		return noDeadline
	}
	return min(boundOf(info.AwaitingDeadline), noDeadline-1)
}

func awaitingTime(role string, ns int64) time.Time {
	if role == "" || ns == noDeadline {
		return time.Time{}
	}
	return unixNano(ns)
}

func awaitingCursor(info RunInfo) string {
	return strconv.FormatInt(awaitingNanos(info), 10) + ":" + info.RunID
}

// awaitingPage reads the filter's limit and cursor: the position (deadline
// column, run id) after which the page starts.
func awaitingPage(f AwaitingFilter) (limit int, after *RunInfo, ns int64, err error) {
	limit, _, err = pageOf(ListFilter{Limit: f.Limit})
	if err != nil || f.Cursor == "" {
		return limit, nil, 0, err
	}
	ns, id, ok := cutCursor(f.Cursor)
	if !ok {
		return 0, nil, 0, fmt.Errorf("%w %q", ErrBadCursor, f.Cursor)
	}
	return limit, &RunInfo{RunID: id}, ns, nil
}

// afterNanos is the filter's After as a deadline column's lower bound.
func afterNanos(f AwaitingFilter) int64 {
	if f.After.IsZero() {
		return math.MinInt64
	}
	return boundOf(f.After)
}

// awaitingQuery is ListAwaiting as one keyset query. With a role it walks
// runs_awaiting_by_role, without one runs_awaiting_by_deadline; both are
// partial indexes on awaiting_role <> ”, which the query repeats word for
// word so that SQLite sees it may use them.
func awaitingQuery(f AwaitingFilter, after *RunInfo, afterNs int64, limit int, ph func(n int) string) (string, []any) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return ph(len(args))
	}
	where := []string{"awaiting_role <> ''"}
	if f.Role != "" {
		where = append(where, "awaiting_role = "+arg(f.Role))
	}
	if !f.After.IsZero() {
		where = append(where, "awaiting_deadline > "+arg(afterNanos(f)))
	}
	if after != nil {
		where = append(where, "(awaiting_deadline, run_id) > ("+arg(afterNs)+", "+arg(after.RunID)+")")
	}
	if !f.Lab {
		where = append(where, "NOT lab")
	}
	q := "SELECT " + runColumns + " FROM runs WHERE " + strings.Join(where, " AND ") +
		" ORDER BY awaiting_deadline, run_id LIMIT " + strconv.Itoa(limit+1)
	return q, args
}

// awaitingPageOf cuts a listing of up to limit+1 runs to the page and its
// cursor.
func awaitingPageOf(runs []RunInfo, limit int) ([]RunInfo, string) {
	if len(runs) <= limit {
		return runs, ""
	}
	return runs[:limit], awaitingCursor(runs[limit-1])
}

// ListAwaiting implements Store.
func (m *Memory) ListAwaiting(_ context.Context, f AwaitingFilter) ([]RunInfo, string, error) {
	limit, after, afterNs, err := awaitingPage(f)
	if err != nil {
		return nil, "", err
	}
	lower := afterNanos(f)
	m.mu.RLock()
	var all []RunInfo
	for _, info := range m.info {
		ns := awaitingNanos(info)
		switch {
		case info.AwaitingRole == "", f.Role != "" && info.AwaitingRole != f.Role, info.Lab && !f.Lab, ns <= lower:
			continue
		case after != nil && (ns < afterNs || ns == afterNs && info.RunID <= after.RunID):
			continue
		}
		all = append(all, info)
	}
	m.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool {
		a, b := awaitingNanos(all[i]), awaitingNanos(all[j])
		return a < b || a == b && all[i].RunID < all[j].RunID
	})
	runs, next := awaitingPageOf(all, limit)
	return runs, next, nil
}
