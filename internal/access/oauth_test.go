package access

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// t0 is the test clock's start; tokens are minted relative to it.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// resource is the identifier the guard derives for a request to
// localhost:8080, the host runGuardCase uses.
const resource = "http://localhost:8080/mcp"

const mdChallenge = `resource_metadata="http://localhost:8080/.well-known/oauth-protected-resource/mcp"`

type testClock struct{ ns atomic.Int64 }

func newClock() *testClock {
	c := &testClock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// signingKey is one of the test issuer's keys.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func (k signingKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

var (
	rsaPriv = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	rsaWeak = sync.OnceValue(func() *rsa.PrivateKey { return must(rsa.GenerateKey(rand.Reader, 1024)) })
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func rsaKey() signingKey { return signingKey{"rsa-1", jose.RS256, rsaPriv()} }
func ecKey(kid string) signingKey {
	return signingKey{kid, jose.ES256, must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))}
}
func edKey(kid string) signingKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return signingKey{kid, jose.EdDSA, must(priv, err)}
}

// mint signs claims with k; typ "" leaves the typ header out.
func mint(t testing.TB, k signingKey, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsigned builds a compact JWS from raw header and claims, with sig as
// its signature segment.
func unsigned(header, claims map[string]any, sig []byte) string {
	enc := func(v any) string { return base64.RawURLEncoding.EncodeToString(must(json.Marshal(v))) }
	return enc(header) + "." + enc(claims) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// claimsFor is a valid agent token's claims for iss; mods adjust them
// (a nil value deletes the claim).
func claimsFor(iss string, mods ...map[string]any) map[string]any {
	c := map[string]any{
		"iss": iss, "sub": "user-42", "aud": resource, "client_id": "claude-code", "jti": "j1",
		"iat": t0.Unix(), "nbf": t0.Unix(), "exp": t0.Add(time.Hour).Unix(), "scope": "openid " + ScopeAgent,
	}
	for _, m := range mods {
		for k, v := range m {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
	}
	return c
}

// testIssuer is an authorization server on loopback serving its metadata
// and JWKS.
type testIssuer struct {
	srv      *httptest.Server
	url      string // the issuer identifier
	mu       sync.Mutex
	keys     []jose.JSONWebKey
	opts     issuerOpts
	jwksHits atomic.Int32
	mdHits   atomic.Int32
}

type issuerOpts struct {
	path       string // the issuer's path, e.g. "/tenant"
	oidcOnly   bool   // no RFC 8414 metadata: OpenID discovery only
	mdIssuer   string // the issuer the metadata names; default the real one
	jwksURI    string // the metadata's jwks_uri; default this server's /jwks
	noJWKSURI  bool
	jwksBody   []byte // served as the JWKS instead of the keys
	redirectTo string // /jwks redirects here
}

func newIssuer(t testing.TB, o issuerOpts, keys ...signingKey) *testIssuer {
	t.Helper()
	iss := &testIssuer{opts: o}
	iss.publish(keys...)
	iss.srv = httptest.NewServer(http.HandlerFunc(iss.serve))
	t.Cleanup(iss.srv.Close)
	iss.url = iss.srv.URL + o.path
	return iss
}

// publish replaces the published key set.
func (iss *testIssuer) publish(keys ...signingKey) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.keys = nil
	for _, k := range keys {
		iss.keys = append(iss.keys, k.jwk())
	}
}

func (iss *testIssuer) serve(w http.ResponseWriter, r *http.Request) {
	o := iss.opts
	switch p := r.URL.Path; {
	case p == "/.well-known/oauth-authorization-server"+o.path && !o.oidcOnly,
		p == "/.well-known/openid-configuration"+o.path,
		p == o.path+"/.well-known/openid-configuration":
		iss.mdHits.Add(1)
		md := map[string]any{"issuer": iss.url, "jwks_uri": iss.srv.URL + "/jwks", "response_types_supported": []string{"code"}}
		if o.mdIssuer != "" {
			md["issuer"] = o.mdIssuer
		}
		if o.jwksURI != "" {
			md["jwks_uri"] = o.jwksURI
		}
		if o.noJWKSURI {
			delete(md, "jwks_uri")
		}
		_ = json.NewEncoder(w).Encode(md)
	case p == "/jwks" && o.redirectTo != "":
		http.Redirect(w, r, o.redirectTo, http.StatusFound)
	case p == "/jwks", p == "/jwks-moved":
		iss.jwksHits.Add(1)
		if o.jwksBody != nil {
			_, _ = w.Write(o.jwksBody)
			return
		}
		iss.mu.Lock()
		defer iss.mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: iss.keys})
	default:
		http.NotFound(w, r)
	}
}

