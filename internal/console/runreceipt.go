package console

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"net/http"
	"sort"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// receiptView is the run page's receipt: derived from the stored records
// when the page was rendered, and signed with the server's key.
type receiptView struct {
	JSON     string // the signed envelope, indented to read
	Envelope string // the same, canonical: what the verify form posts
	KeyID    string
	Error    string // why there is none
}

// receiptOf derives and signs the receipt of the whole stored trace.
func (c *Console) receiptOf(recs []tracestore.Record) receiptView {
	if c.cfg.Keys == nil {
		return receiptView{Error: "this server has no signing key configured"}
	}
	env, err := c.sign(sliceRecords(recs))
	if err != nil {
		return receiptView{Error: err.Error()}
	}
	var out bytes.Buffer
	_ = json.Indent(&out, env, "", "  ")
	return receiptView{JSON: out.String(), Envelope: string(env), KeyID: receipt.KeyID(c.cfg.Keys.Public())}
}

// sign returns the canonical signed envelope over the whole trace.
func (c *Console) sign(recs receipt.Records) ([]byte, error) {
	body, err := receipt.DeriveRecords(recs, 0, receipt.KeyID(c.cfg.Keys.Public()))
	if err != nil {
		return nil, fmt.Errorf("no receipt: the stored trace does not hold together: %w", err)
	}
	signed, err := receipt.Sign(body, c.cfg.Keys.Signing)
	if err != nil {
		return nil, err
	}
	return jsonvalue.Canonical(signed)
}

// check is one named check of a receipt verification.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// verification is what the verify endpoint answers. Valid holds when every
// check passed; one of them is internal/receipt's Verify itself, so the
// console never calls valid what the offline verifier would not.
type verification struct {
	Valid    bool     `json:"valid"`
	Covered  uint64   `json:"covered"`
	Later    uint64   `json:"later"`
	Problems []string `json:"problems"`
	Checks   []check  `json:"checks"`
	// Source says which receipt was checked: the one the page showed
	// (posted) or one derived from the store now (derived).
	Source string `json:"source"`
	// Cached: answered from a verification of the same run (event count,
	// index head and tree) and receipt less than VerifyCacheTTL ago,
	// without reading the trace again.
	Cached bool `json:"cached"`
}

func (v *verification) add(name string, ok bool, format string, args ...any) bool {
	v.Checks = append(v.Checks, check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	return ok
}

// verifyReceipt checks a receipt against the run's stored records now: the
// one posted (the page's), or else one derived from the store. JSON for
// the page's script, an HTML page for a browser without it. A recent
// verification of the same run and receipt is answered from the cache;
// otherwise one of the few verification slots is needed, or 429.
func (c *Console) verifyReceipt(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	info, err := c.cfg.Store.Run(r.Context(), id)
	if c.storeFailed(w, r, id, err) {
		return
	}
	if c.cfg.Keys == nil {
		http.Error(w, "this server has no signing key configured", http.StatusServiceUnavailable)
		return
	}
	// The posted receipt is read as it is, as verify reads receipt.json:
	// whitespace around it is refused, not trimmed.
	env := []byte(r.PostFormValue("receipt"))
	key := verifyKey{run: id, events: info.Events, head: string(info.Head), tree: string(info.Tree)}
	if len(env) > 0 {
		key.receipt = sha256.Sum256(env)
	}
	v, cached := c.verified.get(key, c.cfg.Clock())
	if !cached {
		select {
		case c.verifySlots <- struct{}{}:
		default:
			w.Header().Set("Retry-After", verifyRetryAfter)
			http.Error(w, "too many receipt verifications at once: try again in a second", http.StatusTooManyRequests)
			return
		}
		v, err = c.verification(r, id, env, key)
		<-c.verifySlots
		if c.storeFailed(w, r, id, err) {
			return
		}
	}
	v.Cached = cached
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		c.writeJSON(w, v)
		return
	}
	c.render(w, r, "runverify", "Receipt of run "+id, "runs", struct {
		RunID string
		V     verification
	}{id, v})
}

// storeFailed answers a failed read of run id, if err is one: 404 for a
// run that does not exist, else 500.
func (c *Console) storeFailed(w http.ResponseWriter, r *http.Request, id string, err error) bool {
	switch {
	case errors.Is(err, tracestore.ErrNotFound):
		c.notFound(w, r, fmt.Sprintf("There is no run %s.", id))
	case err != nil:
		c.fail(w, r, err)
	default:
		return false
	}
	return true
}

