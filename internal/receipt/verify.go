package receipt

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Report is the outcome of a verification.
type Report struct {
	Valid    bool     `json:"valid"`
	Problems []string `json:"problems"` // the first is the first failure found
	Covered  uint64   `json:"covered"`  // events the receipt covers
	Later    uint64   `json:"later"`    // events after them that continue the chain
}

func (r *Report) fail(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// MaxTraceLine bounds one exported event.
const MaxTraceLine = 16 << 20

// ParseTrace reads an exported trace: one canonical event per line, each
// line ended by a single \n. Each line must be strict JSON in RFC 8785
// form; records get their leaf hash.
func ParseTrace(r io.Reader) ([]tracestore.Record, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var recs []tracestore.Record
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			line, err = readLong(br, line)
		}
		if err == io.EOF {
			if len(line) > 0 {
				return nil, fmt.Errorf("trace line %d: does not end with a newline", n)
			}
			return recs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("trace line %d: %w", n, err)
		}
		line = line[:len(line)-1]
		v, err := jsonvalue.DecodeDepth(line, jsonvalue.MaxDepth+jsonvalue.EnvelopeDepth)
		if err != nil {
			return nil, fmt.Errorf("trace line %d: %w", n, err)
		}
		canon, err := jsonvalue.Canonical(v)
		if err != nil || !bytes.Equal(canon, line) {
			return nil, fmt.Errorf("trace line %d: not in canonical (RFC 8785) form", n)
		}
		var head struct {
			Index uint64 `json:"index"`
			Type  string `json:"type"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			return nil, fmt.Errorf("trace line %d: %w", n, err)
		}
		body := bytes.Clone(line)
		recs = append(recs, tracestore.Record{Index: head.Index, Type: head.Type, Body: body, Hash: trace.LeafHash(body)})
	}
}

// readLong finishes a line longer than the reader's buffer, up to
// MaxTraceLine.
func readLong(br *bufio.Reader, first []byte) ([]byte, error) {
	line := bytes.Clone(first)
	for {
		more, err := br.ReadSlice('\n')
		line = append(line, more...)
		if len(line) > MaxTraceLine {
			return nil, fmt.Errorf("longer than %d bytes", MaxTraceLine)
		}
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// ParseSigned reads a signed receipt envelope strictly: canonical JSON (a
// final newline aside) with exactly the members receipt, signature and
// key_id, spelled so.
func ParseSigned(data []byte) (*Signed, error) {
	data = bytes.TrimSuffix(data, []byte("\n"))
	v, err := jsonvalue.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok || len(m) != 3 || m["receipt"] == nil || m["signature"] == nil || m["key_id"] == nil {
		return nil, fmt.Errorf("receipt: the envelope must hold exactly receipt, signature and key_id")
	}
	if canon, err := jsonvalue.Canonical(v); err != nil || !bytes.Equal(canon, data) {
		return nil, fmt.Errorf("receipt: the envelope is not in canonical (RFC 8785) form")
	}
	var s Signed
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	return &s, nil
}

// Verify checks a signed receipt against a trace and the signer's public
// key: the body is canonical and recomputes to the same bytes from the
// covered prefix of the trace, the signature holds, and the chain and the
// tree root hold (Derive checks them). Events after the prefix must
// continue the chain; they are counted, not judged.
func Verify(s *Signed, recs []tracestore.Record, pub ed25519.PublicKey) Report {
	var rep Report
	body, err := parseBody(s.Receipt)
	if err != nil {
		rep.fail("%v", err)
		return rep
	}
	rep.Covered = body.Tree.Size
	if id := KeyID(pub); s.KeyID != id || body.KeyID != id {
		rep.fail("key_id: expected %s, found envelope %q and receipt %q", id, s.KeyID, body.KeyID)
	}
	// One spelling only: strict base64 ignores line breaks, so re-encode.
	sig, err := base64.StdEncoding.Strict().DecodeString(s.Signature)
	if err != nil || base64.StdEncoding.EncodeToString(sig) != s.Signature || !ed25519.Verify(pub, s.Receipt, sig) {
		rep.fail("signature: does not verify under %s", KeyID(pub))
	}
	// The whole trace must hold together, beyond the covered prefix too:
	// this names the first broken event before anything else.
	events, leaves, err := scan(recs)
	if err != nil {
		rep.fail("trace: %v", err)
		return rep
	}
	if body.Tree.Size == 0 || body.Tree.Size > uint64(len(recs)) {
		rep.fail("tree.size: the receipt covers %d events, the trace has %d", body.Tree.Size, len(recs))
		return rep
	}
	again, err := derive(events[:body.Tree.Size], leaves[:body.Tree.Size], body.KeyID)
	if err != nil {
		rep.fail("trace: %v", err)
		return rep
	}
	// Bytes decide, not parsed fields: a verifier in any language compares
	// the same way.
	if want, err := jsonvalue.Canonical(again); err != nil || !bytes.Equal(want, s.Receipt) {
		field, w, g := firstDifference(again, body)
		if field == "" {
			field, w, g = "(body)", string(want), string(s.Receipt)
		}
		rep.fail("receipt field %s: the trace gives %s, the receipt says %s", field, w, g)
	}
	rep.Later = uint64(len(recs)) - body.Tree.Size
	rep.Valid = len(rep.Problems) == 0
	return rep
}

func parseBody(raw []byte) (*Body, error) {
	v, err := jsonvalue.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	canon, err := jsonvalue.Canonical(v)
	if err != nil || !bytes.Equal(canon, raw) {
		return nil, fmt.Errorf("receipt: not in canonical (RFC 8785) form")
	}
	var b Body
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	if b.Format != Format {
		return nil, fmt.Errorf("receipt field format: expected %q, found %q", Format, b.Format)
	}
	return &b, nil
}

// firstDifference names the first top-level field (in canonical order)
// where two bodies differ, with both values.
func firstDifference(want, got *Body) (field, wantValue, gotValue string) {
	w, _ := jsonvalue.Canonical(want)
	g, _ := jsonvalue.Canonical(got)
	if bytes.Equal(w, g) {
		return "", "", ""
	}
	var wm, gm map[string]json.RawMessage
	_ = json.Unmarshal(w, &wm)
	_ = json.Unmarshal(g, &gm)
	for _, k := range sortedFields(wm, gm) {
		if !bytes.Equal(wm[k], gm[k]) {
			return k, string(wm[k]), string(gm[k])
		}
	}
	return "(body)", string(w), string(g)
}

func sortedFields(a, b map[string]json.RawMessage) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range []map[string]json.RawMessage{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	// Canonical JSON orders keys by UTF-16 code units; these names are
	// ASCII, where that is byte order.
	sort.Strings(keys)
	return keys
}
