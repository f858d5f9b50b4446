package access

import (
	"crypto/sha256"
	"sync/atomic"
)

// Tokens is the agent tokens file: agent principals, each with the SHA-256
// of its bearer token, so that several agents have identities of their
// own (and runs of their own) without an OAuth issuer. It is safe for
// concurrent use: a [Reloader] puts a changed file in force by replacing
// the whole list at once. A nil *Tokens is an empty list.
type Tokens struct {
	set atomic.Pointer[credSet]
}

func (t *Tokens) current() *credSet {
	if t == nil {
		return nil
	}
	return t.set.Load()
}

// ParseTokens parses an agent tokens file, YAML or JSON, named name in
// error messages:
//
//	agents:
//	  - id: ci-bot                 # ^[a-z][a-z0-9_.-]{0,63}$
//	    token_sha256: 9f86d0…      # 64 hex digits: SHA-256 of the token
//
// It is as strict as the approvers file (see [ParseApprovers]), with the
// same reserved ids. An explicit empty list ("agents: []") is valid.
func ParseTokens(name string, data []byte) (*Tokens, error) {
	s, err := parseTokens(name, data)
	if err != nil {
		return nil, err
	}
	t := &Tokens{}
	t.set.Store(s)
	return t, nil
}

func parseTokens(name string, data []byte) (*credSet, error) {
	return parseCredFile(name, data, "agents", agentFields)
}

// Len is the number of agents.
func (t *Tokens) Len() int { return t.current().len() }

// Lookup returns the id of the agent whose token is token, comparing its
// SHA-256 with every entry in constant time.
func (t *Tokens) Lookup(token string) (string, bool) {
	if t == nil || token == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	return t.lookupHash(&sum)
}

func (t *Tokens) lookupHash(sum *[sha256.Size]byte) (string, bool) {
	e, ok := t.current().lookupHash(sum)
	return e.id, ok
}