// verification runs every check of env (or of a receipt derived now, when
// env is empty) against the run's stored records, and caches the result
// under key when the records are those the key's index row describes.
// Each check reads the trace from the store record by record, so that a
// verification holds one record at a time, however long the trace.
func (c *Console) verification(r *http.Request, id string, env []byte, key verifyKey) (verification, error) {
	if c.verifying != nil {
		c.verifying()
	}
	ctx := r.Context()
	rd := &traceReader{records: func() iter.Seq2[tracestore.Record, error] {
		return tracestore.Records(ctx, c.cfg.Store, id, math.MaxUint64)
	}}
	t := rd.tally()
	if rd.err != nil {
		return verification{}, rd.err
	}
	info, infoErr := c.cfg.Store.Run(ctx, id)
	v := verification{Source: "posted"}
	if len(env) == 0 {
		v.Source = "derived"
		var err error
		if env, err = c.sign(rd.read()); err != nil {
			v.add("receipt", false, "%v", err)
			v.chain(rd, t)
		}
	}
	if env != nil {
		v.verify(env, rd, t, c.cfg.Keys.Public())
	}
	v.checkIndex(t, info, infoErr)
	if rd.err != nil {
		// The store failed while the checks read it: no verdict.
		return verification{}, rd.err
	}
	v.Valid = true
	for _, ch := range v.Checks {
		if !ch.OK {
			v.Valid = false
			if !v.reported(ch) {
				v.Problems = append(v.Problems, ch.Name+": "+ch.Detail)
			}
		}
	}
	if v.Problems == nil {
		v.Problems = []string{}
	}
	// An append between the reads makes the answer about another trace
	// than the key names: not kept.
	if infoErr == nil && info.Events == key.events && t.n == key.events {
		c.verified.put(key, v, c.cfg.Clock())
	}
	return v, nil
}

// traceReader reads a run's trace afresh for each check, and remembers
// the first error of the store, so that a failing store is never
// reported as a broken trace.
type traceReader struct {
	records func() iter.Seq2[tracestore.Record, error]
	err     error
}

// read is one pass over the trace.
func (rd *traceReader) read() receipt.Records {
	return func(yield func(tracestore.Record, error) bool) {
		for r, err := range rd.records() {
			if err != nil && rd.err == nil {
				rd.err = err
			}
			if !yield(r, err) || err != nil {
				return
			}
		}
	}
}

// tally is what one pass over the stored records gives without parsing
// them: their number, the last one's leaf hash and the Merkle root.
type tally struct {
	n          uint64
	head, root []byte
}

func (rd *traceReader) tally() tally {
	var t tally
	tree := trace.NewTree()
	for r, err := range rd.read() {
		if err != nil {
			return t
		}
		t.head = trace.LeafHash(r.Body)
		_ = tree.Append(t.head)
		t.n++
	}
	t.root, _ = tree.Root()
	return t
}

