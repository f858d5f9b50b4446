package receipt

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Check names the property each failure breaks: one table over the
// receipt, the trace, the index row and the policy re-check.
func TestCheckNamesTheFailedChecks(t *testing.T) {
	store, id := refundTrace(t, true)
	_, recs := export(t, store, id)
	pub, priv := testKey()
	receiptFile := signed(t, recs, uint64(len(recs)))
	info, err := store.Run(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	rehashed := func(i int, from, to string) []tracestore.Record {
		out := slices.Clone(recs)
		out[i].Body = bytes.Replace(out[i].Body, []byte(from), []byte(to), 1)
		out[i].Hash = trace.LeafHash(out[i].Body)
		return out
	}
	last := len(recs) - 1
	policyFails := func() error { return errors.New("event 2: field transition.to: recorded a, the program gives b") }
	for _, tc := range []struct {
		name     string
		receipt  []byte
		recs     []tracestore.Record
		opt      Options
		failed   []string // the failed checks, in report order
		problems []string // a word of each problem, in order
		policy   bool     // the policy re-check must have run
	}{
		{name: "intact", receipt: receiptFile, recs: recs, opt: Options{Index: IndexOf(info, nil)}},
		{name: "intact, the policy holds", receipt: receiptFile, recs: recs, opt: Options{Policy: func() error { return nil }}, policy: true},
		{name: "intact, the policy does not hold", receipt: receiptFile, recs: recs, opt: Options{Policy: policyFails},
			failed: []string{CheckPolicy}, problems: []string{"policy: event 2"}, policy: true},
		{name: "receipt.json with a CRLF", receipt: append(bytes.TrimSuffix(bytes.Clone(receiptFile), []byte("\n")), '\r', '\n'), recs: recs,
			failed: []string{CheckEnvelope}, problems: []string{"CRLF"}},
		{name: "a forged signature", receipt: bytes.Replace(receiptFile, []byte(`"signature":"`), []byte(`"signature":"A`), 1), recs: recs,
			failed: []string{CheckSignature}, problems: []string{"signature: does not verify"}},
		{name: "the last event rewritten and rehashed", receipt: receiptFile, recs: rehashed(last, `"type"`, `"type" `), opt: Options{Index: IndexOf(info, nil)},
			failed: []string{CheckTree, CheckIndex}, problems: []string{"index: the index row's", "receipt field tree"}},
		{name: "a middle event rewritten and rehashed", receipt: receiptFile, recs: rehashed(2, `"index":2`, `"index":3`), opt: Options{Index: IndexOf(info, nil)},
			failed: []string{CheckChain, CheckIndex}, problems: []string{"trace: event 2: field index", "index: the index row's tree root"}},
		{name: "no index row", receipt: receiptFile, recs: recs, opt: Options{Index: IndexOf(tracestore.RunInfo{}, tracestore.ErrNotFound)},
			failed: []string{CheckIndex}, problems: []string{"index: the store has no index row"}},
		{name: "the policy is not re-checked on a broken trace", receipt: receiptFile, recs: rehashed(2, `"index":2`, `"index":3`), opt: Options{Policy: policyFails},
			failed: []string{CheckChain}, problems: []string{"trace: event 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := false
			if p := tc.opt.Policy; p != nil {
				tc.opt.Policy = func() error { ran = true; return p() }
			}
			s, err := ParseSigned(tc.receipt)
			var rep Report
			if err != nil {
				rep = EnvelopeFailure(err, tc.opt)
			} else if rep, err = Check(s, Slice(tc.recs), pub, tc.opt); err != nil {
				t.Fatal(err)
			}
			if got := rep.Failed(); !slices.Equal(got, tc.failed) || rep.Valid != (len(tc.failed) == 0) {
				t.Fatalf("valid %t, failed %v, want %v: %v", rep.Valid, got, tc.failed, rep.Checks)
			}
			if len(rep.Problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d", rep.Problems, len(tc.problems))
			}
			for i, w := range tc.problems {
				if !strings.Contains(rep.Problems[i], w) {
					t.Errorf("problem %d: %q, want it to say %q", i, rep.Problems[i], w)
				}
			}
			if ran != tc.policy {
				t.Errorf("the policy re-check ran: %t, want %t", ran, tc.policy)
			}
			// Every check is listed, passed, failed or skipped, with words.
			for _, c := range rep.Checks {
				if c.Detail == "" || c.OK && c.Skipped {
					t.Errorf("check %+v", c)
				}
			}
			// CheckExport over the files gives the same report.
			if tc.opt.Index == nil {
				var file bytes.Buffer
				for _, r := range tc.recs {
					file.Write(r.Body)
					file.WriteByte('\n')
				}
				if got := CheckExport(tc.receipt, file.Bytes(), pub, tc.opt); !slices.Equal(got.Problems, rep.Problems) {
					t.Errorf("CheckExport: %q, Check: %q", got.Problems, rep.Problems)
				}
			}
		})
	}

	// Issue is Derive and Sign; without a receipt, Check reads the trace
	// alone and attests nothing.
	body, sg, err := Issue(Slice(recs), 0, priv)
	if err != nil || body.Tree.Size != uint64(len(recs)) {
		t.Fatalf("Issue: %+v, %v", body, err)
	}
	if file, _ := sg.File(); !bytes.Equal(file, receiptFile) {
		t.Errorf("Issue's receipt.json:\n%s\nDerive and Sign's:\n%s", file, receiptFile)
	}
	rep, err := Check(nil, Slice(recs), pub, Options{Index: IndexOf(info, nil)})
	if err != nil || rep.Valid || len(rep.Failed()) != 0 {
		t.Errorf("Check(nil): %+v, %v", rep, err)
	}
}
