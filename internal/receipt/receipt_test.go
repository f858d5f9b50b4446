package receipt

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func testKey() (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func decode(t *testing.T, s string) any {
	v, err := jsonvalue.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// refundTrace runs the refund example (a large amount, so a manager
// approves) and returns the store; finish=false stops at the approval.
func refundTrace(t *testing.T, finish bool) (tracestore.Store, string) {
	t.Helper()
	ctx := context.Background()
	store := tracestore.NewMemory()
	svc := service.New(service.Options{Store: store, Clock: func() time.Time { return t0 },
		NewID: func() string { return "run-1" }, Secret: bytes.Repeat([]byte{1}, 32), Rand: rand.NewChaCha8([32]byte{2})})
	p, src := examples.MustLoad("refund")
	if err := svc.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	in, _ := examples.FS.ReadFile("refund.large.input.json")
	a, err := svc.Start(ctx, "refund", decode(t, string(in)), "t")
	if err != nil {
		t.Fatal(err)
	}
	a, err = svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: decode(t, `{"eligible": true, "amount_cents": 64000, "reason": "Arrived broken."}`)})
	if err != nil || a.State != "manager_approval" {
		t.Fatalf("at %s: %v", a.State, err)
	}
	if finish {
		if _, err := svc.Decide(ctx, a.RunID, runtime.Decide{Seq: a.Seq, Role: "support_manager", Decision: decode(t, `{"approve": true}`)}); err != nil {
			t.Fatal(err)
		}
	}
	return store, a.RunID
}

func export(t *testing.T, store tracestore.Store, id string) ([]byte, []tracestore.Record) {
	recs, err := store.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, r := range recs {
		b.Write(r.Body)
		b.WriteByte('\n')
	}
	return b.Bytes(), recs
}

