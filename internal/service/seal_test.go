package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// kycService drives the KYC example's approved script (a rejected line, a
// rollback, tool arguments with personal data) through a service with a
// seeded randomness source, and returns the store and the run id.
func kycService(t *testing.T, seed byte) (*Service, tracestore.Store, string) {
	t.Helper()
	ctx := context.Background()
	store := tracestore.NewMemory()
	n := 0
	svc := New(Options{
		Store: store, Clock: func() time.Time { return t0 }, Secret: bytes.Repeat([]byte{9}, 32),
		Rand:  rand.NewChaCha8([32]byte{seed}),
		NewID: func() string { n++; return fmt.Sprintf("run-%d", n) },
	})
	p, src := examples.MustLoad("kyc-onboarding")
	if err := svc.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	a, err := svc.Start(ctx, p.Name, exampleJSON(t, "kyc-onboarding.input.json"), "t")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range readLines(t, "kyc-onboarding.approved.answers.jsonl") {
		task := a.Task
		var next Answer
		switch {
		case task.Kind == "approval":
			next, err = svc.Decide(ctx, a.RunID, runtime.Decide{Seq: task.Seq, Role: task.Role, Decision: js(t, line)})
		case task.Tool != nil:
			next, err = svc.Submit(ctx, a.RunID, runtime.Submit{Seq: task.Seq, Tool: task.Tool.Name, Actor: runtime.ActorTool, Output: js(t, line)})
		default:
			next, err = svc.Submit(ctx, a.RunID, runtime.Submit{Seq: task.Seq, Output: js(t, line)})
		}
		if code(err) == "" && err != nil {
			t.Fatal(err)
		}
		a = next
	}
	if a.Outcome != "APPROVED" {
		t.Fatalf("outcome %s", a.Outcome)
	}
	return svc, store, a.RunID
}

func TestTraceHoldsNoPlaintextPersonalData(t *testing.T) {
	_, store, id := kycService(t, 1)
	recs, err := store.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for _, r := range recs {
		all.Write(r.Body)
	}
	for _, pii := range []string{"CUS-88213", "Johanna M. Lindqvist", "johanna.lindqvist@example.com", "1988-03-14", "14 MAR 1988", "Hornsgatan 112", "94117352"} {
		if bytes.Contains(all.Bytes(), []byte(pii)) {
			t.Errorf("the stored trace holds %q in plaintext", pii)
		}
	}
	if !bytes.Contains(all.Bytes(), []byte(`"$sealed"`)) {
		t.Fatal("nothing was sealed")
	}
}

func TestSealedTraceChainsAndTreeVerify(t *testing.T) {
	ctx := context.Background()
	_, store, id := kycService(t, 1)
	recs, _ := store.Load(ctx, id)
	info, _ := store.Run(ctx, id)
	tree := trace.NewTree()
	var prev []byte
	for i, r := range recs {
		var e struct {
			Index uint64 `json:"index"`
			Prev  string `json:"prev"`
		}
		if err := json.Unmarshal(r.Body, &e); err != nil {
			t.Fatal(err)
		}
		if e.Index != uint64(i) || (prev == nil) != (e.Prev == "") || (prev != nil && e.Prev != trace.Hex(prev)) {
			t.Fatalf("event %d: index %d prev %q, want previous hash %x", i, e.Index, e.Prev, prev)
		}
		if !bytes.Equal(r.Hash, trace.LeafHash(r.Body)) {
			t.Fatalf("event %d: stored hash is not the leaf hash of its body", i)
		}
		tree.Append(r.Hash)
		prev = r.Hash
	}
	stored, err := trace.UnmarshalTree(info.Tree)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tree.Root()
	got, _ := stored.Root()
	if !bytes.Equal(got, want) || stored.Size() != uint64(len(recs)) || !bytes.Equal(info.Head, prev) {
		t.Fatal("the index row's tree or head does not match the trace")
	}
}

func TestSealedTraceReopensAndDestroyedKeysShowAsErased(t *testing.T) {
	ctx := context.Background()
	svc, store, id := kycService(t, 1)
	events, err := svc.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	customer := events[0].Started.Input.(map[string]any)["customer"].(map[string]any)
	if customer["name"] != "Johanna M. Lindqvist" || customer["id"] != "CUS-88213" {
		t.Fatalf("the input did not reopen: %v", customer)
	}
	subject := events[0].Started.Subjects["customer"]
	if len(subject) != 64 || strings.Contains(subject, "CUS") {
		t.Fatalf("subject recorded as %q, want a keyed hash", subject)
	}
	before, _ := store.Load(ctx, id)
	if _, err := svc.sealer.keys.Shred(ctx, []string{subject}); err != nil {
		t.Fatal(err)
	}
	// A fresh process, without the key cache.
	fresh := New(Options{Store: store})
	events, err = fresh.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	customer = events[0].Started.Input.(map[string]any)["customer"].(map[string]any)
	if m, ok := customer["name"].(map[string]any); !ok || m["$erased"] != subject {
		t.Fatalf("an erased name reads %v", customer["name"])
	}
	if customer["country_of_residence"] != "SE" {
		t.Fatal("data that is not personal was lost")
	}
	after, _ := store.Load(ctx, id)
	for i := range before {
		if !bytes.Equal(before[i].Body, after[i].Body) {
			t.Fatal("erasure changed the stored trace")
		}
	}
}

