package access

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// DefaultMaxBodyBytes is the request body limit when HTTPConfig.MaxBodyBytes
// is zero.
const DefaultMaxBodyBytes int64 = 1 << 20

// MinTokenLen is the shortest access or operator token Validate accepts.
const MinTokenLen = 16

// MetadataPath is the RFC 9728 well-known path of the protected-resource
// metadata. Guard also serves it with the MCP endpoint's path appended.
const MetadataPath = "/.well-known/oauth-protected-resource"

// MCPPath is the MCP endpoint's path, used to derive the default resource
// identifier (<scheme>://<Host>/mcp) when HTTPConfig.ResourceURL is empty.
const MCPPath = "/mcp"

// Refusal codes, the "error" member of a refusal's JSON body.
const (
	CodeForbiddenHost     = "forbidden_host"
	CodeForbiddenOrigin   = "forbidden_origin"
	CodeCrossOrigin       = "cross_origin"
	CodeMissingToken      = "missing_token"
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope" // 403: an issuer's token without a nano-vm scope (step-up)
	CodeBodyTooLarge      = "body_too_large"
	CodeBadRequest        = "bad_request"
	CodeMethodNotAllowed  = "method_not_allowed"
)

// HTTPConfig configures Guard.
type HTTPConfig struct {
	// AllowedHosts are Host header values accepted beyond the loopback names
	// (localhost and loopback IP literals such as 127.0.0.1 and [::1], on any
	// port). An entry without a port matches any port; one with a port
	// matches that port only. No wildcards.
	AllowedHosts []string
	// AllowedOrigins are trusted browser origins (scheme://host[:port]) that
	// may make cross-origin requests, including non-safe ones.
	AllowedOrigins []string
	// AccessToken is the bearer every client must present. Empty means none
	// is required, which Validate allows on loopback only.
	AccessToken string
	// OperatorToken is the bearer that yields ProfileOperator. It is accepted
	// whether or not AccessToken is set.
	OperatorToken string
	// Approvers' tokens yield Principal{ID: approver id, Profile: approver,
	// ApproverRole: role}. They are accepted whether or not AccessToken is
	// set.
	Approvers *Approvers
	// Tokens are the agents' tokens (the agent tokens file): each yields
	// Principal{ID: agent id, Profile: agent}, whether or not AccessToken
	// is set. A non-nil Tokens, even an empty one, counts as configured
	// authentication: no caller is then anonymous.
	Tokens *Tokens
	// MaxBodyBytes limits request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// ConsolePublic lets a console visitor without a credential in as the
	// read-only auditor even when credentials are configured. Without it
	// the console asks for the operator's or an approver's token whenever
	// any credential is configured.
	ConsolePublic bool
	// TokenIssuer is the OAuth authorization server's issuer URL, exactly as
	// its metadata spells it. When set, Guard serves RFC 9728
	// protected-resource metadata naming it, 401 answers point at that
	// metadata, and JWT access tokens (RFC 9068) the issuer signs for this
	// resource are accepted besides the static tokens: see [ScopeAgent],
	// [ScopeOperator] and [OAuthIDPrefix]. The issuer's metadata and keys
	// are fetched when the first JWT arrives, not at start.
	TokenIssuer string
	// ResourceURL is this server's public MCP endpoint URL, the resource
	// identifier in the metadata. Empty means <scheme>://<Host>/mcp derived
	// from each request (scheme https when the connection is TLS). Set it
	// behind a TLS-terminating proxy.
	ResourceURL string
	// OAuthClient fetches the issuer's metadata and keys; nil means a
	// default client. Guard uses a copy whose timeout is at most
	// OAuthFetchTimeout and which follows redirects on the same host only.
	OAuthClient *http.Client
	// Clock is the time access tokens are checked against (exp, nbf, iat)
	// and that paces key refetches; nil means time.Now.
	Clock func() time.Time
	// Log receives refusals at info level, and failures to reach the token
	// issuer at warn level. Nil means no logging.
	Log *zap.Logger
}

