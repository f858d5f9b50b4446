package receipt

import (
	"errors"
	"fmt"
	"iter"
	"math"

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

// Slice is a trace in memory as Records.
func Slice(recs []tracestore.Record) Records {
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
	whole   *trace.Tree // when asked: the tree of every record, read to the end
	head    []byte      // with whole: the leaf hash of the last record
	foldErr error       // the first error folding the covered records
}

// newStream derives a body in receipt format format.
func newStream(size uint64, keyID, format string) *stream {
	return &stream{size: size, tree: trace.NewTree(),
		body: &Body{Format: format, Kind: KindProvisional, Status: "running", KeyID: keyID, Path: []string{}}}
}

// add checks record r, the next one, against the chain and the types a
// receipt reads (docs/receipt-format.md §7, step 4), and folds it when it
// is covered. A chain or type error is returned; a fold error is kept, to
// be reported only if the chain holds everywhere: the chain is checked
// first, as the documented order says.
func (s *stream) add(r tracestore.Record) error {
	i := int(s.n)
	leaf := s.leaf(r)
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

// leaf is r's leaf hash, added to the whole tree when one is kept.
func (s *stream) leaf(r tracestore.Record) []byte {
	leaf := trace.LeafHash(r.Body)
	if s.whole != nil {
		_ = s.whole.Append(leaf) // fails only past 2^64 leaves
		s.head = leaf
	}
	return leaf
}

// read feeds recs to the stream, stopping after the first limit records.
// It returns a reading error as it is and a record's error as from scan.
func (s *stream) read(recs Records, limit uint64) (readErr, traceErr error) {
	for r, err := range recs {
		if err != nil {
			return err, traceErr
		}
		if traceErr != nil {
			// Broken: the rest is only hashed into the whole tree, so
			// that the index check compares the trace as stored.
			s.leaf(r)
			continue
		}
		if traceErr = s.add(r); traceErr != nil {
			if s.whole == nil {
				return nil, traceErr
			}
			continue
		}
		if s.n >= limit {
			break
		}
	}
	if traceErr != nil {
		return nil, traceErr
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
	s := newStream(want, keyID, Format)
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
