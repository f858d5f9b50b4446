package receipt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"math"
	"slices"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Check is the one receipt verifier: the CLI's verify, MCP's
// verify_receipt, the console and the laboratory all render or assert on
// the Report it returns, so they give one verdict on one input.
//
// A Report is a list of named checks, each passed, failed or skipped (not
// run because an earlier one failed), in this order:
//
//	envelope   receipt.json (or the posted envelope) reads strictly
//	body       the receipt body is canonical, in this format, and each
//	           member but tree is the one the covered events give
//	signature  key_id names the key, and the Ed25519 signature holds
//	chain      every event of the trace links to the one before it
//	tree       tree.size covers 1 to n events, and tree is what they give
//	index      (when asked) the store's index row commits to this trace
//	policy     (when asked) the trace followed the program, guard by guard
//
// Problems keeps the words the offline verifier has always printed, in
// the order of docs/receipt-format.md §7; the checks say which of the
// named properties each one breaks.

// Names of the checks.
const (
	CheckEnvelope  = "envelope"
	CheckBody      = "body"
	CheckSignature = "signature"
	CheckChain     = "chain"
	CheckTree      = "tree"
	CheckIndex     = "index"
	CheckPolicy    = "policy"
)

// Result is one named check of a Report.
type Result struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"` // not run: an earlier check failed
	Detail  string `json:"detail"`
}

// Index is the store's commitment to a run's trace, as its index row
// holds it (tracestore.RunInfo): the number of events, the last one's leaf
// hash and the marshalled Merkle tree. Err is the error reading the row.
type Index struct {
	Events uint64
	Head   []byte
	Tree   []byte
	Err    error
}

// IndexOf is the index row info as Check reads it.
func IndexOf(info tracestore.RunInfo, err error) *Index {
	return &Index{Events: info.Events, Head: info.Head, Tree: info.Tree, Err: err}
}

// Options asks Check for the checks that need more than the files.
type Options struct {
	// Index, when set, is compared with the trace read.
	Index *Index
	// Policy, when set, re-checks the trace against the run's program (in
	// the CLI, runtime.CheckPolicy); it runs only when every other check
	// passed, and its error is the problem, without the "policy: " prefix.
	Policy func() error
}

// checker builds a Report check by check.
type checker struct {
	rep     Report
	results map[string]*Result
}

func newChecker(opt Options) *checker {
	c := &checker{results: map[string]*Result{}}
	names := []string{CheckEnvelope, CheckBody, CheckSignature, CheckChain, CheckTree}
	if opt.Index != nil {
		names = append(names, CheckIndex)
	}
	if opt.Policy != nil {
		names = append(names, CheckPolicy)
	}
	c.rep.Checks = make([]Result, len(names))
	for i, n := range names {
		c.rep.Checks[i] = Result{Name: n, Skipped: true}
		c.results[n] = &c.rep.Checks[i]
	}
	return c
}

// fail records a problem under check name, in the offline verifier's
// words (problem) and the check's.
func (c *checker) fail(name, problem string) {
	c.rep.Problems = append(c.rep.Problems, problem)
	c.failOnly(name, problem)
}

// failOnly fails check name without adding to Problems: the verifier
// names only the first differing member of a body.
func (c *checker) failOnly(name, detail string) {
	r := c.results[name]
	if !r.Skipped && !r.OK {
		r.Detail += "; " + detail
		return
	}
	r.OK, r.Skipped, r.Detail = false, false, detail
}

func (c *checker) pass(name, format string, args ...any) {
	if r := c.results[name]; r.Skipped {
		r.OK, r.Skipped, r.Detail = true, false, fmt.Sprintf(format, args...)
	}
}

func (c *checker) skip(name, why string) {
	if r := c.results[name]; r != nil && r.Skipped {
		r.Detail = why
	}
}

// Nil receipt: Check(nil, ...) checks the trace alone (chain and index),
// for a face that could not derive a receipt to check.
const noReceipt = "not run: there is no receipt to check"

// done sets the verdict: valid when no check failed.
func (c *checker) done() Report {
	c.rep.Valid = len(c.rep.Problems) == 0 && c.allOK()
	if c.rep.Problems == nil {
		c.rep.Problems = []string{}
	}
	for i := range c.rep.Checks {
		if r := &c.rep.Checks[i]; r.Skipped && r.Detail == "" {
			r.Detail = "not run: an earlier check failed"
		}
	}
	return c.rep
}