// config points a guard at iss, with the test clock.
func (iss *testIssuer) config(clock *testClock) func(*HTTPConfig) {
	return func(c *HTTPConfig) {
		c.TokenIssuer = iss.url
		c.OAuthClient = iss.srv.Client()
		c.Clock = clock.Now
	}
}

func oauthPrincipal(sub string, p Profile) *Principal {
	return &Principal{ID: OAuthIDPrefix + sub, Profile: p}
}

func TestGuardValidatesIssuerAccessTokens(t *testing.T) {
	rk, ek, dk := rsaKey(), ecKey("ec-1"), edKey("ed-1")
	weak := signingKey{"rsa-weak", jose.RS256, rsaWeak()}
	stranger := signingKey{"ec-1", jose.ES256, ecKey("").priv} // kid of a published key, not its key
	iss := newIssuer(t, issuerOpts{}, rk, ek, dk, weak)
	clock := newClock()
	cfg := iss.config(clock)
	u := iss.url
	invalid := `Bearer error="invalid_token", ` + mdChallenge
	longSub := strings.Repeat("x", 200)
	longSum := sha256.Sum256([]byte(longSub))
	hsKey := must(x509.MarshalPKIXPublicKey(rsaPriv().Public()))

	for _, tc := range []guardCase{
		// Accepted.
		{name: "RS256 at+jwt with the agent scope", header: bearer(mint(t, rk, "at+jwt", claimsFor(u))), wantStatus: 418, want: oauthPrincipal("user-42", ProfileAgent)},
		{name: "ES256 application/at+jwt with the operator scope", header: bearer(mint(t, ek, "application/at+jwt", claimsFor(u, map[string]any{"scope": ScopeOperator}))), wantStatus: 418, want: oauthPrincipal("user-42", ProfileOperator)},
		{name: "EdDSA plain JWT with an scp array", header: bearer(mint(t, dk, "JWT", claimsFor(u, map[string]any{"scope": nil, "scp": []string{"profile", ScopeOperator}}))), wantStatus: 418, want: oauthPrincipal("user-42", ProfileOperator)},
		{name: "no typ header, scp string", header: bearer(mint(t, rk, "", claimsFor(u, map[string]any{"scope": nil, "scp": "email " + ScopeAgent}))), wantStatus: 418, want: oauthPrincipal("user-42", ProfileAgent)},
		{name: "both scopes: operator", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"scope": ScopeAgent + " " + ScopeOperator}))), wantStatus: 418, want: oauthPrincipal("user-42", ProfileOperator)},
		{name: "aud array naming this resource", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"aud": []string{"https://api.example.com", resource}}))), wantStatus: 418, want: oauthPrincipal("user-42", ProfileAgent)},
		{name: "unsafe sub is percent-encoded", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"sub": "auth0|a b:c\n"}))), wantStatus: 418, want: oauthPrincipal("auth0%7Ca%20b%3Ac%0A", ProfileAgent)},
		{name: "long sub is hashed", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"sub": longSub}))), wantStatus: 418, want: oauthPrincipal("sha256:"+hex.EncodeToString(longSum[:]), ProfileAgent)},
		{name: "expired within the clock skew", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"exp": t0.Add(-30 * time.Second).Unix()}))), wantStatus: 418, want: oauthPrincipal("user-42", ProfileAgent)},
		{name: "nbf and iat within the clock skew", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"nbf": t0.Add(30 * time.Second).Unix(), "iat": t0.Add(30 * time.Second).Unix()}))), wantStatus: 418, want: oauthPrincipal("user-42", ProfileAgent)},
		{name: "static access token still works", cfg: cfg, header: bearer(agentTok), wantStatus: 418, want: agent},
		{name: "static operator token still works", cfg: cfg, header: bearer(operatorTok), wantStatus: 418, want: operator},

		// Refused: 401 invalid_token.
		{name: "wrong aud (token passthrough)", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"aud": "https://other.example.com/mcp"}))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "does not name this resource"},
		{name: "aud with a trailing slash", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"aud": resource + "/"}))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "does not name this resource"},
		{name: "no aud", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"aud": nil}))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "does not name this resource"},
		{name: "wrong iss", header: bearer(mint(t, rk, "at+jwt", claimsFor("https://evil.example.com"))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "not the configured issuer"},
		{name: "expired", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"exp": t0.Add(-2 * time.Minute).Unix()}))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "expired (exp)"},
		{name: "no exp", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"exp": nil}))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "no exp"},
		{name: "nbf in the future", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"nbf": t0.Add(2 * time.Minute).Unix()}))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "(nbf)"},
		{name: "iat in the future", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"iat": t0.Add(2 * time.Minute).Unix()}))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "(iat)"},
		{name: "missing sub", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"sub": nil}))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "no sub"},
		{name: "alg none", header: bearer(unsigned(map[string]any{"alg": "none", "typ": "at+jwt", "kid": "rsa-1"}, claimsFor(u), nil)), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "\"none\""},
		{name: "HS256 with the public key's modulus as secret", header: bearer(hs256(t, rsaPriv().N.Bytes(), claimsFor(u))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "\"HS256\""},
		{name: "HS256 with the public key's DER as secret", header: bearer(hs256(t, hsKey, claimsFor(u))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "\"HS256\""},
		{name: "a published kid, another key", header: bearer(mint(t, stranger, "at+jwt", claimsFor(u))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "signature: "},
		{name: "unknown kid", header: bearer(mint(t, ecKey("nobody"), "at+jwt", claimsFor(u))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "no key with kid \"nobody\""},
		{name: "RSA key under 2048 bits", header: bearer(mint(t, weak, "at+jwt", claimsFor(u))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "fits RS256"},
		{name: "tampered claims", header: bearer(tamper(mint(t, rk, "at+jwt", claimsFor(u)), claimsFor(u, map[string]any{"scope": ScopeOperator}))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "signature: "},
		{name: "typ of a DPoP proof", header: bearer(mint(t, rk, "dpop+jwt", claimsFor(u))), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid, wantDetail: "not an access token type"},
		{name: "JWE-shaped token", header: bearer("a.b.c.d.e"), wantStatus: 401, wantCode: CodeInvalidToken, wantAuth: invalid},

		// Refused: 403 insufficient_scope (step-up).
		{name: "no nano-vm scope", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"scope": "openid profile"}))), wantStatus: 403, wantCode: CodeInsufficientScope,
			wantAuth: `Bearer error="insufficient_scope", scope="nano-vm:agent", ` + mdChallenge},
		{name: "no scope claim", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"scope": nil}))), wantStatus: 403, wantCode: CodeInsufficientScope,
			wantAuth: `Bearer error="insufficient_scope", scope="nano-vm:agent", ` + mdChallenge},
		{name: "a scope that only starts like ours", header: bearer(mint(t, rk, "at+jwt", claimsFor(u, map[string]any{"scope": ScopeAgent + "s nano-vm"}))), wantStatus: 403, wantCode: CodeInsufficientScope,
			wantAuth: `Bearer error="insufficient_scope", scope="nano-vm:agent", ` + mdChallenge},
	} {
		if tc.cfg == nil {
			tc.cfg = cfg
		}
		t.Run(tc.name, func(t *testing.T) { runGuardCase(t, tc) })
	}
}

