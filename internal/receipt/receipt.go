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
	"fmt"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Format is the receipt format version.
const Format = "nano-vm-receipt/1"

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

// event is the part of a stored event a receipt reads.
type event struct {
	RunID   string `json:"run_id"`
	Index   uint64 `json:"index"`
	Type    string `json:"type"`
	State   string `json:"state"`
	Prev    string `json:"prev"`
	Started *struct {
		Program Program `json:"program"`
	} `json:"started"`
	Transition *struct {
		To       string `json:"to"`
		Rollback bool   `json:"rollback"`
	} `json:"transition"`
	Rejection *struct {
		Counted bool `json:"counted"`
	} `json:"rejection"`
	Finished *struct {
		Status  string `json:"status"`
		Outcome string `json:"outcome"`
	} `json:"finished"`
}

// Derive computes the receipt body of the first size records of a run's
// trace. It checks what it reads: the records' order, their chain, their
// leaf hashes; a trace that fails is an error naming the first bad event.
func Derive(recs []tracestore.Record, size uint64, keyID string) (*Body, error) {
	if size == 0 || size > uint64(len(recs)) {
		return nil, fmt.Errorf("receipt: cannot cover %d of %d events", size, len(recs))
	}
	events, leaves, err := scan(recs[:size])
	if err != nil {
		return nil, err
	}
	return derive(events, leaves, keyID)
}

// scan decodes records and checks their chain: consecutive indexes, one
// run, each prev the hash of the last, stored hashes right. It returns the
// decoded events and their leaf hashes, each computed once.
func scan(recs []tracestore.Record) ([]event, [][]byte, error) {
	events := make([]event, len(recs))
	leaves := make([][]byte, len(recs))
	var prev []byte
	for i, r := range recs {
		if err := json.Unmarshal(r.Body, &events[i]); err != nil {
			return nil, nil, fmt.Errorf("event %d: %w", i, err)
		}
		leaf := trace.LeafHash(r.Body)
		if err := checkLink(i, r, events[i], prev, leaf, events[0].RunID); err != nil {
			return nil, nil, err
		}
		leaves[i], prev = leaf, leaf
	}
	return events, leaves, nil
}

// derive folds scanned events into a receipt body.
func derive(events []event, leaves [][]byte, keyID string) (*Body, error) {
	b := &Body{Format: Format, Kind: KindProvisional, Status: "running", KeyID: keyID, Path: []string{}}
	tree := trace.NewTree()
	for i, e := range events {
		if err := tree.Append(leaves[i]); err != nil {
			return nil, err
		}
		if i == 0 && e.Type != "run_started" {
			return nil, fmt.Errorf("event 0: the trace must begin with run_started, not %q", e.Type)
		}
		switch e.Type {
		case "run_started":
			if i != 0 || e.Started == nil {
				return nil, fmt.Errorf("event %d: run_started must come first, once", i)
			}
			b.RunID, b.Program, b.FinalState = e.RunID, e.Started.Program, e.State
			b.Path = append(b.Path, e.State)
		case "transitioned":
			if e.Transition == nil {
				return nil, fmt.Errorf("event %d: transitioned without a transition", i)
			}
			b.Counts.Transitions++
			if e.Transition.Rollback {
				b.Counts.Rollbacks++
			}
			b.FinalState = e.Transition.To
			b.Path = append(b.Path, e.Transition.To)
		case "submission_rejected":
			b.Counts.Rejections++
			if e.Rejection != nil && e.Rejection.Counted {
				b.Counts.Attempts++
			}
		case "fault_injected":
			b.Counts.Faults++
		case "approval_recorded":
			// A four-eyes approval still short of its approvers: neither a
			// transition nor a rejection, so it counts nowhere.
		case "run_finished":
			if e.Finished == nil {
				return nil, fmt.Errorf("event %d: run_finished without a finish", i)
			}
			b.Kind, b.Status, b.Outcome = KindFinal, e.Finished.Status, e.Finished.Outcome
		}
	}
	root, err := tree.Root()
	if err != nil {
		return nil, err
	}
	b.Tree = Tree{Size: uint64(len(events)), Root: trace.Hex(root)}
	return b, nil
}

// checkLink verifies record i's place in the chain; leaf is its hash.
func checkLink(i int, r tracestore.Record, e event, prev, leaf []byte, runID string) error {
	// encoding/json matches member names without regard to case: insist on
	// the exact names where the chain is read, and on no prev at all first.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &top); err != nil {
		return fmt.Errorf("event %d: %w", i, err)
	}
	for _, name := range []string{"index", "run_id", "type"} {
		if _, ok := top[name]; !ok {
			return fmt.Errorf("event %d: field %s: expected, not found", i, name)
		}
	}
	if _, ok := top["prev"]; i == 0 && ok {
		return fmt.Errorf("event 0: field prev: expected none, found %s", top["prev"])
	}
	if _, ok := top["prev"]; i > 0 && !ok {
		return fmt.Errorf("event %d: field prev: expected %s, found none", i, trace.Hex(prev))
	}
	switch {
	case e.Index != uint64(i) || r.Index != uint64(i):
		return fmt.Errorf("event %d: field index: expected %d, found %d", i, i, e.Index)
	case i > 0 && e.RunID != runID:
		return fmt.Errorf("event %d: field run_id: expected %q, found %q", i, runID, e.RunID)
	case i == 0 && e.Prev != "":
		return fmt.Errorf("event 0: field prev: expected none, found %q", e.Prev)
	case i > 0 && e.Prev != trace.Hex(prev):
		return fmt.Errorf("event %d: field prev: expected %s, found %q", i, trace.Hex(prev), e.Prev)
	case r.Hash != nil && !bytes.Equal(r.Hash, leaf):
		return fmt.Errorf("event %d: stored hash: expected %s, found %s", i, trace.Hex(leaf), trace.Hex(r.Hash))
	}
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