// EnvelopeFailure is the report on a receipt that did not read: the
// envelope check fails with err, and nothing else runs.
func EnvelopeFailure(err error, opt Options) Report {
	c := newChecker(opt)
	c.fail(CheckEnvelope, err.Error())
	return c.done()
}

// CheckExport checks the files export writes: receipt.json, read byte for
// byte (ParseSigned), and trace.jsonl (ParseTrace).
func CheckExport(receiptFile, traceFile []byte, pub ed25519.PublicKey, opt Options) Report {
	s, err := ParseSigned(receiptFile)
	if err != nil {
		return EnvelopeFailure(err, opt)
	}
	return CheckTrace(s, traceFile, pub, opt)
}

// CheckTrace checks s against an exported trace's bytes. A trace that does
// not parse fails the chain check.
func CheckTrace(s *Signed, traceFile []byte, pub ed25519.PublicKey, opt Options) Report {
	recs, err := ParseTrace(bytes.NewReader(traceFile))
	if err != nil {
		c := newChecker(opt)
		c.pass(CheckEnvelope, "canonical JSON with exactly receipt, signature and key_id")
		c.fail(CheckChain, err.Error())
		return c.done()
	}
	rep, _ := Check(s, Slice(recs), pub, opt) // a slice has no reading error
	return rep
}

// CheckPosted checks a posted envelope: receipt.json's bytes when they
// end with \n (then read as ParseSigned does), else the bare canonical
// envelope (ParseEnvelope).
func CheckPosted(env []byte, recs Records, pub ed25519.PublicKey, opt Options) (Report, error) {
	parse := ParseEnvelope
	if bytes.HasSuffix(env, []byte("\n")) {
		parse = ParseSigned
	}
	s, err := parse(env)
	if err != nil {
		return EnvelopeFailure(err, opt), nil
	}
	return Check(s, recs, pub, opt)
}

// Check checks a signed receipt (nil: none, the trace alone) against a trace read record by record
// and the signer's public key, in the order of docs/receipt-format.md §7:
// the body, the key id, the signature, the chain over the whole trace,
// the size, the derivation from the covered prefix, and the comparison,
// byte for byte; then the index and the policy when opt asks. Events after
// the prefix must continue the chain; they are counted, not attested. It
// holds one record at a time. An error reading the trace is returned as
// it is, beside the report so far.
func Check(sg *Signed, recs Records, pub ed25519.PublicKey, opt Options) (Report, error) {
	c := newChecker(opt)
	if sg == nil {
		for _, n := range []string{CheckEnvelope, CheckBody, CheckSignature, CheckTree, CheckPolicy} {
			c.skip(n, noReceipt)
		}
		s := newStream(0, "", Format)
		if _, err := c.chain(s, recs, opt.Index); err != nil {
			return c.rep, err
		}
		rep := c.done()
		rep.Valid = false // nothing was attested
		return rep, nil
	}
	c.pass(CheckEnvelope, "canonical JSON with exactly receipt, signature and key_id")
	body, err := parseBody(sg.Receipt)
	if err != nil {
		c.fail(CheckBody, err.Error())
		return c.done(), nil
	}
	c.rep.Covered = body.size
	id := KeyID(pub)
	if sg.KeyID != id || body.keyID != id {
		c.fail(CheckSignature, fmt.Sprintf("key_id: expected %s, found envelope %s and receipt %s", id, show(sg.KeyID, true), show(body.keyID, true)))
	}
	// One spelling only: strict base64 ignores line breaks, so re-encode.
	sig, err := base64.StdEncoding.Strict().DecodeString(sg.Signature)
	if err != nil || base64.StdEncoding.EncodeToString(sig) != sg.Signature || !ed25519.Verify(pub, sg.Receipt, sig) {
		c.fail(CheckSignature, "signature: does not verify under "+id)
	}
	c.pass(CheckSignature, "Ed25519 signature over the receipt holds under %s", id)
	// The whole trace must hold together, beyond the covered prefix too:
	// this names the first broken event before anything else.
	s := newStream(body.size, body.keyID, body.format)
	if ok, err := c.chain(s, recs, opt.Index); !ok {
		return c.done(), err
	}
	switch {
	case body.size == 0:
		c.fail(CheckTree, "tree.size: the receipt covers 0 events; a receipt covers at least 1")
		return c.done(), nil
	case body.size > s.n:
		c.fail(CheckTree, fmt.Sprintf("tree.size: the receipt covers %d events, the trace has %d", body.size, s.n))
		return c.done(), nil
	}
	c.rep.Later = s.n - body.size
	again, err := s.derived()
	if err != nil {
		c.fail(CheckBody, "trace: "+err.Error())
		return c.done(), nil
	}
	// Bytes decide, not parsed fields: a verifier in any language compares
	// the same way.
	if want, err := jsonvalue.Canonical(again); err != nil || !slices.Equal(want, sg.Receipt) {
		diffs := differences(want, body.members)
		// The offline verifier names the first differing member only.
		first := difference{"(body)", string(want), show(body.members, true)}
		if len(diffs) > 0 {
			first = diffs[0]
		}
		c.rep.Problems = append(c.rep.Problems, fmt.Sprintf("receipt field %s: the trace gives %s, the receipt says %s", first.field, first.want, first.got))
		if len(diffs) == 0 {
			c.failOnly(CheckBody, c.rep.Problems[len(c.rep.Problems)-1])
		}
		for _, d := range diffs {
			name := CheckBody
			if d.field == "tree" {
				name = CheckTree
			}
			c.failOnly(name, fmt.Sprintf("receipt field %s: the trace gives %s, the receipt says %s", d.field, d.want, d.got))
		}
	}
	c.pass(CheckTree, "the receipt covers %d of the trace's %d events, root %s", body.size, s.n, again.Tree.Root)
	c.pass(CheckBody, "every member is the one the covered events give")
	if opt.Policy != nil && len(c.rep.Problems) == 0 && c.allOK() {
		if err := opt.Policy(); err != nil {
			c.fail(CheckPolicy, "policy: "+err.Error())
		} else {
			c.pass(CheckPolicy, "every guard result and transition is the one the program gives")
		}
	}
	return c.done(), nil
}

