// Package tracestore keeps runs' traces: append-only logs of encoded
// events, an index of runs, the programs runs are pinned to, and the
// per-subject keys that protect personal data. One small interface has
// several backends behind it, in the manner of database/sql; every backend
// passes the same contract tests.
//
// The store is deliberately ignorant of what records mean: encoding,
// hashing and encryption happen in the runtime's shell before Append, and
// verification reads what Load returns.
package tracestore

import (
	"context"
	"errors"
	"time"
)

// Errors every backend returns, for callers to branch on with errors.Is.
var (
	// ErrConflict: the append did not start at the end of the trace; another
	// writer got there first.
	ErrConflict = errors.New("tracestore: append conflict")
	// ErrNotFound: no such run, program, key or baseline.
	ErrNotFound = errors.New("tracestore: not found")
	// ErrBadCursor: a ListRuns cursor this store did not hand out.
	ErrBadCursor = errors.New("tracestore: malformed cursor")
)

// Record is one encoded event of a run's trace.
type Record struct {
	Index uint64 // position in the run's trace, from 0
	Type  string
	Body  []byte // the event as canonical JSON
	Hash  []byte // the event's chain hash (see docs/trace-format.md)
}

// RunInfo is a run's row in the index: what listing and filtering read, and
// what the next append needs (the head of the chain and the Merkle tree
// state), so that appending never rereads the trace.
//
// Each append replaces the row, except Principal and Lab: they describe how
// the run started, so the run's first append sets them and later appends'
// values are ignored. A later writer (another principal submitting a step)
// thus can neither take a run over nor hide it from its owner's listing.
type RunInfo struct {
	RunID          string
	Program        string
	DefinitionHash string
	Status         string
	Outcome        string
	Principal      string // who started the run; "" for none
	Lab            bool   // started as a fault-laboratory run
	StartedAt      time.Time
	UpdatedAt      time.Time
	Events         uint64 // the trace's length after the append
	Head           []byte // hash of the last event
	Tree           []byte // the Merkle tree's compact state, opaque to the store
}

// ListFilter selects runs. Zero fields do not filter: Principal "" lists
// every principal's runs, not only those started without one.
type ListFilter struct {
	Program        string
	DefinitionHash string
	Status         string
	Outcome        string
	Principal      string
	Since, Until   time.Time // on StartedAt: Since <= t < Until
	Cursor         string    // from the previous page
	Limit          int       // default 100, at most 1000
}

// Store is an append-only trace store.
type Store interface {
	// Append adds records to the end of run's trace and upserts the run's
	// index row (keeping a present row's Principal and Lab), atomically:
	// all or none. records[0].Index must equal the
	// trace's current length and the indexes must be consecutive; otherwise
	// nothing is written and the error wraps ErrConflict. info.Events must
	// equal the new length.
	Append(ctx context.Context, runID string, records []Record, info RunInfo) error
	// Load returns run's whole trace, or an error wrapping ErrNotFound.
	Load(ctx context.Context, runID string) ([]Record, error)
	// Run returns run's index row without reading its trace.
	Run(ctx context.Context, runID string) (RunInfo, error)
	// ListRuns returns a page of runs, newest first (StartedAt, then RunID
	// descending), and the cursor of the next page ("" when none).
	ListRuns(ctx context.Context, f ListFilter) ([]RunInfo, string, error)

	// PutProgram stores a program's source under its definition hash.
	// Storing the same hash twice is not an error.
	PutProgram(ctx context.Context, hash string, source []byte) error
	// Program returns the source stored under hash.
	Program(ctx context.Context, hash string) ([]byte, error)

	// PutKey stores a subject key under its keyed subject id, unless one is
	// there: it returns the key that is stored, so that concurrent writers
	// agree on one.
	PutKey(ctx context.Context, subject string, key []byte) ([]byte, error)
	// Key returns the key stored for subject, or an error wrapping
	// ErrNotFound (never stored, or deleted).
	Key(ctx context.Context, subject string) ([]byte, error)
	// DeleteKey destroys a subject's key (crypto-shredding). Deleting an
	// absent key is not an error.
	DeleteKey(ctx context.Context, subject string) error

	// PutBaseline stores a program's drift baseline (an analyzer baseline,
	// opaque to the store) under the program's name and a definition hash,
	// replacing the one saved before under the same pair. It also makes it
	// the program's latest baseline.
	PutBaseline(ctx context.Context, program, definitionHash string, data []byte) error
	// Baseline returns the baseline saved under program and
	// definitionHash; with definitionHash "", the program's latest one,
	// whatever its definition. It returns an error wrapping ErrNotFound
	// when there is none.
	Baseline(ctx context.Context, program, definitionHash string) ([]byte, error)

	// Close releases the store's resources.
	Close() error
}
