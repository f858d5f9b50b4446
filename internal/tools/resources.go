package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Resource URIs.
const (
	programURI   = "nano-vm://programs/{name}"
	traceURI     = "nano-vm://runs/{run_id}/trace"
	tracePageURI = "nano-vm://runs/{run_id}/trace/{from}"
	receiptURI   = "nano-vm://runs/{run_id}/receipt"
)

// tracePage bounds one page of a trace resource, in events and in bytes:
// clients cap what they pass to the model (Claude Code at 25k tokens).
var (
	tracePageEvents = 200 // a variable so tests can page short traces
	tracePageBytes  = 64 << 10
)

func (h *handlers) addResources(s *server.MCPServer) {
	operator := h.Profile == access.ProfileOperator
	desc := "A program: name, description and the JSON Schema of its input."
	if operator {
		desc = "A program's source with its guards, and its state graph as Mermaid."
	}
	// Programs are fixed when the server starts, so each is a resource of
	// its own, and an unknown name is a plain resource-not-found.
	for _, p := range h.Service.Programs() {
		s.AddResource(mcp.NewResource(strings.Replace(programURI, "{name}", p.Name, 1), p.Name,
			mcp.WithResourceDescription(desc+" "+p.Description), mcp.WithMIMEType(h.programMIME())), h.readProgram)
	}
	s.AddResourceTemplate(mcp.NewResourceTemplate(receiptURI, "receipt",
		mcp.WithTemplateDescription("A run's signed receipt, as get_receipt returns it."),
		mcp.WithTemplateMIMEType("application/json")), h.readReceipt)
	if operator {
		s.AddResourceTemplate(mcp.NewResourceTemplate(traceURI, "trace",
			mcp.WithTemplateDescription(fmt.Sprintf("A run's trace as stored (personal data sealed), %d events a page; `next` names the following page.", tracePageEvents)),
			mcp.WithTemplateMIMEType("application/json")), h.readTrace)
		s.AddResourceTemplate(mcp.NewResourceTemplate(tracePageURI, "trace page",
			mcp.WithTemplateDescription("A page of a run's trace from event index {from}."),
			mcp.WithTemplateMIMEType("application/json")), h.readTrace)
		s.AddResourceTemplate(mcp.NewResourceTemplate(metricsURI, "program metrics",
			mcp.WithTemplateDescription("The analyze report of a program's last 100 runs under its newest definition: entropies, densities, drift and alerts (docs/metrics.md)."),
			mcp.WithTemplateMIMEType("application/json")), h.readMetrics)
	}
}

func (h *handlers) programMIME() string {
	if h.Profile == access.ProfileOperator {
		return "text/markdown"
	}
	return "application/json"
}

// uriArg returns a template variable of the read request.
func uriArg(req mcp.ReadResourceRequest, name string) string {
	switch v := req.Params.Arguments[name].(type) {
	case string:
		return v
	case []string:
		if len(v) == 1 {
			return v[0]
		}
	}
	return ""
}

func (h *handlers) readProgram(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	uri := req.Params.URI
	name := strings.TrimPrefix(uri, "nano-vm://programs/")
	var p *program.Program
	for _, q := range h.Service.Programs() {
		if q.Name == name {
			p = q
		}
	}
	if p == nil {
		return nil, notFound(uri)
	}
	if h.caller(ctx).Profile != access.ProfileOperator {
		// Evaluator blindness: an agent learns what the program is for and
		// what it takes, never its guards or states.
		b, err := json.Marshal(programInfo(p))
		if err != nil {
			return nil, err
		}
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(b)}}, nil
	}
	src, err := h.Store.Program(ctx, p.Hash)
	if err != nil {
		return nil, err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# %s %s\n\n%s\n\nDefinition hash: `%s`\n\n```mermaid\n%s```\n\n```yaml\n%s\n```\n",
		p.Name, p.Version, p.Description, p.Hash, program.Mermaid(p), strings.TrimRight(string(src), "\n"))
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "text/markdown", Text: md.String()}}, nil
}

