package tools

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// Approvals: a human decides, never the model. Two channels reach the
// core's Decide input:
//   - approve: a configured approver, identified by a token whose hash the
//     operator configured; the trace records the approver's id and role.
//   - await_approval: the elicitation form of the client, when the operator
//     opened that channel. Whoever sits at the client answers, so the trace
//     records the decider as "elicitation:<caller>".

type inputResponsesKey struct{}

func withInputResponses(ctx context.Context, p mcp.MultiRoundTripParams) context.Context {
	return context.WithValue(ctx, inputResponsesKey{}, p)
}

func inputResponses(ctx context.Context) mcp.MultiRoundTripParams {
	p, _ := ctx.Value(inputResponsesKey{}).(mcp.MultiRoundTripParams)
	return p
}

// decisionInput is the id of the elicitation request await_approval makes.
const decisionInput = "decision"

// approvalTask returns the run's open approval task with seq, or the error
// the client should see (service.ApprovalTask's rule).
func approvalTask(r *runtime.Run, p *program.Program, seq uint64) (*program.State, error) {
	st, err := service.ApprovalTask(r, p, seq)
	if err != nil {
		task := r.Task
		if r.Finished() {
			task = nil
		}
		return nil, fromRuntime(err, task)
	}
	return st, nil
}

func (h *handlers) awaitApproval(ctx context.Context, c access.Principal, req request) (any, error) {
	var args AwaitApprovalArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	r, p, err := h.readRun(ctx, c, args.RunID)
	if err != nil {
		return nil, err
	}
	st, err := approvalTask(r, p, args.Seq)
	if err != nil {
		return nil, err
	}
	if !h.ElicitApprovals && !st.Elicitation {
		return nil, h.channelClosed(r, st, "serve started with --approval-channel elicitation, and a client that shows elicitation forms",
			"approvals for state %s are not taken through the client: the server runs without --approval-channel elicitation, and the state does not set elicitation: true", st.Name)
	}
	form, ok := elicitationSchema(st)
	if !ok {
		return nil, h.channelClosed(r, st, "", "the decision form of state %s is not flat, so a client form cannot show it", st.Name)
	}
	if !clientCanElicit(ctx) {
		return nil, h.channelClosed(r, st, "a client that shows elicitation forms",
			"this client did not declare the elicitation capability, so it cannot show the decision form")
	}
	state := h.requestState(r.ID, args.Seq, c.ID)
	mrtr := inputResponses(ctx)
	answer := server.ElicitationResponse(mrtr.InputResponses, decisionInput)
	if answer == nil {
		msg := fmt.Sprintf("Run %s (%s) waits for a decision by a %s.\n\n%s\n\n%s", r.ID, p.Name, st.Role, st.Instructions, viewText(r.Task))
		return server.NewInputRequestBuilder(state).
			Elicit(decisionInput, mcp.ElicitationParams{Message: msg, RequestedSchema: form}).
			ToolResult(), nil
	}
	if !hmac.Equal([]byte(mrtr.RequestState), []byte(state)) {
		return nil, errorf(CodeInvalidRequestState, "the answer does not belong to run %s, seq %d and this caller", r.ID, args.Seq)
	}
	if answer.Action != mcp.ElicitationResponseActionAccept {
		res := RunResult{RunID: r.ID, Status: status(r.Status, r.Task), Transitions: []Hop{}, Task: r.Task}
		return res, nil
	}
	decision, err := reencode(answer.Content)
	if err != nil {
		return nil, errorf(CodeInvalidArguments, "the decision: %v", err)
	}
	a, err := h.Service.Decide(ctx, r.ID, runtime.Decide{
		Seq: args.Seq, State: st.Name, Role: st.Role, Principal: runtime.ElicitedPrefix + c.ID,
		Decision: decision, AllowSelf: true,
	})
	if err != nil {
		return nil, rejection(err, a)
	}
	return runResult(a), nil
}

func (h *handlers) approve(ctx context.Context, c access.Principal, req request) (any, error) {
	var args ApproveArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	approver, ok := h.approver(c, args.ApproverToken)
	if !ok {
		return nil, h.noApprover(args.ApproverToken)
	}
	decision, err := req.value("decision", args.Decision)
	if err != nil {
		return nil, err
	}
	in := runtime.Decide{Seq: args.Seq, Role: approver.Role, Principal: approver.ID, Decision: decision}
	a, err := h.Service.Approve(ctx, caller(c), args.RunID, in)
	var ref *service.Refusal
	if errors.As(err, &ref) {
		return nil, refused(ref, approver)
	}
	if err != nil {
		return nil, rejection(err, a)
	}
	return runResult(a), nil
}

// refused is approve's answer to the service's refusal of the approver,
// which nothing records.
func refused(ref *service.Refusal, approver access.Approver) *toolError {
	if ref.Code == runtime.CodeNoSuchRun {
		return errorf(CodeUnknownRun, "%s", ref.Message)
	}
	e := errorf(CodeForbidden, "%s", ref.Message)
	e.advice = fmt.Sprintf("Do not retry as %s: only an approver of role %s can decide this task.", approver.ID, ref.Role)
	return e
}

