package access

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// The web console (internal/console) is served under ConsolePath, on the
// same listener and behind the same Host, Origin and body checks as MCP.
//
// Whenever any credential is configured (an access, operator or approver
// token, an agent tokens file, or a token issuer), the console asks for
// one too: the operator signs in with the operator token, an approver with
// their own token (at ConsoleApprovalsPath), or either presents it as a
// bearer token; every session is held in a table on the server and ends at
// sign-out. Agents (the access token, an agent tokens file's token, an
// issuer's agent token) are refused: their view is MCP. Only the sign-in pages and the static files stay open. With
// HTTPConfig.ConsolePublic, or when no credential is configured at all, a
// visitor without a credential is let in as the auditor (read-only,
// personal data redacted).
const (
	ConsolePath       = "/ui"
	ConsoleLoginPath  = ConsolePath + "/login"
	ConsoleLogoutPath = ConsolePath + "/logout"
	// ConsoleCookie holds an operator's console session id.
	ConsoleCookie = "nano_vm_console"
	// ConsoleSession is how long a console session lasts.
	ConsoleSession = 8 * time.Hour
	// ConsoleNoOperatorToken is the sign-in page's failed= value when the
	// server was started without an operator token, so that nobody can
	// sign in.
	ConsoleNoOperatorToken = "no-operator-token"
	// FaviconPath is answered without a credential: browsers ask for it
	// on every site, and a 401 there only fills the log.
	FaviconPath = "/favicon.ico"
)

// CodeTooManySignIns is the refusal code of a sign-in from a client
// address that failed too often (429, with Retry-After).
const CodeTooManySignIns = "too_many_sign_ins"

// CodeConsoleForbidden refuses an agent's token in the console (403).
const CodeConsoleForbidden = "forbidden"

// ProfileAuditor is the console's visitor without a credential, where the
// console is public: it reads runs, programs, receipts and metrics with
// personal data redacted, and changes nothing.
const ProfileAuditor Profile = "auditor"

// IDAuditor is the auditor principal's id.
const IDAuditor = "auditor"

func isConsolePath(p string) bool {
	return p == ConsolePath || strings.HasPrefix(p, ConsolePath+"/")
}

// consoleOpen reports whether a console path is reached without a
// credential even when the console is closed: the sign-in pages, the
// forms they post and the static files they use.
func consoleOpen(r *http.Request) bool {
	switch r.URL.Path {
	case ConsoleLoginPath, ConsoleApprovalsPath, ConsoleApproverLoginPath, ConsoleLogoutPath:
		return true
	}
	return strings.HasPrefix(r.URL.Path, ConsolePath+"/static/")
}

// consoleClosed reports whether a visitor without a credential is refused
// the console: some credential is configured and the console is not
// public.
func (g *guard) consoleClosed() bool {
	return !g.consolePublic && (g.accessSet == 1 || g.operatorSet == 1 || g.approvers.Len() > 0 || g.tokens != nil || g.oauth != nil)
}

