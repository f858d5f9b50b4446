package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
)

// exported is a copy of a run's receipt and exported trace, to tamper with.
type exported struct {
	signed *receipt.Signed
	lines  [][]byte // trace.jsonl lines, without their newlines
}

// tamper alters the copy and says what it did and which place the
// verifier's problems must name.
type tamper func(x *exported) (change, names string, err error)

// receiptTampers are corrupt_receipt's sub-attacks, in catalog order.
var receiptTampers = []struct {
	name   string
	tamper tamper
}{
	{"receipt_field", tamperReceiptField},
	{"signature_byte", tamperSignature},
	{"trace_byte", tamperTraceByte},
	{"trace_field", tamperTraceField},
	{"trace_reorder", tamperReorder},
	{"trace_drop", tamperDrop},
}

// corruptReceipt signs a receipt over the run's stored trace, exports
// both, alters a copy, and verifies the copy the way `verify` and
// verify_receipt do (receipt.CheckExport). The stored trace
// must stay byte for byte as it was, and still verify.
func corruptReceipt(t tamper) func(ctx context.Context, env Env, v *view) (outcome, error) {
	return func(ctx context.Context, env Env, v *view) (outcome, error) {
		o := outcome{expected: VerificationFailed}
		if env.Signer == nil || env.Store == nil {
			return o, fmt.Errorf("corrupt_receipt needs the store and the signing key")
		}
		recs, err := env.Store.Load(ctx, v.run.ID)
		if err != nil {
			return o, err
		}
		pub := env.Signer.Public().(ed25519.PublicKey)
		_, signed, err := receipt.Issue(receipt.Slice(recs), 0, env.Signer)
		if err != nil {
			return o, err
		}
		x := &exported{signed: &receipt.Signed{Receipt: bytes.Clone(signed.Receipt), Signature: signed.Signature, KeyID: signed.KeyID}}
		for _, r := range recs {
			x.lines = append(x.lines, bytes.Clone(r.Body))
		}
		change, names, err := t(x)
		if err != nil {
			return o, err
		}
		receiptFile, traceFile, err := x.files()
		if err != nil {
			return o, err
		}
		rep := receipt.CheckExport(receiptFile, traceFile, pub, receipt.Options{})
		if rep.Valid {
			o.observed, o.detail = "verified", change+": the tampered copy verified"
			return o, nil
		}
		problems := rep.Problems
		o.observed = VerificationFailed
		if !mentions(problems, names) {
			o.observed = "verification_failed_elsewhere"
		}
		o.detail = fmt.Sprintf("%s: %s", change, strings.Join(problems, "; "))
		// The stored trace is untouched and still verifies.
		after, err := env.Store.Load(ctx, v.run.ID)
		if err != nil {
			return o, err
		}
		if len(after) != len(recs) {
			o.observed, o.detail = "stored_trace_changed", o.detail+"; the stored trace changed length"
			return o, nil
		}
		for i := range recs {
			if !bytes.Equal(after[i].Body, recs[i].Body) {
				o.observed, o.detail = "stored_trace_changed", fmt.Sprintf("%s; stored event %d changed", o.detail, i)
				return o, nil
			}
		}
		if rep, _ := receipt.Check(signed, receipt.Slice(after), pub, receipt.Options{}); !rep.Valid {
			o.observed, o.detail = "stored_trace_changed", o.detail+"; the stored trace no longer verifies: "+strings.Join(rep.Problems, "; ")
		}
		return o, nil
	}
}

// files are the copy as export writes it: receipt.json and trace.jsonl.
func (x *exported) files() (receiptFile, traceFile []byte, err error) {
	if receiptFile, err = x.signed.File(); err != nil {
		return nil, nil, err
	}
	var file bytes.Buffer
	for _, l := range x.lines {
		file.Write(l)
		file.WriteByte('\n')
	}
	return receiptFile, file.Bytes(), nil
}

func mentions(problems []string, names string) bool {
	for _, p := range problems {
		if strings.Contains(p, names) {
			return true
		}
	}
	return false
}

// middle is the event the trace tampering alters: one inside the trace,
// never the first.
func middle(x *exported) int { return max(1, min(len(x.lines)/2, len(x.lines)-2)) }