func signed(t *testing.T, recs []tracestore.Record, size uint64) []byte {
	_, priv := testKey()
	_, env, err := Issue(Slice(recs), size, priv)
	if err != nil {
		t.Fatal(err)
	}
	out, err := env.File() // receipt.json, as export writes it
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func verify(traceBytes, receiptBytes []byte) Report {
	pub, _ := testKey()
	recs, err := ParseTrace(bytes.NewReader(traceBytes))
	if err != nil {
		return Report{Problems: []string{err.Error()}}
	}
	env, err := ParseSigned(receiptBytes)
	if err != nil {
		return Report{Problems: []string{err.Error()}}
	}
	return Verify(env, recs, pub)
}

func TestReceiptOfAFinishedRun(t *testing.T) {
	store, id := refundTrace(t, true)
	traceBytes, recs := export(t, store, id)
	pub, _ := testKey()
	body, err := Derive(recs, uint64(len(recs)), KeyID(pub))
	if err != nil {
		t.Fatal(err)
	}
	if body.Kind != KindFinal || body.Status != "completed" || body.Outcome != "REFUNDED" || body.FinalState != "refunded" ||
		strings.Join(body.Path, " ") != "assess_refund check manager_approval refunded" || body.Counts.Transitions != 3 || body.Tree.Size != uint64(len(recs)) {
		t.Fatalf("body %+v", body)
	}
	again, _ := Derive(recs, uint64(len(recs)), KeyID(pub))
	a, _ := jsonvalue.Canonical(body)
	b, _ := jsonvalue.Canonical(again)
	if !bytes.Equal(a, b) {
		t.Fatal("deriving twice gave different bytes")
	}
	if rep := verify(traceBytes, signed(t, recs, uint64(len(recs)))); !rep.Valid || rep.Later != 0 {
		t.Fatalf("untouched originals: %+v", rep)
	}
}

func TestProvisionalReceiptAndLaterEvents(t *testing.T) {
	store, id := refundTrace(t, false)
	_, recs := export(t, store, id)
	pub, _ := testKey()
	body, _ := Derive(recs, uint64(len(recs)), KeyID(pub))
	if body.Kind != KindProvisional || body.Status != "running" || body.Outcome != "" {
		t.Fatalf("body of a running run: %+v", body)
	}
	// A receipt of a prefix still verifies against the longer trace, which
	// must continue its chain.
	full, id2 := refundTrace(t, true)
	traceBytes, all := export(t, full, id2)
	rep := verify(traceBytes, signed(t, all, uint64(len(recs))))
	if !rep.Valid || rep.Covered != uint64(len(recs)) || rep.Later != uint64(len(all)-len(recs)) {
		t.Fatalf("prefix receipt: %+v", rep)
	}
}

// TestEverySingleByteChangeIsCaught flips each byte of an exported trace
// and of its signed receipt, one at a time; verification must fail every
// time, and accept the untouched originals.
func TestEverySingleByteChangeIsCaught(t *testing.T) {
	store, id := refundTrace(t, true)
	traceBytes, recs := export(t, store, id)
	receiptBytes := signed(t, recs, uint64(len(recs)))
	if rep := verify(traceBytes, receiptBytes); !rep.Valid {
		t.Fatalf("originals: %+v", rep)
	}
	// Every flip is checked on its own, so the flips are split between
	// parallel subtests, which -test.parallel (GOMAXPROCS) spreads over the
	// CPUs: on one core this is the slowest test of the -race suite.
	const parts = 8
	for name, target := range map[string][]byte{"trace": traceBytes, "receipt": receiptBytes} {
		for w := range parts {
			lo, hi := len(target)*w/parts, len(target)*(w+1)/parts
			t.Run(fmt.Sprintf("%s/bytes_%d-%d", name, lo, hi), func(t *testing.T) {
				t.Parallel()
				for i := lo; i < hi; i++ {
					mutated := bytes.Clone(target)
					mutated[i] ^= 0x01
					var rep Report
					if name == "trace" {
						rep = verify(mutated, receiptBytes)
					} else {
						rep = verify(traceBytes, mutated)
					}
					if rep.Valid || len(rep.Problems) == 0 {
						t.Fatalf("%s byte %d (%q → %q) changed, and verification passed", name, i, target[i], mutated[i])
					}
				}
			})
		}
	}
}

func TestVerifyNamesTheFirstFailure(t *testing.T) {
	store, id := refundTrace(t, true)
	traceBytes, recs := export(t, store, id)
	receiptBytes := signed(t, recs, uint64(len(recs)))
	lines := bytes.Split(bytes.TrimSuffix(traceBytes, []byte("\n")), []byte("\n"))
	tests := []struct {
		name  string
		trace [][]byte
		want  string
	}{
		{"dropped event", append(append([][]byte{}, lines[:2]...), lines[3:]...), "event 2: field index"},
		{"reordered events", append([][]byte{lines[0], lines[2], lines[1]}, lines[3:]...), "event 1: field index"},
		{"truncated trace", lines[:len(lines)-1], "tree.size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := verify(append(bytes.Join(tt.trace, []byte("\n")), '\n'), receiptBytes)
			if rep.Valid || !strings.Contains(rep.Problems[0], tt.want) {
				t.Fatalf("problems %q, want the first to mention %q", rep.Problems, tt.want)
			}
		})
	}
	// Another outcome in the receipt, re-signed: the signature holds, but
	// the trace gives another body, and the field is named.
	pub, priv := testKey()
	body, _ := Derive(recs, uint64(len(recs)), KeyID(pub))
	body.Outcome = "DENIED"
	env, _ := Sign(body, priv)
	forged, _ := jsonvalue.Canonical(env)
	rep := verify(traceBytes, append(forged, '\n'))
	if rep.Valid || !strings.Contains(fmt.Sprint(rep.Problems), "receipt field outcome") {
		t.Fatalf("forged outcome: %+v", rep)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"index":0,"run_id":"r","type":"run_started"}`+"\n"), []byte(`{"key_id":"x","receipt":{},"signature":""}`))
	f.Add([]byte("not json\n"), []byte("{}"))
	f.Add([]byte(""), []byte(`{"receipt":{"format":"nano-vm-receipt/1","tree":{"size":1}}}`))
	// Near misses of a real export (the documented example, signed with
	// testKey): each breaks one rule of docs/receipt-format.md §7.
	traceBytes, _ := os.ReadFile("testdata/untagged/trace.jsonl")
	receiptBytes, _ := os.ReadFile("testdata/untagged/receipt.json")
	env := bytes.TrimSuffix(receiptBytes, []byte("\n"))
	started := []byte(`"started":{`)
	for _, seed := range [][2][]byte{
		{traceBytes, append(bytes.Clone(env), '\r', '\n')},
		{traceBytes, append([]byte(" "), receiptBytes...)},
		{traceBytes, env},
		{traceBytes, bytes.Replace(receiptBytes, []byte(`"kind"`), []byte(`"Kind"`), 1)},
		{traceBytes, bytes.Replace(receiptBytes, []byte(`"size":6`), []byte(`"size":0`), 1)},
		{bytes.Replace(traceBytes, started, []byte(`"started":{"trace_format":"nano-vm-trace/3",`), 1), receiptBytes},
		{bytes.Replace(traceBytes, []byte(`"type":"run_finished"`), []byte(`"type":"run_started"`), 1), receiptBytes},
		{bytes.Replace(traceBytes, []byte(`"transition":`), []byte(`"Transition":`), 1), receiptBytes},
		{bytes.Replace(traceBytes, []byte(`,"type":"task_issued"`), nil, 1), receiptBytes},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, traceBytes, receiptBytes []byte) {
		// Must never panic; a verdict of valid needs a real signature.
		if rep := verify(traceBytes, receiptBytes); rep.Valid {
			t.Fatalf("fuzzed input verified: %+v", rep)
		}
	})
}

// TestReceiptSpellingsOtherThanTheCanonicalOneFail: the envelope and the
// signature have one spelling each.
func TestReceiptSpellingsOtherThanTheCanonicalOneFail(t *testing.T) {
	store, id := refundTrace(t, true)
	traceBytes, recs := export(t, store, id)
	receiptBytes := signed(t, recs, uint64(len(recs)))
	env, _ := ParseSigned(receiptBytes)
	sig := env.Signature
	for name, mutate := range map[string]func([]byte) []byte{
		"whitespace":        func(b []byte) []byte { return bytes.Replace(b, []byte(`{"key_id"`), []byte(`{ "key_id"`), 1) },
		"member case":       func(b []byte) []byte { return bytes.Replace(b, []byte(`"key_id"`), []byte(`"Key_id"`), 1) },
		"line break in b64": func(b []byte) []byte { return bytes.Replace(b, []byte(sig[:10]), []byte(sig[:10]+`\n`), 1) },
		"padding bits": func(b []byte) []byte {
			return bytes.Replace(b, []byte(sig[len(sig)-3:]), []byte(string(sig[len(sig)-3]^1)+"=="), 1)
		},
	} {
		if rep := verify(traceBytes, mutate(bytes.Clone(receiptBytes))); rep.Valid {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestParseTraceLimits(t *testing.T) {
	deep := strings.Repeat("[", 135) + strings.Repeat("]", 135)
	line := `{"index":0,"input":` + deep + `,"run_id":"r","type":"run_started"}`
	if _, err := ParseTrace(strings.NewReader(line + "\n")); err != nil {
		t.Fatalf("an event around a deep document: %v", err)
	}
	for name, text := range map[string]string{
		"no final newline": line,
		"CRLF":             line + "\r\n",
		"too deep":         `{"index":0,"input":` + strings.Repeat("[", 150) + strings.Repeat("]", 150) + `,"run_id":"r","type":"run_started"}` + "\n",
	} {
		if _, err := ParseTrace(strings.NewReader(text)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

const fourEyesProgram = `
name: four-eyes
version: "1"
input_schema:
  type: object
  properties: {amount: {type: integer}}
  required: [amount]
initial: release
states:
  release:
    kind: approval
    role: officer
    approvals: 2
    view: [input.amount]
    output_schema:
      type: object
      properties: {release: {type: boolean}}
      required: [release]
    transitions:
      - {to: released, when: output.release}
      - {to: held}
  released: {kind: terminal, outcome: RELEASED}
  held: {kind: terminal, outcome: HELD}
`

// TestReceiptOfAFourEyesRun: approval_recorded events are chained and
// hashed like any other and change no count; the rejection of an
// anonymous decision is counted, not as an attempt.
func TestReceiptOfAFourEyesRun(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	svc := service.New(service.Options{Store: store, Clock: func() time.Time { return t0 },
		NewID: func() string { return "run-1" }, Secret: bytes.Repeat([]byte{1}, 32), Rand: rand.NewChaCha8([32]byte{2})})
	p, err := program.Load("four-eyes.yaml", []byte(fourEyesProgram))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddProgram(ctx, p, []byte(fourEyesProgram)); err != nil {
		t.Fatal(err)
	}
	a, err := svc.Start(ctx, "four-eyes", decode(t, `{"amount": 10}`), "ops")
	if err != nil {
		t.Fatal(err)
	}
	decide := func(who, decision string) (service.Answer, error) {
		return svc.Decide(ctx, a.RunID, runtime.Decide{Seq: a.Seq, Role: "officer", Principal: who, Decision: decode(t, decision)})
	}
	if _, err := decide("", `{"release": true}`); err == nil {
		t.Fatal("an anonymous decision was taken")
	}
	if b, err := decide("alice", `{"release": true}`); err != nil || b.ApprovalsGiven != 1 {
		t.Fatalf("first approval: %+v %v", b, err)
	}
	_, pending := export(t, store, a.RunID)
	if b, err := decide("bob", `{"release": true}`); err != nil || b.Outcome != "RELEASED" {
		t.Fatalf("second approval: %+v %v", b, err)
	}
	traceBytes, recs := export(t, store, a.RunID)
	if !bytes.Contains(traceBytes, []byte(`"type":"approval_recorded"`)) || !bytes.Contains(traceBytes, []byte(`"approvers":["alice","bob"]`)) {
		t.Fatalf("trace:\n%s", traceBytes)
	}
	pub, _ := testKey()
	body, err := Derive(recs, uint64(len(recs)), KeyID(pub))
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Transitions: 1, Rejections: 1}
	if body.Kind != KindFinal || body.Outcome != "RELEASED" || body.Counts != want || strings.Join(body.Path, " ") != "release released" {
		t.Fatalf("body %+v", body)
	}
	if rep := verify(traceBytes, signed(t, recs, uint64(len(recs)))); !rep.Valid {
		t.Fatalf("final receipt: %+v", rep)
	}
	// A provisional receipt ending on the pending approval.
	if last := pending[len(pending)-1]; last.Type != "approval_recorded" {
		t.Fatalf("the prefix ends with %s", last.Type)
	}
	if rep := verify(traceBytes, signed(t, recs, uint64(len(pending)))); !rep.Valid || rep.Later != uint64(len(recs)-len(pending)) {
		t.Fatalf("provisional receipt: %+v", rep)
	}
}
