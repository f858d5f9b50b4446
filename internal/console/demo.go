package console

import (
	"errors"
	"net/http"
	"sync"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/lab"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// The demo starts a run of the KYC example and walks it to its outcome
// with the example's canned answers, one answer per click (or per pause,
// in demo.js), so that someone can watch governance happen without
// writing a client: a rejected answer, a rollback, an approval and the
// final outcome, each as the runtime records it.
const (
	demoProgram   = "kyc-onboarding"
	demoInput     = "kyc-onboarding.input.json"
	demoAnswers   = "kyc-onboarding.approved.answers.jsonl"
	demoOutcome   = "APPROVED"
	demoPrincipal = "console-demo" // starts every demo run and answers its tasks
)

// demo holds the canned script. mu serialises steps: two clicks at once
// must not both submit the same answer.
type demo struct {
	mu      sync.Mutex
	input   []byte // the run input, decoded afresh for every run
	answers []any
	err     error // loading the embedded script failed (a broken build)
}

func loadDemo() *demo {
	d := &demo{}
	if d.input, d.err = examples.FS.ReadFile(demoInput); d.err != nil {
		return d
	}
	d.answers, d.err = lab.ReadAnswers(demoAnswers)
	return d
}

// demoRoutes registers the routes of the demo flow.
func (c *Console) demoRoutes() {
	d := loadDemo()
	c.mux.HandleFunc("GET /ui/demo", func(w http.ResponseWriter, r *http.Request) { c.demoPage(w, r, d) })
	c.mux.HandleFunc("POST /ui/demo/start", func(w http.ResponseWriter, r *http.Request) { c.demoStart(w, r, d) })
	c.mux.HandleFunc("POST /ui/demo/{run}/step", func(w http.ResponseWriter, r *http.Request) { c.demoStep(w, r, d) })
}

// demoView is the demo page's data.
type demoView struct {
	Program, Input, Answers, Outcome, Principal string
	Steps                                       int  // canned answers
	Available                                   bool // the program is loaded and the script is readable
}

func (c *Console) demoPage(w http.ResponseWriter, r *http.Request, d *demo) {
	available := d.err == nil
	if available {
		available = false
		for _, p := range c.cfg.Service.Programs() {
			if p.Name == demoProgram {
				available = true
			}
		}
	}
	c.render(w, r, "demo", "Demo", "demo", demoView{
		Program: demoProgram, Input: demoInput, Answers: demoAnswers, Outcome: demoOutcome,
		Principal: demoPrincipal, Steps: len(d.answers), Available: available,
	})
}

// demoStarted is POST /ui/demo/start's answer.
type demoStarted struct {
	RunID  string `json:"run_id"`
	Status string `json:"status"`
	State  string `json:"state"`
	Seq    uint64 `json:"seq"`
	Steps  int    `json:"steps"` // canned answers the demo will submit
}

func (c *Console) demoStart(w http.ResponseWriter, r *http.Request, d *demo) {
	if !c.operatorOnly(w, r) {
		return
	}
	if d.err != nil {
		c.fail(w, r, d.err)
		return
	}
	input, err := jsonvalue.Decode(d.input)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ans, err := c.cfg.Service.Start(r.Context(), demoProgram, input, demoPrincipal)
	if err != nil {
		c.demoError(w, r, err)
		return
	}
	c.cfg.Log.Info("console demo run started", zap.String("run_id", ans.RunID))
	c.writeJSON(w, http.StatusOK, demoStarted{RunID: ans.RunID, Status: string(ans.Status), State: ans.State, Seq: ans.Seq, Steps: len(d.answers)})
}

// demoHop is one transition in a step's answer.
type demoHop struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Cause    string `json:"cause,omitempty"`
	Rollback bool   `json:"rollback,omitempty"`
}

// demoStepped is POST /ui/demo/{run}/step's answer: the task answered,
// what the runtime made of the answer, and where the run stands now.
// It names states, codes and the outcome, never the data: the answers
// hold personal data, and a rejection's details may quote them.
type demoStepped struct {
	Step     int       `json:"step"`  // 1-based number of the canned answer submitted
	Steps    int       `json:"steps"` // canned answers in all
	Task     string    `json:"task"`  // the state whose task was answered
	Kind     string    `json:"kind"`  // llm, tool or approval
	Actor    string    `json:"actor"` // who the demo answered as
	Rejected string    `json:"rejected,omitempty"`
	Hop      *demoHop  `json:"hop"`  // the first transition taken; null when none
	Hops     []demoHop `json:"hops"` // every transition taken
	Status   string    `json:"status"`
	State    string    `json:"state"`
	Seq      uint64    `json:"seq"`
	Outcome  string    `json:"outcome"`
	Done     bool      `json:"done"` // the run is finished
}

