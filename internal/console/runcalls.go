package console

import (
	"fmt"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The run page's tool calls: each call the runtime executed, from its
// tool_call_started to its end, and each tool result a caller reported
// (submission_accepted by the tool actor), so that the page tells what
// the runtime attests from what the caller merely claimed, as the
// receipt's two counts do.

// Where a tool call's result came from (callView.Source).
const (
	sourceExecuted = "executed" // the runtime invoked the tool
	sourceReported = "reported" // the caller ran it, and reported a result
)

// callView is one tool call as the run page shows it. Arguments and result
// are the auditor's view (projection.ForAuditorArguments and
// ForAuditorResult): whatever reads personal data is redacted.
type callView struct {
	Index    uint64 // the call's first event (tool_call_started, or the reported result's task_issued)
	CallID   string // the runtime's call id; "" for a reported result
	Seq      uint64
	State    string
	Tool     string
	Source   string // sourceExecuted or sourceReported
	Executor string // mcp, exec, http or builtin; "" for a reported result
	Started  string // the first event's at
	Duration string // from Started to the call's end; "" while it runs, or when unknowable (an unknown outcome, resolved or not)
	Attempts []attemptView
	Outcome  string // completed, failed, waiting_operator, resolved, running, expired, abandoned; reported
	Detail   string // what the outcome needs said: the failure's class and detail, who resolved it, on_error
	Class    string // ok, bad or waiting: how the outcome is coloured
	Args     string // pretty JSON
	Result   string // pretty JSON; "" when there is none
}

// attemptView is one attempt of an executed call (or, for a reported
// result, one submission the caller made).
type attemptView struct {
	N        int
	Index    uint64 // the attempt's first event
	Started  string
	Duration string
	Outcome  string
}

// toolCalls lists the run's tool calls in the order they began. events
// are opened (personal data in clear, or the erased marker); recs are the
// same events as stored, whose sealed values are redacted whatever the
// paths say.
func toolCalls(p *program.Program, events []runtime.Event, recs []tracestore.Record) ([]*callView, error) {
	var out []*callView
	open := map[string]*callView{}            // executed calls not ended, by call id
	var lastFailed *callView                  // the call whose final failure may take on_error next
	issued := map[uint64][2]*runtime.Event{}  // tool tasks by seq: opened, stored
	submissions := map[uint64][]attemptView{} // a task's refused submissions, by seq
	for i := range events {
		e := &events[i]
		raw, err := storedEvent(e, recs, i)
		if err != nil {
			return nil, err
		}
		switch e.Type {
		case runtime.EventTaskIssued:
			issued[e.Seq] = [2]*runtime.Event{e, raw}
		case runtime.EventSubmissionRejected:
			if e.Rejection != nil && e.Rejection.Counted {
				n := len(submissions[e.Seq]) + 1
				submissions[e.Seq] = append(submissions[e.Seq], attemptView{N: n, Index: e.Index, Started: e.At,
					Outcome: "refused: " + string(e.Rejection.Code)})
			}
		case runtime.EventSubmissionAccepted:
			if e.Submission != nil && e.Submission.Actor == runtime.ActorTool {
				task := issued[e.Seq]
				out = append(out, reported(p, e, raw, task[0], task[1], submissions[e.Seq]))
			}
		case runtime.EventTransitioned:
			if lastFailed != nil && e.Transition != nil && e.Transition.Cause == "on_error" {
				lastFailed.Detail += ", then on_error → " + e.Transition.To
			}
			lastFailed = nil
		case runtime.EventTaskExpired:
			for id, c := range open {
				if c.State == e.State {
					end(c, e, "expired", "the state's timeout passed while the call ran", "bad")
					delete(open, id)
				}
			}
		case runtime.EventRunFinished:
			for id, c := range open {
				status := ""
				if e.Finished != nil {
					status = string(e.Finished.Status)
				}
				end(c, e, "abandoned", "the run ended ("+status+") while the call was open", "bad")
				delete(open, id)
			}
		}
		if e.Call == nil {
			continue
		}
		var rawCall *runtime.ToolCallRecord
		if raw != nil {
			rawCall = raw.Call
		}
		c := open[e.Call.CallID]
		if c == nil && e.Type != runtime.EventToolCallStarted {
			continue // an outcome of a call this trace never started: nothing to attach it to
		}
		switch e.Type {
		case runtime.EventToolCallStarted:
			if c == nil {
				c = &callView{Index: e.Index, CallID: e.Call.CallID, Seq: e.Seq, State: e.State, Tool: e.Call.Tool,
					Source: sourceExecuted, Executor: e.Call.Executor, Started: e.At, Outcome: "running", Class: "waiting"}
				var rawArgs map[string]any
				if rawCall != nil {
					rawArgs = rawCall.Arguments
				}
				c.Args = pretty(projection.ForAuditorArguments(p, e.State, e.Call.Arguments, rawArgs))
				open[c.CallID] = c
				out = append(out, c)
			}
			c.Attempts = append(c.Attempts, attemptView{N: e.Call.Attempt, Index: e.Index, Started: e.At, Outcome: "running"})
		case runtime.EventToolCallCompleted:
			endAttempt(c, e, "completed")
			c.Result = resultOf(p, e, rawCall)
			end(c, e, "completed", "", "ok")
			delete(open, c.CallID)
		case runtime.EventToolCallFailed:
			detail := failure(p, e, rawCall)
			endAttempt(c, e, "failed: "+detail)
			if !e.Call.Retry {
				end(c, e, "failed", detail, "bad")
				delete(open, c.CallID)
				lastFailed = c
			}
		case runtime.EventToolCallUnknown:
			endAttempt(c, e, "outcome unknown")
			c.Outcome, c.Detail, c.Class = string(runtime.StatusWaitingOperator),
				"the server stopped while the call ran; an operator settles it with resolve_tool_call", "waiting"
		case runtime.EventToolCallResolved:
			how := "with a result"
			if e.Call.Failed {
				how = "as failed"
				if e.Call.Detail != "" {
					how += ": " + projection.ForAuditorDetail(p, e.State, "", e.Call.Detail, rawCall != nil && rawCall.Detail != e.Call.Detail)
				}
			} else {
				c.Result = resultOf(p, e, rawCall)
			}
			cls := "ok"
			if e.Call.Failed {
				cls = "bad"
			}
			end(c, e, "resolved", "by "+e.Call.Principal+" "+how, cls)
			// How long the tool ran is unknowable: the time to the
			// resolution is the operator's.
			c.Duration = ""
			delete(open, c.CallID)
			if e.Call.Failed {
				lastFailed = c
			}
		}
	}
	return out, nil
}

// reported is the view of a tool result the caller reported: the task it
// answered (its arguments as the auditor sees them; rawTask as stored),
// each refused submission as an attempt, and the accepted result.
func reported(p *program.Program, e, raw, task, rawTask *runtime.Event, refused []attemptView) *callView {
	c := &callView{Index: e.Index, Seq: e.Seq, State: e.State, Tool: e.Submission.Tool, Source: sourceReported,
		Started: e.At, Outcome: sourceReported, Detail: "by the caller: the runtime did not see the tool run", Class: "reported"}
	if st := p.States[e.State]; c.Tool == "" && st != nil {
		c.Tool = st.Tool
	}
	c.Attempts = append(append(c.Attempts, refused...), attemptView{N: len(refused) + 1, Index: e.Index, Started: e.At, Outcome: "accepted"})
	if task != nil {
		c.Index, c.Started = task.Index, task.At
		c.Duration = elapsed(task.At, e.At)
		if task.Task != nil && task.Task.Tool != nil {
			var rawArgs map[string]any
			if rawTask != nil && rawTask.Task != nil && rawTask.Task.Tool != nil {
				rawArgs = rawTask.Task.Tool.Arguments
			}
			c.Args = pretty(projection.ForAuditorArguments(p, e.State, task.Task.Tool.Arguments, rawArgs))
		}
	}
	var rawOut any
	if raw != nil && raw.Submission != nil {
		rawOut = raw.Submission.Output
	}
	c.Result = pretty(projection.ForAuditorResult(p, e.State, e.Submission.Output, rawOut))
	return c
}

// storedEvent decodes the stored record of events[i], when recs holds it:
// only the records that carry a call, a tool task or a tool's result are
// decoded, since decoding the whole trace twice would cost the page much
// of its time.
func storedEvent(e *runtime.Event, recs []tracestore.Record, i int) (*runtime.Event, error) {
	tool := e.Call != nil || e.Task != nil && e.Task.Tool != nil || e.Submission != nil && e.Submission.Actor == runtime.ActorTool
	if !tool {
		return nil, nil
	}
	if i >= len(recs) || recs[i].Index != e.Index {
		return nil, nil
	}
	stored, err := service.DecodeEvents(recs[i : i+1])
	if err != nil {
		return nil, err
	}
	return &stored[0], nil
}

// resultOf is a call's result in the auditor's view, pretty.
func resultOf(p *program.Program, e *runtime.Event, raw *runtime.ToolCallRecord) string {
	var rawResult any
	if raw != nil {
		rawResult = raw.Result
	}
	return pretty(projection.ForAuditorResult(p, e.State, e.Call.Result, rawResult))
}

// failure is a failed attempt's class and detail, the detail in the
// auditor's view.
func failure(p *program.Program, e *runtime.Event, raw *runtime.ToolCallRecord) string {
	s := e.Call.Class
	sealed := raw != nil && raw.Detail != e.Call.Detail
	if d := projection.ForAuditorDetail(p, e.State, e.Call.Class, e.Call.Detail, sealed); d != "" {
		s += ": " + d
	}
	return s
}

// endAttempt ends c's last attempt with outcome at e.
func endAttempt(c *callView, e *runtime.Event, outcome string) {
	if n := len(c.Attempts); n > 0 {
		a := &c.Attempts[n-1]
		a.Outcome, a.Duration = outcome, elapsed(a.Started, e.At)
	}
}

// end ends c at e: its outcome, and its duration from its first attempt.
func end(c *callView, e *runtime.Event, outcome, detail, class string) {
	c.Outcome, c.Detail, c.Class = outcome, detail, class
	c.Duration = elapsed(c.Started, e.At)
	if n := len(c.Attempts); n > 0 && c.Attempts[n-1].Outcome == "running" {
		c.Attempts[n-1].Outcome = outcome
	}
}

// elapsed is the time from one event's at to another's, as a duration
// reads; "" when either is not a time.
func elapsed(from, to string) string {
	a, err1 := time.Parse(time.RFC3339Nano, from)
	b, err2 := time.Parse(time.RFC3339Nano, to)
	if err1 != nil || err2 != nil || b.Before(a) {
		return ""
	}
	d := b.Sub(a)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.String()
}

// callLine is a tool call event in a line of the timeline, without its
// arguments, result or detail (the tool calls section shows those as the
// auditor may see them).
func callLine(e *runtime.Event) string {
	c := e.Call
	switch e.Type {
	case runtime.EventToolCallStarted:
		return fmt.Sprintf("%s: %s via %s, attempt %d", c.CallID, c.Tool, c.Executor, c.Attempt)
	case runtime.EventToolCallCompleted:
		return fmt.Sprintf("%s completed, attempt %d", c.CallID, c.Attempt)
	case runtime.EventToolCallFailed:
		s := fmt.Sprintf("%s attempt %d failed: %s", c.CallID, c.Attempt, c.Class)
		if c.Retry {
			s += ", another attempt follows"
		}
		return s
	case runtime.EventToolCallUnknown:
		return fmt.Sprintf("%s attempt %d: outcome unknown, waiting for an operator", c.CallID, c.Attempt)
	case runtime.EventToolCallResolved:
		if c.Failed {
			return fmt.Sprintf("%s resolved as failed by %s", c.CallID, c.Principal)
		}
		return fmt.Sprintf("%s resolved with a result by %s", c.CallID, c.Principal)
	}
	return c.CallID
}
