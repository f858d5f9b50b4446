package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
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
	rep, err := ReplayReport(p, recorded)
	return rep.Divergence, err
}

// ReplayResult is what a replay found.
type ReplayResult struct {
	// Divergence is the first difference; nil when the trace and the
	// runtime agree.
	Divergence *Divergence `json:"divergence,omitempty"`
	// Transitions counts the transitions re-derived: by re-applying their
	// input, or, for an input whose values were erased, by re-evaluating
	// the guards on the recorded data.
	Transitions int `json:"transitions"`
	// Erased lists the events (by index) that could not be recomputed
	// because values they hold were erased: their input's events were
	// checked by the guards instead of re-applied.
	Erased []uint64 `json:"erased,omitempty"`
}

// ReplayReport is Replay, with what it re-derived. An input whose events
// hold erased values (the erased marker, after crypto-shredding) cannot be
// re-applied as it was: its validation read data that no longer exists.
// Such an input is re-applied anyway, and where the events differ only
// where erased values stand, it counts as identical; otherwise its events
// are checked as verify --program checks a trace (every guard result and
// transition, from the recorded data: guards never read personal data),
// reported under Erased, and folded as recorded.
func ReplayReport(p *program.Program, recorded []Event) (ReplayResult, error) {
	var out ReplayResult
	if len(recorded) == 0 || recorded[0].Started == nil {
		return out, fmt.Errorf("replay: the trace does not begin with run_started")
	}
	pinned := recorded[0].Started.Program.DefinitionHash == p.Hash
	var run *Run
	for i := 0; i < len(recorded); {
		in, err := inputAt(recorded, i, pinned)
		if err != nil {
			return out, err
		}
		res := safeApply(p, run, in)
		// The recorded input's events end where the next input begins.
		j := i + 1
		for j < len(recorded) && !beginsInput(recorded[j].Type) {
			j++
		}
		batch := recorded[i:j]
		d, early := compareBatch(p, batch, res.Events, pinned)
		switch {
		case d == nil && early:
			// Recorded before digests: the run is the fold of what was
			// recorded, in which such rejections count toward no throttle.
			if run, err = refold(p, run, batch); err != nil {
				return out, err
			}
		case d == nil:
			run = res.Run
		case !holdsErased(batch) || !pinned:
			out.Divergence = d
			return out, nil
		default:
			if run, d, err = checkErasedBatch(p, run, batch); err != nil || d != nil {
				out.Divergence = d
				return out, err
			}
			for _, e := range batch {
				out.Erased = append(out.Erased, e.Index)
			}
		}
		for _, e := range batch {
			if e.Type == EventTransitioned {
				out.Transitions++
			}
		}
		if run == nil {
			return out, fmt.Errorf("replay: the run does not start under this program")
		}
		i = j
	}
	return out, nil
}

// safeApply is Apply for values the core never met live: erased markers
// where the schema wants a string, say. Apply rejects what it cannot
// take; a panic would be a core bug, and becomes an empty result (which
// then diverges) rather than taking the caller down.
func safeApply(p *program.Program, run *Run, in Input) (res Result) {
	defer func() {
		if recover() != nil {
			res = Result{}
		}
	}()
	res, _ = Apply(p, run, in)
	return res
}

// compareBatch compares the events an input recorded with those the core
// produced now; an erased value in the record matches anything. early
// reports an uncounted rejection recorded before digests (trace-format.md
// section 3.6): its full output is compared as the digest it makes.
func compareBatch(p *program.Program, batch, replayed []Event, pinned bool) (d *Divergence, early bool) {
	for k := 0; k < max(len(batch), len(replayed)); k++ {
		switch {
		case k >= len(replayed):
			return diverge(batch[k].Index, "(event)", string(mustCanonical(batch[k])), "none"), early
		case k >= len(batch):
			return diverge(replayed[k].Index, "(event)", "none", string(mustCanonical(replayed[k]))), early
		}
		recorded := batch[k]
		if up, ok := undigested(p, recorded, replayed[k]); ok {
			recorded, early = up, true
		}
		if d := compareEvents(recorded, replayed[k], pinned); d != nil {
			rec, rerr := jsonvalue.Decode(normalize(recorded, pinned))
			rep, perr := jsonvalue.Decode(normalize(replayed[k], pinned))
			if rerr != nil || perr != nil || !matchErased(rec, rep) {
				return d, early
			}
		}
	}
	return nil, early
}

