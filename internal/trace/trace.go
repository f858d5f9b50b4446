// Package trace holds the cryptography of the tamper-evident trace: event
// leaf hashes and the hash chain, each run's RFC 6962 Merkle tree (with
// transparency-dev/merkle, not a home-grown proof format), and the AES-GCM
// sealing of personal data under per-subject keys.
//
// It knows nothing of runs or programs: the runtime's shell decides what
// to hash and what to seal. docs/trace-format.md specifies every byte.
package trace

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Format is the trace format version that run_started records in
// started.trace_format for new runs. Version 2 added the tool_call_* events
// of runtime-executed tools (docs/trace-format.md §3.7); a trace without
// them reads the same under either version.
const Format = "nano-vm-trace/2"

// FormatV1 is the first trace format version. A run_started without the
// member was written before the member existed, in this format.
const FormatV1 = "nano-vm-trace/1"

// Readable reports whether this build reads traces of format f, as
// started.trace_format records it (a trace without the member is FormatV1).
func Readable(f string) bool { return f == FormatV1 || f == Format }

// HashSize is the size of every hash in the trace (SHA-256).
const HashSize = 32

var hasher = rfc6962.DefaultHasher

// LeafHash is the RFC 6962 leaf hash of an event's canonical bytes:
// SHA-256(0x00 || body). It is the event's hash in the chain and its leaf
// in the run's Merkle tree.
func LeafHash(body []byte) []byte { return hasher.HashLeaf(body) }

// Hex formats a hash as the trace writes it: lower-case hex.
func Hex(h []byte) string { return hex.EncodeToString(h) }

var factory = compact.RangeFactory{Hash: hasher.HashChildren}

// Tree is a run's Merkle tree as a compact range: O(log n) hashes are
// enough to append a leaf and compute the root.
type Tree struct{ r *compact.Range }

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{r: factory.NewEmptyRange(0)} }

// Append adds a leaf hash.
func (t *Tree) Append(leaf []byte) error { return t.r.Append(leaf, nil) }

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return t.r.End() }

// Root is the RFC 6962 root hash (of the empty string's hash when empty).
func (t *Tree) Root() ([]byte, error) {
	if t.r.End() == 0 {
		return hasher.EmptyRoot(), nil
	}
	return t.r.GetRootHash(nil)
}

// MarshalBinary encodes the tree's state: its size, then its hashes.
func (t *Tree) MarshalBinary() ([]byte, error) {
	hs := t.r.Hashes()
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(hs)*HashSize), t.r.End())
	for _, h := range hs {
		out = append(out, h...)
	}
	return out, nil
}

// Clone is a copy of t that appends without changing t: the service seals
// each append into a copy, kept only once the append succeeds. Append
// rewrites the list of hashes but never a hash, so the hashes are shared.
func (t *Tree) Clone() *Tree {
	r, err := factory.NewRange(t.r.Begin(), t.r.End(), slices.Clone(t.r.Hashes()))
	if err != nil {
		panic(err) // the sizes are t's own, which NewRange checked
	}
	return &Tree{r: r}
}

// UnmarshalTree decodes a state written by MarshalBinary.
func UnmarshalTree(b []byte) (*Tree, error) {
	if len(b) < 8 || (len(b)-8)%HashSize != 0 {
		return nil, errors.New("trace: malformed tree state")
	}
	size := binary.BigEndian.Uint64(b)
	var hs [][]byte
	for rest := b[8:]; len(rest) > 0; rest = rest[HashSize:] {
		hs = append(hs, bytes.Clone(rest[:HashSize]))
	}
	r, err := factory.NewRange(0, size, hs)
	if err != nil {
		return nil, fmt.Errorf("trace: tree state: %w", err)
	}
	return &Tree{r: r}, nil
}