// Validate reports whether c is a usable configuration for a server
// listening on listenAddr (host:port), listing every problem found.
//
// An access token, an agent tokens file or a token issuer is required
// whenever clients can arrive from beyond loopback: when listenAddr is not
// localhost or a loopback IP (the unspecified ":8080", "0.0.0.0:8080" and
// "[::]:8080" are beyond loopback), and when AllowedHosts names any host,
// since a loopback listener reached under another name sits behind a proxy
// or a port forward. Beyond loopback,
// AllowedHosts must name how clients reach the server, or every request
// would be refused as forbidden_host.
func (c HTTPConfig) Validate(listenAddr string) error {
	errs := []error{c.check()}
	host, _, err := net.SplitHostPort(listenAddr)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("listen address %q: %w", listenAddr, err))
	case !isLoopbackListen(host):
		if !c.authConfigured() {
			errs = append(errs, fmt.Errorf("listen address %q is beyond loopback: an access token is required (or an agent tokens file, or a token issuer)", listenAddr))
		}
		if len(c.AllowedHosts) == 0 {
			errs = append(errs, fmt.Errorf("listen address %q is beyond loopback: name the host clients use in the allowed hosts, or every request will be refused as forbidden_host", listenAddr))
		}
	case !c.authConfigured() && len(c.AllowedHosts) > 0:
		errs = append(errs, errors.New("allowed hosts make the server reachable under other names (through a proxy or port forward): an access token is required"))
	}
	return errors.Join(errs...)
}

// authConfigured reports whether every caller must authenticate.
func (c HTTPConfig) authConfigured() bool {
	return c.AccessToken != "" || c.Tokens != nil || c.TokenIssuer != ""
}

// check validates everything but the listen address.
func (c HTTPConfig) check() error {
	var errs []error
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max body bytes %d is negative", c.MaxBodyBytes))
	}
	for _, h := range c.AllowedHosts {
		if _, err := parseHostRule(h); err != nil {
			errs = append(errs, err)
		}
	}
	for _, o := range c.AllowedOrigins {
		if _, err := normalizeOrigin(o); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range []struct{ name, value string }{{"access token", c.AccessToken}, {"operator token", c.OperatorToken}} {
		if t.value == "" {
			continue
		}
		if len(t.value) < MinTokenLen {
			errs = append(errs, fmt.Errorf("%s is %d characters; use at least %d (e.g. openssl rand -hex 32)", t.name, len(t.value), MinTokenLen))
		}
		if !isTokenText(t.value) {
			errs = append(errs, fmt.Errorf("%s contains white space, control or non-ASCII characters; a bearer token cannot carry them", t.name))
		}
		if ap, ok := c.Approvers.Lookup(t.value); ok {
			errs = append(errs, fmt.Errorf("%s is also approver %q's token; use distinct tokens", t.name, ap.ID))
		}
		if id, ok := c.Tokens.Lookup(t.value); ok {
			errs = append(errs, fmt.Errorf("%s is also agent %q's token; use distinct tokens", t.name, id))
		}
	}
	if err := disjoint(c.Tokens.current(), c.Approvers.current()); err != nil {
		errs = append(errs, err)
	}
	if c.AccessToken != "" && c.AccessToken == c.OperatorToken {
		errs = append(errs, errors.New("access token and operator token are the same; use distinct tokens"))
	}
	if c.TokenIssuer != "" {
		if err := checkURL(c.TokenIssuer, "token issuer"); err != nil {
			errs = append(errs, err)
		} else if u, _ := url.Parse(c.TokenIssuer); u.RawQuery != "" || u.ForceQuery {
			errs = append(errs, fmt.Errorf("token issuer %q: an issuer has no query", c.TokenIssuer))
		}
	}
	if c.ResourceURL != "" {
		if err := checkURL(c.ResourceURL, "resource URL"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkURL requires an absolute http(s) URL with a host, no user info and
// no fragment; plain http only for a loopback host.
func checkURL(s, what string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%s %q: want an https URL", what, s)
	case u.Host == "":
		return fmt.Errorf("%s %q: want an absolute URL with a host", what, s)
	case u.User != nil || u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("%s %q: user info and fragments are not allowed", what, s)
	case u.Scheme == "http" && !isLoopbackHost(strings.ToLower(u.Hostname())):
		return fmt.Errorf("%s %q: plain http is allowed on loopback only; use https", what, s)
	}
	return nil
}

func isLoopbackListen(host string) bool {
	return strings.EqualFold(host, "localhost") || isLoopbackIP(host)
}

func isLoopbackHost(host string) bool { return host == "localhost" || isLoopbackIP(host) }

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isTokenText reports whether s is visible ASCII only.
func isTokenText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// hostRule is one allowed host; port "" matches any port.
type hostRule struct{ host, port string }

// splitHost lower-cases a host[:port] and separates it; IPv6 literals lose
// their brackets and names their trailing dot.
func splitHost(s string) (host, port string) {
	s = strings.ToLower(s)
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	}
	return strings.TrimSuffix(host, "."), port
}

func parseHostRule(s string) (hostRule, error) {
	if s == "" || strings.ContainsAny(s, "*/?#@ \t\r\n") {
		return hostRule{}, fmt.Errorf("allowed host %q: want a host name or IP, optionally with :port (no scheme, path or wildcard)", s)
	}
	if strings.HasPrefix(s, "[") != strings.Contains(s, "]") {
		return hostRule{}, fmt.Errorf("allowed host %q: unbalanced brackets", s)
	}
	h, p := splitHost(s)
	if h == "" || strings.ContainsAny(h, "[]") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
		return hostRule{}, fmt.Errorf("allowed host %q: want a host name or IP, optionally with :port", s)
	}
	if strings.Contains(h, ":") && !strings.HasPrefix(s, "[") {
		return hostRule{}, fmt.Errorf("allowed host %q: put IPv6 addresses in brackets, e.g. [2001:db8::1]:8080", s)
	}
	if p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return hostRule{}, fmt.Errorf("allowed host %q: bad port %q", s, p)
		}
	}
	return hostRule{host: h, port: p}, nil
}