// undigested reads an uncounted rejection recorded before digests (the
// output whole, no uncounted count) as the core records it now: the digest
// of that output, and the count the replayed event has, since the old one
// counted toward nothing.
func undigested(p *program.Program, recorded, replayed Event) (Event, bool) {
	rec, rep := recorded.Rejection, replayed.Rejection
	if rec == nil || rep == nil || rec.Counted || rec.Digest != nil || rec.Uncounted != 0 || rep.Uncounted == 0 {
		return recorded, false
	}
	up := *rec
	if rep.Digest != nil {
		up.Digest = digestOf(p, rec.Output)
	}
	up.Output, up.Uncounted = nil, rep.Uncounted
	recorded.Rejection = &up
	return recorded, true
}

// refold folds recorded events into a copy of run.
func refold(p *program.Program, run *Run, events []Event) (*Run, error) {
	r := &Run{}
	if run != nil {
		r = run.Clone()
	}
	for k := range events {
		e := events[k]
		if err := r.apply(p, &e); err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
	}
	return r, nil
}

// matchErased reports whether rep equals rec, where an erased marker in
// rec matches any value.
func matchErased(rec, rep any) bool {
	if projection.IsErased(rec) {
		return true
	}
	switch r := rec.(type) {
	case map[string]any:
		p, ok := rep.(map[string]any)
		if !ok || len(p) != len(r) {
			return false
		}
		for k, v := range r {
			pv, ok := p[k]
			if !ok || !matchErased(v, pv) {
				return false
			}
		}
		return true
	case []any:
		p, ok := rep.([]any)
		if !ok || len(p) != len(r) {
			return false
		}
		for i := range r {
			if !matchErased(r[i], p[i]) {
				return false
			}
		}
		return true
	}
	return string(mustCanonical(rec)) == string(mustCanonical(rep))
}

// holdsErased reports whether any of the events holds an erased value.
func holdsErased(events []Event) bool {
	for i := range events {
		v, err := jsonvalue.Decode(mustCanonical(&events[i]))
		if err == nil && containsErased(v) {
			return true
		}
	}
	return false
}

func containsErased(v any) bool {
	if projection.IsErased(v) {
		return true
	}
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			if containsErased(c) {
				return true
			}
		}
	case []any:
		for _, c := range x {
			if containsErased(c) {
				return true
			}
		}
	}
	return false
}

// checkErasedBatch checks an input's recorded events by the guards, as
// CheckPolicy does, and folds them into a copy of run.
func checkErasedBatch(p *program.Program, run *Run, batch []Event) (*Run, *Divergence, error) {
	c := &policyChecker{p: p, r: &Run{}}
	if run != nil {
		c.r = run.Clone()
	}
	for k := range batch {
		if d, err := c.check(batch, k); d != nil || err != nil {
			return nil, d, err
		}
	}
	return c.r, nil, nil
}

// beginsInput reports whether an event of type t is the first of a
// recorded input: a submission, decision, cancel or tick, or any refused
// input (input_received), a recorded fault or erasure, or a runtime tool
// call's reported outcome, each of which begins its own events.
func beginsInput(t EventType) bool {
	switch t {
	case EventInputReceived, EventFaultInjected, EventSubjectErased,
		EventToolCallCompleted, EventToolCallFailed, EventToolCallUnknown, EventToolCallResolved:
		return true
	}
	return false
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
		return Start{RunID: e.RunID, Principal: e.Started.Principal, Lab: e.Started.Lab, Input: e.Started.Input, Executors: e.Started.Executors, At: at}, nil
	case EventToolCallCompleted, EventToolCallFailed, EventToolCallUnknown, EventToolCallResolved:
		return callOutcome(e, at)
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
	case "tool_result", "tool_failure", "tool_unknown", "resolve_tool":
		output, digest := submittedOutput(recorded, i)
		return refusedOutcome(r, output, digest, at), nil
	case "submit", "decide":
		output, digest := submittedOutput(recorded, i)
		if r.Kind == "decide" {
			return Decide{Seq: r.Seq, State: r.State, DefinitionHash: hash, Role: r.Role, Principal: r.Principal, Decision: output, Size: r.Size, AllowSelf: !r.SeparateDuties, At: at, Digest: digest}, nil
		}
		return Submit{Seq: r.Seq, State: r.State, Tool: r.Tool, DefinitionHash: hash, Actor: r.Actor, Principal: r.Principal, Output: output, Size: r.Size, At: at, Digest: digest}, nil
	}
	return nil, fmt.Errorf("replay: event %d: unknown input kind %q", e.Index, r.Kind)
}

