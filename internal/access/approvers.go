package access

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Approver is a person the operator allows to approve gated steps.
type Approver struct {
	ID   string // matches ^[a-z][a-z0-9_.-]{0,63}$; recorded in traces
	Role string // matches ^[a-z][a-z0-9_]*$; what guards test
}

// Approvers is the operator's list of approvers, each with the SHA-256 of
// its bearer token. It is immutable and safe for concurrent use. A nil
// *Approvers is an empty list.
type Approvers struct {
	entries []approverEntry
}

type approverEntry struct {
	Approver
	hash [sha256.Size]byte
}

var (
	approverIDPattern   = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
	approverRolePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// maxApproversBytes bounds an approvers file.
const maxApproversBytes = 1 << 20

// maxRoleLen bounds a role name; the pattern alone has no upper bound.
const maxRoleLen = 64

// LoadApprovers reads and parses the approvers file at path. See
// ParseApprovers for the format.
func LoadApprovers(path string) (*Approvers, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load approvers: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxApproversBytes+1))
	if err != nil {
		return nil, fmt.Errorf("load approvers: %w", err)
	}
	return ParseApprovers(path, data)
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
// hashes are errors naming the line and the entry. The ids "local", "agent"
// and "operator" are reserved for the principals Guard assigns itself.
// An explicit empty list ("approvers: []") is valid.
func ParseApprovers(name string, data []byte) (*Approvers, error) {
	if len(data) > maxApproversBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxApproversBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty; want a mapping with an approvers list", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("%s: %w", name, err)
	default:
		return nil, fmt.Errorf("%s:%d: a second YAML document; the file must hold one", name, extra.Line)
	}
	p := approversParser{name: name}
	return p.document(&doc)
}

type approversParser struct {
	name string
}

func (p *approversParser) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", p.name, n.Line, fmt.Sprintf(format, args...))
}

// scalarString returns the value of a string scalar, refusing aliases,
// collections and non-string scalars (numbers, booleans, null).
func (p *approversParser) scalarString(n *yaml.Node, what string) (string, error) {
	switch {
	case n.Kind == yaml.AliasNode:
		return "", p.errorf(n, "%s: YAML aliases are not allowed", what)
	case n.Kind != yaml.ScalarNode:
		return "", p.errorf(n, "%s: want a string, got a %s", what, kindName(n.Kind))
	case n.ShortTag() == "!!merge":
		return "", p.errorf(n, "%s: YAML merge keys are not allowed", what)
	case n.ShortTag() != "!!str":
		return "", p.errorf(n, "%s: want a string, got %s %q (quote it)", what, strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
	}
	return n.Value, nil
}

// mapping returns the key/value pairs of a mapping node, refusing keys that
// are not in allowed and keys given twice.
func (p *approversParser) mapping(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, error) {
	if n.Kind == yaml.AliasNode {
		return nil, p.errorf(n, "%s: YAML aliases are not allowed", what)
	}
	if n.Kind != yaml.MappingNode {
		return nil, p.errorf(n, "%s: want a mapping, got a %s", what, kindName(n.Kind))
	}
	fields := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, err := p.scalarString(k, what+": key")
		if err != nil {
			return nil, err
		}
		known := false
		for _, a := range allowed {
			known = known || key == a
		}
		if !known {
			return nil, p.errorf(k, "%s: unknown field %q (allowed: %s)", what, key, strings.Join(allowed, ", "))
		}
		if prev, dup := fields[key]; dup {
			return nil, p.errorf(k, "%s: field %q given twice (first at line %d)", what, key, prev.Line)
		}
		fields[key] = v
	}
	return fields, nil
}