// normalizeOrigin checks a configured origin and returns its serialized
// form as browsers send it (lower-case scheme and host, no default port).
func normalizeOrigin(s string) (string, error) {
	if s == "*" || s == "null" {
		return "", fmt.Errorf("allowed origin %q: name one origin, scheme://host[:port]", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("allowed origin %q: %w", s, err)
	}
	if u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("allowed origin %q: want scheme://host[:port]", s)
	}
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return "", fmt.Errorf("allowed origin %q: an origin has no user info, path (not even \"/\"), query or fragment", s)
	}
	if strings.Contains(u.Host, "*") {
		return "", fmt.Errorf("allowed origin %q: wildcards are not supported", s)
	}
	if p := u.Port(); (p == "80" && u.Scheme == "http") || (p == "443" && u.Scheme == "https") {
		return "", fmt.Errorf("allowed origin %q: omit the default port; browsers do not send it", s)
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host), nil
}

func defaultPort(scheme string) string {
	switch scheme {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// Guard wraps next, the server's whole handler (every path), with the
// access checks described in the package documentation. Requests reaching
// next carry a Principal in their context.
//
// Guard panics if c is invalid; call c.Validate first.
func Guard(c HTTPConfig, next http.Handler) http.Handler {
	if err := c.check(); err != nil {
		panic("access.Guard: invalid configuration: " + err.Error())
	}
	g := &guard{
		cop:       http.NewCrossOriginProtection(),
		origins:   make(map[string]bool, len(c.AllowedOrigins)),
		approvers: c.Approvers,
		tokens:    c.Tokens,
		maxBody:   c.MaxBodyBytes,
		issuer:    c.TokenIssuer,
		resource:  c.ResourceURL,
		log:       c.Log,
		next:      next,
		clock:     c.Clock,

		consolePublic: c.ConsolePublic,
		sessions:      newSessions(MaxConsoleSessions),
		signIns:       newThrottle(MaxSignInAddresses),
	}
	if g.maxBody == 0 {
		g.maxBody = DefaultMaxBodyBytes
	}
	if g.log == nil {
		g.log = zap.NewNop()
	}
	for _, h := range c.AllowedHosts {
		r, _ := parseHostRule(h)
		g.hosts = append(g.hosts, r)
	}
	for _, o := range c.AllowedOrigins {
		n, _ := normalizeOrigin(o)
		g.origins[n] = true
		if err := g.cop.AddTrustedOrigin(n); err != nil {
			panic("access.Guard: " + err.Error())
		}
	}
	if c.AccessToken != "" {
		g.access = sha256.Sum256([]byte(c.AccessToken))
		g.accessSet = 1
	}
	if c.OperatorToken != "" {
		g.operator = sha256.Sum256([]byte(c.OperatorToken))
		g.operatorSet = 1
	}
	if g.issuer != "" {
		g.oauth = newOAuthVerifier(c, g.log)
		g.metaPaths = map[string]bool{MetadataPath: true, MetadataPath + MCPPath: true}
		if g.resource != "" {
			g.metaPaths[metadataPathFor(g.resource)] = true
		}
	}
	return g
}

type guard struct {
	hosts       []hostRule
	origins     map[string]bool // normalized AllowedOrigins
	cop         *http.CrossOriginProtection
	access      [sha256.Size]byte
	accessSet   int
	operator    [sha256.Size]byte
	operatorSet int
	approvers   *Approvers
	tokens      *Tokens // nil: no tokens file
	maxBody     int64
	issuer      string
	resource    string
	metaPaths   map[string]bool
	oauth       *oauthVerifier // nil without an issuer
	log         *zap.Logger
	next        http.Handler
	clock       func() time.Time // nil: time.Now

	consolePublic bool
	sessions      *sessions // console sessions (console.go)
	signIns       *throttle // failed console sign-ins per client address
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.hostAllowed(r.Host, r.TLS != nil) {
		g.refuse(w, r, http.StatusForbidden, CodeForbiddenHost,
			"the Host header names a host this server does not serve; add it to the allowed hosts",
			zap.String("host", clip(r.Host)))
		return
	}
	if origins := r.Header.Values("Origin"); len(origins) > 1 || (len(origins) == 1 && origins[0] != "" && !g.originAllowed(origins[0])) {
		g.refuse(w, r, http.StatusForbidden, CodeForbiddenOrigin,
			"requests from this browser origin are not allowed; add it to the allowed origins if it is trusted",
			zap.String("origin", clip(strings.Join(origins, ", "))))
		return
	}
	if err := g.cop.Check(r); err != nil {
		g.refuse(w, r, http.StatusForbidden, CodeCrossOrigin,
			"cross-origin browser requests that change state are not allowed; add the origin to the allowed origins if it is trusted",
			zap.String("origin", clip(r.Header.Get("Origin"))),
			zap.String("sec_fetch_site", clip(r.Header.Get("Sec-Fetch-Site"))))
		return
	}
	if g.metaPaths[r.URL.Path] {
		g.serveMetadata(w, r)
		return
	}
	if isConsolePath(r.URL.Path) {
		g.serveConsole(w, r)
		return
	}
	if r.URL.Path == FaviconPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		g.next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Principal{})))
		return
	}
	p, code, why := g.authenticate(r)
	switch code {
	case "":
	case CodeInsufficientScope:
		w.Header().Set("WWW-Authenticate", g.challenge(r, code))
		g.refuse(w, r, http.StatusForbidden, code,
			"the access token grants neither the "+ScopeAgent+" nor the "+ScopeOperator+" scope; ask the authorization server for "+ScopeAgent)
		return
	default:
		msg := "present the access token as Authorization: Bearer <token>"
		if code == CodeInvalidToken {
			msg = "the bearer token is not valid for this server"
		}
		var fields []zap.Field
		if why != nil {
			fields = append(fields, zap.String("detail", clip(why.Error())))
		}
		w.Header().Set("WWW-Authenticate", g.challenge(r, code))
		g.refuse(w, r, http.StatusUnauthorized, code, msg, fields...)
		return
	}
	r = r.WithContext(WithPrincipal(r.Context(), p))
	if !g.limitBody(w, r) {
		return
	}
	g.next.ServeHTTP(w, r)
}

