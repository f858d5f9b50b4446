package console

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// runPage is the data of one run's page.
type runPage struct {
	Info     tracestore.RunInfo
	Run      *runtime.Run
	Program  *program.Program
	Running  bool
	Graph    template.HTML
	Path     []pathStep
	Timeline []timelineRow
	Tasks    []taskView
	Calls    []*callView
	Receipt  receiptView
}

// pathStep is one state of the run's path: the graph's text alternative.
type pathStep struct {
	N        int
	State    string
	Kind     string
	Via      string // how the run got there: start, guard, default, timeout or on_error
	Edge     string // the id of the graph's edge it came by (edgeIDs)
	Rollback bool
	Current  bool
}

// timelineRow is one event of the trace. Detail holds only what carries
// no personal data: names, codes, counts and the runtime's messages.
type timelineRow struct {
	Index  uint64
	Seq    uint64
	Type   string
	At     string
	State  string
	Hash   string // the record's chain hash, hex
	Class  string // rejected, failed (a tool call), fault or erased: rows that must stand out
	Detail string
}

// loadRun gathers what the run page shows: the index row, the run and its
// program, the opened events and the stored records. A run this process
// holds in memory but another process has moved on since is folded again
// from the events, so the page never shows a stale state.
func (c *Console) loadRun(ctx context.Context, id string) (*runPage, []runtime.Event, []tracestore.Record, error) {
	info, err := c.cfg.Store.Run(ctx, id)
	if err != nil {
		return nil, nil, nil, err
	}
	run, p, err := c.cfg.Service.Get(ctx, id)
	if err != nil {
		return nil, nil, nil, err
	}
	events, err := c.cfg.Service.Events(ctx, id)
	if err != nil {
		return nil, nil, nil, err
	}
	if run.NextIndex != uint64(len(events)) {
		if run, err = runtime.Fold(p, events); err != nil {
			return nil, nil, nil, err
		}
	}
	recs, err := c.cfg.Store.Load(ctx, id)
	if err != nil {
		return nil, nil, nil, err
	}
	return &runPage{Info: info, Run: run, Program: p, Running: !run.Finished()}, events, recs, nil
}

func (c *Console) run(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	data, events, recs, err := c.loadRun(r.Context(), id)
	if isNoRun(err) {
		c.notFound(w, r, fmt.Sprintf("There is no run %s.", id))
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	svg, err := c.graphs.svg(r.Context(), data.Program)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	data.Path = pathSteps(data.Program, data.Run, events)
	data.Graph = highlight(svg, data.Path)
	data.Timeline = timeline(events, recs)
	if data.Tasks, err = auditorTasks(data.Program, events, recs); err != nil {
		c.fail(w, r, err)
		return
	}
	if data.Calls, err = toolCalls(data.Program, events, recs); err != nil {
		c.fail(w, r, err)
		return
	}
	data.Receipt = c.receiptOf(recs)
	c.render(w, r, "run", "Run "+id, "runs", data)
}

// isNoRun reports whether err says the run does not exist.
func isNoRun(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, tracestore.ErrNotFound) {
		return true
	}
	var rej *runtime.Rejection
	return errors.As(err, &rej) && rej.Code == runtime.CodeNoSuchRun
}

// pathSteps lists the run's path with how each state was entered: the
// transitioned events, in order, are the path's hops.
func pathSteps(p *program.Program, run *runtime.Run, events []runtime.Event) []pathStep {
	var hops []*runtime.TransitionRecord
	for i := range events {
		if events[i].Type == runtime.EventTransitioned && events[i].Transition != nil {
			hops = append(hops, events[i].Transition)
		}
	}
	ids := edgeIDs(p)
	steps := make([]pathStep, len(run.Path))
	for i, name := range run.Path {
		s := pathStep{N: i + 1, State: name, Via: "start", Edge: edgeID(program.DOTStart, name)}
		if st := p.States[name]; st != nil {
			s.Kind = string(st.Kind)
		}
		if i > 0 {
			s.Edge = edgeID(run.Path[i-1], name) // the first edge between the two, should the hop be unrecorded
		}
		if i > 0 && i-1 < len(hops) {
			h := hops[i-1]
			s.Via, s.Rollback = h.Cause, h.Rollback
			if id, ok := ids[edgeKey{h.From, h.Transition}]; ok && h.To == name {
				s.Edge = id
			}
		}
		steps[i] = s
	}
	if n := len(steps); n > 0 {
		steps[n-1].Current = true
	}
	return steps
}

