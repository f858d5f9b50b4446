package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// DigestPrefixBytes bounds the prefix of a refused output that an
// uncounted rejection keeps: bytes of its canonical JSON.
const DigestPrefixBytes = 256

// OutputDigest stands, in an uncounted rejection, for the refused output:
// such a rejection costs the submitter nothing, so storing the output
// whole would let it grow the trace at will.
type OutputDigest struct {
	// SHA256 is the hex SHA-256 of the output's canonical JSON.
	SHA256 string `json:"sha256"`
	// Bytes is the length of that canonical JSON.
	Bytes int `json:"bytes"`
	// Prefix is its first DigestPrefixBytes bytes at most, cut at a
	// character boundary.
	Prefix string `json:"prefix"`
	// Personal is set when the output holds a value at a personal-data
	// path: the shell then seals SHA256 and Prefix like a rejection's
	// details, so neither outlives the subject's erasure.
	Personal bool `json:"personal,omitempty"`
}

// digestOf is the digest of a refused output under p.
func digestOf(p *program.Program, v any) *OutputDigest {
	c, err := jsonvalue.Canonical(v)
	if err != nil {
		// Decoded JSON always encodes; keep the refusal without a hash.
		return &OutputDigest{Personal: touchesPersonal(p, v)}
	}
	sum := sha256.Sum256(c)
	prefix := c
	if len(prefix) > DigestPrefixBytes {
		cut := DigestPrefixBytes
		for cut > 0 && !utf8.RuneStart(prefix[cut]) {
			cut--
		}
		prefix = prefix[:cut]
	}
	return &OutputDigest{SHA256: hex.EncodeToString(sum[:]), Bytes: len(c), Prefix: string(prefix), Personal: touchesPersonal(p, v)}
}

// touchesPersonal reports whether a refused output holds a value at a
// personal-data path of any state: the paths the shell seals in a refused
// output (data.<any state>.<rest>), since it may not fit the state it met.
func touchesPersonal(p *program.Program, v any) bool {
	if v == nil {
		return false
	}
	for _, sub := range p.Subjects {
		for _, q := range append([]program.Path{sub.ID}, sub.PII...) {
			if rest, ok := q.Below([]string{"data", "*"}); ok && present(v, rest) {
				return true
			}
		}
	}
	return false
}

// present reports whether v has a value at path; arrays on the way apply
// the rest of the path to each element, as sealing does.
func present(v any, path []string) bool {
	if len(path) == 0 {
		return true
	}
	switch x := v.(type) {
	case map[string]any:
		child, ok := x[path[0]]
		return ok && present(child, path[1:])
	case []any:
		for _, e := range x {
			if present(e, path) {
				return true
			}
		}
	}
	return false
}