func (p *approversParser) document(doc *yaml.Node) (*Approvers, error) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, p.errorf(doc, "want a mapping with an approvers list")
	}
	root, err := p.mapping(doc.Content[0], "top level", "approvers")
	if err != nil {
		return nil, err
	}
	list, ok := root["approvers"]
	if !ok {
		return nil, p.errorf(doc.Content[0], "missing the approvers list")
	}
	if list.Kind == yaml.AliasNode {
		return nil, p.errorf(list, "approvers: YAML aliases are not allowed")
	}
	if list.Kind != yaml.SequenceNode {
		return nil, p.errorf(list, "approvers: want a list, got a %s", kindName(list.Kind))
	}
	a := &Approvers{entries: make([]approverEntry, 0, len(list.Content))}
	idLine := make(map[string]int, len(list.Content))
	hashAt := make(map[[sha256.Size]byte]int, len(list.Content))
	for i, item := range list.Content {
		what := fmt.Sprintf("approvers[%d]", i)
		fields, err := p.mapping(item, what, "id", "role", "token_sha256")
		if err != nil {
			return nil, err
		}
		for _, f := range []string{"id", "role", "token_sha256"} {
			if _, ok := fields[f]; !ok {
				return nil, p.errorf(item, "%s: missing %s", what, f)
			}
		}
		id, err := p.scalarString(fields["id"], what+": id")
		if err != nil {
			return nil, err
		}
		if !approverIDPattern.MatchString(id) {
			return nil, p.errorf(fields["id"], "%s: id %q must match %s", what, id, approverIDPattern)
		}
		switch id {
		case IDLocal, IDAgent, IDOperator:
			return nil, p.errorf(fields["id"], "%s: id %q is reserved for a built-in principal; choose another", what, id)
		}
		if first, dup := idLine[id]; dup {
			return nil, p.errorf(fields["id"], "%s: duplicate id %q (first at line %d)", what, id, first)
		}
		idLine[id] = fields["id"].Line
		what = fmt.Sprintf("approvers[%d] (id %q)", i, id)

		role, err := p.scalarString(fields["role"], what+": role")
		if err != nil {
			return nil, err
		}
		if len(role) > maxRoleLen || !approverRolePattern.MatchString(role) {
			return nil, p.errorf(fields["role"], "%s: role %q must match %s and be at most %d characters", what, role, approverRolePattern, maxRoleLen)
		}

		hx, err := p.scalarString(fields["token_sha256"], what+": token_sha256")
		if err != nil {
			return nil, err
		}
		var e approverEntry
		if len(hx) != hex.EncodedLen(sha256.Size) {
			return nil, p.errorf(fields["token_sha256"], "%s: token_sha256 must be %d hex digits (the SHA-256 of the token), got %d characters", what, hex.EncodedLen(sha256.Size), len(hx))
		}
		if _, err := hex.Decode(e.hash[:], []byte(hx)); err != nil {
			return nil, p.errorf(fields["token_sha256"], "%s: token_sha256 is not hex: %v", what, err)
		}
		if j, dup := hashAt[e.hash]; dup {
			return nil, p.errorf(fields["token_sha256"], "%s: token_sha256 is the same as approvers[%d] (id %q); each approver needs its own token", what, j, a.entries[j].ID)
		}
		hashAt[e.hash] = i
		e.Approver = Approver{ID: id, Role: role}
		a.entries = append(a.entries, e)
	}
	return a, nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.DocumentNode:
		return "document"
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "node"
}

// Len is the number of approvers.
func (a *Approvers) Len() int {
	if a == nil {
		return 0
	}
	return len(a.entries)
}

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
	if a == nil {
		return Approver{}, false
	}
	found, idx := 0, 0
	for i := range a.entries {
		eq := subtle.ConstantTimeCompare(sum[:], a.entries[i].hash[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return Approver{}, false
	}
	return a.entries[idx].Approver, true
}

// HasRole reports whether some approver has role: whether approve can
// decide an approval state of that role at all.
func (a *Approvers) HasRole(role string) bool {
	if a == nil {
		return false
	}
	for _, e := range a.entries {
		if e.Role == role {
			return true
		}
	}
	return false
}
