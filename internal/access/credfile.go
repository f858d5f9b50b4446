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
	"runtime"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The approvers file and the agent tokens file share one format: a mapping
// with one list of entries, each an id, the SHA-256 of a bearer token and,
// in the approvers file, a role. This file parses both, holds a parsed file
// (credSet) and reads one from disk.

var (
	principalIDPattern  = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
	approverRolePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// reservedIDs are the principals the server assigns itself, over HTTP, on
// the console, in the CLI (run, erase) and in the lab: no file may give
// them to a token holder, or its runs would mix with theirs. Principals
// from an issuer ("oauth:…") and elicited approvals ("elicitation:…") hold
// a ':', which the id pattern excludes.
var reservedIDs = []string{IDLocal, IDAgent, IDOperator, IDAuditor, "cli", "lab"}

// maxCredFileBytes bounds an approvers or tokens file.
const maxCredFileBytes = 1 << 20

// maxRoleLen bounds a role name; the pattern alone has no upper bound.
const maxRoleLen = 64

// credEntry is one entry of a credentials file.
type credEntry struct {
	id, role string // role is empty in the tokens file
	hash     [sha256.Size]byte
	idLine   int // where the entry's id and token_sha256 are, for messages
	hashLine int
}

// credSet is one parsed credentials file. It is immutable.
type credSet struct {
	name    string // the file, as messages name it
	list    string // "approvers" or "agents"
	entries []credEntry
}

func (s *credSet) len() int {
	if s == nil {
		return 0
	}
	return len(s.entries)
}

// lookupHash returns the entry whose token hash is sum. It compares sum
// with every entry in constant time, without stopping at a match, so the
// timing reveals neither whether nor which entry matched.
func (s *credSet) lookupHash(sum *[sha256.Size]byte) (credEntry, bool) {
	if s == nil {
		return credEntry{}, false
	}
	found, idx := 0, 0
	for i := range s.entries {
		eq := subtle.ConstantTimeCompare(sum[:], s.entries[i].hash[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return credEntry{}, false
	}
	return s.entries[idx], true
}

func (s *credSet) byID(id string) (credEntry, bool) {
	if s == nil {
		return credEntry{}, false
	}
	for _, e := range s.entries {
		if e.id == id {
			return e, true
		}
	}
	return credEntry{}, false
}

// holder names an entry of s for a message about another file.
func (s *credSet) holder(e credEntry) string {
	return fmt.Sprintf("%s %q (%s:%d)", strings.TrimSuffix(s.list, "s"), e.id, s.name, e.idLine)
}

// disjoint refuses a candidate file that shares an id or a token with
// other, the other credentials file in force: a principal is one person
// or agent, and a token names one principal.
func disjoint(candidate, other *credSet) error {
	if candidate == nil || other == nil {
		return nil
	}
	for _, e := range candidate.entries {
		if o, dup := other.byID(e.id); dup {
			return fmt.Errorf("%s:%d: id %q is also the id of %s; each principal needs an id of its own", candidate.name, e.idLine, e.id, other.holder(o))
		}
		if o, dup := other.lookupHash(&e.hash); dup {
			return fmt.Errorf("%s:%d: token_sha256 of %q is also the token of %s; each principal needs a token of its own", candidate.name, e.hashLine, e.id, other.holder(o))
		}
	}
	return nil
}

// reservedToken is a static token (access or operator) that no file entry
// may hold.
type reservedToken struct {
	what string
	sum  [sha256.Size]byte
}

// notReserved refuses a candidate file holding a static token.
func notReserved(candidate *credSet, reserved []reservedToken) error {
	for _, r := range reserved {
		if e, dup := candidate.lookupHash(&r.sum); dup {
			return fmt.Errorf("%s:%d: token_sha256 of %q is the hash of %s; use distinct tokens", candidate.name, e.hashLine, e.id, r.what)
		}
	}
	return nil
}

// readCredFile reads a credentials file and returns it with its stat. The
// file holds hashes, not tokens, but one that other users can write lets
// them add a principal, so it is refused. (One they can read lets them
// test guessed tokens offline: the caller warns, see readableByOthers.)
func readCredFile(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return nil, nil, fmt.Errorf("%s is a directory", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o002 != 0 {
		return nil, nil, fmt.Errorf("%s is writable by other users (mode %#o), who could add a principal; run chmod 600 %s (or 640 for a service group)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCredFileBytes+1))
	if err != nil {
		return nil, nil, err
	}
	return data, fi, nil
}

// readableByOthers reports whether perm lets users other than the owner
// and the group read the file (never on Windows, which has no such bits).
func readableByOthers(perm os.FileMode) bool {
	return runtime.GOOS != "windows" && perm&0o004 != 0
}

// The fields of an entry, every one required.
var (
	approverFields = []string{"id", "role", "token_sha256"}
	agentFields    = []string{"id", "token_sha256"}
)

// parseCredFile parses a credentials file named name whose top-level
// mapping holds one list, list, of entries with fields.
func parseCredFile(name string, data []byte, list string, fields []string) (*credSet, error) {
	if len(data) > maxCredFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxCredFileBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty; want a mapping with an %s list", name, list)
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
	p := credParser{name: name}
	return p.document(&doc, list, fields)
}

type credParser struct {
	name string
}

func (p *credParser) errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", p.name, n.Line, fmt.Sprintf(format, args...))
}

// scalarString returns the value of a string scalar, refusing aliases,
// collections and non-string scalars (numbers, booleans, null).
func (p *credParser) scalarString(n *yaml.Node, what string) (string, error) {
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
func (p *credParser) mapping(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, error) {
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

func (p *credParser) document(doc *yaml.Node, list string, allowed []string) (*credSet, error) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, p.errorf(doc, "want a mapping with an %s list", list)
	}
	root, err := p.mapping(doc.Content[0], "top level", list)
	if err != nil {
		return nil, err
	}
	items, ok := root[list]
	if !ok {
		return nil, p.errorf(doc.Content[0], "missing the %s list", list)
	}
	if items.Kind == yaml.AliasNode {
		return nil, p.errorf(items, "%s: YAML aliases are not allowed", list)
	}
	if items.Kind != yaml.SequenceNode {
		return nil, p.errorf(items, "%s: want a list, got a %s", list, kindName(items.Kind))
	}
	s := &credSet{name: p.name, list: list, entries: make([]credEntry, 0, len(items.Content))}
	idLine := make(map[string]int, len(items.Content))
	hashAt := make(map[[sha256.Size]byte]int, len(items.Content))
	for i, item := range items.Content {
		what := fmt.Sprintf("%s[%d]", list, i)
		fields, err := p.mapping(item, what, allowed...)
		if err != nil {
			return nil, err
		}
		for _, f := range allowed {
			if _, ok := fields[f]; !ok {
				return nil, p.errorf(item, "%s: missing %s", what, f)
			}
		}
		id, err := p.scalarString(fields["id"], what+": id")
		if err != nil {
			return nil, err
		}
		if !principalIDPattern.MatchString(id) {
			return nil, p.errorf(fields["id"], "%s: id %q must match %s", what, id, principalIDPattern)
		}
		for _, r := range reservedIDs {
			if id == r {
				return nil, p.errorf(fields["id"], "%s: id %q is reserved for a built-in principal; choose another", what, id)
			}
		}
		if first, dup := idLine[id]; dup {
			return nil, p.errorf(fields["id"], "%s: duplicate id %q (first at line %d)", what, id, first)
		}
		idLine[id] = fields["id"].Line
		what = fmt.Sprintf("%s[%d] (id %q)", list, i, id)
		e := credEntry{id: id, idLine: fields["id"].Line, hashLine: fields["token_sha256"].Line}

		if n, ok := fields["role"]; ok {
			if e.role, err = p.scalarString(n, what+": role"); err != nil {
				return nil, err
			}
			if len(e.role) > maxRoleLen || !approverRolePattern.MatchString(e.role) {
				return nil, p.errorf(n, "%s: role %q must match %s and be at most %d characters", what, e.role, approverRolePattern, maxRoleLen)
			}
		}

		hx, err := p.scalarString(fields["token_sha256"], what+": token_sha256")
		if err != nil {
			return nil, err
		}
		if len(hx) != hex.EncodedLen(sha256.Size) {
			return nil, p.errorf(fields["token_sha256"], "%s: token_sha256 must be %d hex digits (the SHA-256 of the token), got %d characters", what, hex.EncodedLen(sha256.Size), len(hx))
		}
		if _, err := hex.Decode(e.hash[:], []byte(hx)); err != nil {
			return nil, p.errorf(fields["token_sha256"], "%s: token_sha256 is not hex: %v", what, err)
		}
		if j, dup := hashAt[e.hash]; dup {
			return nil, p.errorf(fields["token_sha256"], "%s: token_sha256 is the same as %s[%d] (id %q) at line %d; each needs its own token", what, list, j, s.entries[j].id, s.entries[j].hashLine)
		}
		hashAt[e.hash] = i
		s.entries = append(s.entries, e)
	}
	return s, nil
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

func (s *credSet) entriesOrNil() []credEntry {
	if s == nil {
		return nil
	}
	return s.entries
}