// serveConsole authenticates a console request: a bearer token as on MCP,
// else a session cookie (the operator's, else an approver's), else none.
// It also answers the sign-in and sign-out forms.
func (g *guard) serveConsole(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == ConsoleLoginPath:
		g.consoleLogin(w, r)
		return
	case r.Method == http.MethodPost && r.URL.Path == ConsoleApproverLoginPath:
		g.consoleApproverLogin(w, r)
		return
	case r.Method == http.MethodPost && r.URL.Path == ConsoleLogoutPath:
		g.consoleLogout(w, r)
		return
	}
	var p Principal
	signedIn := true
	switch {
	case len(r.Header.Values("Authorization")) > 0:
		var code string
		if p, code, _ = g.authenticate(r); code != "" {
			w.Header().Set("WWW-Authenticate", g.challenge(r, code))
			g.refuse(w, r, http.StatusUnauthorized, code, "the bearer token is not valid for this server")
			return
		}
	case g.operatorSession(r):
		p = Principal{ID: IDOperator, Profile: ProfileOperator}
	default:
		p, signedIn = g.approverSession(r)
	}
	if signedIn && p.Profile == ProfileAgent {
		// An agent: MCP scopes it to its own runs; the console would show
		// everyone's.
		if g.consoleClosed() {
			g.refuse(w, r, http.StatusForbidden, CodeConsoleForbidden,
				"agents use MCP; the console is for the operator and approvers (sign in with the operator's or an approver's token)")
			return
		}
		signedIn = false
	}
	if !signedIn {
		switch {
		case !g.consoleClosed():
			p = Principal{ID: IDAuditor, Profile: ProfileAuditor}
		case consoleOpen(r):
			p = Principal{} // nobody: the sign-in pages only
		case (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html"):
			http.Redirect(w, r, ConsoleLoginPath, http.StatusSeeOther)
			return
		default:
			w.Header().Set("WWW-Authenticate", g.challenge(r, CodeMissingToken))
			g.refuse(w, r, http.StatusUnauthorized, CodeMissingToken,
				"sign in to the console at "+ConsoleLoginPath+", or present the operator's or an approver's token as Authorization: Bearer <token>")
			return
		}
	}
	r = r.WithContext(WithPrincipal(r.Context(), p))
	if !g.limitBody(w, r) {
		return
	}
	g.next.ServeHTTP(w, r)
}

// consoleLogout ends the sessions the browser holds, on the server too,
// and clears their cookies: the operator's always, the approver's when
// sent.
func (g *guard) consoleLogout(w http.ResponseWriter, r *http.Request) {
	for _, name := range []string{ConsoleCookie, ConsoleApproverCookie} {
		c, err := r.Cookie(name)
		if err == nil {
			g.sessions.close(c.Value)
		}
		if err == nil || name == ConsoleCookie {
			http.SetCookie(w, consoleCookie(r, name, "", -1))
		}
	}
	http.Redirect(w, r, ConsolePath+"/", http.StatusSeeOther)
}

// throttled records a sign-in attempt and, when the client address has
// failed too often, answers 429 and reports true.
func (g *guard) throttled(w http.ResponseWriter, r *http.Request) bool {
	wait := g.signIns.attempt(clientKey(r), g.now())
	if wait <= 0 {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	g.refuse(w, r, http.StatusTooManyRequests, CodeTooManySignIns,
		"too many failed sign-ins from this address; wait for the time Retry-After gives, then try again", zap.Duration("wait", wait))
	return true
}

// consoleLogin checks the operator token posted by the sign-in form and,
// if it is the operator's, opens an operator session.
func (g *guard) consoleLogin(w http.ResponseWriter, r *http.Request) {
	if !g.limitBody(w, r) {
		return
	}
	if g.operatorSet == 0 {
		// No token could match: say so, rather than blame the one typed.
		g.log.Info("console sign-in refused: the server has no operator token")
		http.Redirect(w, r, ConsoleLoginPath+"?failed="+ConsoleNoOperatorToken, http.StatusSeeOther)
		return
	}
	if g.throttled(w, r) {
		return
	}
	p, ok := g.staticToken(strings.TrimSpace(r.PostFormValue("token")))
	if !ok || p.Profile != ProfileOperator {
		g.log.Info("console sign-in refused", zap.String("remote_addr", r.RemoteAddr))
		http.Redirect(w, r, ConsoleLoginPath+"?failed=1", http.StatusSeeOther)
		return
	}
	g.signIns.succeeded(clientKey(r))
	id := g.sessions.open(g.now(), "", ConsoleSession)
	http.SetCookie(w, consoleCookie(r, ConsoleCookie, id, int(ConsoleSession/time.Second)))
	http.Redirect(w, r, ConsolePath+"/", http.StatusSeeOther)
}

func consoleCookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: ConsolePath, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// operatorSession reports whether the request carries a live operator
// session.
func (g *guard) operatorSession(r *http.Request) bool {
	c, err := r.Cookie(ConsoleCookie)
	if err != nil {
		return false
	}
	s, ok := g.sessions.get(c.Value, g.now())
	return ok && s.approver == ""
}

func (g *guard) now() time.Time {
	if g.clock != nil {
		return g.clock()
	}
	return time.Now()
}