// hs256 MACs claims with secret under the RSA key's kid, as an attacker
// holding the issuer's public key would.
func hs256(t testing.TB, secret []byte, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: secret, KeyID: "rsa-1"}}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	return must(jwt.Signed(signer).Claims(claims).Serialize())
}

// tamper replaces a token's claims, keeping its header and signature.
func tamper(tok string, claims map[string]any) string {
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString(must(json.Marshal(claims)))
	return strings.Join(parts, ".")
}

// The audience is exactly the resource the metadata advertises: with
// --resource-url that URL, never the one derived from the request.
func TestGuardChecksAudienceAgainstAdvertisedResource(t *testing.T) {
	rk := rsaKey()
	iss := newIssuer(t, issuerOpts{}, rk)
	clock := newClock()
	const configured = "https://mcp.example.com/v1/mcp"
	cfg := func(c *HTTPConfig) {
		iss.config(clock)(c)
		c.ResourceURL = configured
	}
	for _, tc := range []guardCase{
		{name: "aud is the configured resource", cfg: cfg, header: bearer(mint(t, rk, "at+jwt", claimsFor(iss.url, map[string]any{"aud": configured}))), wantStatus: 418, want: oauthPrincipal("user-42", ProfileAgent)},
		{name: "aud is the derived resource", cfg: cfg, header: bearer(mint(t, rk, "at+jwt", claimsFor(iss.url, map[string]any{"aud": resource}))), wantStatus: 401, wantCode: CodeInvalidToken, wantDetail: "does not name this resource",
			wantAuth: `Bearer error="invalid_token", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp"`},
	} {
		t.Run(tc.name, func(t *testing.T) { runGuardCase(t, tc) })
	}
	t.Run("derived resource follows the Host", func(t *testing.T) {
		tok := mint(t, rk, "at+jwt", claimsFor(iss.url, map[string]any{"aud": "http://127.0.0.1:8080/mcp"}))
		runGuardCase(t, guardCase{name: "127.0.0.1", cfg: iss.config(clock), host: "127.0.0.1:8080", header: bearer(tok), wantStatus: 418, want: oauthPrincipal("user-42", ProfileAgent)})
		runGuardCase(t, guardCase{name: "localhost", cfg: iss.config(clock), host: "localhost:8080", header: bearer(tok), wantStatus: 401, wantCode: CodeInvalidToken,
			wantAuth: `Bearer error="invalid_token", ` + mdChallenge})
	})
}