// channelClosed is await_approval's refusal. Its advice names who decides
// instead: the approvers of the state's role where there are any, else
// what is missing for anyone to decide (clientFix, when the client side
// can be fixed, and an approver of the role), so that a run that can only
// wait for its deadline says so.
func (h *handlers) channelClosed(r *runtime.Run, st *program.State, clientFix, format string, args ...any) *toolError {
	e := errorf(CodeApprovalChannelClosed, format, args...)
	if h.Approvers.HasRole(st.Role) {
		e.advice = fmt.Sprintf("An approver of role %s decides this task with approve, outside this client. Stop and tell the user the run waits for that decision.", st.Role)
		return e
	}
	needs := fmt.Sprintf("an approver of role %s in an approvers file (serve --approvers FILE), who decides with approve", st.Role)
	if clientFix != "" {
		needs = clientFix + "; or " + needs
	}
	e.advice = fmt.Sprintf("This server has no approver of role %s either, so nobody can decide this task yet. Stop and tell the user that it needs one of: %s.", st.Role, needs)
	if !r.Deadline.IsZero() && st.OnTimeout != nil {
		e.advice += fmt.Sprintf(" Until then the run waits; at its deadline, %s, it goes to %s.", r.Deadline.UTC().Format(time.RFC3339), st.OnTimeout.Name)
	}
	return e
}

// noApprover is approve's answer when no approver is identified: it
// names what is missing, which a retry with the right token can supply.
func (h *handlers) noApprover(token string) *toolError {
	switch {
	case h.Approvers.Len() == 0:
		e := errorf(CodeForbidden, "this server has no configured approvers: it was started without an approvers file (serve --approvers FILE)")
		e.advice = "No token can approve here. Stop and tell the user the operator must configure approvers (docs/configuration.md, approvers file), or open the elicitation channel (serve --approval-channel elicitation) and use await_approval."
		return e
	case token == "":
		e := errorf(CodeForbidden, "approve needs an approver's token, and none was passed")
		e.advice = "Call approve again with approver_token set to the approver's own token, or over HTTP with that token as the bearer token."
		return e
	}
	e := errorf(CodeForbidden, "no configured approver holds that token")
	e.advice = "Call approve again with approver_token set to the token of an approver in the server's approvers file; the approver or the operator has it."
	return e
}

// approver identifies the human: by the bearer token the HTTP guard
// matched, or by the token passed as an argument (operator profile).
func (h *handlers) approver(c access.Principal, token string) (access.Approver, bool) {
	if token == "" && c.ApproverRole != "" {
		return access.Approver{ID: c.ID, Role: c.ApproverRole}, true
	}
	if token == "" || h.Approvers == nil {
		return access.Approver{}, false
	}
	return h.Approvers.Lookup(token)
}

// requestState binds an elicitation round trip to the run, the task's seq
// and the caller, so an answer cannot be replayed onto another task.
func (h *handlers) requestState(runID string, seq uint64, principal string) string {
	mac := hmac.New(sha256.New, h.stateKey)
	for _, part := range []string{runID, strconv.FormatUint(seq, 10), principal} {
		mac.Write([]byte(part))
		mac.Write([]byte{0})
	}
	return "v1." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// elicitationSchema is the decision form as an elicitation schema: a flat
// object of primitive properties, which is all a client form can show.
func elicitationSchema(st *program.State) (map[string]any, bool) {
	if st.Output == nil {
		return nil, false
	}
	doc, ok := st.Output.Doc().(map[string]any)
	if !ok || doc["type"] != "object" {
		return nil, false
	}
	props, _ := doc["properties"].(map[string]any)
	if len(props) == 0 {
		return nil, false
	}
	for _, p := range props {
		ps, ok := p.(map[string]any)
		if !ok {
			return nil, false
		}
		switch ps["type"] {
		case "string", "number", "integer", "boolean":
		default:
			return nil, false
		}
	}
	form := map[string]any{"type": "object", "properties": props}
	if req, ok := doc["required"]; ok {
		form["required"] = req
	}
	return form, true
}

func clientCanElicit(ctx context.Context) bool {
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.ClientCapabilities != nil {
		return info.ClientCapabilities.Elicitation != nil
	}
	if s, ok := server.ClientSessionFromContext(ctx).(server.SessionWithClientInfo); ok {
		return s.GetClientCapabilities().Elicitation != nil
	}
	return false
}

// viewText shows the approver the task's view as indented JSON.
func viewText(t *Task) string {
	b, err := json.MarshalIndent(t.View, "", "  ")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// reencode turns a client's decoded answer back into strictly decoded JSON
// (numbers as json.Number).
func reencode(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonvalue.Decode(b)
}