func (c *Console) demoStep(w http.ResponseWriter, r *http.Request, d *demo) {
	if !c.operatorOnly(w, r) {
		return
	}
	if d.err != nil {
		c.fail(w, r, d.err)
		return
	}
	ctx, id := r.Context(), r.PathValue("run")
	d.mu.Lock()
	defer d.mu.Unlock()
	run, _, err := c.cfg.Service.Get(ctx, id)
	if err != nil {
		c.demoError(w, r, err)
		return
	}
	if run.Principal != demoPrincipal {
		http.Error(w, "forbidden: run "+id+" was not started by the demo", http.StatusForbidden)
		return
	}
	out := demoStepped{Steps: len(d.answers), Status: string(run.Status), State: run.State, Seq: run.Seq, Outcome: run.Outcome, Hops: []demoHop{}}
	if run.Status != runtime.StatusRunning {
		out.Done = true
		c.writeJSON(w, http.StatusOK, out)
		return
	}
	task := run.Task
	if task == nil {
		http.Error(w, "conflict: run "+id+" has no open task", http.StatusConflict)
		return
	}
	// The next answer is the one after every answer the trace records,
	// accepted or rejected: the trace is the demo's only memory.
	events, err := c.cfg.Service.Events(ctx, id)
	if err != nil {
		c.demoError(w, r, err)
		return
	}
	used := 0
	for _, e := range events {
		if e.Type == runtime.EventSubmissionAccepted || e.Type == runtime.EventSubmissionRejected {
			used++
		}
	}
	if used >= len(d.answers) {
		http.Error(w, "conflict: the demo's canned answers ran out", http.StatusConflict)
		return
	}
	a := d.answers[used]
	out.Step, out.Task, out.Kind = used+1, task.State, task.Kind
	var ans service.Answer
	// The demo is an operator-side driver: it may decide its own run.
	switch in := runtime.InputFor(task, a, runtime.AnswerOptions{Principal: demoPrincipal, AllowSelf: true}).(type) {
	case runtime.Decide:
		out.Actor = in.Role
		ans, err = c.cfg.Service.Decide(ctx, id, in)
	case runtime.Submit:
		out.Actor = string(in.Actor) // "model" or "tool", then the tool's name
		if in.Tool != "" {
			out.Actor += " " + in.Tool
		}
		ans, err = c.cfg.Service.Submit(ctx, id, in)
	}
	var rej *runtime.Rejection
	switch {
	case errors.As(err, &rej):
		// Governance at work: the runtime refused the answer and recorded
		// the refusal. Only its code is shown (its details may quote data).
		out.Rejected = string(rej.Code)
		if run, _, err = c.cfg.Service.Get(ctx, id); err != nil {
			c.demoError(w, r, err)
			return
		}
		out.Status, out.State, out.Seq, out.Outcome = string(run.Status), run.State, run.Seq, run.Outcome
	case err != nil:
		c.demoError(w, r, err)
		return
	default:
		out.Status, out.State, out.Seq, out.Outcome = string(ans.Status), ans.State, ans.Seq, ans.Outcome
		for _, h := range ans.Transitions {
			out.Hops = append(out.Hops, demoHop{From: h.From, To: h.To, Cause: h.Cause, Rollback: h.Rollback})
		}
		if len(out.Hops) > 0 {
			out.Hop = &out.Hops[0]
		}
	}
	out.Done = out.Status != string(runtime.StatusRunning)
	c.cfg.Log.Info("console demo step", zap.String("run_id", id), zap.Int("step", out.Step), zap.String("task", out.Task), zap.String("rejected", out.Rejected), zap.String("state", out.State))
	c.writeJSON(w, http.StatusOK, out)
}

// demoError answers a runtime error: a missing run is a 404, another
// domain refusal a 409 with its code, anything else an internal error.
func (c *Console) demoError(w http.ResponseWriter, r *http.Request, err error) {
	var rej *runtime.Rejection
	if !errors.As(err, &rej) {
		c.fail(w, r, err)
		return
	}
	status := http.StatusConflict
	if rej.Code == runtime.CodeNoSuchRun || rej.Code == runtime.CodeNoSuchProgram {
		status = http.StatusNotFound
	}
	c.writeJSON(w, status, map[string]string{"code": string(rej.Code), "message": rej.Message})
}
