package tracestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"iter"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
)

// Memory is a Store that keeps everything in memory: for tests and for
// scripted runs that need no durability.
type Memory struct {
	mu       sync.RWMutex
	runs     map[string][]Record
	info     map[string]RunInfo
	programs map[string][]byte
	keys     map[string]WrappedKey
	keyState KeyState
	subjects map[string][]string // runs by subject
	// baselines by program and definition hash; saved orders them, the
	// latest highest.
	baselines map[[2]string]baseline
	saved     uint64
}

type baseline struct {
	data  []byte
	saved uint64
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		panic("tracestore: no randomness: " + err.Error())
	}
	return &Memory{keyState: KeyState{Store: hex.EncodeToString(id[:])}, runs: map[string][]Record{}, info: map[string]RunInfo{}, programs: map[string][]byte{}, keys: map[string]WrappedKey{}, subjects: map[string][]string{}, baselines: map[[2]string]baseline{}}
}

// Append implements Store.
func (m *Memory) Append(_ context.Context, runID string, records []Record, info RunInfo) error {
	if len(records) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := uint64(len(m.runs[runID]))
	if err := checkAppend(runID, next, records, info); err != nil {
		return err
	}
	old, exists := m.info[runID]
	if err := checkLease(runID, old, exists, info); err != nil {
		return err
	}
	for _, r := range records {
		r.Body, r.Hash = bytes.Clone(r.Body), bytes.Clone(r.Hash)
		m.runs[runID] = append(m.runs[runID], r)
	}
	info.RunID, info.IfLease = runID, nil
	holder, expires := leaseOf(old, exists, info)
	info.LeaseHolder, info.LeaseExpires = holder, leaseTime(expires)
	if exists {
		info.Principal, info.Lab, info.Subjects = old.Principal, old.Lab, old.Subjects
	} else {
		info.Subjects = slices.Clone(info.Subjects)
		for _, sub := range info.Subjects {
			m.subjects[sub] = append(m.subjects[sub], runID)
		}
	}
	info.Head, info.Tree = bytes.Clone(info.Head), bytes.Clone(info.Tree)
	m.info[runID] = info
	return nil
}

// checkAppend is the append precondition every backend enforces.
func checkAppend(runID string, next uint64, records []Record, info RunInfo) error {
	for i, r := range records {
		if r.Index != next+uint64(i) {
			return fmt.Errorf("%w: run %s: record %d has index %d, want %d", ErrConflict, runID, i, r.Index, next+uint64(i))
		}
	}
	if want := next + uint64(len(records)); info.Events != want {
		return fmt.Errorf("tracestore: run %s: index row says %d events, the trace will hold %d", runID, info.Events, want)
	}
	return nil
}

// Load implements Store.
func (m *Memory) Load(ctx context.Context, runID string) ([]Record, error) {
	return m.LoadPrefix(ctx, runID, math.MaxUint64)
}

// LoadPrefix implements Store.
func (m *Memory) LoadPrefix(ctx context.Context, runID string, n uint64) ([]Record, error) {
	return collect(m.Scan(ctx, runID, n))
}

// LoadRange implements RangeLoader.
func (m *Memory) LoadRange(_ context.Context, runID string, from, to uint64) ([]Record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	recs := m.runs[runID]
	to = min(to, uint64(len(recs)))
	if from >= to {
		return nil, fmt.Errorf("%w: run %s has no records in [%d, %d)", ErrNotFound, runID, from, to)
	}
	return slices.Clone(recs[from:to]), nil
}

// Scan implements Scanner. It yields from the records held when it
// started, outside the lock: records are never changed once appended.
func (m *Memory) Scan(_ context.Context, runID string, n uint64) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		m.mu.RLock()
		recs, ok := m.runs[runID]
		recs = recs[:min(n, uint64(len(recs)))]
		m.mu.RUnlock()
		if !ok || len(recs) == 0 {
			yield(Record{}, fmt.Errorf("%w: run %s", ErrNotFound, runID))
			return
		}
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// Run implements Store.
func (m *Memory) Run(_ context.Context, runID string) (RunInfo, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	info, ok := m.info[runID]
	if !ok {
		return RunInfo{}, fmt.Errorf("%w: run %s", ErrNotFound, runID)
	}
	return info, nil
}

// ListRuns implements Store.
func (m *Memory) ListRuns(_ context.Context, f ListFilter) ([]RunInfo, string, error) {
	limit, after, err := pageOf(f)
	if err != nil {
		return nil, "", err
	}
	m.mu.RLock()
	var all []RunInfo
	for _, info := range m.info {
		if matches(info, f) && (after == nil || before(info, *after)) {
			all = append(all, info)
		}
	}
	m.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return before(all[j], all[i]) })
	if len(all) <= limit {
		return all, "", nil
	}
	return all[:limit], cursorOf(all[limit-1]), nil
}

func matches(info RunInfo, f ListFilter) bool {
	return (f.Program == "" || info.Program == f.Program) &&
		(f.DefinitionHash == "" || info.DefinitionHash == f.DefinitionHash) &&
		(f.Status == "" || info.Status == f.Status) &&
		(f.Outcome == "" || info.Outcome == f.Outcome) &&
		(f.Principal == "" || info.Principal == f.Principal) &&
		(f.Since.IsZero() || !info.StartedAt.Before(f.Since)) &&
		(f.Until.IsZero() || info.StartedAt.Before(f.Until)) &&
		(!f.ExcludeLab || !info.Lab)
}

