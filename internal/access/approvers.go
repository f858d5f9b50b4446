package access

import (
	"crypto/sha256"
	"sync/atomic"
)

// Approver is a person the operator allows to approve gated steps.
type Approver struct {
	ID   string // matches ^[a-z][a-z0-9_.-]{0,63}$; recorded in traces
	Role string // matches ^[a-z][a-z0-9_]*$; what guards test
}

// Approvers is the operator's list of approvers, each with the SHA-256 of
// its bearer token. It is safe for concurrent use: a [Reloader] puts a
// changed approvers file in force by replacing the whole list at once, and
// every holder of the *Approvers sees the new list. A nil *Approvers is an
// empty list.
type Approvers struct {
	set atomic.Pointer[credSet]
}

// current is the list in force.
func (a *Approvers) current() *credSet {
	if a == nil {
		return nil
	}
	return a.set.Load()
}

// ParseApprovers parses an approvers file, YAML or JSON, named name in
// error messages:
//
//	approvers:
//	  - id: alice                  # ^[a-z][a-z0-9_.-]{0,63}$
//	    role: compliance_officer   # ^[a-z][a-z0-9_]*$
//	    token_sha256: 9f86d0…      # 64 hex digits: SHA-256 of the token
//
// The file is strict: unknown or repeated fields, missing fields, non-string
// values, YAML aliases, several documents, duplicate ids and duplicate token
// hashes are errors naming the line and the entry. The ids of the
// principals the server assigns itself ("local", "agent", "operator",
// "auditor", "cli", "lab") are reserved. An explicit empty list
// ("approvers: []") is valid.
func ParseApprovers(name string, data []byte) (*Approvers, error) {
	s, err := parseApprovers(name, data)
	if err != nil {
		return nil, err
	}
	a := &Approvers{}
	a.set.Store(s)
	return a, nil
}

func parseApprovers(name string, data []byte) (*credSet, error) {
	return parseCredFile(name, data, "approvers", approverFields)
}

// Len is the number of approvers.
func (a *Approvers) Len() int { return a.current().len() }

// Lookup returns the approver whose token is token. It hashes token with
// SHA-256 and compares the hash with every entry in constant time, without
// stopping at a match, so the timing reveals neither whether nor which entry
// matched.
func (a *Approvers) Lookup(token string) (Approver, bool) {
	if a == nil || token == "" {
		return Approver{}, false
	}
	sum := sha256.Sum256([]byte(token))
	return a.lookupHash(&sum)
}

func (a *Approvers) lookupHash(sum *[sha256.Size]byte) (Approver, bool) {
	e, ok := a.current().lookupHash(sum)
	return Approver{ID: e.id, Role: e.role}, ok
}

// HasRole reports whether some approver has role: whether approve can
// decide an approval state of that role at all.
func (a *Approvers) HasRole(role string) bool {
	for _, e := range a.current().entriesOrNil() {
		if e.role == role {
			return true
		}
	}
	return false
}