func TestGuardDiscoversTheIssuer(t *testing.T) {
	rk := rsaKey()
	for _, tc := range []struct {
		name   string
		opts   issuerOpts
		issuer func(iss *testIssuer) string // the configured issuer; default iss.url
		ok     bool
		detail string // in the refusal's log line
	}{
		{name: "RFC 8414 metadata", ok: true},
		{name: "OpenID discovery when RFC 8414 is absent", opts: issuerOpts{oidcOnly: true}, ok: true},
		{name: "issuer with a path, RFC 8414 inserted", opts: issuerOpts{path: "/tenant"}, ok: true},
		{name: "issuer with a path, OpenID discovery", opts: issuerOpts{path: "/tenant", oidcOnly: true}, ok: true},
		{name: "same-host redirect of the JWKS", opts: issuerOpts{redirectTo: "/jwks-moved"}, ok: true},
		{name: "metadata names another issuer", opts: issuerOpts{mdIssuer: "https://evil.example.com"}, detail: "names the issuer"},
		{name: "configured issuer differs by a trailing slash", issuer: func(iss *testIssuer) string { return iss.url + "/" }, detail: "names the issuer"},
		{name: "no jwks_uri", opts: issuerOpts{noJWKSURI: true}, detail: "no jwks_uri"},
		{name: "plain http jwks_uri beyond loopback", opts: issuerOpts{jwksURI: "http://keys.example.com/jwks"}, detail: "use https"},
		{name: "redirect of the JWKS to another host", opts: issuerOpts{redirectTo: "http://127.0.0.2:1/jwks"}, detail: "another host"},
		{name: "JWKS over the size limit", opts: issuerOpts{jwksBody: []byte(`{"keys":[],"pad":"` + strings.Repeat("x", oauthMaxResponse) + `"}`)}, detail: "larger than"},
		{name: "JWKS that is not JSON", opts: issuerOpts{jwksBody: []byte("<html>")}, detail: "invalid character"},
		{name: "JWKS with only a symmetric key", opts: issuerOpts{jwksBody: []byte(`{"keys":[{"kty":"oct","kid":"rsa-1","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`)}, detail: "no usable signature key"},
		{name: "JWKS with unknown key types besides a good one", opts: issuerOpts{jwksBody: mixedJWKS(rk)}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iss := newIssuer(t, tc.opts, rk)
			core, logs := observer.New(zapcore.DebugLevel)
			clock := newClock()
			cfg := baseConfig(t)
			iss.config(clock)(&cfg)
			if tc.issuer != nil {
				cfg.TokenIssuer = tc.issuer(iss)
			}
			cfg.Log = zap.New(core)
			next := &reached{}
			tok := mint(t, rk, "at+jwt", claimsFor(cfg.TokenIssuer))
			w := serveToken(Guard(cfg, next), tok)
			if tc.ok {
				if w.Code != 418 || next.principal.ID != "oauth:user-42" {
					t.Fatalf("status %d, principal %+v; want accepted. logs: %v", w.Code, next.principal, logText(logs))
				}
				return
			}
			if w.Code != 401 || next.calls.Load() != 0 {
				t.Fatalf("status %d; want 401", w.Code)
			}
			if warns := logs.FilterLevelExact(zapcore.WarnLevel).All(); len(warns) != 1 || !strings.Contains(logText(logs), tc.detail) {
				t.Fatalf("want one warning mentioning %q; logs: %v", tc.detail, logText(logs))
			}
			if strings.Contains(logText(logs), tok) {
				t.Fatal("the token was logged")
			}
		})
	}
}

