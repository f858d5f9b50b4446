package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"net/http"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// receiptView is the run page's receipt: derived from the stored records
// when the page was rendered, and signed with the server's key.
type receiptView struct {
	JSON     string // the signed envelope, indented to read
	Envelope string // the same, canonical: what the verify form posts
	KeyID    string
	Error    string // why there is none
	// Counts is the receipt's tool call counts, when its format has them
	// (receipt.Format; a trace of format 1 gets a receipt of format 1).
	Counts *receipt.Counts
}

// receiptOf derives and signs the receipt of the whole stored trace.
func (c *Console) receiptOf(recs []tracestore.Record) receiptView {
	if c.cfg.Keys == nil {
		return receiptView{Error: "this server has no signing key configured"}
	}
	body, signed, err := c.issue(receipt.Slice(recs))
	if err != nil {
		return receiptView{Error: err.Error()}
	}
	env, err := jsonvalue.Canonical(signed)
	if err != nil {
		return receiptView{Error: err.Error()}
	}
	var out bytes.Buffer
	_ = json.Indent(&out, env, "", "  ")
	v := receiptView{JSON: out.String(), Envelope: string(env), KeyID: receipt.KeyID(c.cfg.Keys.Public())}
	if body.Format != receipt.FormatV1 {
		v.Counts = &body.Counts
	}
	return v
}

// sign returns the signed envelope over the whole trace.
func (c *Console) sign(recs receipt.Records) (*receipt.Signed, error) {
	_, signed, err := c.issue(recs)
	return signed, err
}

// issue derives and signs the receipt of the whole trace.
func (c *Console) issue(recs receipt.Records) (*receipt.Body, *receipt.Signed, error) {
	body, signed, err := receipt.Issue(recs, 0, c.cfg.Keys.Signing)
	if err != nil {
		return nil, nil, fmt.Errorf("no receipt: the stored trace does not hold together: %w", err)
	}
	return body, signed, nil
}

// check is one named check of a receipt verification: receipt.Check's, or
// the console's own "receipt" (none could be derived to check).
type check = receipt.Result

// verification is what the verify endpoint answers: receipt.Check's
// report, the one the offline verifier and verify_receipt give, with the
// store's index row compared too.
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
		c.writeJSON(w, http.StatusOK, v)
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
	opt := receipt.Options{Index: receipt.IndexOf(info, infoErr)}
	pub := c.cfg.Keys.Public()
	v := verification{Source: "posted"}
	var rep receipt.Report
	if len(env) == 0 {
		v.Source = "derived"
		signed, err := c.sign(rd.read())
		if err != nil {
			signed = nil // the trace alone is checked
		}
		rep, _ = receipt.Check(signed, rd.read(), pub, opt) // a reading error is in rd.err
		if err != nil {
			rep.Checks = append([]check{{Name: "receipt", Detail: err.Error()}}, rep.Checks...)
			rep.Problems = append([]string{"receipt: " + err.Error()}, rep.Problems...)
		}
	} else {
		rep, _ = receipt.CheckPosted(env, rd.read(), pub, opt)
	}
	if rd.err != nil {
		// The store failed while the checks read it: no verdict.
		return verification{}, rd.err
	}
	v.Valid, v.Covered, v.Later, v.Problems, v.Checks = rep.Valid, rep.Covered, rep.Later, rep.Problems, rep.Checks
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

// tally counts the stored records, without parsing them.
type tally struct{ n uint64 }

func (rd *traceReader) tally() tally {
	var t tally
	for _, err := range rd.read() {
		if err != nil {
			return t
		}
		t.n++
	}
	return t
}
