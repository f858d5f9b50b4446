package access

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"time"
)

// The web console (internal/console) is served under ConsolePath, on the
// same listener and behind the same Host, Origin and body checks as MCP.
// Its authentication differs in one way: a browser visitor without a
// credential is let in as the auditor (read-only, personal data redacted),
// and the operator signs in once with the operator token, which Guard
// turns into a session cookie.
const (
	ConsolePath       = "/ui"
	ConsoleLoginPath  = ConsolePath + "/login"
	ConsoleLogoutPath = ConsolePath + "/logout"
	// ConsoleCookie holds an operator's console session: an expiry and a
	// MAC under a key Guard draws at start (sessions end with the process).
	ConsoleCookie = "nano_vm_console"
	// ConsoleSession is how long a console session lasts.
	ConsoleSession = 8 * time.Hour
	// ConsoleNoOperatorToken is the sign-in page's failed= value when the
	// server was started without an operator token, so that nobody can
	// sign in.
	ConsoleNoOperatorToken = "no-operator-token"
)

// ProfileAuditor is the console's visitor without a credential: it reads
// runs, programs, receipts and metrics with personal data redacted, and
// changes nothing.
const ProfileAuditor Profile = "auditor"

// IDAuditor is the auditor principal's id.
const IDAuditor = "auditor"

func isConsolePath(p string) bool {
	return p == ConsolePath || strings.HasPrefix(p, ConsolePath+"/")
}

// serveConsole authenticates a console request: a bearer token as on MCP,
// else a valid session cookie (the operator's, else an approver's), else
// the auditor. It also answers the sign-in and sign-out forms.
func (g *guard) serveConsole(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == ConsoleLoginPath {
		g.consoleLogin(w, r)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == ConsoleApproverLoginPath {
		g.consoleApproverLogin(w, r)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == ConsoleLogoutPath {
		http.SetCookie(w, g.sessionCookie(r, "", -1))
		if _, err := r.Cookie(ConsoleApproverCookie); err == nil {
			http.SetCookie(w, approverCookie(r, "", -1))
		}
		http.Redirect(w, r, ConsolePath+"/", http.StatusSeeOther)
		return
	}
	p := Principal{ID: IDAuditor, Profile: ProfileAuditor}
	switch {
	case len(r.Header.Values("Authorization")) > 0:
		var code string
		if p, code, _ = g.authenticate(r); code != "" {
			w.Header().Set("WWW-Authenticate", g.challenge(r, code))
			g.refuse(w, r, http.StatusUnauthorized, code, "the bearer token is not valid for this server")
			return
		}
	case g.validSession(r):
		p = Principal{ID: IDOperator, Profile: ProfileOperator}
	default:
		if ap, ok := g.approverSession(r); ok {
			p = ap
		}
	}
	r = r.WithContext(WithPrincipal(r.Context(), p))
	if !g.limitBody(w, r) {
		return
	}
	g.next.ServeHTTP(w, r)
}

// consoleLogin checks the operator token posted by the sign-in form and,
// if it is the operator's, sets the session cookie.
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
	p, ok := g.staticToken(strings.TrimSpace(r.PostFormValue("token")))
	if !ok || p.Profile != ProfileOperator {
		g.log.Info("console sign-in refused")
		http.Redirect(w, r, ConsoleLoginPath+"?failed=1", http.StatusSeeOther)
		return
	}
	exp := g.now().Add(ConsoleSession)
	http.SetCookie(w, g.sessionCookie(r, g.sessionValue(exp), int(ConsoleSession/time.Second)))
	http.Redirect(w, r, ConsolePath+"/", http.StatusSeeOther)
}

func (g *guard) sessionCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: ConsoleCookie, Value: value, Path: ConsolePath, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// sessionValue is base64url(expiry in Unix seconds, 8 bytes || MAC).
func (g *guard) sessionValue(exp time.Time) string {
	b := binary.BigEndian.AppendUint64(nil, uint64(exp.Unix()))
	return base64.RawURLEncoding.EncodeToString(append(b, g.sessionMAC(b)...))
}

func (g *guard) sessionMAC(exp []byte) []byte {
	m := hmac.New(sha256.New, g.sessionKey[:])
	m.Write([]byte("nano-vm-mcp console operator session\x00"))
	m.Write(exp)
	return m.Sum(nil)
}

func (g *guard) validSession(r *http.Request) bool {
	c, err := r.Cookie(ConsoleCookie)
	if err != nil {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(b) != 8+sha256.Size {
		return false
	}
	if !hmac.Equal(b[8:], g.sessionMAC(b[:8])) {
		return false
	}
	return g.now().Unix() < int64(binary.BigEndian.Uint64(b[:8]))
}

func (g *guard) now() time.Time {
	if g.clock != nil {
		return g.clock()
	}
	return time.Now()
}

// newSessionKey draws the key that signs console sessions.
func newSessionKey() (k [32]byte) {
	if _, err := rand.Read(k[:]); err != nil {
		panic("access: no randomness: " + err.Error())
	}
	return k
}
