// Package tools serves the governed runtime over MCP: the tools, resources
// and prompt a client reaches, for the agent and the operator profile.
//
// Handlers decode and check the arguments, call the runtime service and
// encode its answer; they hold no business rules. Domain errors come back
// as isError results whose only content is the error JSON (ErrorBody),
// never as JSON-RPC errors and never with structuredContent.
package tools

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// ServerName is the name the server gives in its implementation info. It
// is short: clients prefix tool names with it (mcp__nano-vm__step).
const ServerName = "nano-vm"

// Config wires the handlers to the runtime.
type Config struct {
	Service *service.Service
	Store   tracestore.Store
	Keys    *keyring.Keyring
	// Profile is what this server exposes: ProfileAgent (the default) or
	// ProfileOperator. A caller whose principal carries a profile (HTTP)
	// gets that profile's server; see NewServer.
	Profile access.Profile
	// Approvers are the humans who may decide approval tasks (approve).
	Approvers *access.Approvers
	// ElicitApprovals opens the elicitation channel: await_approval asks
	// whoever sits at the client for the decision. Off by default.
	ElicitApprovals bool
	Version         string
	Log             *zap.Logger
}

// handlers holds the wired dependencies.
type handlers struct {
	Config
	inputs compiledSchemas
	// stateKey MACs the requestState handed out by await_approval.
	stateKey []byte
}

// toolSpec is one tool of the catalog: its contract types, its text for
// the model and its annotations, all four set explicitly (mcp-go's
// defaults call every tool destructive and open-world).
type toolSpec struct {
	name, title, description string
	args, result             any
	readOnly, destructive    bool
	idempotent               bool
	operator                 bool // not in the agent profile
	approver                 bool // in the approver profile (reading and deciding)
	handle                   func(h *handlers, ctx context.Context, c access.Principal, req request) (any, error)
}

