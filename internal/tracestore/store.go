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
	// ErrKeyEpoch: a key write assumed a key epoch that is no longer the
	// store's.
	ErrKeyEpoch = errors.New("tracestore: the key epoch has changed")
	// ErrLeaseLost: a conditional append (RunInfo.IfLease) found the run's
	// open call gone or its lease another holder's; nothing was written.
	ErrLeaseLost = errors.New("tracestore: the lease on the run's open call is no longer held")
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
// Each append replaces the row, except Principal, Lab and Subjects: they
// describe how the run started, so the run's first append sets them and
// later appends' values are ignored. A later writer (another principal submitting a step)
// thus can neither take a run over nor hide it from its owner's listing.
type RunInfo struct {
	RunID          string
	Program        string
	DefinitionHash string
	Status         string
	Outcome        string
	Principal      string // who started the run; "" for none
	Lab            bool   // started as a fault-laboratory run
	// Subjects are the keyed ids of the run's data subjects (whose keys
	// seal its personal data), for erasure to find the run by.
	Subjects  []string
	StartedAt time.Time
	UpdatedAt time.Time
	// AwaitingRole is, while the run's open task is an approval, the role
	// whose decision it waits for ("" otherwise); AwaitingDeadline is that
	// task's deadline (zero: none). ListAwaiting reads them.
	AwaitingRole     string
	AwaitingDeadline time.Time
	// Deadline is the open task's deadline, whatever its kind (zero: no
	// open task, or one without a timeout). ListDue reads it.
	Deadline time.Time
	// Call is the id of the runtime tool call the running run waits on
	// ("" when none: no call open, or the run is not running); LeaseHolder
	// and LeaseExpires are the lease of the server instance that executes
	// it (calls.go). An append that names no holder keeps the lease of
	// the same open call; one that closes the call ends the lease.
	// ListOpenCalls and TakeLease read and move them.
	Call         string
	LeaseHolder  string
	LeaseExpires time.Time
	// IfLease, when set, makes the append conditional: it writes nothing
	// and returns an error wrapping ErrLeaseLost unless, in the same
	// transaction, the run's row holds the open call IfLease.Call leased
	// to IfLease.Holder (whether or not the lease has expired: only
	// another holder's takeover loses it). It is a condition, not a
	// column: reads leave it nil.
	IfLease *Lease
	Events  uint64 // the trace's length after the append
	Head    []byte // hash of the last event
	Tree    []byte // the Merkle tree's compact state, opaque to the store
}

// Lease names a holder's lease on a run's open runtime tool call: the
// condition of an append that records the call's outcome (RunInfo.IfLease).
type Lease struct {
	Call   string
	Holder string
}

// WrappedKey is a subject key as stores hold it: encrypted under the
// key-encryption key of Epoch, which lives outside the store (see
// internal/subjectkeys), never in clear.
type WrappedKey struct {
	Subject string // the keyed subject id
	Wrapped []byte
	Epoch   uint64
}

// KeyState names the key-encryption key a store's keys are wrapped under.
type KeyState struct {
	// Store is random, made with the store: KEKs are kept per store,
	// since one data directory may serve several.
	Store string
	// Epoch is 0 until the first rotation (keys written by earlier
	// versions, unwrapped, are at epoch 0).
	Epoch uint64
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
	// ExcludeLab leaves out fault-laboratory runs (RunInfo.Lab), so that
	// fault experiments do not count as real runs.
	ExcludeLab bool
	Cursor     string // from the previous page
	Limit      int    // default 100, at most 1000
}

// Store is an append-only trace store: every role below, over one
// database. Consumers take the narrowest role they need.
type Store interface {
	Traces
	Programs
	Keys
	Baselines
	// Close releases the store's resources.
	Close() error
}

// Traces are runs' append-only traces and their index rows.
type Traces interface {
	TraceReader
	// Append adds records to the end of run's trace and upserts the run's
	// index row (keeping a present row's Principal and Lab), atomically:
	// all or none. records[0].Index must equal the
	// trace's current length and the indexes must be consecutive; otherwise
	// nothing is written and the error wraps ErrConflict. info.Events must
	// equal the new length. With info.IfLease set, the append is also
	// refused, with an error wrapping ErrLeaseLost, unless that lease is
	// still held.
	Append(ctx context.Context, runID string, records []Record, info RunInfo) error
	// TakeLease makes holder the holder of the lease on run's open call
	// callID until until, if the call is still open and holder holds the
	// lease already (a renewal) or it expired at or before now (a
	// takeover). It reports whether it did: of several instances taking
	// one expired lease, exactly one succeeds.
	TakeLease(ctx context.Context, runID, callID, holder string, now, until time.Time) (bool, error)
}