// timeline is one row per event, with the stored record's hash.
func timeline(events []runtime.Event, recs []tracestore.Record) []timelineRow {
	rows := make([]timelineRow, len(events))
	for i := range events {
		e := &events[i]
		row := timelineRow{Index: e.Index, Seq: e.Seq, Type: string(e.Type), At: e.At, State: e.State, Detail: eventDetail(e)}
		if i < len(recs) && recs[i].Index == e.Index {
			row.Hash = hex.EncodeToString(recs[i].Hash)
		}
		switch e.Type {
		case runtime.EventSubmissionRejected:
			row.Class = "rejected"
		case runtime.EventFaultInjected:
			row.Class = "fault"
		case runtime.EventSubjectErased:
			row.Class = "erased"
		case runtime.EventToolCallFailed, runtime.EventToolCallUnknown:
			row.Class = "failed"
		}
		rows[i] = row
	}
	return rows
}

// toolAndRole is ", tool T, role R" for the claims an input or a
// submission names, each part only when set.
func toolAndRole(tool, role string) string {
	s := ""
	if tool != "" {
		s += ", tool " + tool
	}
	if role != "" {
		s += ", role " + role
	}
	return s
}

// eventDetail says in a line what an event records, leaving out every
// submitted value (outputs, inputs, validation details).
func eventDetail(e *runtime.Event) string {
	switch {
	case e.Started != nil:
		s := fmt.Sprintf("%s v%s pinned", e.Started.Program.Name, e.Started.Program.Version)
		if e.Started.Lab {
			s += ", laboratory run"
		}
		return s
	case e.Input != nil:
		s := e.Input.Kind
		if e.Input.Actor != "" {
			s += " by " + string(e.Input.Actor)
		}
		return s + toolAndRole(e.Input.Tool, e.Input.Role)
	case e.Task != nil:
		s := e.Task.Kind + " task"
		if e.Task.Tool != nil {
			s += ", tool " + e.Task.Tool.Name
		}
		return fmt.Sprintf("%s, %d attempts left", s, e.Task.AttemptsLeft)
	case e.Guard != nil:
		if e.Guard.Error != "" {
			return fmt.Sprintf("→ %s: %s errored: %s", e.Guard.To, e.Guard.Expression, e.Guard.Error)
		}
		return fmt.Sprintf("→ %s: %s is %t", e.Guard.To, e.Guard.Expression, e.Guard.Result)
	case e.Submission != nil:
		return "by " + string(e.Submission.Actor) + toolAndRole(e.Submission.Tool, e.Submission.Role)
	case e.Approval != nil:
		return fmt.Sprintf("approval %d of %d, role %s", e.Approval.Count, e.Approval.Needed, e.Approval.Role)
	case e.Rejection != nil:
		s := fmt.Sprintf("%s: %s", e.Rejection.Code, e.Rejection.Message)
		if e.Rejection.Counted {
			s += fmt.Sprintf(" (attempt %d used)", e.Rejection.Attempts)
		}
		return s
	case e.Expiry != nil:
		return "deadline " + e.Expiry.Deadline + " passed"
	case e.Transition != nil:
		s := fmt.Sprintf("%s → %s (%s)", e.Transition.From, e.Transition.To, e.Transition.Cause)
		if e.Transition.Rollback {
			s += ", rollback"
		}
		return s
	case e.Finished != nil:
		s := string(e.Finished.Status) + " " + e.Finished.Outcome
		if e.Finished.Reason != "" {
			s += ": " + e.Finished.Reason
		}
		return s
	case e.Fault != nil:
		return fmt.Sprintf("%s/%s: expected %s, observed %s", e.Fault.Fault, e.Fault.SubAttack, e.Fault.Expected, e.Fault.Observed)
	case e.Erasure != nil:
		return "subject " + short(e.Erasure.Subject) + " erased"
	case e.Call != nil:
		return callLine(e)
	}
	return ""
}

// runState is what the run page's script polls while the run goes on.
type runState struct {
	Status  string   `json:"status"`
	State   string   `json:"state"`
	Seq     uint64   `json:"seq"`
	Events  uint64   `json:"events"`
	Path    []string `json:"path"`
	Outcome string   `json:"outcome"`
}

func (c *Console) runState(w http.ResponseWriter, r *http.Request) {
	ctx, id := r.Context(), r.PathValue("id")
	run, p, err := c.cfg.Service.Get(ctx, id)
	var info tracestore.RunInfo
	if err == nil {
		info, err = c.cfg.Store.Run(ctx, id)
	}
	if err == nil && info.Events != run.NextIndex {
		// Another process moved the run on: fold it from the store.
		var events []runtime.Event
		if events, err = c.cfg.Service.Events(ctx, id); err == nil {
			run, err = runtime.Fold(p, events)
		}
	}
	if isNoRun(err) {
		http.Error(w, "no run "+id, http.StatusNotFound)
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.writeJSON(w, http.StatusOK, runState{Status: string(run.Status), State: run.State, Seq: run.Seq, Events: run.NextIndex,
		Path: run.Path, Outcome: run.Outcome})
}

// writeJSON answers v as JSON with status: the one JSON writer of the
// console's answers (the run page's state and receipt check, the demo, the
// laboratory).
func (c *Console) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error: see the server log", http.StatusInternalServerError)
		c.cfg.Log.Error("console: encode JSON: " + err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