// chain reads the whole trace through s, fills the chain check, and the
// index check when ix is set. An error reading the trace is returned.
func (c *checker) chain(s *stream, recs Records, ix *Index) (ok bool, readErr error) {
	if ix != nil {
		s.whole = trace.NewTree()
	}
	readErr, err := s.read(recs, math.MaxUint64)
	if readErr != nil {
		return false, readErr
	}
	if err != nil {
		c.fail(CheckChain, "trace: "+err.Error())
	} else {
		c.pass(CheckChain, "all %d events link up and match their stored hashes", s.n)
	}
	c.index(ix, s)
	return err == nil, nil
}

func (c *checker) allOK() bool {
	for _, r := range c.rep.Checks {
		if !r.OK && !r.Skipped {
			return false
		}
	}
	return true
}

// index compares the trace read with the store's index row, which the
// runtime wrote with every append: its length, its head and the root of
// its Merkle tree. A record changed in place, even with its hashes
// recomputed, no longer matches what the run's appends recorded. It is no
// part of a receipt, so its failure adds to Problems only in its own words.
func (c *checker) index(ix *Index, s *stream) {
	if ix == nil {
		return
	}
	fail := func(format string, args ...any) { c.fail(CheckIndex, "index: "+fmt.Sprintf(format, args...)) }
	if ix.Err != nil {
		fail("the store has no index row for the run: %v", ix.Err)
		return
	}
	stored, err := trace.UnmarshalTree(ix.Tree)
	if err != nil {
		fail("the index row's tree: %v", err)
		return
	}
	storedRoot, _ := stored.Root()
	root, _ := s.whole.Root()
	switch n := s.whole.Size(); {
	case ix.Events != n:
		fail("the index row records %d events, the trace has %d", ix.Events, n)
	case !bytes.Equal(ix.Head, s.head):
		fail("the index row's head is %s, the last event hashes to %s", trace.Hex(ix.Head), trace.Hex(s.head))
	case !bytes.Equal(storedRoot, root):
		fail("the index row's tree root is %s, the events give %s", trace.Hex(storedRoot), trace.Hex(root))
	default:
		c.pass(CheckIndex, "the index row's %d events, head and tree root match the trace", ix.Events)
	}
}

// difference is one member that differs between a derived body and a
// receipt's.
type difference struct{ field, want, got string }

// differences lists every member that differs, in canonical order.
func differences(derived []byte, got map[string]any) []difference {
	var want map[string]any
	if v, err := jsonvalue.Decode(derived); err == nil {
		want, _ = v.(map[string]any)
	}
	var out []difference
	for _, k := range bodyMembers {
		if w, g := show(want[k], true), show(got[k], true); w != g {
			out = append(out, difference{k, w, g})
		}
	}
	return out
}

// Failed lists the failed checks' names, for messages and tests.
func (r Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			out = append(out, c.Name)
		}
	}
	return out
}