func TestSealedTracesAreReproducible(t *testing.T) {
	ctx := context.Background()
	_, s1, id1 := kycService(t, 5)
	_, s2, id2 := kycService(t, 5)
	r1, _ := s1.Load(ctx, id1)
	r2, _ := s2.Load(ctx, id2)
	if len(r1) != len(r2) {
		t.Fatal("different lengths")
	}
	for i := range r1 {
		if !bytes.Equal(r1[i].Body, r2[i].Body) {
			t.Fatalf("event %d differs between two identical runs", i)
		}
	}
	_, s3, id3 := kycService(t, 6)
	r3, _ := s3.Load(ctx, id3)
	if bytes.Equal(r1[0].Body, r3[0].Body) {
		t.Fatal("another randomness source gave the same ciphertexts")
	}
}

const twoSubjects = `
name: two
version: "1"
input_schema:
  type: object
  properties:
    customer:
      type: object
      properties:
        id: {type: string}
        name: {type: string}
subjects:
  aaa:
    id: input.customer.id
    pii: [input.customer]
  zzz:
    id: input.customer.name
    pii: [input.customer.name]
  other:
    id: input.customer.id
    pii: [data.a.full_name]
initial: a
states:
  a:
    kind: llm
    output_schema:
      type: object
      properties:
        full_name: {type: string}
    transitions: [{to: done}]
  done: {kind: terminal, outcome: DONE}
`

func twoSubjectRun(t *testing.T) (*Service, tracestore.Store, string, Answer) {
	t.Helper()
	ctx := context.Background()
	store := tracestore.NewMemory()
	svc := New(Options{Store: store, Clock: func() time.Time { return t0 }, Rand: rand.NewChaCha8([32]byte{4})})
	p, err := program.Load("two.yaml", []byte(twoSubjects))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddProgram(ctx, p, []byte(twoSubjects)); err != nil {
		t.Fatal(err)
	}
	a, err := svc.Start(ctx, "two", js(t, `{"customer": {"id": "C-7", "name": "Grace Hopper"}}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	return svc, store, a.RunID, a
}

// TestNestedSubjectsEraseIndependently: one subject's path inside another's
// is sealed under both keys, so erasing either subject erases the field.
func TestNestedSubjectsEraseIndependently(t *testing.T) {
	ctx := context.Background()
	for _, erase := range []string{"aaa", "zzz"} {
		t.Run(erase, func(t *testing.T) {
			svc, store, id, _ := twoSubjectRun(t)
			events, _ := svc.Events(ctx, id)
			subject := events[0].Started.Subjects[erase]
			if _, err := svc.sealer.keys.Shred(ctx, []string{subject}); err != nil {
				t.Fatal(err)
			}
			events, err := New(Options{Store: store}).Events(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(fmt.Sprint(events[0].Started.Input), "Grace Hopper") {
				t.Fatalf("erasing %s left the name readable: %v", erase, events[0].Started.Input)
			}
		})
	}
}

// TestRefusedAnswersAreSealedWhateverStateTheyMeet: an answer refused after
// the run moved on (here: finished) is sealed by every state's
// personal-data paths, not only those of the state it met.
func TestRefusedAnswersAreSealedWhateverStateTheyMeet(t *testing.T) {
	ctx := context.Background()
	svc, store, id, a := twoSubjectRun(t)
	if _, err := svc.Submit(ctx, id, runtime.Submit{Seq: a.Seq, Output: js(t, `{"full_name": "Grace B. Hopper"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Submit(ctx, id, runtime.Submit{Seq: a.Seq, Output: js(t, `{"full_name": "Grace Brewster Hopper"}`)}); code(err) != runtime.CodeRunFinished {
		t.Fatalf("late answer: %v", err)
	}
	recs, _ := store.Load(ctx, id)
	for _, r := range recs {
		if bytes.Contains(r.Body, []byte("Hopper")) {
			t.Fatalf("event %d holds the name in plaintext: %s", r.Index, r.Body)
		}
	}
}