// before orders runs for listing: a comes after b in the newest-first
// order when it started earlier (ties broken by run id).
func before(a, b RunInfo) bool {
	if !a.StartedAt.Equal(b.StartedAt) {
		return a.StartedAt.Before(b.StartedAt)
	}
	return a.RunID < b.RunID
}

// A cursor is the position of the last run of a page: its start time in
// Unix nanoseconds and its id.
// The zero time has no Unix nanoseconds of its own; nanosOf gives it the
// smallest, which sorts it last in newest-first order, as the stores do.
func cursorOf(info RunInfo) string {
	ns, _ := nanosOf(info.StartedAt)
	return strconv.FormatInt(ns, 10) + ":" + info.RunID
}

func pageOf(f ListFilter) (limit int, after *RunInfo, err error) {
	limit = f.Limit
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	if f.Cursor == "" {
		return limit, nil, nil
	}
	ns, id, ok := cutCursor(f.Cursor)
	if !ok {
		return 0, nil, fmt.Errorf("%w %q", ErrBadCursor, f.Cursor)
	}
	return limit, &RunInfo{RunID: id, StartedAt: timeOf(ns)}, nil
}

// PutProgram implements Store.
func (m *Memory) PutProgram(_ context.Context, hash string, source []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.programs[hash]; !ok {
		m.programs[hash] = bytes.Clone(source)
	}
	return nil
}

// Program implements Store.
func (m *Memory) Program(_ context.Context, hash string) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	src, ok := m.programs[hash]
	if !ok {
		return nil, fmt.Errorf("%w: program %s", ErrNotFound, hash)
	}
	return bytes.Clone(src), nil
}

// ProgramHashes implements Store.
func (m *Memory) ProgramHashes(context.Context) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.programs))
	for h := range m.programs {
		out = append(out, h)
	}
	sort.Strings(out)
	return out, nil
}

// PutKey implements Store.
func (m *Memory) PutKey(_ context.Context, k WrappedKey) (WrappedKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k.Epoch != m.keyState.Epoch {
		return WrappedKey{}, fmt.Errorf("%w: key of subject %s: epoch %d, the store's is %d", ErrKeyEpoch, k.Subject, k.Epoch, m.keyState.Epoch)
	}
	if old, ok := m.keys[k.Subject]; ok {
		return cloneKey(old), nil
	}
	m.keys[k.Subject] = cloneKey(k)
	return cloneKey(k), nil
}

func cloneKey(k WrappedKey) WrappedKey {
	k.Wrapped = bytes.Clone(k.Wrapped)
	return k
}

// Key implements Store.
func (m *Memory) Key(_ context.Context, subject string) (WrappedKey, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	k, ok := m.keys[subject]
	if !ok {
		return WrappedKey{}, fmt.Errorf("%w: key of subject %s", ErrNotFound, subject)
	}
	return cloneKey(k), nil
}

// KeyEpoch implements Store.
func (m *Memory) KeyEpoch(context.Context) (KeyState, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.keyState, nil
}

// RotateKeys implements Store. It builds the new key set aside and swaps it
// in, so that a failing rewrap changes nothing.
func (m *Memory) RotateKeys(_ context.Context, from, to uint64, erase []string, rewrap func(WrappedKey) ([]byte, error)) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keyState.Epoch != from {
		return nil, fmt.Errorf("%w: rotation from epoch %d, the store's is %d", ErrKeyEpoch, from, m.keyState.Epoch)
	}
	gone := map[string]bool{}
	for _, sub := range erase {
		gone[sub] = true
	}
	var deleted []string
	next := make(map[string]WrappedKey, len(m.keys))
	for sub, k := range m.keys {
		if gone[sub] {
			deleted = append(deleted, sub)
			continue
		}
		w, err := rewrap(cloneKey(k))
		if err != nil {
			return nil, err
		}
		next[sub] = WrappedKey{Subject: sub, Wrapped: bytes.Clone(w), Epoch: to}
	}
	m.keys, m.keyState.Epoch = next, to
	sort.Strings(deleted)
	return deleted, nil
}

// RunsOfSubject implements Store.
func (m *Memory) RunsOfSubject(_ context.Context, subject string) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := slices.Clone(m.subjects[subject])
	sort.Strings(out)
	return out, nil
}

// PutBaseline implements Store.
func (m *Memory) PutBaseline(_ context.Context, program, definitionHash string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved++
	m.baselines[[2]string{program, definitionHash}] = baseline{data: bytes.Clone(data), saved: m.saved}
	return nil
}

// Baseline implements Store.
func (m *Memory) Baseline(_ context.Context, program, definitionHash string) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var (
		found bool
		b     baseline
	)
	if definitionHash != "" {
		b, found = m.baselines[[2]string{program, definitionHash}]
	} else {
		for k, v := range m.baselines {
			if k[0] == program && v.saved > b.saved {
				b, found = v, true
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: baseline of program %s %s", ErrNotFound, program, definitionHash)
	}
	return bytes.Clone(b.data), nil
}

// Close implements Store.
func (m *Memory) Close() error { return nil }