// mixedJWKS publishes k beside keys a verifier must skip.
func mixedJWKS(k signingKey) []byte {
	good := must(json.Marshal(k.jwk()))
	return []byte(`{"keys":[{"kty":"OKP","crv":"Ed448","x":"AAAA"},{"kty":"EC","crv":"secp256k1","alg":"ES256K","x":"AA","y":"AA"},{"kty":"RSA"},` + string(good) + `]}`)
}

func serveToken(h http.Handler, tok string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "/mcp", nil)
	r.Host = "localhost:8080"
	r.RemoteAddr = "127.0.0.1:5555"
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func logText(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&b, "%s %s %v\n", e.Level, e.Message, e.ContextMap())
	}
	return b.String()
}

// Key rotation: a token signed by a newly published key is accepted once
// the key set is refetched, which an unknown kid triggers at most every
// oauthRefetchInterval; a withdrawn key stops working when the set ages
// out.
func TestGuardFollowsKeyRotationAndRateLimitsRefetches(t *testing.T) {
	a, b := ecKey("key-a"), ecKey("key-b")
	iss := newIssuer(t, issuerOpts{}, a)
	clock := newClock()
	cfg := baseConfig(t)
	iss.config(clock)(&cfg)
	h := Guard(cfg, &reached{})
	long := map[string]any{"exp": t0.Add(3 * time.Hour).Unix()}
	tokA, tokB := mint(t, a, "at+jwt", claimsFor(iss.url, long)), mint(t, b, "at+jwt", claimsFor(iss.url, long))

	step := func(name, tok string, wantStatus int, wantFetches int32) {
		t.Helper()
		if w := serveToken(h, tok); w.Code != wantStatus {
			t.Fatalf("%s: status %d, want %d: %s", name, w.Code, wantStatus, w.Body)
		}
		if got := iss.jwksHits.Load(); got != wantFetches {
			t.Fatalf("%s: %d JWKS fetches, want %d", name, got, wantFetches)
		}
	}
	step("first token fetches the keys", tokA, 418, 1)
	step("known key: no fetch", tokA, 418, 1)
	iss.publish(a, b)
	step("new key, just fetched: refused, no refetch", tokB, 401, 1)
	clock.advance(oauthRefetchInterval + time.Second)
	step("new key after the interval: refetched and accepted", tokB, 418, 2)
	for i := range 20 {
		step("unknown kids within the interval: no refetch", mint(t, ecKey(fmt.Sprint("x", i)), "at+jwt", claimsFor(iss.url)), 401, 2)
	}
	step("old key still published", tokA, 418, 2)
	iss.publish(b)
	step("withdrawn key, set still fresh", tokA, 418, 2)
	clock.advance(oauthKeysMaxAge)
	step("withdrawn key once the set is stale: refetched and refused", tokA, 401, 3)
	step("current key", tokB, 418, 3)
	if got := iss.mdHits.Load(); got != 1 {
		t.Fatalf("metadata fetched %d times, want 1", got)
	}
}

