package service

import (
	"context"
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

// Sweep records the timeout of every run whose open task's deadline has
// passed by the service's clock, and returns how many runs it timed out.
// A run another caller moved on in the meantime is ticked to no effect. A
// failure to tick one run is logged and the sweep goes on; a failure to
// list is returned.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	f := tracestore.DueFilter{By: s.clock(), Limit: sweepPage}
	swept := 0
	for {
		due, next, err := s.store.ListDue(ctx, f)
		if err != nil {
			return swept, err
		}
		for _, info := range due {
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
			}
		}
		if next == "" {
			return swept, nil
		}
		f.Cursor = next
	}
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
