package access

import (
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// An approver signs in to the console's inbox with their own token, as the
// operator does with the operator token, for a session of their own: it
// names the approver, so that the console shows only that approver's
// pending decisions. The approver's role is read from the approvers list
// on every request, never from the session.
const (
	// ConsoleApproverLoginPath takes the inbox's sign-in form.
	ConsoleApproverLoginPath = ConsolePath + "/approvals/login"
	// ConsoleApprovalsPath is the inbox page.
	ConsoleApprovalsPath = ConsolePath + "/approvals"
	// ConsoleApproverCookie holds an approver's console session id.
	ConsoleApproverCookie = "nano_vm_approver"
)

// consoleApproverLogin checks an approver's token posted by the inbox's
// sign-in form and, if an approver holds it, opens the approver's session.
func (g *guard) consoleApproverLogin(w http.ResponseWriter, r *http.Request) {
	if !g.limitBody(w, r) {
		return
	}
	if g.throttled(w, r) {
		return
	}
	ap, ok := g.approvers.Lookup(strings.TrimSpace(r.PostFormValue("token")))
	if !ok {
		g.log.Info("console approver sign-in refused", zap.String("remote_addr", r.RemoteAddr))
		http.Redirect(w, r, ConsoleApprovalsPath+"?failed=1", http.StatusSeeOther)
		return
	}
	g.signIns.succeeded(clientKey(r))
	id := g.sessions.open(g.now(), ap.ID, ConsoleSession)
	http.SetCookie(w, consoleCookie(r, ConsoleApproverCookie, id, int(ConsoleSession/time.Second)))
	http.Redirect(w, r, ConsoleApprovalsPath, http.StatusSeeOther)
}

// approverSession returns the principal of a live approver session: the
// approver, with the role the approvers list gives them now. An approver
// no longer listed has no session.
func (g *guard) approverSession(r *http.Request) (Principal, bool) {
	c, err := r.Cookie(ConsoleApproverCookie)
	if err != nil {
		return Principal{}, false
	}
	s, ok := g.sessions.get(c.Value, g.now())
	if !ok || s.approver == "" {
		return Principal{}, false
	}
	ap, ok := g.approvers.byID(s.approver)
	if !ok {
		return Principal{}, false
	}
	return Principal{ID: ap.ID, Profile: ProfileApprover, ApproverRole: ap.Role}, true
}

// byID returns the approver with the id, from the approvers file in force.
func (a *Approvers) byID(id string) (Approver, bool) {
	if a == nil {
		return Approver{}, false
	}
	e, ok := a.current().byID(id)
	return Approver{ID: e.id, Role: e.role}, ok
}
