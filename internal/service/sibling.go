package service

import (
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
)

// WithTools returns a service that shares this one's store, sealing keys,
// clock, ids and registered programs, but runs the tool states through reg
// and waits stepWait (default: this one's) for them. The failure laboratory
// uses it to make tools fail through executors of its own, on runs of its
// own, without touching the operator's registry.
//
// Each service keeps its own run cache, so a run started through one is
// driven through that one only. Close the returned service when done; it
// does not close reg. A program one of whose execution: runtime tools reg
// lacks is left out, as AddProgram would refuse it: the returned service
// starts no run of it.
func (s *Service) WithTools(reg *executor.Registry, stepWait time.Duration) *Service {
	if stepWait <= 0 {
		stepWait = s.calls.stepWait
	}
	t := shell(s.store, s.sealer, s.clock, s.newID, s.log, s.maxRuns)
	s.mu.Lock()
	for hash, p := range s.programs {
		if checkExecution(p, reg) != nil {
			continue
		}
		t.programs[hash], t.sources[hash] = p, s.sources[hash]
		t.executors[hash] = executedStates(p, reg)
	}
	for name, p := range s.latest {
		if t.programs[p.Hash] != nil {
			t.latest[name] = p
		}
	}
	s.mu.Unlock()
	// A lease name of its own: its calls are its own, not this service's.
	t.calls.init(Options{Tools: reg, StepWait: stepWait, Sleep: s.calls.sleep, Instance: s.calls.instance + "/tools", LeaseTTL: s.calls.leaseTTL})
	return t
}
