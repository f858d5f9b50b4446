package access

// OAuth 2.1 access tokens (RFC 9068 JWTs) from the configured issuer.
//
// Library: github.com/go-jose/go-jose/v4 parses the JWS, restricts the
// algorithms, parses the JWKs and checks the signatures; no cryptography is
// written here. github.com/coreos/go-oidc/v3 (which builds on go-jose) was
// considered and not taken: its verifier is made for OpenID ID tokens (a
// fixed 5-minute nbf leeway, no iat check, no typ check, discovery through
// openid-configuration only, not RFC 8414), and its RemoteKeySet refetches
// the JWKS after every token whose signature fails, without a rate limit
// and with an unbounded read of the response. What is ours: discovery, the
// key cache (refetched on an unknown kid at most every
// oauthRefetchInterval) and the claims policy below.

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
)

// The scopes an access token from the issuer must carry. The operator
// scope yields ProfileOperator and implies the agent scope.
const (
	ScopeAgent    = "nano-vm:agent"
	ScopeOperator = "nano-vm:operator"
)

// OAuthIDPrefix starts the ID of every principal authenticated by an
// access token from the issuer: "oauth:" followed by the token's sub.
const OAuthIDPrefix = "oauth:"

// Limits and intervals of the access-token verification.
const (
	// OAuthFetchTimeout bounds each request to the issuer (metadata, JWKS).
	OAuthFetchTimeout = 5 * time.Second
	// OAuthClockSkew is the leeway allowed on exp, nbf and iat.
	OAuthClockSkew = 60 * time.Second

	// oauthFetchBudget bounds a whole refresh: discovery and the JWKS.
	oauthFetchBudget = 2 * OAuthFetchTimeout
	// oauthRefetchInterval is the least time between two fetches from the
	// issuer, successful or not: a flood of tokens with unknown key ids
	// costs the issuer one JWKS request per interval, and a failed
	// discovery is retried after it.
	oauthRefetchInterval = 10 * time.Second
	// oauthKeysMaxAge is how long a fetched key set is used before it is
	// fetched again, so keys the issuer withdraws stop being accepted.
	oauthKeysMaxAge = time.Hour
	// oauthMaxResponse bounds a metadata or JWKS response body.
	oauthMaxResponse = 1 << 20
	// oauthMaxKeys bounds how many keys of a JWKS are kept.
	oauthMaxKeys = 64
	// oauthMaxRedirects bounds redirects, which must stay on one host.
	oauthMaxRedirects = 3
	// maxJWTLen bounds a token worth parsing.
	maxJWTLen = 16 << 10
	// maxSubLen bounds the sanitized sub in a principal ID.
	maxSubLen = 128
	// minRSABits is the smallest RSA key accepted.
	minRSABits = 2048
)

// oauthAlgs are the signature algorithms accepted: never none nor HS*, so
// neither an unsigned token nor one MACed with a public key gets in.
var oauthAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

// errInsufficientScope marks a valid token without a nano-vm scope: the
// guard answers 403 insufficient_scope, the step-up signal.
var errInsufficientScope = errors.New("the token has neither the " + ScopeAgent + " nor the " + ScopeOperator + " scope")

// oauthVerifier validates the issuer's JWT access tokens. Discovery is
// lazy: the first JWT a client presents triggers it, so the server starts
// whether or not the issuer is reachable, and static tokens work without
// it.
type oauthVerifier struct {
	issuer string
	client *http.Client
	now    func() time.Time
	log    *zap.Logger

	keys atomic.Pointer[keySet] // nil until the first successful fetch

	// fetch serialises network fetches and guards the fields below.
	fetch   sync.Mutex
	jwksURI string    // from the issuer's metadata; "" until discovered
	tried   time.Time // the last fetch attempt
	lastErr error     // the last fetch's failure, nil after a success
}

// keySet is the issuer's signing keys as of a fetch.
type keySet struct {
	keys    []jose.JSONWebKey // public signature keys only
	fetched time.Time
}