func (h *handlers) readReceipt(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	runID := uriArg(req, "run_id")
	if _, _, err := h.readRun(ctx, h.caller(ctx), runID); err != nil {
		return nil, notFound(req.Params.URI)
	}
	rec, err := h.signedReceipt(ctx, runID)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(b)}}, nil
}

// TracePage is one page of a trace resource.
type TracePage struct {
	RunID  string            `json:"run_id"`
	From   int               `json:"from"`
	Total  int               `json:"total"`
	Events []json.RawMessage `json:"events"`
	Next   string            `json:"next,omitempty"`
}

func (h *handlers) readTrace(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	if h.caller(ctx).Profile != access.ProfileOperator {
		return nil, notFound(req.Params.URI)
	}
	runID := uriArg(req, "run_id")
	from := 0
	if f := uriArg(req, "from"); f != "" {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, notFound(req.Params.URI)
		}
		from = n
	}
	recs, err := h.Store.Load(ctx, runID)
	if errors.Is(err, tracestore.ErrNotFound) {
		return nil, notFound(req.Params.URI)
	}
	if err != nil {
		return nil, err
	}
	page := TracePage{RunID: runID, From: from, Total: len(recs), Events: []json.RawMessage{}}
	size := 0
	i := from
	for ; i < len(recs) && len(page.Events) < tracePageEvents; i++ {
		if len(page.Events) > 0 && size+len(recs[i].Body) > tracePageBytes {
			break
		}
		page.Events = append(page.Events, recs[i].Body)
		size += len(recs[i].Body)
	}
	if i < len(recs) {
		page.Next = fmt.Sprintf("nano-vm://runs/%s/trace/%d", runID, i)
	}
	b, err := json.Marshal(page)
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "application/json", Text: string(b)}}, nil
}

func (h *handlers) addPrompts(s *server.MCPServer) {
	s.AddPrompt(mcp.NewPrompt("drive_run",
		mcp.WithPromptDescription("How to drive a governed run to its end: start it, answer each task, recover from errors."),
		mcp.WithArgument("program", mcp.ArgumentDescription("The program to run (see list_programs); optional.")),
	), h.driveRun)
}

const driveRunText = `You are driving a governed run on nano-vm-mcp. The runtime decides the control
flow; you compute one bounded task at a time and never decide where the run goes.

1. %s
2. Call start_run with the program and an input that matches its input_schema.
   Keep the run_id; pass an idempotency_key if you might retry the call.
3. While the answer carries a task:
   - Read the task's instructions and view. The view is everything you may use;
     do not invent facts that are not in it.
   - For kind "llm": compute an output that matches output_schema exactly.
   - For kind "tool": call the tool named in task.tool.name with
     task.tool.arguments and submit its result unchanged as the output, with
     tool: {name}. Never edit or invent a result, not even to get past an
     error. If you cannot call that tool, stop, or call cancel_run, and tell
     the user.
   - Call step with run_id, the task's seq and the output.
4. If step returns an error, read its JSON: code says what went wrong, message
   what to do. schema_violation, guard_denied and capability_denied each use
   up an attempt (task.attempts_left); the last one ends the run. On an llm
   task, fix the output and resubmit with the same seq; on a tool task,
   follow the message, never change the tool's result.
   stale_seq and wrong_state carry the current task: answer that one.
5. Status waiting_approval means a human must decide; you cannot. Call
   await_approval: it asks the human at the client for the decision, or
   fails with approval_channel_closed, whose message says who decides
   instead or what is missing. Then stop and tell the user that.
6. An answer with waiting_for: "tool" means the server is running a tool of
   the run itself: submit nothing for it, call await_run with the run_id
   until waiting_for is gone.
7. When the status is completed, failed or cancelled, report the outcome.
   get_receipt returns the signed receipt; verify_receipt checks it.`

func (h *handlers) driveRun(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	first := "Call list_programs and pick the program that fits the user's request."
	if p := req.Params.Arguments["program"]; p != "" {
		first = fmt.Sprintf("The program is %q; call list_programs to read its input_schema.", p)
	}
	return mcp.NewGetPromptResult("Drive a nano-vm-mcp run",
		[]mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(fmt.Sprintf(driveRunText, first)))}), nil
}