// NewServer returns the MCP server for cfg.Profile.
func NewServer(cfg Config) *server.MCPServer {
	if cfg.Profile == "" {
		cfg.Profile = access.ProfileAgent
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	mac := hmac.New(sha256.New, cfg.Keys.Secret)
	mac.Write([]byte("nano-vm-mcp request state"))
	h := &handlers{Config: cfg, inputs: compileInputs(), stateKey: mac.Sum(nil)}

	s := server.NewMCPServer(ServerName, cfg.Version,
		server.WithTitle("nano-vm-mcp: governed execution runtime"),
		server.WithInstructions(instructions),
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(false, false),
		server.WithPromptCapabilities(false),
		server.WithLogging(),
		server.WithRecovery(),
		server.WithResourceRecovery(),
		server.WithToolFilter(h.visibleTools),
	)
	for i := range catalog {
		t := &catalog[i]
		if t.operator && cfg.Profile != access.ProfileOperator && !t.approver {
			continue
		}
		s.AddTool(t.tool(), h.dispatch(t))
	}
	h.addResources(s)
	h.addPrompts(s)
	return s
}

const instructions = `nano-vm-mcp runs declared programs (finite-state machines) step by step.
The runtime decides the control flow; you compute one bounded task at a time.
Call list_programs, then start_run. Each answer carries a task: answer it with
step (run_id, seq, output) until the run completes, fails, or waits for a human
approval (status waiting_approval).
For an llm task (kind "llm"), compute an output that matches its output_schema
from its view and instructions only.
For a tool task (kind "tool"), ` + toolTaskGuide + `
` + attemptsGuide + ` ` + runtimeToolGuide + ` Errors are JSON with a stable code and
a message that says what to do next.`

// toolTaskGuide is what the server instructions, the step description, the
// drive_run prompt and every error about a tool task say of tool tasks: an
// agent that lacks the tool must stop rather than invent its result.
const toolTaskGuide = "call the tool named in task.tool.name with task.tool.arguments and submit its result unchanged as the output, with tool: {name}; never edit or invent a result. If you cannot call that tool, stop, or call cancel_run, and tell the user."

// runtimeToolGuide is what the server instructions, the step description
// and the drive_run prompt say of the tools the server runs itself: there
// is nothing to submit, and await_run waits for them.
const runtimeToolGuide = `An answer with waiting_for: "tool" means the server is running a tool of the run itself: submit nothing for it, call await_run with the run_id until waiting_for is gone.`

// attemptsGuide warns that claims cost attempts too: capability_denied
// uses one up as schema_violation and guard_denied do.
const attemptsGuide = "schema_violation, guard_denied and capability_denied each use up one of the task's attempts (task.attempts_left); the last one ends the run."

// tool renders the spec as an mcp.Tool with the committed schemas.
func (t *toolSpec) tool() mcp.Tool {
	opts := []mcp.ToolOption{
		mcp.WithDescription(t.description),
		mcp.WithRawInputSchema(compact(schemaOf(t.args))),
		mcp.WithToolAnnotation(mcp.ToolAnnotation{
			Title:           t.title,
			ReadOnlyHint:    mcp.ToBoolPtr(t.readOnly),
			DestructiveHint: mcp.ToBoolPtr(t.destructive),
			IdempotentHint:  mcp.ToBoolPtr(t.idempotent),
			OpenWorldHint:   mcp.ToBoolPtr(false),
		}),
	}
	if t.result != nil {
		opts = append(opts, mcp.WithRawOutputSchema(compact(schemaOf(t.result))))
	}
	tool := mcp.NewTool(t.name, opts...)
	tool.InputSchema = mcp.ToolInputSchema{} // the raw schema replaces NewTool's empty one
	return tool
}

// visibleTools shows each caller its profile's tools: the agent server
// serves agents and approvers, the operator server operators. The filter
// runs on tools/list and on tools/call, so a hidden tool cannot be called.
func (h *handlers) visibleTools(ctx context.Context, tools []mcp.Tool) []mcp.Tool {
	c := h.caller(ctx)
	out := tools[:0:0]
	for _, t := range tools {
		if spec := specByName(t.Name); spec != nil && !spec.allows(c.Profile) {
			continue
		}
		out = append(out, t)
	}
	return out
}

// allows reports whether the tool is in profile p: the operator has every
// tool; an approver reads and decides, never drives a run; an agent has
// every tool but the operator's.
func (t *toolSpec) allows(p access.Profile) bool {
	switch p {
	case access.ProfileOperator:
		return true
	case access.ProfileApprover:
		return t.approver
	}
	return !t.operator
}

func specByName(name string) *toolSpec {
	for i := range catalog {
		if catalog[i].name == name {
			return &catalog[i]
		}
	}
	return nil
}

// caller is the principal of the request: set by the HTTP guard, or the
// local user of a stdio server with this server's profile.
func (h *handlers) caller(ctx context.Context) access.Principal {
	if p, ok := access.FromContext(ctx); ok {
		return p
	}
	return access.Principal{ID: access.IDLocal, Profile: h.Profile}
}

// dispatch decodes the arguments strictly, checks them against the tool's
// input schema, runs the handler and renders its result.
func (h *handlers) dispatch(t *toolSpec) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		start := time.Now()
		c := h.caller(ctx)
		out, err := h.call(ctx, t, c, req)
		h.logFailure(t, c, req, err)
		res := h.render(t, out, err)
		h.Log.Info("tool call", zap.String("tool", t.name), zap.String("principal", c.ID),
			zap.Bool("is_error", res.IsError), zap.Duration("took", time.Since(start)),
			zap.String("protocol", server.RequestProtocolVersion(ctx)))
		return res, nil
	}
}

func (h *handlers) call(ctx context.Context, t *toolSpec, c access.Principal, req mcp.CallToolRequest) (any, error) {
	raw, err := rawArguments(req)
	if err != nil {
		return nil, err
	}
	args, err := jsonvalue.DecodeDepth(raw, jsonvalue.MaxDepth)
	if err != nil {
		return nil, errorf(CodeInvalidArguments, "the arguments are not valid JSON: %v", err)
	}
	if vs := h.inputs[t.name].Validate(args); len(vs) > 0 {
		e := errorf(CodeInvalidArguments, "the arguments do not match %s's input schema", t.name)
		for _, v := range vs {
			e.body.Details = append(e.body.Details, v.String())
		}
		return nil, e
	}
	if t.name == "await_approval" {
		ctx = withInputResponses(ctx, req.Params.MultiRoundTripParams)
	} else {
		// A call that has begun finishes even when the client goes away or
		// the server shuts down: its append is durable or never happened,
		// and the answer stays retrievable (a duplicate step returns it).
		ctx = context.WithoutCancel(ctx)
	}
	if m := req.Params.Meta; m != nil && m.ProgressToken != nil {
		ctx = service.WithProgress(ctx, h.progress(ctx, m.ProgressToken))
	}
	decoded, _ := args.(map[string]any) // the schema's root is an object
	return t.handle(h, ctx, c, request{raw: raw, args: decoded})
}

