package tracestore

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Memory is a Store that keeps everything in memory: for tests and for
// scripted runs that need no durability.
type Memory struct {
	mu       sync.RWMutex
	runs     map[string][]Record
	programs map[string][]byte
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{runs: map[string][]Record{}, programs: map[string][]byte{}}
}

// Append implements Store.
func (m *Memory) Append(_ context.Context, runID string, records []Record) error {
	if len(records) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next := uint64(len(m.runs[runID]))
	for i, r := range records {
		if r.Index != next+uint64(i) {
			return fmt.Errorf("%w: run %s: record %d has index %d, want %d", ErrConflict, runID, i, r.Index, next+uint64(i))
		}
	}
	for _, r := range records {
		r.Body = slices.Clone(r.Body)
		m.runs[runID] = append(m.runs[runID], r)
	}
	return nil
}

// Load implements Store.
func (m *Memory) Load(_ context.Context, runID string) ([]Record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	recs, ok := m.runs[runID]
	if !ok {
		return nil, fmt.Errorf("%w: run %s", ErrNotFound, runID)
	}
	return slices.Clone(recs), nil
}

// PutProgram implements Store.
func (m *Memory) PutProgram(_ context.Context, hash string, source []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.programs[hash]; !ok {
		m.programs[hash] = slices.Clone(source)
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
	return slices.Clone(src), nil
}

// Close implements Store.
func (m *Memory) Close() error { return nil }
