package console

import (
	"net/http"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// An approver signed in to the console reads what their decisions need
// and no more: their inbox, and the pages of the runs that wait for their
// role now. Every other run, the programs with their guards, the metrics,
// the laboratory and the demo stay the operator's (or the auditor's, where
// the console is public).

// isApprover reports whether p is an approver (and not the operator).
func isApprover(p access.Principal) bool {
	return p.Profile == access.ProfileApprover
}

// approverMay reports whether the approver p may reach r.
func (c *Console) approverMay(r *http.Request, p access.Principal) bool {
	path := r.URL.Path
	switch {
	case path == access.ConsoleApprovalsPath, path == access.ConsoleLoginPath,
		path == access.FaviconPath, strings.HasPrefix(path, access.ConsolePath+"/static/"):
		return true
	case path == access.ConsolePath, path == access.ConsolePath+"/":
		return true // redirected to the inbox
	}
	rest, ok := strings.CutPrefix(path, access.ConsolePath+"/runs/")
	if !ok {
		return false
	}
	id, sub, _ := strings.Cut(rest, "/")
	if sub != "" && sub != "state.json" && sub != "receipt/verify" {
		return false
	}
	// Who may read which run is the service's rule (service.Caller): for an
	// approver, the runs that wait for their role now.
	_, _, err := c.cfg.Service.Read(r.Context(), id, service.Caller{ID: p.ID, ApproverRole: p.ApproverRole})
	return err == nil
}