// TraceReader reads traces and the run index: what readers that never
// write (analysis, the views) need.
type TraceReader interface {
	// Load returns run's whole trace, or an error wrapping ErrNotFound.
	Load(ctx context.Context, runID string) ([]Record, error)
	// LoadPrefix returns the first n records of run's trace (all of them
	// when it is shorter), or an error wrapping ErrNotFound when there are
	// none. The trace is append-only, so the index row read first and then
	// LoadPrefix(row.Events) is the trace the row describes, whatever was
	// appended in between.
	LoadPrefix(ctx context.Context, runID string, n uint64) ([]Record, error)
	// Run returns run's index row without reading its trace.
	Run(ctx context.Context, runID string) (RunInfo, error)
	// ListRuns returns a page of runs, newest first (StartedAt, then RunID
	// descending), and the cursor of the next page ("" when none).
	ListRuns(ctx context.Context, f ListFilter) ([]RunInfo, string, error)
	// ListAwaiting returns a page of the runs whose open task is an
	// approval (AwaitingRole set), soonest deadline first, those without
	// one last, then by RunID; and the cursor of the next page.
	ListAwaiting(ctx context.Context, f AwaitingFilter) ([]RunInfo, string, error)
	// ListDue returns a page of the runs whose open task's deadline is at
	// or before f.By (RunInfo.Deadline), soonest first, then by RunID; and
	// the cursor of the next page.
	ListDue(ctx context.Context, f DueFilter) ([]RunInfo, string, error)
	// ListOpenCalls returns a page of the runs with an open runtime tool
	// call (RunInfo.Call) whose lease expired at or before f.ExpiredBy
	// (unheld calls first), soonest first, then by RunID; and the cursor
	// of the next page.
	ListOpenCalls(ctx context.Context, f OpenCallFilter) ([]RunInfo, string, error)
}

// Programs are the program sources runs are pinned to, by definition hash.
type Programs interface {
	// PutProgram stores a program's source under its definition hash.
	// Storing the same hash twice is not an error.
	PutProgram(ctx context.Context, hash string, source []byte) error
	// Program returns the source stored under hash.
	Program(ctx context.Context, hash string) ([]byte, error)
	// ProgramHashes lists the hashes of every stored program, sorted.
	ProgramHashes(ctx context.Context) ([]string, error)
}

// Keys are the wrapped per-subject keys that seal personal data, and the
// index of runs by data subject that erasure reads.
type Keys interface {
	// PutKey stores a wrapped subject key, unless the subject has one: it
	// returns the key that is stored, so that concurrent writers agree on
	// one. k.Epoch must be the store's key epoch (KeyEpoch); otherwise
	// nothing is written and the error wraps ErrKeyEpoch: the keys were
	// re-wrapped meanwhile, and the caller wraps again under the new
	// key-encryption key.
	PutKey(ctx context.Context, k WrappedKey) (WrappedKey, error)
	// Key returns the subject's wrapped key, or an error wrapping
	// ErrNotFound (never stored, or destroyed).
	Key(ctx context.Context, subject string) (WrappedKey, error)
	// KeyEpoch is the store's identity and the epoch of the
	// key-encryption key every stored key is wrapped under.
	KeyEpoch(ctx context.Context) (KeyState, error)
	// RotateKeys is crypto-shredding's one transaction: if the key epoch is
	// from, it deletes the keys of the subjects in erase, replaces every
	// other key by rewrap's result under epoch to, and sets the epoch to
	// to. It returns the subjects whose keys it deleted, sorted. If the
	// epoch is not from, nothing changes and the error wraps ErrKeyEpoch.
	// An error from rewrap aborts the rotation.
	RotateKeys(ctx context.Context, from, to uint64, erase []string, rewrap func(WrappedKey) ([]byte, error)) ([]string, error)
	// RunsOfSubject lists, sorted, the runs whose RunInfo.Subjects named
	// subject.
	RunsOfSubject(ctx context.Context, subject string) ([]string, error)
}

// Baselines are the analyzer's drift baselines.
type Baselines interface {
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
}
