// Package receipt derives, signs and verifies receipts: deterministic,
// signed projections of a run's trace that a third party can check offline
// with nothing but the exported trace and the signer's public key.
//
// A receipt is computed from the stored records alone, never from run
// state, and reads only what needs no key: event types, states,
// transitions, rejection classes and the outcome. It holds no personal data
// and no floating-point numbers. docs/receipt-format.md specifies it.
package receipt

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Format is the receipt format version Issue writes. Version 2 added
// counts.tool_calls_executed and counts.tool_calls_reported.
const Format = "nano-vm-receipt/2"

// FormatV1 is the first receipt format version: its counts lack the tool
// call counts. Receipts in it keep verifying, derived in their format.
const FormatV1 = "nano-vm-receipt/1"

// Kinds of receipt.
const (
	KindFinal       = "final"       // the covered prefix ends the run
	KindProvisional = "provisional" // the run was still going
)

// Body is the signed part of a receipt. Every field but Format and KeyID
// is derived from the trace.
type Body struct {
	Format     string   `json:"format"`
	Kind       string   `json:"kind"`
	RunID      string   `json:"run_id"`
	Program    Program  `json:"program"`
	Status     string   `json:"status"`
	Outcome    string   `json:"outcome"`
	FinalState string   `json:"final_state"`
	Path       []string `json:"path"`
	Counts     Counts   `json:"counts"`
	Tree       Tree     `json:"tree"`
	KeyID      string   `json:"key_id"`
}

// Program identifies the program the run was pinned to.
type Program struct {
	Name           string `json:"name"`
	Version        string `json:"version"`
	DefinitionHash string `json:"definition_hash"`
}

// Counts are tallies over the covered events.
type Counts struct {
	Transitions int `json:"transitions"`
	Rejections  int `json:"rejections"`
	Attempts    int `json:"attempts"` // rejections that used up an attempt
	Rollbacks   int `json:"rollbacks"`
	Faults      int `json:"faults"`
	// ToolCallsExecuted counts the results the runtime attests: those its
	// executors returned (tool_call_completed) and those an operator
	// settled (tool_call_resolved with a result). Format 2 only.
	ToolCallsExecuted int `json:"tool_calls_executed"`
	// ToolCallsReported counts the tool results a caller merely claimed
	// (submission_accepted by actor tool). Format 2 only.
	ToolCallsReported int `json:"tool_calls_reported"`
}

// MarshalJSON writes the body in its format: a FormatV1 body's counts
// have no tool call counts.
func (b Body) MarshalJSON() ([]byte, error) {
	type plain Body
	if b.Format != FormatV1 {
		return json.Marshal(plain(b))
	}
	type countsV1 struct {
		Transitions int `json:"transitions"`
		Rejections  int `json:"rejections"`
		Attempts    int `json:"attempts"`
		Rollbacks   int `json:"rollbacks"`
		Faults      int `json:"faults"`
	}
	c := b.Counts
	return json.Marshal(struct {
		plain
		Counts countsV1 `json:"counts"`
	}{plain(b), countsV1{c.Transitions, c.Rejections, c.Attempts, c.Rollbacks, c.Faults}})
}

// Tree commits to the covered events: the RFC 6962 root over their leaf
// hashes, hex, and their number.
type Tree struct {
	Size uint64 `json:"size"`
	Root string `json:"root"`
}

// Signed is the envelope a receipt travels in. The signature is never
// inside the body.
type Signed struct {
	Receipt   json.RawMessage `json:"receipt"`   // the body's canonical bytes
	Signature string          `json:"signature"` // base64 Ed25519 over Receipt
	KeyID     string          `json:"key_id"`
}

// KeyID names a public key: "ed25519:" and the first 16 bytes of
// SHA-256(public key), hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:16])
}

// event is what a receipt reads of one event, by exact member name; a nil
// pointer (or a false has/tagged) is an absent member.
type event struct {
	runID, typ, state string
	hasState          bool
	started           *started
	transition        *transition
	counted           bool // rejection.counted
	finished          *finished
	actor             string // submission.actor
	hasCall           bool   // call
	callFailed        bool   // call.failed
}

type started struct {
	program map[string]string // the members present
	format  string            // trace_format
	tagged  bool              // trace_format is present
}

type transition struct {
	to       *string
	rollback bool
}

type finished struct{ status, outcome *string }

// Derive computes the receipt body of the first size records of a run's
// trace. It checks what it reads: the records' order, their chain, their
// leaf hashes; a trace that fails is an error naming the first bad event.
func Derive(recs []tracestore.Record, size uint64, keyID string) (*Body, error) {
	if size == 0 || size > uint64(len(recs)) {
		return nil, fmt.Errorf("receipt: cannot cover %d of %d events", size, len(recs))
	}
	return DeriveRecords(Slice(recs[:size]), size, keyID)
}