// submittedOutput finds the output of the submission recorded after the
// input at i: the one submission_accepted, approval_recorded or
// submission_rejected it caused; for an uncounted rejection, its digest.
func submittedOutput(recorded []Event, i int) (any, *OutputDigest) {
	for _, e := range recorded[i+1:] {
		switch e.Type {
		case EventSubmissionAccepted:
			return e.Submission.Output, nil
		case EventApprovalRecorded:
			return e.Approval.Output, nil
		case EventSubmissionRejected:
			return e.Rejection.Output, e.Rejection.Digest
		case EventInputReceived, EventRunStarted, EventFaultInjected, EventSubjectErased:
			return nil, nil
		}
	}
	return nil, nil
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
		if st.TraceFormat == "" || trace.Readable(st.TraceFormat) {
			// Recorded before the member existed, or in a format this
			// build reads: the runtime writes the current one now.
			st.TraceFormat = trace.Format
		}
		if !pinned {
			st.Program = ProgramRef{}
		}
		e.Started = &st
	}
	if e.Task != nil && e.Task.Kind == string(program.KindTool) && e.Task.ExecutedBy == "" {
		// Trace format 1 did not say who runs a tool task: the caller,
		// always, as the runtime now records it.
		t := *e.Task
		t.ExecutedBy = projection.ExecutedByCaller
		e.Task = &t
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

// callOutcome rebuilds the reported outcome a tool_call_* event records:
// replay feeds it back and never invokes the tool. A failed attempt is fed
// back as a failure even when it was a result the run refused: its class
// and detail are what the core recorded for it.
func callOutcome(e Event, at time.Time) (Input, error) {
	c := e.Call
	if c == nil {
		return nil, fmt.Errorf("replay: event %d: %s without a call", e.Index, e.Type)
	}
	switch e.Type {
	case EventToolCallCompleted:
		return ToolResult{Seq: e.Seq, CallID: c.CallID, Attempt: c.Attempt, Output: c.Result, At: at}, nil
	case EventToolCallFailed:
		return ToolFailure{Seq: e.Seq, CallID: c.CallID, Attempt: c.Attempt, Class: c.Class, Detail: c.Detail, Retry: c.Retry, At: at}, nil
	case EventToolCallUnknown:
		return ToolUnknown{Seq: e.Seq, CallID: c.CallID, Attempt: c.Attempt, Detail: c.Detail, At: at}, nil
	}
	return ResolveTool{CallID: c.CallID, Principal: c.Principal, Output: c.Result, Failed: c.Failed, Detail: c.Detail, At: at}, nil
}

// refusedOutcome rebuilds a tool call outcome the run refused, from its
// input record and the output (or digest) its rejection kept. A refused
// failure, unknown or failed resolution kept no output, and nothing of
// its class or detail reached the trace: none of it changes the refusal.
func refusedOutcome(r *InputRecord, output any, digest *OutputDigest, at time.Time) Input {
	switch r.Kind {
	case "tool_result":
		return ToolResult{Seq: r.Seq, CallID: r.CallID, Attempt: r.Attempt, Output: output, Size: r.Size, Digest: digest, At: at}
	case "tool_failure":
		return ToolFailure{Seq: r.Seq, CallID: r.CallID, Attempt: r.Attempt, Class: "unknown", At: at}
	case "tool_unknown":
		return ToolUnknown{Seq: r.Seq, CallID: r.CallID, Attempt: r.Attempt, At: at}
	}
	failed := output == nil && digest == nil
	return ResolveTool{CallID: r.CallID, Principal: r.Principal, Output: output, Size: r.Size, Failed: failed, Digest: digest, At: at}
}
