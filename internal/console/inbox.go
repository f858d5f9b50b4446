package console

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The approvers' inbox: the pending decisions of the signed-in approver's
// role (list_approvals on MCP), or every role's for the operator. Anyone
// else gets the approver's sign-in form.

// inboxRoutes registers the inbox page. Its sign-in form posts to
// access.ConsoleApproverLoginPath, which the guard answers.
func (c *Console) inboxRoutes() {
	c.mux.HandleFunc("GET "+access.ConsoleApprovalsPath, c.inbox)
}

// inboxPageSize is how many decisions one page of the inbox shows.
const inboxPageSize = 50

// inboxPage is the data of the inbox.
type inboxPage struct {
	Scope     string // "approver", "all" (the operator), or "" (not signed in as either)
	Approver  string
	Role      string
	Failed    bool // a refused sign-in
	Decisions []service.AwaitedDecision
	Lab       bool   // laboratory runs included
	LabToggle string // the page's address with Lab flipped
	Next      string // the next page's address; "" on the last page
	First     string // the first page's address, when this is a later one
	Error     string // why the cursor was refused (status 400)
}

func (c *Console) inbox(w http.ResponseWriter, r *http.Request) {
	p := principal(r.Context())
	qs := r.URL.Query()
	lab, msg := labParam(qs.Get("lab"))
	data := inboxPage{Failed: qs.Get("failed") != "", Lab: lab}
	q := service.InboxQuery{Lab: data.Lab, Cursor: qs.Get("cursor"), Limit: inboxPageSize}
	switch {
	case isApprover(p):
		data.Scope, data.Approver, data.Role = "approver", p.ID, p.ApproverRole
		q.Role, q.Approver = p.ApproverRole, p.ID
	case p.Profile == access.ProfileOperator:
		data.Scope = "all"
	default:
		c.render(w, r, "approvals", "Approvals", "approvals", data)
		return
	}
	if msg != "" {
		// The same ?lab= as the runs list and the metrics pages.
		data.Error, data.LabToggle = msg, inboxURL(false, "")
		w.WriteHeader(http.StatusBadRequest)
		c.render(w, r, "approvals", "Approvals", "approvals", data)
		return
	}
	decisions, next, err := c.cfg.Service.Inbox(r.Context(), q)
	switch {
	case errors.Is(err, tracestore.ErrBadCursor):
		data.Error = "the cursor is not one this page handed out; start again from the first page"
		w.WriteHeader(http.StatusBadRequest)
	case err != nil:
		c.fail(w, r, err)
		return
	}
	data.Decisions = decisions
	data.LabToggle = inboxURL(!data.Lab, "")
	if next != "" {
		data.Next = inboxURL(data.Lab, next)
	}
	if q.Cursor != "" {
		data.First = inboxURL(data.Lab, "")
	}
	c.render(w, r, "approvals", "Approvals", "approvals", data)
}

// inboxURL is the inbox's address with these settings.
func inboxURL(lab bool, cursor string) string {
	v := url.Values{}
	if lab {
		v.Set("lab", labInclude)
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	if len(v) == 0 {
		return access.ConsoleApprovalsPath
	}
	return access.ConsoleApprovalsPath + "?" + v.Encode()
}