// An unreachable issuer costs JWT holders a 401 and a warning, never a
// crash or the static tokens; known keys outlive the outage.
func TestGuardSurvivesAnUnreachableIssuer(t *testing.T) {
	k := ecKey("k")
	iss := newIssuer(t, issuerOpts{}, k)
	clock := newClock()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := baseConfig(t)
	iss.config(clock)(&cfg)
	cfg.Log = zap.New(core)
	h := Guard(cfg, &reached{})
	long := map[string]any{"exp": t0.Add(3 * time.Hour).Unix()}
	tok := mint(t, k, "at+jwt", claimsFor(iss.url, long))
	if w := serveToken(h, tok); w.Code != 418 {
		t.Fatalf("status %d before the outage", w.Code)
	}
	iss.srv.Close()
	clock.advance(oauthKeysMaxAge + time.Minute)
	if w := serveToken(h, tok); w.Code != 418 {
		t.Fatalf("status %d: a known key must outlive the outage", w.Code)
	}
	if w := serveToken(h, mint(t, ecKey("new"), "at+jwt", claimsFor(iss.url, long))); w.Code != 401 {
		t.Fatalf("status %d for an unknown key during the outage; want 401", w.Code)
	}
	if w := serveToken(h, agentTok); w.Code != 418 {
		t.Fatalf("static token: status %d during the outage", w.Code)
	}
	if n := len(logs.FilterLevelExact(zapcore.WarnLevel).All()); n != 1 {
		t.Fatalf("%d warnings, want 1 (fetches are rate limited): %s", n, logText(logs))
	}

	// A guard that never reached the issuer refuses JWTs and keeps going.
	cfg2 := baseConfig(t)
	iss.config(clock)(&cfg2)
	h2 := Guard(cfg2, &reached{})
	for range 3 {
		if w := serveToken(h2, tok); w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer error="invalid_token", `+mdChallenge {
			t.Fatalf("status %d, challenge %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
}

// Concurrent first tokens share one discovery and one JWKS fetch.
func TestGuardFetchesKeysOnceForConcurrentTokens(t *testing.T) {
	k := ecKey("k")
	iss := newIssuer(t, issuerOpts{}, k)
	cfg := baseConfig(t)
	iss.config(newClock())(&cfg)
	h := Guard(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(418) }))
	tok := mint(t, k, "at+jwt", claimsFor(iss.url))
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 16 {
		wg.Go(func() {
			if serveToken(h, tok).Code == 418 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 16 || iss.jwksHits.Load() != 1 || iss.mdHits.Load() != 1 {
		t.Fatalf("%d accepted, %d JWKS and %d metadata fetches; want 16, 1, 1", ok.Load(), iss.jwksHits.Load(), iss.mdHits.Load())
	}
}

// A refused JWT is logged at info with the reason, never with the token.
func TestGuardLogsWhyAJWTIsRefused(t *testing.T) {
	rk := rsaKey()
	iss := newIssuer(t, issuerOpts{}, rk)
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := baseConfig(t)
	iss.config(newClock())(&cfg)
	cfg.Log = zap.New(core)
	tok := mint(t, rk, "at+jwt", claimsFor(iss.url, map[string]any{"aud": "https://other.example.com/mcp"}))
	serveToken(Guard(cfg, &reached{}), tok)
	entries := logs.All()
	if len(entries) != 1 || entries[0].Level != zapcore.InfoLevel {
		t.Fatalf("logs: %s", logText(logs))
	}
	f := entries[0].ContextMap()
	if f["reason"] != CodeInvalidToken || !strings.Contains(fmt.Sprint(f["detail"]), "does not name this resource") {
		t.Fatalf("fields %v", f)
	}
	if text := logText(logs); strings.Contains(text, tok) || strings.Contains(text, strings.Split(tok, ".")[2]) {
		t.Fatalf("the token was logged: %s", text)
	}
}

func TestSanitizeSubIsOneToOne(t *testing.T) {
	seen := map[string]string{}
	for _, sub := range []string{"a", "A", "a b", "a%20b", "a+b", "a:b", "a%3Ab", "sha256:00", "é", "%C3%A9", strings.Repeat("y", maxSubLen), strings.Repeat("y", maxSubLen+1), strings.Repeat("%", 43), strings.Repeat("%", 42)} {
		id := sanitizeSub(sub)
		if prev, dup := seen[id]; dup {
			t.Fatalf("%q and %q both map to %q", prev, sub, id)
		}
		seen[id] = sub
		if len(id) > maxSubLen {
			t.Fatalf("%q maps to %d characters", sub, len(id))
		}
		for _, c := range []byte(id) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._~@+-%:", c) >= 0) {
				t.Fatalf("%q maps to %q with unsafe byte %q", sub, id, c)
			}
		}
	}
}

// FuzzBearer: no Authorization value panics the guard, and none yields a
// principal unless it is a static token or the valid access token (the
// last base64 character of a signature may vary in its unused bits).
func FuzzBearer(f *testing.F) {
	k := ecKey("k")
	iss := newIssuer(f, issuerOpts{}, k)
	cfg := baseConfig(f)
	iss.config(newClock())(&cfg)
	withTokens(&cfg)
	next := &reached{}
	h := Guard(cfg, next)
	valid := mint(f, k, "at+jwt", claimsFor(iss.url))
	signedPart := valid[:strings.LastIndexByte(valid, '.')]
	for _, seed := range []string{
		"Bearer " + valid, "Bearer " + agentTok, "bearer  " + operatorTok + " ", "Basic " + aliceTok, "Bearer", "Bearer " + ciTok,
		"Bearer " + unsigned(map[string]any{"alg": "none"}, claimsFor(iss.url), nil),
		"Bearer " + tamper(valid, claimsFor(iss.url, map[string]any{"scope": ScopeOperator})),
		"Bearer eyJ.eyJ.", "Bearer ..", "Bearer a.b.c", "Bearer " + strings.Repeat("A", maxJWTLen) + ".a.b",
	} {
		f.Add(seed)
	}
	static := map[string]bool{agentTok: true, operatorTok: true, aliceTok: true, ciTok: true, reviewTok: true}
	f.Fuzz(func(t *testing.T, auth string) {
		before := next.calls.Load()
		r := httptest.NewRequest("POST", "/mcp", nil)
		r.Host = "localhost:8080"
		r.RemoteAddr = "192.0.2.1:5555"
		r.Header["Authorization"] = []string{auth}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if next.calls.Load() == before {
			if w.Code != 401 && w.Code != 403 {
				t.Fatalf("refused with status %d", w.Code)
			}
			return
		}
		scheme, tok, _ := strings.Cut(auth, " ")
		tok = strings.Trim(tok, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			t.Fatalf("accepted scheme %q", scheme)
		}
		if !static[tok] && !strings.HasPrefix(tok, signedPart+".") {
			t.Fatalf("accepted %q", auth)
		}
	})
}