// readEvent checks record i against the chain (prev is the leaf hash of
// record i-1, runID event 0's run_id) and reads the members a receipt
// uses, each only under its exact name.
func readEvent(i int, r tracestore.Record, prev, leaf []byte, runID string) (event, error) {
	var e event
	v, err := jsonvalue.DecodeDepth(r.Body, jsonvalue.MaxDepth+jsonvalue.EnvelopeDepth)
	if err != nil {
		return e, err
	}
	top, ok := v.(map[string]any)
	if !ok {
		return e, fmt.Errorf("expected an object, found %s", show(v, true))
	}
	idx, ok := top["index"]
	if n, isInt := integer(idx); !ok || !isInt || n != uint64(i) || r.Index != uint64(i) {
		return e, fmt.Errorf("field index: expected %d, found %s", i, show(idx, ok))
	}
	id, ok := top["run_id"]
	e.runID, _ = id.(string)
	switch {
	case i == 0 && !isString(id, ok):
		return e, fmt.Errorf("field run_id: expected a string, found %s", show(id, ok))
	case i > 0 && (!isString(id, ok) || e.runID != runID):
		return e, fmt.Errorf("field run_id: expected %s, found %s", show(runID, true), show(id, ok))
	}
	typ, ok := top["type"]
	if !isString(typ, ok) {
		return e, fmt.Errorf("field type: expected a string, found %s", show(typ, ok))
	}
	e.typ = typ.(string)
	p, ok := top["prev"]
	switch {
	case i == 0 && ok:
		return e, fmt.Errorf("field prev: expected none, found %s", show(p, ok))
	case i > 0 && (!isString(p, ok) || p.(string) != trace.Hex(prev)):
		return e, fmt.Errorf("field prev: expected %s, found %s", trace.Hex(prev), show(p, ok))
	}
	switch {
	case i == 0 && e.typ != "run_started":
		return e, fmt.Errorf("the trace must begin with run_started, not %s", show(e.typ, true))
	case i > 0 && e.typ == "run_started":
		return e, errors.New("run_started must come first, once")
	}
	if err := readMembers(top, &e); err != nil {
		return e, err
	}
	// Absent, the format is the first one: traces written before the
	// member existed.
	if i == 0 && e.started != nil && e.started.tagged && !trace.Readable(e.started.format) {
		return e, fmt.Errorf("field started.trace_format: expected %s or %s, found %s: this verifier reads those trace formats only",
			show(trace.FormatV1, true), show(trace.Format, true), show(e.started.format, true))
	}
	if r.Hash != nil && !bytes.Equal(r.Hash, leaf) {
		return e, fmt.Errorf("stored hash: expected %s, found %s", trace.Hex(leaf), trace.Hex(r.Hash))
	}
	return e, nil
}

// readMembers checks, in the documented order, the type of every member a
// receipt reads that the event has, whatever its type, and reads them.
func readMembers(top map[string]any, e *event) error {
	r := reader{top: top}
	e.state, e.hasState = r.str("state")
	if st := r.object("started"); st != nil {
		e.started = &started{program: map[string]string{}}
		if prog := r.object("started.program"); prog != nil {
			for _, name := range []string{"definition_hash", "name", "version"} {
				if s, ok := r.str("started.program." + name); ok {
					e.started.program[name] = s
				}
			}
		}
		e.started.format, e.started.tagged = r.str("started.trace_format")
	}
	if r.object("transition") != nil {
		e.transition = &transition{}
		if s, ok := r.str("transition.to"); ok {
			e.transition.to = &s
		}
		e.transition.rollback = r.boolean("transition.rollback")
	}
	if r.object("rejection") != nil {
		e.counted = r.boolean("rejection.counted")
	}
	if r.object("finished") != nil {
		e.finished = &finished{}
		if s, ok := r.str("finished.outcome"); ok {
			e.finished.outcome = &s
		}
		if s, ok := r.str("finished.status"); ok {
			e.finished.status = &s
		}
	}
	if r.object("submission") != nil {
		e.actor, _ = r.str("submission.actor")
	}
	if r.object("call") != nil {
		e.hasCall = true
		e.callFailed = r.boolean("call.failed")
	}
	return r.err
}

// reader looks members up by dotted path, exact names only, and keeps the
// first type error.
type reader struct {
	top map[string]any
	err error
}

func (r *reader) get(path string) (any, bool) {
	var v any = r.top
	for _, name := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[name]; !ok {
			return nil, false
		}
	}
	return v, true
}