// sliceRecords is a trace in memory as receipt.Records.
func sliceRecords(recs []tracestore.Record) receipt.Records {
	return func(yield func(tracestore.Record, error) bool) {
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// reported reports whether the offline verifier's problems already cover
// a failed check: it runs the same checks in its own words.
func (v *verification) reported(ch check) bool {
	if ch.Name == "index" || ch.Name == "receipt" {
		return false // the store's index row is no part of a receipt
	}
	for _, c := range v.Checks {
		if c.Name == "verifier" {
			return !c.OK
		}
	}
	return false
}

// verify runs the checks of a signed envelope against the trace, one by
// one, then internal/receipt's Verify as the final word.
func (v *verification) verify(env []byte, rd *traceReader, t tally, pub ed25519.PublicKey) {
	parse := receipt.ParseEnvelope // what the page posts
	if bytes.HasSuffix(env, []byte("\n")) {
		parse = receipt.ParseSigned // receipt.json's bytes: one \n, nothing else
	}
	s, err := parse(env)
	if !v.add("envelope", err == nil, "%s", okOr(err, "canonical JSON with exactly receipt, signature and key_id")) {
		v.chain(rd, t)
		return
	}
	body, err := strictBody(s.Receipt)
	if !v.add("format", err == nil, "%s", okOr(err, "the receipt is canonical JSON in the "+receipt.Format+" format")) {
		v.chain(rd, t)
		return
	}
	id := receipt.KeyID(pub)
	v.add("key_id", s.KeyID == id && body.KeyID == id, "the server's key is %s; the envelope names %s, the receipt %s", id, s.KeyID, body.KeyID)
	sig, err := base64.StdEncoding.Strict().DecodeString(s.Signature)
	sigOK := err == nil && base64.StdEncoding.EncodeToString(sig) == s.Signature && ed25519.Verify(pub, s.Receipt, sig)
	v.add("signature", sigOK, "%s", map[bool]string{true: "Ed25519 signature over the receipt holds under " + id, false: "the signature does not verify under " + id}[sigOK])
	chainOK := v.chain(rd, t)
	if v.add("coverage", body.Tree.Size > 0 && body.Tree.Size <= t.n, "the receipt covers %d of the trace's %d events", body.Tree.Size, t.n) && chainOK {
		v.fields(body, rd)
	}
	rep, _ := receipt.VerifyRecords(s, rd.read(), pub) // a reading error is in rd.err
	v.Covered, v.Later, v.Problems = rep.Covered, rep.Later, rep.Problems
	detail := fmt.Sprintf("valid: covers %d events, %d later events continue the chain", rep.Covered, rep.Later)
	if !rep.Valid {
		detail = strings.Join(rep.Problems, "; ")
	}
	v.add("verifier", rep.Valid, "internal/receipt Verify, as `nano-vm-mcp verify` runs it: %s", detail)
}

// chain checks that the whole stored trace holds together: consecutive
// indexes, one run, each event naming the previous one's hash, each stored
// hash its event's leaf hash.
func (v *verification) chain(rd *traceReader, t tally) bool {
	if t.n == 0 {
		return v.add("chain", false, "the trace is empty")
	}
	_, err := receipt.DeriveRecords(rd.read(), 0, "")
	return v.add("chain", err == nil, "%s", okOr(err, fmt.Sprintf("all %d events link up and match their stored hashes", t.n)))
}

// fields compares each member of the receipt with the one the trace's
// covered prefix gives now; format and key_id have their own checks.
func (v *verification) fields(body *receipt.Body, rd *traceReader) {
	again, err := receipt.DeriveRecords(rd.read(), body.Tree.Size, body.KeyID)
	if err != nil {
		v.add("fields", false, "the covered events give no receipt: %v", err)
		return
	}
	want, got := members(again), members(body)
	names := make([]string, 0, len(want))
	for k := range want {
		names = append(names, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		if k == "format" || k == "key_id" {
			continue
		}
		if bytes.Equal(want[k], got[k]) {
			v.add(k, true, "the trace gives %s", want[k])
		} else {
			v.add(k, false, "the trace gives %s, the receipt says %s", orNone(want[k]), orNone(got[k]))
		}
	}
}

// members are b's fields as canonical JSON, the tree split into its size
// and root.
func members(b *receipt.Body) map[string][]byte {
	c, _ := jsonvalue.Canonical(b)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(c, &m)
	out := make(map[string][]byte, len(m)+1)
	for k, raw := range m {
		out[k] = raw
	}
	delete(out, "tree")
	size, _ := json.Marshal(b.Tree.Size)
	root, _ := json.Marshal(b.Tree.Root)
	out["tree.size"], out["tree.root"] = size, root
	return out
}

// checkIndex compares the trace with the store's index row, which the
// runtime wrote with every append: its length, its head and the root of
// its Merkle tree. A record changed in place, even with its hashes
// recomputed, no longer matches what the run's appends recorded.
func (v *verification) checkIndex(t tally, info tracestore.RunInfo, err error) {
	if err != nil {
		v.add("index", false, "the store has no index row for the run: %v", err)
		return
	}
	stored, err := trace.UnmarshalTree(info.Tree)
	if err != nil {
		v.add("index", false, "the index row's tree: %v", err)
		return
	}
	storedRoot, _ := stored.Root()
	switch {
	case info.Events != t.n:
		v.add("index", false, "the index row records %d events, the trace has %d", info.Events, t.n)
	case !bytes.Equal(info.Head, t.head):
		v.add("index", false, "the index row's head is %s, the last event hashes to %s", trace.Hex(info.Head), trace.Hex(t.head))
	case !bytes.Equal(storedRoot, t.root):
		v.add("index", false, "the index row's tree root is %s, the events give %s", trace.Hex(storedRoot), trace.Hex(t.root))
	default:
		v.add("index", true, "the index row's %d events, head and tree root match the trace", info.Events)
	}
}

// strictBody parses a receipt body as the offline verifier does: canonical
// JSON, known members only, this format.
func strictBody(raw []byte) (*receipt.Body, error) {
	val, err := jsonvalue.Decode(raw)
	if err != nil {
		return nil, err
	}
	if c, err := jsonvalue.Canonical(val); err != nil || !bytes.Equal(c, raw) {
		return nil, errors.New("the receipt is not in canonical (RFC 8785) form")
	}
	// encoding/json matches names without regard to case: check them here.
	var known map[string]json.RawMessage
	zero, _ := jsonvalue.Canonical(&receipt.Body{})
	_ = json.Unmarshal(zero, &known)
	m, _ := val.(map[string]any) // not an object: Decode below says so
	for name := range m {
		if _, ok := known[name]; !ok {
			return nil, fmt.Errorf("unknown member %q", name)
		}
	}
	var b receipt.Body
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, err
	}
	if b.Format != receipt.Format {
		return nil, fmt.Errorf("format: expected %q, found %q", receipt.Format, b.Format)
	}
	return &b, nil
}

func okOr(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

func orNone(b []byte) string {
	if b == nil {
		return "nothing"
	}
	return string(b)
}