// progress sends each runtime tool call event that a call waits on to the
// client, as a progress notification for the request's token. The
// messages name the state, the tool, the attempt and a failure's class:
// never arguments or results.
func (h *handlers) progress(ctx context.Context, token mcp.ProgressToken) func(service.Progress) {
	srv := server.ServerFromContext(ctx)
	n := 0
	return func(p service.Progress) {
		if srv == nil {
			return
		}
		n++
		err := srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
			"progressToken": token, "progress": n, "message": p.Message,
		})
		if err != nil {
			h.Log.Debug("progress notification", zap.String("run_id", p.RunID), zap.Error(err))
		}
	}
}

// request is a tool call's arguments, checked against the tool's input
// schema: as they arrived, and strictly decoded (numbers keep their
// digits), so that free-form values are not decoded a second time.
type request struct {
	raw  []byte
	args map[string]any
}

// rawArguments returns the arguments as they arrived: numbers keep their
// digits (mcp-go would turn them into float64).
func rawArguments(req mcp.CallToolRequest) ([]byte, error) {
	if raw := req.Params.RawArguments; len(raw) > 0 && string(raw) != "null" {
		return raw, nil
	}
	if req.Params.Arguments == nil {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(req.Params.Arguments)
	if err != nil {
		return nil, errorf(CodeInvalidArguments, "the arguments cannot be read")
	}
	return b, nil
}

// logFailure logs the failure behind an internal error at error level:
// the client is told only "internal", so the log is the one place that
// says what failed, for which run and caller.
func (h *handlers) logFailure(t *toolSpec, c access.Principal, req mcp.CallToolRequest, err error) {
	if err == nil {
		return
	}
	var te *toolError
	if errors.As(err, &te) {
		if te.cause == nil {
			return // a domain error: the answer says it all
		}
		err = te.cause
	}
	fields := []zap.Field{zap.String("tool", t.name), zap.String("principal", c.ID), zap.Error(err)}
	var named struct {
		RunID   string `json:"run_id"`
		Program string `json:"program"`
	}
	if raw, rerr := rawArguments(req); rerr == nil {
		_ = json.Unmarshal(raw, &named) // best effort: these only label the line
	}
	if named.RunID != "" {
		fields = append(fields, zap.String("run_id", named.RunID))
	}
	if named.Program != "" {
		fields = append(fields, zap.String("program", named.Program))
	}
	h.Log.Error("tool failed", fields...)
}

// render turns a handler's answer into the tool result.
func (h *handlers) render(t *toolSpec, out any, err error) *mcp.CallToolResult {
	if err != nil {
		var te *toolError
		if !errors.As(err, &te) {
			te = internalError(err)
		}
		return te.result(t.name)
	}
	if r, ok := out.(*mcp.CallToolResult); ok { // an input request
		return r
	}
	text, merr := json.Marshal(out)
	if merr != nil {
		h.Log.Error("encode result", zap.String("tool", t.name), zap.Error(merr))
		return errorf(CodeInternal, "the server could not encode the result").result(t.name)
	}
	return mcp.NewToolResultStructured(json.RawMessage(text), string(text))
}

// bind unmarshals the arguments into the tool's contract struct.
func (r request) bind(v any) error {
	if err := json.Unmarshal(r.raw, v); err != nil {
		return errorf(CodeInvalidArguments, "%v", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// value returns a free-form argument as decoded (raw: the argument's
// bytes, from the bound struct, which tell a missing one).
func (r request) value(name string, raw []byte) (any, error) {
	v, ok := r.args[name]
	if !ok || len(raw) == 0 {
		return nil, errorf(CodeInvalidArguments, "%s is required", name)
	}
	return v, nil
}