func (r *reader) typed(path, want string, ok func(any) bool) (any, bool) {
	if r.err != nil {
		return nil, false
	}
	v, present := r.get(path)
	if !present {
		return nil, false
	}
	if !ok(v) {
		r.err = fmt.Errorf("field %s: expected %s, found %s", path, want, show(v, true))
		return nil, false
	}
	return v, true
}

func (r *reader) str(path string) (string, bool) {
	v, ok := r.typed(path, "a string", func(v any) bool { _, ok := v.(string); return ok })
	s, _ := v.(string)
	return s, ok
}

func (r *reader) object(path string) map[string]any {
	v, _ := r.typed(path, "an object", func(v any) bool { _, ok := v.(map[string]any); return ok })
	m, _ := v.(map[string]any)
	return m
}

func (r *reader) boolean(path string) bool {
	v, _ := r.typed(path, "a boolean", func(v any) bool { _, ok := v.(bool); return ok })
	b, _ := v.(bool)
	return b
}

func isString(v any, present bool) bool {
	_, ok := v.(string)
	return present && ok
}

// integer reads a JSON integer ≥ 0 written without fraction or exponent.
func integer(v any) (uint64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	u, err := strconv.ParseUint(string(n), 10, 64)
	return u, err == nil
}

// show is a value as problems name it: its canonical JSON, or "none" when
// the member is absent.
func show(v any, present bool) string {
	if !present {
		return "none"
	}
	b, err := jsonvalue.Canonical(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// fold applies one covered event to the body (docs/receipt-format.md §3).
func fold(b *Body, e event) error {
	missing := func(path string) error { return fmt.Errorf("%s without %s", e.typ, path) }
	switch e.typ {
	case "run_started":
		if e.started == nil {
			return missing("started")
		}
		for _, name := range []string{"definition_hash", "name", "version"} {
			if _, ok := e.started.program[name]; !ok {
				return missing("started.program." + name)
			}
		}
		if !e.hasState {
			return missing("state")
		}
		if b.Format == FormatV1 && e.started.format == trace.Format {
			return fmt.Errorf("run_started in trace format %s, which a %s receipt cannot attest", show(trace.Format, true), show(FormatV1, true))
		}
		p := e.started.program
		b.RunID, b.FinalState = e.runID, e.state
		b.Program = Program{Name: p["name"], Version: p["version"], DefinitionHash: p["definition_hash"]}
		b.Path = append(b.Path, e.state)
	case "transitioned":
		switch {
		case e.transition == nil:
			return missing("transition")
		case e.transition.to == nil:
			return missing("transition.to")
		}
		b.Counts.Transitions++
		if e.transition.rollback {
			b.Counts.Rollbacks++
		}
		b.FinalState = *e.transition.to
		b.Path = append(b.Path, b.FinalState)
	case "submission_rejected":
		b.Counts.Rejections++
		if e.counted {
			b.Counts.Attempts++
		}
	case "fault_injected":
		b.Counts.Faults++
	case "submission_accepted":
		if e.actor == "tool" {
			b.Counts.ToolCallsReported++
		}
	case "tool_call_completed":
		b.Counts.ToolCallsExecuted++
	case "tool_call_resolved":
		if !e.hasCall {
			return missing("call")
		}
		if !e.callFailed {
			b.Counts.ToolCallsExecuted++
		}
	case "run_finished":
		switch {
		case e.finished == nil:
			return missing("finished")
		case e.finished.status == nil:
			return missing("finished.status")
		}
		b.Kind, b.Status = KindFinal, *e.finished.status
		b.Outcome = ""
		if e.finished.outcome != nil {
			b.Outcome = *e.finished.outcome
		}
	}
	// approval_recorded, subject_erased and any other type: no effect
	// beyond the chain and the tree.
	return nil
}

// Sign returns the signed envelope of b.
func Sign(b *Body, priv ed25519.PrivateKey) (*Signed, error) {
	body, err := jsonvalue.Canonical(b)
	if err != nil {
		return nil, err
	}
	return &Signed{Receipt: body, Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, body)), KeyID: b.KeyID}, nil
}

// Issue derives the receipt of the first size records of a trace (0: the
// whole trace) and signs it with priv: the one place a receipt is made.
// An error means the trace does not hold together (or could not be read).
func Issue(recs Records, size uint64, priv ed25519.PrivateKey) (*Body, *Signed, error) {
	body, err := DeriveRecords(recs, size, KeyID(priv.Public().(ed25519.PublicKey)))
	if err != nil {
		return nil, nil, err
	}
	signed, err := Sign(body, priv)
	return body, signed, err
}

// File is the envelope as export writes receipt.json: its canonical JSON
// and one \n, which ParseSigned reads back.
func (s *Signed) File() ([]byte, error) {
	env, err := jsonvalue.Canonical(s)
	if err != nil {
		return nil, err
	}
	return append(env, '\n'), nil
}