func newOAuthVerifier(c HTTPConfig, log *zap.Logger) *oauthVerifier {
	now := c.Clock
	if now == nil {
		now = time.Now
	}
	return &oauthVerifier{issuer: c.TokenIssuer, client: oauthClient(c.OAuthClient), now: now, log: log}
}

// oauthClient copies c (or a zero client), capping its timeout at
// OAuthFetchTimeout and following only same-host redirects.
func oauthClient(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	}
	if out.Timeout <= 0 || out.Timeout > OAuthFetchTimeout {
		out.Timeout = OAuthFetchTimeout
	}
	out.CheckRedirect = sameHostRedirect
	return &out
}

func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= oauthMaxRedirects {
		return fmt.Errorf("more than %d redirects", oauthMaxRedirects)
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return fmt.Errorf("redirect from %s to another host or scheme (%s://%s) refused", first.Host, req.URL.Scheme, req.URL.Host)
	}
	return nil
}

// looksLikeJWT reports whether a bearer token has the JWS compact shape:
// three base64url segments (the last may be empty, as in alg none).
// Anything else is not worth the issuer's time.
func looksLikeJWT(tok string) bool {
	if len(tok) > maxJWTLen || strings.Count(tok, ".") != 2 {
		return false
	}
	segs := strings.Split(tok, ".")
	if segs[0] == "" || segs[1] == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// accessClaims are the claims checked beyond jwt.Claims.
type accessClaims struct {
	Scope scopeList `json:"scope"` // RFC 9068: space-separated string
	Scp   scopeList `json:"scp"`   // Okta, Entra: an array or a string
}

// scopeList decodes a space-separated string or an array of strings.
type scopeList []string

func (s *scopeList) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = strings.Fields(str)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("scope is neither a string nor an array of strings")
	}
	*s = list
	return nil
}

// verify validates raw as an access token for resource and returns its
// principal. The error says why a token is refused; it never contains the
// token. errInsufficientScope (wrapped) means the token is valid but
// grants no nano-vm scope.
func (v *oauthVerifier) verify(ctx context.Context, raw, resource string) (Principal, error) {
	tok, err := jwt.ParseSigned(raw, oauthAlgs)
	if err != nil {
		return Principal{}, fmt.Errorf("not a JWS with an allowed algorithm: %w", err)
	}
	if len(tok.Headers) != 1 {
		return Principal{}, errors.New("want exactly one signature")
	}
	h := tok.Headers[0]
	if err := checkType(h); err != nil {
		return Principal{}, err
	}
	keys, err := v.keysFor(ctx, h.KeyID)
	if err != nil {
		return Principal{}, err
	}
	var (
		std      jwt.Claims
		extra    accessClaims
		verified bool
		lastErr  = fmt.Errorf("no key of the issuer with kid %q fits %s", h.KeyID, h.Algorithm)
	)
	for _, k := range keys {
		if !keyFits(k, h.Algorithm) {
			continue
		}
		if err := tok.Claims(k.Key, &std, &extra); err != nil {
			lastErr = err
			continue
		}
		verified = true
		break
	}
	if !verified {
		return Principal{}, fmt.Errorf("signature: %w", lastErr)
	}
	if std.Issuer != v.issuer {
		return Principal{}, fmt.Errorf("iss %q is not the configured issuer", clip(std.Issuer))
	}
	if !std.Audience.Contains(resource) {
		// Token passthrough protection: a token for another resource is
		// refused, even from our issuer.
		return Principal{}, fmt.Errorf("aud %q does not name this resource %q", clipList(std.Audience), resource)
	}
	if std.Expiry == nil {
		return Principal{}, errors.New("no exp")
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Time: v.now()}, OAuthClockSkew); err != nil {
		return Principal{}, err
	}
	if std.Subject == "" {
		return Principal{}, errors.New("no sub")
	}
	p := Principal{ID: OAuthIDPrefix + sanitizeSub(std.Subject), Profile: ProfileAgent}
	switch scopes := append(extra.Scope, extra.Scp...); {
	case slices.Contains(scopes, ScopeOperator):
		p.Profile = ProfileOperator
	case slices.Contains(scopes, ScopeAgent):
	default:
		return Principal{}, errInsufficientScope
	}
	return p, nil
}

