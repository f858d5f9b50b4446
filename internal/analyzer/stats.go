package analyzer

import (
	"errors"
	"fmt"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

// eventFaultInjected is the event type the failure laboratory records; the
// runtime does not define it yet, and receipts already count it.
const eventFaultInjected runtime.EventType = "fault_injected"

// Transition is one hop of a run, as its transitioned event records it.
type Transition struct {
	From     string
	To       string
	Rollback bool
}

// RunStats is what the analyzer reads of one run. FromEvents derives it
// from a run's trace; tests and benchmarks may build it directly (FromPath
// helps), and Validate checks that such a value is consistent.
//
// Analyze reads Path for the path metrics, Transitions for the transition
// metrics and the rollback count, and the counters for the rates; it never
// fails, whatever the fields hold (a negative counter counts as 0).
type RunStats struct {
	RunID   string
	Program runtime.ProgramRef
	Started time.Time      // the run_started event's time; zero if unknown
	Status  runtime.Status // running, completed, failed or cancelled
	Outcome string         // the terminal's outcome, FAILED or CANCELLED; "" while running

	// Path is every state entered, in order: the initial state, then the
	// target of each transition. Rollbacks and loops repeat states.
	Path []string
	// Transitions are the run's hops, in order: Transitions[i] goes from
	// Path[i] to Path[i+1].
	Transitions []Transition

	// Accepted counts answers the run accepted: submission_accepted events
	// and approval_recorded events (a four-eyes approval still short of its
	// approvers was accepted, not refused).
	Accepted int64
	// Rejections counts submission_rejected events: every refused input,
	// protocol rejections included, as the receipt's counts.rejections.
	Rejections int64
	// Attempts counts the rejections that used up an attempt
	// (rejection.counted: schema_violation, capability_denied,
	// guard_denied), as the receipt's counts.attempts.
	Attempts int64
	// Faults counts fault_injected events, as the receipt's counts.faults.
	Faults int64
}

// Rollbacks is the number of the run's transitions that are rollbacks, as
// the receipt's counts.rollbacks.
func (s *RunStats) Rollbacks() int64 {
	var n int64
	for _, t := range s.Transitions {
		if t.Rollback {
			n++
		}
	}
	return n
}

// FromPath returns the stats of a run that entered the states of path in
// order, with a transition between each pair of consecutive states and no
// rollbacks, answers or rejections: a convenience for tests and
// benchmarks. Set Transitions[i].Rollback and the counters as needed.
func FromPath(path ...string) RunStats {
	s := RunStats{Status: runtime.StatusRunning, Path: append([]string(nil), path...)}
	if len(path) > 1 {
		s.Transitions = make([]Transition, len(path)-1)
		for i := range s.Transitions {
			s.Transitions[i] = Transition{From: path[i], To: path[i+1]}
		}
	}
	return s
}

// Validate reports the first inconsistency of s: an empty path, a
// transition that does not link consecutive states of the path, a negative
// counter, or more attempts than rejections. FromEvents never returns
// stats that fail it.
func (s *RunStats) Validate() error {
	if len(s.Path) == 0 {
		return errors.New("analyzer: run stats: empty path (a run enters its initial state)")
	}
	if len(s.Transitions) != len(s.Path)-1 {
		return fmt.Errorf("analyzer: run stats: %d transitions for a path of %d states, want %d", len(s.Transitions), len(s.Path), len(s.Path)-1)
	}
	for i, t := range s.Transitions {
		if t.From != s.Path[i] || t.To != s.Path[i+1] {
			return fmt.Errorf("analyzer: run stats: transition %d goes %s → %s, the path has %s → %s", i, t.From, t.To, s.Path[i], s.Path[i+1])
		}
	}
	for _, c := range []struct {
		name string
		n    int64
	}{{"accepted", s.Accepted}, {"rejections", s.Rejections}, {"attempts", s.Attempts}, {"faults", s.Faults}} {
		if c.n < 0 {
			return fmt.Errorf("analyzer: run stats: negative %s count %d", c.name, c.n)
		}
	}
	if s.Attempts > s.Rejections {
		return fmt.Errorf("analyzer: run stats: %d attempts but only %d rejections", s.Attempts, s.Rejections)
	}
	return nil
}

// FromEvents derives a run's stats from its decoded events, in trace order
// (index 0 first). It reads what a receipt reads (docs/receipt-format.md
// §3): event types, states, transitions, rejection classes and the finish,
// never personal data, so sealed or erased events are fine. Events after
// run_finished (a late answer, refused and recorded) are counted.
//
// It fails on a trace that does not begin with exactly one run_started, on
// a transitioned or run_finished event without its payload, on a
// transition that does not leave the state the run is in, and on an
// unparseable run_started time.
func FromEvents(events []runtime.Event) (RunStats, error) {
	var s RunStats
	if len(events) == 0 {
		return s, errors.New("analyzer: no events")
	}
	for i := range events {
		e := &events[i]
		if i == 0 && e.Type != runtime.EventRunStarted {
			return RunStats{}, fmt.Errorf("analyzer: event 0: the trace must begin with run_started, not %q", e.Type)
		}
		switch e.Type {
		case runtime.EventRunStarted:
			if i != 0 || e.Started == nil {
				return RunStats{}, fmt.Errorf("analyzer: event %d: run_started must come first, once", i)
			}
			if e.State == "" {
				return RunStats{}, errors.New("analyzer: event 0: run_started without a state")
			}
			at, err := time.Parse(time.RFC3339Nano, e.At)
			if err != nil {
				return RunStats{}, fmt.Errorf("analyzer: event 0: field at: %w", err)
			}
			s.RunID, s.Program, s.Started = e.RunID, e.Started.Program, at
			s.Status = runtime.StatusRunning
			s.Path = append(s.Path, e.State)
		case runtime.EventTransitioned:
			t := e.Transition
			if t == nil {
				return RunStats{}, fmt.Errorf("analyzer: event %d: transitioned without a transition", i)
			}
			if at := s.Path[len(s.Path)-1]; t.From != at {
				return RunStats{}, fmt.Errorf("analyzer: event %d: transition from %q, but the run is at %q", i, t.From, at)
			}
			s.Transitions = append(s.Transitions, Transition{From: t.From, To: t.To, Rollback: t.Rollback})
			s.Path = append(s.Path, t.To)
		case runtime.EventSubmissionAccepted, runtime.EventApprovalRecorded:
			s.Accepted++
		case runtime.EventSubmissionRejected:
			s.Rejections++
			if e.Rejection != nil && e.Rejection.Counted {
				s.Attempts++
			}
		case eventFaultInjected:
			s.Faults++
		case runtime.EventRunFinished:
			if e.Finished == nil {
				return RunStats{}, fmt.Errorf("analyzer: event %d: run_finished without a finish", i)
			}
			s.Status, s.Outcome = e.Finished.Status, e.Finished.Outcome
		}
	}
	return s, nil
}