func tamperReceiptField(x *exported) (string, string, error) {
	v, err := jsonvalue.Decode(x.signed.Receipt)
	if err != nil {
		return "", "", err
	}
	counts := v.(map[string]any)["counts"].(map[string]any)
	counts["transitions"] = canonicalInt(counts["transitions"]) + 1
	if x.signed.Receipt, err = jsonvalue.Canonical(v); err != nil {
		return "", "", err
	}
	return "receipt counts.transitions raised by one", "receipt field counts", nil
}

func canonicalInt(v any) int64 {
	n, _ := number(v)
	return int64(n)
}

func tamperSignature(x *exported) (string, string, error) {
	sig, err := base64.StdEncoding.DecodeString(x.signed.Signature)
	if err != nil {
		return "", "", err
	}
	sig[0] ^= 0x01
	x.signed.Signature = base64.StdEncoding.EncodeToString(sig)
	return "one bit of the signature's first byte flipped", "signature", nil
}

// tamperTraceByte changes one byte: the last hex digit of an event's prev.
func tamperTraceByte(x *exported) (string, string, error) {
	k := middle(x)
	line := x.lines[k]
	i := bytes.Index(line, []byte(`"prev":"`))
	if i < 0 {
		return "", "", fmt.Errorf("event %d has no prev", k)
	}
	j := i + len(`"prev":"`) + 63
	if line[j] == '0' {
		line[j] = '1'
	} else {
		line[j] = '0'
	}
	return fmt.Sprintf("one byte of event %d's prev changed", k), fmt.Sprintf("event %d: field prev", k), nil
}

// tamperTraceField rewrites one field of an event (its time) and then
// re-chains every later event, as a forger would: the chain holds, the
// tree root the receipt signed does not.
func tamperTraceField(x *exported) (string, string, error) {
	k := middle(x)
	v, err := jsonvalue.Decode(x.lines[k])
	if err != nil {
		return "", "", err
	}
	v.(map[string]any)["at"] = "1999-12-31T23:59:59Z"
	if x.lines[k], err = jsonvalue.Canonical(v); err != nil {
		return "", "", err
	}
	for i := k + 1; i < len(x.lines); i++ {
		e, err := jsonvalue.Decode(x.lines[i])
		if err != nil {
			return "", "", err
		}
		e.(map[string]any)["prev"] = trace.Hex(trace.LeafHash(x.lines[i-1]))
		if x.lines[i], err = jsonvalue.Canonical(e); err != nil {
			return "", "", err
		}
	}
	return fmt.Sprintf("event %d's at rewritten and every later prev recomputed", k), "receipt field tree", nil
}

func tamperReorder(x *exported) (string, string, error) {
	k := middle(x)
	x.lines[k], x.lines[k+1] = x.lines[k+1], x.lines[k]
	return fmt.Sprintf("events %d and %d swapped", k, k+1), fmt.Sprintf("event %d: field index", k), nil
}

func tamperDrop(x *exported) (string, string, error) {
	k := middle(x)
	x.lines = append(x.lines[:k:k], x.lines[k+1:]...)
	return fmt.Sprintf("event %d dropped", k), fmt.Sprintf("event %d: field index", k), nil
}

// Tampering is one of corrupt_receipt's alterations, over the files
// export writes: what the four-verifier agreement test feeds every
// verifier.
type Tampering struct {
	Name  string // the sub-attack
	Apply func(receiptFile, traceFile []byte) ([]byte, []byte, error)
}

// ReceiptTamperings lists corrupt_receipt's tamperings, as its
// sub-attacks apply them.
func ReceiptTamperings() []Tampering {
	var out []Tampering
	for _, rt := range receiptTampers {
		t := rt.tamper
		out = append(out, Tampering{Name: rt.name, Apply: func(receiptFile, traceFile []byte) ([]byte, []byte, error) {
			signed, err := receipt.ParseSigned(receiptFile)
			if err != nil {
				return nil, nil, err
			}
			x := &exported{signed: signed}
			for _, l := range bytes.SplitAfter(traceFile, []byte("\n")) {
				if len(l) > 0 {
					x.lines = append(x.lines, bytes.TrimSuffix(l, []byte("\n")))
				}
			}
			if _, _, err := t(x); err != nil {
				return nil, nil, err
			}
			return x.files()
		}})
	}
	return out
}

// VerifyExport is the laboratory's verdict on an exported copy, as
// corrupt_receipt reaches it: the files through receipt.CheckExport.
func VerifyExport(receiptFile, traceFile []byte, pub ed25519.PublicKey) receipt.Report {
	return receipt.CheckExport(receiptFile, traceFile, pub, receipt.Options{})
}
