package service

import (
	"context"
	"slices"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The approvers' inbox: the approval tasks waiting for a decision. The
// store's run index names the role each run awaits and the task's deadline
// (indexRow), so a page is found and ordered without reading any trace;
// only the runs on the page are then read, for what the index does not
// hold (the state, the task's seq, who has approved so far).

// InboxQuery selects the decisions to list.
type InboxQuery struct {
	Role string // only this role's decisions; "" for every role's
	// Approver is the principal whose own approvals are marked
	// (ApprovedByYou) on states that need several approvers.
	Approver string
	Lab      bool   // include laboratory runs
	Cursor   string // from the previous page
	Limit    int    // default 100, at most 1000
}

// AwaitedDecision is one approval task waiting for a decision.
type AwaitedDecision struct {
	RunID, Program, State, Role string
	Seq                         uint64    // the task's seq, which approve takes
	Since                       time.Time // when the task was issued
	Deadline                    time.Time // zero when the task has no timeout
	// Needed is how many distinct approvers the decision needs (1 unless
	// the state says approvals: N), Given how many have submitted the
	// pending decision.
	Needed, Given int
	// ApprovedByYou: the query's Approver is one of those who gave it.
	ApprovedByYou bool
	Lab           bool
}

// Remaining is how many approvals the decision still needs.
func (d AwaitedDecision) Remaining() int { return d.Needed - d.Given }

// Inbox lists a page of the approval tasks q selects, soonest deadline
// first (tasks without one last), and the cursor of the next page. A task
// whose deadline has passed, by the service's clock, is left out: it can
// no longer be decided, and the sweeper or the next write times it out. A
// page may hold fewer decisions than the limit, when a run moved on after
// the index was read; the cursor still leads on.
func (s *Service) Inbox(ctx context.Context, q InboxQuery) ([]AwaitedDecision, string, error) {
	now := s.clock()
	infos, next, err := s.store.ListAwaiting(ctx, tracestore.AwaitingFilter{Role: q.Role, After: now, Lab: q.Lab, Cursor: q.Cursor, Limit: q.Limit})
	if err != nil {
		return nil, "", err
	}
	out := make([]AwaitedDecision, 0, len(infos))
	for _, info := range infos {
		r, p, err := s.Get(ctx, info.RunID)
		if err != nil {
			return nil, "", err
		}
		role := r.AwaitedRole()
		if role == "" || q.Role != "" && role != q.Role || !r.Deadline.IsZero() && !now.Before(r.Deadline) {
			continue
		}
		d := AwaitedDecision{
			RunID: r.ID, Program: p.Name, State: r.State, Role: role, Seq: r.Task.Seq, Deadline: r.Deadline,
			Needed: max(1, r.ApprovalsNeeded), Given: r.ApprovalsGiven, Lab: r.Lab,
		}
		d.Since, _ = time.Parse(time.RFC3339Nano, r.TaskAt)
		if r.Pending != nil && q.Approver != "" {
			d.ApprovedByYou = slices.Contains(r.Pending.Approvers, q.Approver)
		}
		out = append(out, d)
	}
	return out, next, nil
}
