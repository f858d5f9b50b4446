// Package tracestore keeps runs' traces: append-only logs of encoded
// events. One small interface has several backends behind it, in the manner
// of database/sql; every backend passes the same contract tests.
package tracestore

import (
	"context"
	"errors"
)

// Errors every backend returns, for callers to branch on with errors.Is.
var (
	// ErrConflict: the append did not start at the end of the trace; another
	// writer got there first.
	ErrConflict = errors.New("tracestore: append conflict")
	// ErrNotFound: no such run (or program).
	ErrNotFound = errors.New("tracestore: not found")
)

// Record is one encoded event of a run's trace.
type Record struct {
	Index uint64 // position in the run's trace, from 0
	Type  string
	Body  []byte // the event as canonical JSON
}

// Store is an append-only trace store.
type Store interface {
	// Append adds records to the end of run's trace, atomically: all or
	// none. records[0].Index must equal the trace's current length, and the
	// indexes must be consecutive; otherwise nothing is written and the
	// error wraps ErrConflict.
	Append(ctx context.Context, runID string, records []Record) error
	// Load returns run's whole trace, or an error wrapping ErrNotFound.
	Load(ctx context.Context, runID string) ([]Record, error)
	// PutProgram stores a program's source under its definition hash.
	// Storing the same hash twice is not an error.
	PutProgram(ctx context.Context, hash string, source []byte) error
	// Program returns the source stored under hash.
	Program(ctx context.Context, hash string) ([]byte, error)
	// Close releases the store's resources.
	Close() error
}