func clipList(l []string) string { return clip(strings.Join(l, " ")) }

// checkType accepts the RFC 9068 types at+jwt and application/at+jwt, and
// also a plain JWT (typ JWT or absent), which many authorization servers
// still issue as access tokens; the audience check keeps their ID tokens
// out, since an ID token's aud is a client, not this resource. Other types
// (DPoP proofs, logout tokens, …) are refused.
func checkType(h jose.Header) error {
	t, ok := h.ExtraHeaders[jose.HeaderType]
	if !ok {
		return nil
	}
	s, _ := t.(string)
	switch strings.ToLower(s) {
	case "at+jwt", "application/at+jwt", "jwt", "application/jwt":
		return nil
	}
	return fmt.Errorf("typ %q is not an access token type", clip(fmt.Sprint(t)))
}

// keyFits reports whether k may check a signature made with alg.
func keyFits(k jose.JSONWebKey, alg string) bool {
	if (k.Use != "" && k.Use != "sig") || (k.Algorithm != "" && k.Algorithm != alg) {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		return alg == string(jose.RS256) && key.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		return alg == string(jose.ES256) && key.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

// sanitizeSub makes a sub safe to record as a principal ID: bytes outside
// [A-Za-z0-9._~@+-] are percent-encoded (so the mapping is one to one),
// and a result longer than maxSubLen becomes "sha256:" and the hex SHA-256
// of the sub, which no encoded sub can equal since ':' is always encoded.
func sanitizeSub(sub string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(sub) && b.Len() <= maxSubLen; i++ {
		c := sub[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._~@+-", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	if b.Len() > maxSubLen {
		sum := sha256.Sum256([]byte(sub))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

// keysFor returns the issuer's keys that may carry kid (every key when kid
// is empty), fetching the key set when it is missing, stale, or lacks kid,
// at most once per oauthRefetchInterval.
func (v *oauthVerifier) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	set := v.keys.Load()
	keys := set.match(kid)
	if len(keys) > 0 && v.now().Sub(set.fetched) < oauthKeysMaxAge {
		return keys, nil
	}
	if len(keys) > 0 {
		// Stale: refresh, unless another request already is.
		if !v.fetch.TryLock() {
			return keys, nil
		}
	} else {
		v.fetch.Lock()
	}
	defer v.fetch.Unlock()

	now := v.now()
	// Another request may have fetched while this one waited.
	set = v.keys.Load()
	keys = set.match(kid)
	if len(keys) > 0 && now.Sub(set.fetched) < oauthKeysMaxAge {
		return keys, nil
	}
	if !v.tried.IsZero() && now.Sub(v.tried) < oauthRefetchInterval {
		switch {
		case len(keys) > 0:
			return keys, nil
		case v.lastErr != nil:
			return nil, fmt.Errorf("issuer unavailable, retried after %s: %w", oauthRefetchInterval, v.lastErr)
		}
		return nil, fmt.Errorf("no key with kid %q in the issuer's key set (refetched at most every %s)", kid, oauthRefetchInterval)
	}
	v.tried = now
	// The fetch serves every waiting request: the caller's going away must
	// not cancel it. Discovery may take up to four requests; bound them all.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), oauthFetchBudget)
	defer cancel()
	fresh, err := v.fetchKeys(fctx)
	if err != nil {
		v.lastErr = err
		v.jwksURI = "" // rediscover next time, in case jwks_uri moved
		v.log.Warn("oauth: cannot fetch the token issuer's keys; JWT access tokens are refused until it answers",
			zap.String("issuer", v.issuer), zap.Error(err))
		if len(keys) > 0 {
			return keys, nil // keep using the stale set meanwhile
		}
		return nil, err
	}
	v.lastErr = nil
	set = &keySet{keys: fresh, fetched: now}
	v.keys.Store(set)
	if keys = set.match(kid); len(keys) == 0 {
		return nil, fmt.Errorf("no key with kid %q in the issuer's key set", kid)
	}
	return keys, nil
}

// match returns the keys with id kid, or every key when kid is empty.
func (s *keySet) match(kid string) []jose.JSONWebKey {
	if s == nil {
		return nil
	}
	if kid == "" {
		return s.keys
	}
	var out []jose.JSONWebKey
	for _, k := range s.keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// fetchKeys discovers jwks_uri when needed and fetches the key set.
func (v *oauthVerifier) fetchKeys(ctx context.Context) ([]jose.JSONWebKey, error) {
	if v.jwksURI == "" {
		uri, err := v.discover(ctx)
		if err != nil {
			return nil, err
		}
		v.jwksURI = uri
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := v.getJSON(ctx, v.jwksURI, &raw); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, b := range raw.Keys {
		var k jose.JSONWebKey
		// RFC 7517 §5: ignore keys of unknown types or with bad members.
		if err := k.UnmarshalJSON(b); err != nil || !k.Valid() {
			continue
		}
		if k.IsPublic() || isPrivateKey(k.Key) {
			keys = append(keys, k.Public())
		}
		if len(keys) == oauthMaxKeys {
			break
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("jwks %s holds no usable signature key", v.jwksURI)
	}
	return keys, nil
}

// isPrivateKey reports an asymmetric private key, which a JWKS should not
// publish but whose public half is still usable. Symmetric keys are never
// used.
func isPrivateKey(k any) bool {
	switch k.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return true
	}
	return false
}

// discover reads the issuer's metadata (RFC 8414, then OpenID Connect
// discovery) and returns its jwks_uri. The metadata's issuer must be the
// configured issuer exactly (RFC 8414 §3.3).
func (v *oauthVerifier) discover(ctx context.Context) (string, error) {
	var errs []error
	for _, u := range metadataURLs(v.issuer) {
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := v.getJSON(ctx, u, &md); err != nil {
			errs = append(errs, err)
			continue
		}
		if md.Issuer != v.issuer {
			errs = append(errs, fmt.Errorf("%s names the issuer %q, not %q", u, clip(md.Issuer), v.issuer))
			continue
		}
		if md.JWKSURI == "" {
			errs = append(errs, fmt.Errorf("%s has no jwks_uri", u))
			continue
		}
		if err := checkURL(md.JWKSURI, "jwks_uri"); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		return md.JWKSURI, nil
	}
	return "", fmt.Errorf("discovering the issuer's metadata: %w", errors.Join(errs...))
}

// metadataURLs lists where an issuer's metadata may be, in the order the
// MCP authorization spec gives: RFC 8414 with the well-known segment
// inserted before the issuer's path, then OpenID Connect discovery
// inserted, then appended.
func metadataURLs(issuer string) []string {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil
	}
	base := u.Scheme + "://" + u.Host
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	if p == "" {
		return []string{base + "/.well-known/oauth-authorization-server", base + "/.well-known/openid-configuration"}
	}
	return []string{
		base + "/.well-known/oauth-authorization-server" + p,
		base + "/.well-known/openid-configuration" + p,
		base + p + "/.well-known/openid-configuration",
	}
}

// getJSON fetches u and decodes its JSON body, at most oauthMaxResponse
// bytes of it.
func (v *oauthVerifier) getJSON(ctx context.Context, u string, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, oauthMaxResponse+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > oauthMaxResponse {
		return fmt.Errorf("GET %s: response larger than %d bytes", u, oauthMaxResponse)
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
