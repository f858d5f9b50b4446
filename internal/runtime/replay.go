package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// Divergence is the first place where a replay's events differ from the
// recorded ones.
type Divergence struct {
	Index    uint64 `json:"index"`    // the event's index in the trace
	Field    string `json:"field"`    // the first top-level member that differs
	Recorded string `json:"recorded"` // canonical JSON of that member, as recorded
	Replayed string `json:"replayed"` // and as the core produced it now
}

// Replay refolds a run's recorded inputs through the core under p and
// compares every event the core produces with the recorded one. The events
// must be opened (personal data decrypted). Under the definition the run
// is pinned to, any divergence means the trace and the runtime disagree;
// under another definition (a new program version), it shows where the new
// version would have acted differently. Nil means identical.
//
// The shell's additions (prev, the subjects' keyed ids) are left out of
// the comparison, and under another definition so is the program's
// identity in run_started, with any definition hash an input claimed.
func Replay(p *program.Program, recorded []Event) (*Divergence, error) {
	if len(recorded) == 0 || recorded[0].Started == nil {
		return nil, fmt.Errorf("replay: the trace does not begin with run_started")
	}
	pinned := recorded[0].Started.Program.DefinitionHash == p.Hash
	var run *Run
	for i := 0; i < len(recorded); {
		in, err := inputAt(recorded, i, pinned)
		if err != nil {
			return nil, err
		}
		res, _ := Apply(p, run, in)
		// The recorded input's events end where the next input begins.
		j := i + 1
		for j < len(recorded) && !beginsInput(recorded[j].Type) {
			j++
		}
		batch := recorded[i:j]
		for k := 0; k < max(len(batch), len(res.Events)); k++ {
			switch {
			case k >= len(res.Events):
				return diverge(batch[k].Index, "(event)", string(mustCanonical(batch[k])), "none"), nil
			case k >= len(batch):
				return diverge(res.Events[k].Index, "(event)", "none", string(mustCanonical(res.Events[k]))), nil
			}
			if d := compareEvents(batch[k], res.Events[k], pinned); d != nil {
				return d, nil
			}
		}
		if res.Run == nil {
			return nil, fmt.Errorf("replay: the run does not start under this program")
		}
		run, i = res.Run, j
	}
	return nil, nil
}

// beginsInput reports whether an event of type t is the first of a
// recorded input: a submission, decision, cancel or tick (input_received),
// or a recorded fault or erasure, which begins its own events.
func beginsInput(t EventType) bool {
	return t == EventInputReceived || t == EventFaultInjected || t == EventSubjectErased
}

// inputAt rebuilds the input whose events begin at recorded[i].
func inputAt(recorded []Event, i int, pinned bool) (Input, error) {
	e := recorded[i]
	at, err := time.Parse(time.RFC3339Nano, e.At)
	if err != nil {
		return nil, fmt.Errorf("replay: event %d: time %q: %w", e.Index, e.At, err)
	}
	switch e.Type {
	case EventRunStarted:
		if i != 0 {
			return nil, fmt.Errorf("replay: event %d: a second run_started", e.Index)
		}
		return Start{RunID: e.RunID, Principal: e.Started.Principal, Lab: e.Started.Lab, Input: e.Started.Input, At: at}, nil
	case EventFaultInjected:
		if e.Fault == nil {
			return nil, fmt.Errorf("replay: event %d: fault_injected without a fault", e.Index)
		}
		return Fault{Record: *e.Fault, At: at}, nil
	case EventSubjectErased:
		if e.Erasure == nil {
			return nil, fmt.Errorf("replay: event %d: subject_erased without an erasure", e.Index)
		}
		return Erase{Record: *e.Erasure, At: at}, nil
	case EventInputReceived:
	default:
		return nil, fmt.Errorf("replay: event %d (%s) begins no recorded input", e.Index, e.Type)
	}
	r := e.Input
	hash := r.DefinitionHash
	if !pinned {
		hash = "" // a claim on the old definition says nothing about the new
	}
	switch r.Kind {
	case "cancel":
		return Cancel{Principal: r.Principal, Reason: r.Reason, At: at}, nil
	case "tick":
		return Tick{At: at}, nil
	case "submit", "decide":
		output := submittedOutput(recorded, i)
		if r.Kind == "decide" {
			return Decide{Seq: r.Seq, State: r.State, DefinitionHash: hash, Role: r.Role, Principal: r.Principal, Decision: output, Size: r.Size, At: at}, nil
		}
		return Submit{Seq: r.Seq, State: r.State, Tool: r.Tool, DefinitionHash: hash, Actor: r.Actor, Principal: r.Principal, Output: output, Size: r.Size, At: at}, nil
	}
	return nil, fmt.Errorf("replay: event %d: unknown input kind %q", e.Index, r.Kind)
}

// submittedOutput finds the output of the submission recorded after the
// input at i: the one submission_accepted, approval_recorded or
// submission_rejected it caused.
func submittedOutput(recorded []Event, i int) any {
	for _, e := range recorded[i+1:] {
		switch e.Type {
		case EventSubmissionAccepted:
			return e.Submission.Output
		case EventApprovalRecorded:
			return e.Approval.Output
		case EventSubmissionRejected:
			return e.Rejection.Output
		case EventInputReceived, EventRunStarted, EventFaultInjected, EventSubjectErased:
			return nil
		}
	}
	return nil
}

func compareEvents(recorded, replayed Event, pinned bool) *Divergence {
	rec, rep := normalize(recorded, pinned), normalize(replayed, pinned)
	if bytes.Equal(rec, rep) {
		return nil
	}
	var rm, pm map[string]json.RawMessage
	_ = json.Unmarshal(rec, &rm)
	_ = json.Unmarshal(rep, &pm)
	keys := map[string]bool{}
	for k := range rm {
		keys[k] = true
	}
	for k := range pm {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !bytes.Equal(rm[k], pm[k]) {
			return diverge(recorded.Index, k, orNone(rm[k]), orNone(pm[k]))
		}
	}
	return diverge(recorded.Index, "(event)", string(rec), string(rep))
}

// normalize is the canonical JSON of e without what the shell adds, and,
// under another definition, without the program's identity.
func normalize(e Event, pinned bool) []byte {
	e.Prev = ""
	if e.Started != nil {
		st := *e.Started
		st.Subjects = nil
		if !pinned {
			st.Program = ProgramRef{}
		}
		e.Started = &st
	}
	if e.Input != nil && !pinned {
		in := *e.Input
		in.DefinitionHash = ""
		e.Input = &in
	}
	return mustCanonical(e)
}

func mustCanonical(v any) []byte {
	c, err := jsonvalue.Canonical(v)
	if err != nil {
		return []byte(fmt.Sprintf("%q", err.Error()))
	}
	return c
}

func orNone(b json.RawMessage) string {
	if b == nil {
		return "none"
	}
	return string(b)
}

func diverge(index uint64, field, recorded, replayed string) *Divergence {
	return &Divergence{Index: index, Field: field, Recorded: recorded, Replayed: replayed}
}
