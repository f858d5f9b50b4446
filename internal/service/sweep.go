package service

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The deadline sweeper: a task's timeout is recorded even when nobody
// calls (a KYC review nobody answers still expires). The run index keeps
// every open task's deadline (tracestore.RunInfo.Deadline), so a sweep
// asks the store for the runs due by the service's clock and ticks only
// those: it neither reads nor caches any run that is not due.

// sweepPage is how many due runs a sweep asks the store for at a time.
const sweepPage = 500

// sweeper is what sweeps remember between them: the runs whose row names a
// deadline earlier than their open task's. A store migrated to schema step
// 7 gives every run running then its start as its due time, a bound never
// later than the deadline (tracestore's dueStep); once a sweep has looked
// at such a run and found it not due, later sweeps pass over it until its
// real deadline, or for good if its task has none, and only while its row
// stays as it was: the run's next append writes the real deadline.
type sweeper struct {
	mu    sync.Mutex // one sweep at a time
	early map[string]earlyRow
}

// earlyRow is a run's row's due time (row) and the deadline its open task
// really has (until; zero: none).
type earlyRow struct{ row, until time.Time }

// passes reports whether a sweep at now may pass over the run of info.
func (e earlyRow) passes(info tracestore.RunInfo, now time.Time) bool {
	return info.Deadline.Equal(e.row) && (e.until.IsZero() || now.Before(e.until))
}

// Sweep records the timeout of every run whose open task's deadline has
// passed by the service's clock, and returns how many runs it timed out.
// A run another caller moved on in the meantime is ticked to no effect. A
// failure to tick one run is logged and the sweep goes on; a failure to
// list is returned.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	s.sweep.mu.Lock()
	defer s.sweep.mu.Unlock()
	now := s.clock()
	f := tracestore.DueFilter{By: now, Limit: sweepPage}
	swept, listed := 0, map[string]bool{}
	for {
		due, next, err := s.store.ListDue(ctx, f)
		if err != nil {
			return swept, err
		}
		for _, info := range due {
			listed[info.RunID] = true
			if e, ok := s.sweep.early[info.RunID]; ok && e.passes(info, now) {
				continue
			}
			a, err := s.Tick(ctx, info.RunID)
			if err != nil {
				if ctx.Err() != nil {
					return swept, ctx.Err()
				}
				s.log.Warn("deadline sweep: tick", zap.String("run_id", info.RunID), zap.Error(err))
				continue
			}
			if len(a.Transitions) > 0 || a.Status != runtime.StatusRunning {
				swept++
				continue
			}
			// Not due: the row is early (a run from before the due
			// column), or the run moved on since the row was read.
			if r, _, err := s.Get(ctx, info.RunID); err == nil && r.Status == runtime.StatusRunning {
				if s.sweep.early == nil {
					s.sweep.early = map[string]earlyRow{}
				}
				s.sweep.early[info.RunID] = earlyRow{row: info.Deadline, until: r.Deadline}
			}
		}
		if next == "" {
			break
		}
		f.Cursor = next
	}
	// A run no longer listed has a new row, or none due: forget it.
	for id := range s.sweep.early {
		if !listed[id] {
			delete(s.sweep.early, id)
		}
	}
	return swept, nil
}

// SweepEvery sweeps on every tick until ctx ends. The ticks only say when
// to look; what is due is decided by the service's clock.
func (s *Service) SweepEvery(ctx context.Context, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("deadline sweep", zap.Error(err))
		}
	}
}
