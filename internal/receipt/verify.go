package receipt

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"slices"

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
	// Checks are the named checks (see Check). Not in the JSON the CLI
	// and verify_receipt print, which keeps its four members.
	Checks []Result `json:"-"`
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
		// The chain step checks index and type; here they only label the
		// record.
		var rec tracestore.Record
		if m, ok := v.(map[string]any); ok {
			rec.Index, _ = integer(m["index"])
			rec.Type, _ = m["type"].(string)
		}
		body := bytes.Clone(line)
		rec.Body, rec.Hash = body, trace.LeafHash(body)
		recs = append(recs, rec)
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

// ParseSigned reads receipt.json: the canonical envelope followed by one
// \n (LF), nothing before it and nothing else after it. Every byte of the
// file is thus accounted for: a receipt.json that differs from the one
// exported in any byte is refused.
func ParseSigned(file []byte) (*Signed, error) {
	env, ok := bytes.CutSuffix(file, []byte("\n"))
	if !ok || len(bytes.Trim(env, jsonSpace)) != len(env) {
		what := "whitespace around the envelope"
		switch {
		case bytes.HasSuffix(file, []byte("\r\n")):
			what = "a CRLF line end"
		case !ok:
			what = "no final \\n"
		}
		return nil, fmt.Errorf("receipt: receipt.json must be the canonical envelope followed by one \\n, nothing else; it has %s (write it back byte for byte as exported)", what)
	}
	return ParseEnvelope(env)
}

// jsonSpace is JSON's whitespace (RFC 8259): what a JSON reader would
// skip around the envelope, and what receipt.json must not hold there.
const jsonSpace = " \t\r\n"

// ParseEnvelope reads a signed receipt envelope strictly: canonical JSON
// with exactly the members key_id, receipt and signature, spelled so, the
// first and last strings, the receipt an object.
func ParseEnvelope(data []byte) (*Signed, error) {
	v, err := jsonvalue.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok || len(m) != 3 || !has(m, "key_id", "receipt", "signature") {
		return nil, fmt.Errorf("receipt: the envelope must hold exactly key_id, receipt and signature")
	}
	if canon, err := jsonvalue.Canonical(v); err != nil || !bytes.Equal(canon, data) {
		return nil, fmt.Errorf("receipt: the envelope is not in canonical (RFC 8785) form")
	}
	for _, name := range []string{"key_id", "receipt", "signature"} {
		_, isObject := m[name].(map[string]any)
		_, isString := m[name].(string)
		if name == "receipt" && !isObject || name != "receipt" && !isString {
			want := map[bool]string{true: "an object", false: "a string"}[name == "receipt"]
			return nil, fmt.Errorf("receipt: envelope member %s: expected %s, found %s", name, want, show(m[name], true))
		}
	}
	// The envelope is canonical, so the body's bytes are exactly those in
	// it; extract them from the decoded value's canonical form.
	body, _ := jsonvalue.Canonical(m["receipt"])
	return &Signed{Receipt: body, Signature: m["signature"].(string), KeyID: m["key_id"].(string)}, nil
}

func has(m map[string]any, names ...string) bool {
	for _, n := range names {
		if _, ok := m[n]; !ok {
			return false
		}
	}
	return true
}

// Verify checks a signed receipt against a trace and the signer's public
// key, in the order of docs/receipt-format.md §7: the body, the key id,
// the signature, the chain over the whole trace, the size, the derivation
// from the covered prefix, and the comparison, byte for byte. Events
// after the prefix must continue the chain; they are counted, not
// attested.
func Verify(s *Signed, recs []tracestore.Record, pub ed25519.PublicKey) Report {
	rep, _ := Check(s, Slice(recs), pub, Options{}) // a slice has no reading error
	return rep
}

// bodyMembers are the members of a receipt body, in canonical order.
var bodyMembers = []string{"counts", "final_state", "format", "key_id", "kind", "outcome", "path", "program", "run_id", "status", "tree"}

// parsedBody is what verification reads of a receipt body before
// comparing it: the rest is compared as bytes.
type parsedBody struct {
	members map[string]any
	keyID   string
	size    uint64
	format  string // the receipt's format: the body is derived in it
}

// parseBody checks a body (docs/receipt-format.md §7, step 1): strict
// canonical JSON, an object with exactly the members of the format, by
// exact name, this format, a string key_id and an integer tree.size.
func parseBody(raw []byte) (*parsedBody, error) {
	v, err := jsonvalue.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	canon, err := jsonvalue.Canonical(v)
	if err != nil || !bytes.Equal(canon, raw) {
		return nil, fmt.Errorf("receipt: not in canonical (RFC 8785) form")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("receipt: expected an object, found %s", show(v, true))
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.SortFunc(names, jsonvalue.CompareNames) // canonical order
	for _, k := range names {
		if !slices.Contains(bodyMembers, k) {
			return nil, fmt.Errorf("receipt: unknown member %s", show(k, true))
		}
	}
	for _, k := range bodyMembers {
		if _, ok := m[k]; !ok {
			return nil, fmt.Errorf("receipt: member %s missing", show(k, true))
		}
	}
	format, _ := m["format"].(string)
	if format != Format && format != FormatV1 {
		return nil, fmt.Errorf("receipt field format: expected %s or %s, found %s", show(FormatV1, true), show(Format, true), show(m["format"], true))
	}
	b := &parsedBody{members: m, format: format}
	if b.keyID, ok = m["key_id"].(string); !ok {
		return nil, fmt.Errorf("receipt field key_id: expected a string, found %s", show(m["key_id"], true))
	}
	tree, _ := m["tree"].(map[string]any)
	size, present := tree["size"]
	if b.size, ok = integer(size); !ok {
		return nil, fmt.Errorf("receipt field tree.size: expected an integer ≥ 0, found %s", show(size, present))
	}
	return b, nil
}
