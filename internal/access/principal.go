// Package access decides who is calling the server and whether the call may
// reach it at all.
//
// It holds the principal types shared by every transport (stdio puts a fixed
// principal in the context; HTTP derives one from the bearer token), the
// loading of secrets and of the operator's approvers and agent tokens files
// (kept in force while serving by a Reloader), and Guard: the
// access-control layer the HTTP transport wraps around the whole listener.
// Guard checks, in this order:
//
//  1. the Host header against an allowlist (loopback names by default), so a
//     DNS-rebound browser page cannot talk to a local server;
//  2. the Origin header: a browser request from a foreign origin is refused on
//     every method, and a cross-origin non-safe request is refused by
//     [http.CrossOriginProtection] unless its origin is trusted;
//  3. the OAuth protected-resource metadata (RFC 9728), served without
//     authentication when an issuer is configured;
//  4. the bearer token, compared in constant time with the static tokens
//     (operator, approvers', agents' from the tokens file, access), which
//     yields the [Principal] placed in the request context; when neither
//     an access token nor a tokens file is configured, a caller presenting
//     none is the "local" principal, and only if it connects from loopback
//     (or a Unix socket).
//     With an issuer, a token that matches no static token and has the
//     shape of a JWT is validated as the issuer's access token (RFC 9068:
//     signature by a key of the issuer's JWKS, iss, aud naming this
//     resource, exp, nbf, iat) and yields "oauth:<sub>", with the operator
//     profile when it carries the nano-vm:operator scope; a valid token
//     without a nano-vm scope is refused 403 insufficient_scope;
//  5. the request body size (413 beyond the limit).
//
// Under ConsolePath (the web console) step 4 differs: a visitor without a
// token is the read-only auditor, and the operator may sign in once with
// the operator token for a session cookie (console.go).
//
// Refusals are answered with a small JSON body {"error": code, "message": …}
// and logged at info level with the remote address and the reason (for a
// refused JWT, why). Tokens are never logged.
package access

import (
	"context"
	"fmt"
)

// Profile is the set of tools and views a principal is entitled to.
type Profile string

// The profiles.
const (
	// ProfileAgent is the model-facing profile: it drives runs.
	ProfileAgent Profile = "agent"
	// ProfileOperator is the human operator: it may also inspect and
	// administer runs.
	ProfileOperator Profile = "operator"
	// ProfileApprover is a configured approver (an approver's token): it
	// reads and decides the approvals that wait for its role, and never
	// drives runs, so that nobody decides what they drove.
	ProfileApprover Profile = "approver"
)

// ParseProfile returns the profile named s, for flags and configuration:
// agent or operator. The approver profile is not among them: it needs an
// approver's identity, which only a token gives.
func ParseProfile(s string) (Profile, error) {
	switch p := Profile(s); p {
	case ProfileAgent, ProfileOperator:
		return p, nil
	}
	return "", fmt.Errorf("unknown profile %q: use %q or %q", s, ProfileAgent, ProfileOperator)
}

// Principal IDs assigned by Guard. They are reserved: no approver or agent
// in a credentials file may use them as its id (see reservedIDs). Principals from the issuer's access tokens are
// OAuthIDPrefix followed by the token's sub, which no approver id can
// equal.
const (
	IDLocal    = "local"    // no token required and none presented (loopback only)
	IDAgent    = "agent"    // presented the access token
	IDOperator = "operator" // presented the operator token
)

// Principal is who is calling. ID is recorded in traces; it is never a
// token or anything derived from one.
type Principal struct {
	ID      string
	Profile Profile
	// ApproverRole is set when the caller authenticated with an approver
	// token (ProfileApprover); it is the role the operator gave that
	// approver.
	ApproverRole string
}

type principalKey struct{}

// WithPrincipal returns a copy of ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal carried by ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
