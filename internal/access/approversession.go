package access

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"time"
)

// An approver signs in to the console's inbox with their own token, as the
// operator does with the operator token, for a session cookie of its own:
// it names the approver, so that the console shows only that approver's
// pending decisions. The approver's role is read from the approvers list
// on every request, never from the cookie.
const (
	// ConsoleApproverLoginPath takes the inbox's sign-in form.
	ConsoleApproverLoginPath = ConsolePath + "/approvals/login"
	// ConsoleApprovalsPath is the inbox page.
	ConsoleApprovalsPath = ConsolePath + "/approvals"
	// ConsoleApproverCookie holds an approver's console session: an
	// expiry, the approver's id and a MAC under the guard's session key.
	ConsoleApproverCookie = "nano_vm_approver"
)

// consoleApproverLogin checks an approver's token posted by the inbox's
// sign-in form and, if an approver holds it, sets the approver's session.
func (g *guard) consoleApproverLogin(w http.ResponseWriter, r *http.Request) {
	if !g.limitBody(w, r) {
		return
	}
	ap, ok := g.approvers.Lookup(strings.TrimSpace(r.PostFormValue("token")))
	if !ok {
		g.log.Info("console approver sign-in refused")
		http.Redirect(w, r, ConsoleApprovalsPath+"?failed=1", http.StatusSeeOther)
		return
	}
	exp := g.now().Add(ConsoleSession)
	http.SetCookie(w, approverCookie(r, g.approverSessionValue(exp, ap.ID), int(ConsoleSession/time.Second)))
	http.Redirect(w, r, ConsoleApprovalsPath, http.StatusSeeOther)
}

func approverCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: ConsoleApproverCookie, Value: value, Path: ConsolePath, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// approverSessionValue is base64url(expiry in Unix seconds, 8 bytes || MAC
// || approver id).
func (g *guard) approverSessionValue(exp time.Time, id string) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(exp.Unix()))
	b = append(b, g.approverSessionMAC(b, id)...)
	return base64.RawURLEncoding.EncodeToString(append(b, id...))
}

// approverSessionMAC is under its own label, so that an operator's session
// can never pass for an approver's, nor the reverse.
func (g *guard) approverSessionMAC(exp []byte, id string) []byte {
	m := hmac.New(sha256.New, g.sessionKey[:])
	m.Write([]byte("nano-vm-mcp console approver session\x00"))
	m.Write(exp)
	m.Write([]byte(id))
	return m.Sum(nil)
}

// approverSession returns the principal of a valid approver session: the
// approver, with the role the approvers list gives them now. An approver
// no longer listed has no session.
func (g *guard) approverSession(r *http.Request) (Principal, bool) {
	c, err := r.Cookie(ConsoleApproverCookie)
	if err != nil {
		return Principal{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(b) <= 8+sha256.Size {
		return Principal{}, false
	}
	exp, mac, id := b[:8], b[8:8+sha256.Size], string(b[8+sha256.Size:])
	if !hmac.Equal(mac, g.approverSessionMAC(exp, id)) || g.now().Unix() >= int64(binary.BigEndian.Uint64(exp)) {
		return Principal{}, false
	}
	ap, ok := g.approvers.byID(id)
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