// limitBody caps r.Body at g.maxBody and reports whether the request may
// proceed. A declared length beyond the cap is refused before reading. A
// body of unknown length (chunked) is read here, so an oversize one is
// answered 413 by the guard: the next handler would otherwise see only a
// read error, which mcp-go reports as a JSON-RPC parse error, not 413.
func (g *guard) limitBody(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength > g.maxBody {
		g.refuseTooLarge(w, r)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, g.maxBody)
	if r.ContentLength >= 0 {
		// The server's body reader stops at the declared length, which is
		// within the cap.
		return true
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			g.refuseTooLarge(w, r)
		} else {
			g.refuse(w, r, http.StatusBadRequest, CodeBadRequest, "the request body could not be read", zap.Error(err))
		}
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	return true
}

func (g *guard) refuseTooLarge(w http.ResponseWriter, r *http.Request) {
	g.refuse(w, r, http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
		fmt.Sprintf("the request body is larger than %d bytes", g.maxBody),
		zap.Int64("content_length", r.ContentLength))
}

// hostAllowed checks a Host header value.
func (g *guard) hostAllowed(hostport string, tls bool) bool {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	h, p := splitHost(hostport)
	return g.hostMatches(h, p, scheme)
}

func (g *guard) hostMatches(host, port, scheme string) bool {
	if host == "" {
		return false
	}
	if isLoopbackHost(host) {
		return true
	}
	if port == "" {
		port = defaultPort(scheme)
	}
	for _, r := range g.hosts {
		if r.host == host && (r.port == "" || r.port == port) {
			return true
		}
	}
	return false
}

