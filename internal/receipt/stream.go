package receipt

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// A trace is read one record at a time: each is checked against the chain
// and folded into the body as it arrives, and only the chain's last hash,
// the compact Merkle tree and the body are kept. Derive and Verify read a
// slice through the same code, so a trace read from a store record by
// record gets the same answer, in the same words, as the same trace in
// memory.

// Records is a trace read in order, as tracestore.Records hands it out; a
// non-nil error ends it.
type Records = iter.Seq2[tracestore.Record, error]

// all is a whole slice as Records.
func all(recs []tracestore.Record) Records {
	return func(yield func(tracestore.Record, error) bool) {
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// stream checks records as they come and folds the first size of them
// into a body.
type stream struct {
	size    uint64 // records to fold
	n       uint64 // records read
	prev    []byte // the leaf hash of the last record read
	runID   string // event 0's run_id
	body    *Body
	tree    *trace.Tree
	foldErr error // the first error folding the covered records
}

func newStream(size uint64, keyID string) *stream {
	return &stream{size: size, tree: trace.NewTree(),
		body: &Body{Format: Format, Kind: KindProvisional, Status: "running", KeyID: keyID, Path: []string{}}}
}

// add checks record r, the next one, against the chain and the types a
// receipt reads (docs/receipt-format.md §7, step 4), and folds it when it
// is covered. A chain or type error is returned; a fold error is kept, to
// be reported only if the chain holds everywhere: the chain is checked
// first, as the documented order says.
func (s *stream) add(r tracestore.Record) error {
	i := int(s.n)
	leaf := trace.LeafHash(r.Body)
	e, err := readEvent(i, r, s.prev, leaf, s.runID)
	if err != nil {
		return fmt.Errorf("event %d: %w", i, err)
	}
	if i == 0 {
		s.runID = e.runID
	}
	s.prev = leaf
	if s.n < s.size && s.foldErr == nil {
		if err := s.tree.Append(leaf); err != nil {
			s.foldErr = err
		} else if err := fold(s.body, e); err != nil {
			s.foldErr = fmt.Errorf("event %d: %w", i, err)
		}
	}
	s.n++
	return nil
}

// read feeds recs to the stream, stopping after the first limit records.
// It returns a reading error as it is and a record's error as from scan.
func (s *stream) read(recs Records, limit uint64) (readErr, traceErr error) {
	for r, err := range recs {
		if err != nil {
			return err, nil
		}
		if err := s.add(r); err != nil {
			return nil, err
		}
		if s.n >= limit {
			break
		}
	}
	if s.n == 0 {
		return nil, errors.New("the trace has no events; it must begin with run_started")
	}
	return nil, nil
}

// derived is the body of the covered records.
func (s *stream) derived() (*Body, error) {
	if s.foldErr != nil {
		return nil, s.foldErr
	}
	root, err := s.tree.Root()
	if err != nil {
		return nil, err
	}
	s.body.Tree = Tree{Size: min(s.n, s.size), Root: trace.Hex(root)}
	return s.body, nil
}

// DeriveRecords is Derive over a trace read record by record: it reads
// the first size records only, and size 0 means the whole trace. An error
// reading the trace is returned as it is (wrapping, for example,
// tracestore.ErrNotFound).
func DeriveRecords(recs Records, size uint64, keyID string) (*Body, error) {
	want := size
	if want == 0 {
		want = math.MaxUint64
	}
	s := newStream(want, keyID)
	readErr, err := s.read(recs, want)
	switch {
	case readErr != nil:
		return nil, readErr
	case err != nil:
		return nil, err
	case size != 0 && s.n < size:
		return nil, fmt.Errorf("receipt: cannot cover %d of %d events", size, s.n)
	}
	return s.derived()
}

// VerifyRecords is Verify over a trace read record by record. An error
// reading the trace is returned as it is, beside the report so far.
func VerifyRecords(sg *Signed, recs Records, pub ed25519.PublicKey) (Report, error) {
	var rep Report
	body, err := parseBody(sg.Receipt)
	if err != nil {
		rep.fail("%v", err)
		return rep, nil
	}
	rep.Covered = body.size
	if id := KeyID(pub); sg.KeyID != id || body.keyID != id {
		rep.fail("key_id: expected %s, found envelope %s and receipt %s", id, show(sg.KeyID, true), show(body.keyID, true))
	}
	// One spelling only: strict base64 ignores line breaks, so re-encode.
	sig, err := base64.StdEncoding.Strict().DecodeString(sg.Signature)
	if err != nil || base64.StdEncoding.EncodeToString(sig) != sg.Signature || !ed25519.Verify(pub, sg.Receipt, sig) {
		rep.fail("signature: does not verify under %s", KeyID(pub))
	}
	// The whole trace must hold together, beyond the covered prefix too:
	// this names the first broken event before anything else.
	s := newStream(body.size, body.keyID)
	readErr, err := s.read(recs, math.MaxUint64)
	if readErr != nil {
		return rep, readErr
	}
	if err != nil {
		rep.fail("trace: %v", err)
		return rep, nil
	}
	switch {
	case body.size == 0:
		rep.fail("tree.size: the receipt covers 0 events; a receipt covers at least 1")
		return rep, nil
	case body.size > s.n:
		rep.fail("tree.size: the receipt covers %d events, the trace has %d", body.size, s.n)
		return rep, nil
	}
	rep.Later = s.n - body.size
	again, err := s.derived()
	if err != nil {
		rep.fail("trace: %v", err)
		return rep, nil
	}
	// Bytes decide, not parsed fields: a verifier in any language compares
	// the same way.
	if want, err := jsonvalue.Canonical(again); err != nil || !slices.Equal(want, sg.Receipt) {
		field, w, g := firstDifference(want, body.members)
		rep.fail("receipt field %s: the trace gives %s, the receipt says %s", field, w, g)
	}
	rep.Valid = len(rep.Problems) == 0
	return rep, nil
}
