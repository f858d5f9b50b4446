package tools

import (
	"context"
	"errors"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// inboxPageSize is how many decisions one page of list_approvals holds.
const inboxPageSize = 50

// listApprovals is the approver's inbox: the approval tasks of the
// approver's role, identified as approve identifies the approver (the
// bearer token, or approver_token). An operator without a token sees every
// role's, and the result says so (scope all).
func (h *handlers) listApprovals(ctx context.Context, c access.Principal, req request) (any, error) {
	var args ListApprovalsArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	q := service.InboxQuery{Lab: args.IncludeLab, Cursor: args.Cursor, Limit: inboxPageSize}
	res := ListApprovalsResult{Scope: "all", Approvals: []PendingApproval{}}
	switch approver, ok := h.approver(c, args.ApproverToken); {
	case ok:
		q.Role, q.Approver = approver.Role, approver.ID
		res.Scope, res.Approver, res.Role = "approver", approver.ID, approver.Role
	case args.ApproverToken != "":
		return nil, errorf(CodeForbidden, "no configured approver holds that token")
	case c.Profile != access.ProfileOperator:
		return nil, errorf(CodeForbidden, "list_approvals lists an approver's decisions: authenticate with your approver token, or pass it as approver_token")
	}
	decisions, next, err := h.Service.Inbox(ctx, q)
	if errors.Is(err, tracestore.ErrBadCursor) {
		return nil, errorf(CodeInvalidArguments, "cursor is not one this server handed out")
	}
	if err != nil {
		return nil, err
	}
	for _, d := range decisions {
		pa := PendingApproval{
			RunID: d.RunID, Program: d.Program, State: d.State, Role: d.Role, Seq: d.Seq,
			Since:              d.Since.UTC().Format(time.RFC3339Nano),
			ApprovalsRemaining: d.Remaining(), ApprovalsGiven: d.Given, ApprovedByYou: d.ApprovedByYou, Lab: d.Lab,
		}
		if !d.Deadline.IsZero() {
			pa.Deadline = d.Deadline.UTC().Format(time.RFC3339Nano)
		}
		res.Approvals = append(res.Approvals, pa)
	}
	res.NextCursor = next
	return res, nil
}