// originAllowed checks an Origin header value: a trusted origin, or a
// web origin whose host is an allowed host. "null" and anything that is
// not scheme://host[:port] are refused.
func (g *guard) originAllowed(origin string) bool {
	if g.origins[origin] {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	h, p := splitHost(u.Host)
	return g.hostMatches(h, p, u.Scheme)
}

// authenticate returns the caller's principal, or the refusal code and,
// for a JWT the issuer's rules refuse, why. Every configured static
// credential is compared, in constant time, whatever matches; only a token
// that matches none and has the shape of a JWT is then checked as an
// access token from the issuer.
func (g *guard) authenticate(r *http.Request) (Principal, string, error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		// Anonymous local use only where no credential is configured at
		// all: with a tokens file or an issuer, every caller
		// authenticates.
		if g.accessSet == 0 && g.tokens == nil && g.oauth == nil && isLocalPeer(r.RemoteAddr) {
			return Principal{ID: IDLocal, Profile: ProfileAgent}, "", nil
		}
		return Principal{}, CodeMissingToken, nil
	}
	if len(vals) > 1 {
		return Principal{}, CodeInvalidToken, nil
	}
	scheme, token, _ := strings.Cut(vals[0], " ")
	token = strings.Trim(token, " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Principal{}, CodeInvalidToken, nil
	}
	if p, ok := g.staticToken(token); ok {
		return p, "", nil
	}
	if g.oauth == nil || !looksLikeJWT(token) {
		return Principal{}, CodeInvalidToken, nil
	}
	p, err := g.oauth.verify(r.Context(), token, g.resourceID(r))
	switch {
	case errors.Is(err, errInsufficientScope):
		return p, CodeInsufficientScope, err
	case err != nil:
		return Principal{}, CodeInvalidToken, fmt.Errorf("access token: %w", err)
	}
	return p, "", nil
}

