package tracestore

import (
	"context"
	"database/sql"
	"fmt"
	"iter"
)

// Scanner is a Store that hands out a run's records one at a time, so
// that a reader of a long trace (a receipt check) holds one record at a
// time, not the whole trace. Every backend here is one.
type Scanner interface {
	// Scan yields the first n records of run's trace in order (all of them
	// when it is shorter), or one error wrapping ErrNotFound when there
	// are none. A reading error ends it. The consumer may stop early.
	Scan(ctx context.Context, runID string, n uint64) iter.Seq2[Record, error]
}

// Records yields the first n records of run's trace: through st's Scan
// when it has one, else from LoadPrefix (a wrapper that only implements
// TraceReader).
func Records(ctx context.Context, st TraceReader, runID string, n uint64) iter.Seq2[Record, error] {
	if sc, ok := st.(Scanner); ok {
		return sc.Scan(ctx, runID, n)
	}
	return func(yield func(Record, error) bool) {
		recs, err := st.LoadPrefix(ctx, runID, n)
		if err != nil {
			yield(Record{}, err)
			return
		}
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// RangeLoader is a Store that reads a stretch of a run's trace without
// the records before it, so that a reader of a run's newest events (the
// answer that follows a chain of runtime tool calls) pays for those
// alone, not for the whole trace. Every backend here is one.
type RangeLoader interface {
	// LoadRange returns the records [from, to) of run's trace (fewer when
	// it is shorter), or an error wrapping ErrNotFound when it holds none
	// of them.
	LoadRange(ctx context.Context, runID string, from, to uint64) ([]Record, error)
}

// Range returns the records [from, to) of run's trace: through st's
// LoadRange when it has one, else from LoadPrefix (a wrapper that only
// implements TraceReader).
func Range(ctx context.Context, st TraceReader, runID string, from, to uint64) ([]Record, error) {
	if rl, ok := st.(RangeLoader); ok {
		return rl.LoadRange(ctx, runID, from, to)
	}
	recs, err := st.LoadPrefix(ctx, runID, to)
	if err != nil {
		return nil, err
	}
	if from >= uint64(len(recs)) {
		return nil, fmt.Errorf("%w: run %s has no records from %d", ErrNotFound, runID, from)
	}
	return recs[from:], nil
}

// collect reads a whole scan into a slice.
func collect(seq iter.Seq2[Record, error]) ([]Record, error) {
	var out []Record
	for r, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// yieldRows yields the records of rows (idx, type, body, hash), or
// ErrNotFound when there are none.
func yieldRows(rows *sql.Rows, backend, runID string, yield func(Record, error) bool) {
	found := false
	for rows.Next() {
		var (
			r   Record
			idx int64
		)
		if err := rows.Scan(&idx, &r.Type, &r.Body, &r.Hash); err != nil {
			yield(Record{}, fmt.Errorf("tracestore: %s load %s: %w", backend, runID, err))
			return
		}
		r.Index, found = uint64(idx), true
		if !yield(r, nil) {
			return
		}
	}
	switch err := rows.Err(); {
	case err != nil:
		yield(Record{}, fmt.Errorf("tracestore: %s load %s: %w", backend, runID, err))
	case !found:
		yield(Record{}, fmt.Errorf("%w: run %s", ErrNotFound, runID))
	}
}