// staticToken matches token against the operator, approver, agent and
// access tokens in constant time. The files in force and the static tokens
// share no token (Validate, Reloader), so at most one matches.
func (g *guard) staticToken(token string) (Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	op := g.operatorSet & subtle.ConstantTimeCompare(sum[:], g.operator[:])
	ag := g.accessSet & subtle.ConstantTimeCompare(sum[:], g.access[:])
	ap, isApprover := g.approvers.lookupHash(&sum)
	id, isAgent := g.tokens.lookupHash(&sum)
	switch {
	case op == 1:
		return Principal{ID: IDOperator, Profile: ProfileOperator}, true
	case isApprover:
		return Principal{ID: ap.ID, Profile: ProfileApprover, ApproverRole: ap.Role}, true
	case isAgent:
		return Principal{ID: id, Profile: ProfileAgent}, true
	case ag == 1:
		return Principal{ID: IDAgent, Profile: ProfileAgent}, true
	}
	return Principal{}, false
}

// isLocalPeer reports whether a request came from this machine: a loopback
// peer, or a peer without an IP address (a Unix socket). Without an access
// token only local peers are let in, whatever the listen address, in case
// Validate was skipped.
func isLocalPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip == nil || ip.IsLoopback()
}

// challenge is the WWW-Authenticate value of a 401 or of the 403
// insufficient_scope (RFC 6750 §3, and RFC 9728 §5.1 when an issuer is
// configured). A 401 names no scope: a client then asks for every scope
// the metadata lists, and the authorization server decides whether the
// user gets the operator scope. The 403 names the scope a token needs at
// least.
func (g *guard) challenge(r *http.Request, code string) string {
	var params []string
	switch code {
	case CodeInvalidToken:
		params = append(params, `error="invalid_token"`)
	case CodeInsufficientScope:
		params = append(params, `error="insufficient_scope"`, `scope="`+ScopeAgent+`"`)
	}
	if g.issuer != "" {
		params = append(params, `resource_metadata="`+g.metadataURL(r)+`"`)
	}
	if len(params) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(params, ", ")
}

func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// resourceID is this server's resource identifier for r. The Host header
// has passed the allowlist, so reflecting it is safe.
func (g *guard) resourceID(r *http.Request) string {
	if g.resource != "" {
		return g.resource
	}
	return requestScheme(r) + "://" + r.Host + MCPPath
}

// metadataURL is where the metadata of r's resource is served.
func (g *guard) metadataURL(r *http.Request) string {
	if g.resource != "" {
		u, _ := url.Parse(g.resource)
		return u.Scheme + "://" + u.Host + metadataPathFor(g.resource)
	}
	return requestScheme(r) + "://" + r.Host + MetadataPath + MCPPath
}

// metadataPathFor inserts the well-known segment before the resource's
// path (RFC 9728 §3.1).
func metadataPathFor(resource string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return MetadataPath
	}
	p := strings.Trim(u.Path, "/")
	if p == "" {
		return MetadataPath
	}
	return path.Join(MetadataPath, p)
}

type resourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
}

// serveMetadata answers RFC 9728 protected-resource metadata. Every
// metadata path names the same resource, so clients that fall back to the
// root path learn the MCP endpoint's identifier.
func (g *guard) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		g.refuse(w, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "use GET")
		return
	}
	body, err := json.Marshal(resourceMetadata{
		Resource:               g.resourceID(r),
		AuthorizationServers:   []string{g.issuer},
		ScopesSupported:        []string{ScopeAgent, ScopeOperator},
		BearerMethodsSupported: []string{"header"},
	})
	if err != nil { // cannot happen: strings only
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

type refusal struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// refuse answers a refused request and logs it. fields must never hold a
// credential.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, status int, code, msg string, fields ...zap.Field) {
	g.log.Info("http request refused", append([]zap.Field{
		zap.String("reason", code),
		zap.Int("status", status),
		zap.String("remote_addr", r.RemoteAddr),
		zap.String("method", clip(r.Method)),
		zap.String("path", clip(r.URL.Path)),
	}, fields...)...)
	body, _ := json.Marshal(refusal{Error: code, Message: msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// clip bounds a client-supplied string before it is logged.
func clip(s string) string {
	const limit = 256
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
