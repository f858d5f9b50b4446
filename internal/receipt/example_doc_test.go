package receipt

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/subjectkeys"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The worked examples in docs/trace-format.md and docs/receipt-format.md
// are real bytes: TestDocumentedExample reads the example's program, input
// and output from the markdown, runs them, and compares every other
// fenced block marked <!-- golden:NAME --> with what the code produces.
// When the formats change on purpose, regenerate the blocks with
//
//	go test ./internal/receipt -run TestDocumentedExample -update-docs
//
// and reread the prose around them.
var updateDocs = flag.Bool("update-docs", false, "rewrite the golden blocks of docs/trace-format.md and docs/receipt-format.md")

const (
	traceDoc   = "../../docs/trace-format.md"
	receiptDoc = "../../docs/receipt-format.md"
)

var (
	docClock     = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	docSecret    = bytes.Repeat([]byte{1}, 32)
	docSignSeed  = bytes.Repeat([]byte{3}, ed25519.SeedSize)
	docOtherSeed = bytes.Repeat([]byte{4}, ed25519.SeedSize)
)

// docRuntimeVersion pins the runtime version the example records, so that
// a release does not change the documented bytes. (The CEL version comes
// from the build's cel-go dependency: bumping it changes them.)
const docRuntimeVersion = "0.1.0-dev"

func TestDocumentedExample(t *testing.T) {
	docs := map[string]string{}
	for _, path := range []string{traceDoc, receiptDoc} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		docs[path] = string(b)
	}
	in := func(name string) string {
		s, err := goldenBlock(docs[traceDoc], name)
		if err != nil {
			t.Fatalf("%s: %v", traceDoc, err)
		}
		return s
	}

	// The run: the program, input and output documented in trace-format.md.
	saved := runtime.Version
	runtime.Version = docRuntimeVersion
	defer func() { runtime.Version = saved }()
	ctx := context.Background()
	store := tracestore.NewMemory()
	keks := keyring.MemoryKEKs()
	svc := service.New(service.Options{
		Store: store, Clock: func() time.Time { return docClock },
		NewID: func() string { return "run-1" }, Secret: docSecret, Rand: rand.NewChaCha8([32]byte{2}), KEKs: keks,
	})
	src := []byte(in("program"))
	p, err := program.Load("greeting.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	input, err := jsonvalue.Decode([]byte(in("input")))
	if err != nil {
		t.Fatal(err)
	}
	a, err := svc.Start(ctx, p.Name, input, "ops")
	if err != nil {
		t.Fatal(err)
	}
	output, err := jsonvalue.Decode([]byte(in("output")))
	if err != nil {
		t.Fatal(err)
	}
	if a, err = svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Output: output}); err != nil || a.Status != runtime.StatusCompleted {
		t.Fatalf("submit: %v, status %s", err, a.Status)
	}
	recs, err := store.Load(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}

	got := map[string]string{} // golden block name → content
	var traceFile bytes.Buffer
	for _, r := range recs {
		traceFile.Write(r.Body)
		traceFile.WriteByte('\n')
	}
	got["trace"] = traceFile.String()

	// Leaves, chain and tree, recomputed here from the exported bytes alone.
	parsed, err := ParseTrace(bytes.NewReader(traceFile.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var leaves [][]byte
	var lb strings.Builder
	for i, r := range parsed {
		sum := sha256.Sum256(append([]byte{0}, r.Body...))
		if !bytes.Equal(sum[:], trace.LeafHash(r.Body)) || !bytes.Equal(sum[:], recs[i].Hash) {
			t.Fatalf("event %d: the documented leaf hash is not the code's", i)
		}
		leaves = append(leaves, sum[:])
		fmt.Fprintf(&lb, "leaf %d = SHA-256(00 || line %d) = %x\n", i, i+1, sum)
	}
	got["leaves"] = lb.String()
	var nodes []string
	root := docMTH(leaves, 0, len(leaves), &nodes)
	got["tree"] = strings.Join(nodes, "\n") + "\n"
	tree := trace.NewTree()
	for _, l := range leaves {
		if err := tree.Append(l); err != nil {
			t.Fatal(err)
		}
	}
	if libRoot, _ := tree.Root(); !bytes.Equal(libRoot, root) {
		t.Fatalf("the documented MTH gives %x, transparency-dev/merkle %x", root, libRoot)
	}

	// Sealing: the subject id, its key, and every sealed value opened.
	subject := trace.SubjectID(docSecret, "customer", "id:C-1")
	// The store holds the key wrapped; the service's key-encryption key
	// opens it.
	key, err := subjectkeys.New(store, keks, nil).Get(ctx, subject, false)
	if err != nil || key == nil {
		t.Fatal("no subject key:", err)
	}
	mac := append(append([]byte("customer"), 0), "id:C-1"...)
	got["subject"] = fmt.Sprintf("secret      %x\nmessage     %x\n            (\"customer\" 0x00 \"id:C-1\")\nsubject id  %s\nsubject key %x\n", docSecret, mac, subject, key)
	var ob strings.Builder
	for i, r := range parsed {
		v, err := jsonvalue.Decode(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		docOpenAll(t, &ob, i, "", v, map[string][]byte{subject: key}, []byte(a.RunID))
	}
	got["opened"] = ob.String()

	// Receipts.
	priv := ed25519.NewKeyFromSeed(docSignSeed)
	pub := priv.Public().(ed25519.PublicKey)
	got["key"] = fmt.Sprintf("seed        %x\npublic key  %x\nkey id      %s\n", docSignSeed, []byte(pub), KeyID(pub))
	got["key.pub"] = keyring.FormatPublicKey(pub)
	sign := func(size uint64) (*Signed, []byte) {
		_, env, err := Issue(Slice(recs), size, priv)
		if err != nil {
			t.Fatal(err)
		}
		out, err := env.File() // receipt.json, as export writes it
		if err != nil {
			t.Fatal(err)
		}
		return env, out
	}
	final, finalFile := sign(uint64(len(recs)))
	if b, _ := jsonvalue.Canonical(docDecode(final.Receipt)); !bytes.Equal(b, final.Receipt) {
		t.Fatal("the signed body is not canonical")
	}
	got["body"] = string(final.Receipt) + "\n"
	got["signature"] = fmt.Sprintf("signature (hex)    %x\nsignature (base64) %s\n", docB64(t, final.Signature), final.Signature)
	got["receipt"] = string(finalFile)
	if !strings.Contains(got["body"], hex.EncodeToString(root)) {
		t.Fatal("the receipt's tree.root is not the documented root")
	}
	provisional, _ := sign(2)
	got["provisional"] = string(provisional.Receipt) + "\n"

	// Verification, untouched and tampered.
	var vb strings.Builder
	report := func(name string, traceBytes, receiptBytes []byte, key ed25519.PublicKey) {
		fmt.Fprintf(&vb, "# %s\n", name)
		recs, err := ParseTrace(bytes.NewReader(traceBytes))
		if err != nil {
			fmt.Fprintf(&vb, "%v\n", err)
			return
		}
		env, err := ParseSigned(receiptBytes)
		if err != nil {
			fmt.Fprintf(&vb, "%v\n", err)
			return
		}
		rep := Verify(env, recs, key)
		fmt.Fprintf(&vb, "valid=%v covered=%d later=%d\n", rep.Valid, rep.Covered, rep.Later)
		for _, p := range rep.Problems {
			fmt.Fprintf(&vb, "%s\n", p)
		}
	}
	tf := traceFile.Bytes()
	lines := bytes.SplitAfter(tf, []byte("\n"))[:len(recs)]
	replaceIn := func(line int, old, new string) []byte {
		out := bytes.Clone(tf)
		start := len(bytes.Join(lines[:line], nil))
		seg := out[start : start+len(lines[line])]
		if !bytes.Contains(seg, []byte(old)) {
			t.Fatalf("line %d holds no %q", line+1, old)
		}
		copy(seg, bytes.Replace(seg, []byte(old), []byte(new), 1))
		return out
	}
	_, provisionalFile := sign(2)
	other := ed25519.NewKeyFromSeed(docOtherSeed).Public().(ed25519.PublicKey)
	report("the untouched trace.jsonl and receipt.json", tf, finalFile, pub)
	report("the provisional receipt (tree.size 2) and the whole trace", tf, provisionalFile, pub)
	report(`line 3 (event 2): "at" 12:00:00Z changed to 12:00:01Z`, replaceIn(2, "12:00:00Z", "12:00:01Z"), finalFile, pub)
	last := len(lines) - 1
	report(fmt.Sprintf(`line %d (event %d, the last): outcome "SENT" changed to "SEND"`, last+1, last), replaceIn(last, `"SENT"`, `"SEND"`), finalFile, pub)
	report(fmt.Sprintf("line %d removed", last+1), bytes.Join(lines[:last], nil), finalFile, pub)
	report(`receipt.json: the body's outcome "SENT" changed to "SEND"`, tf, bytes.Replace(finalFile, []byte(`"SENT"`), []byte(`"SEND"`), 1), pub)
	report("receipt.json checked against another public key (seed 04...04)", tf, finalFile, other)
	report("receipt.json saved with a CRLF line end", tf, append(bytes.TrimSuffix(finalFile, []byte("\n")), '\r', '\n'), pub)
	got["verify"] = vb.String()

	// Compare with (or rewrite) the documents.
	blocks := map[string][]string{
		traceDoc:   {"subject", "trace", "opened", "leaves", "tree"},
		receiptDoc: {"key", "key.pub", "body", "signature", "receipt", "provisional", "verify"},
	}
	for path, names := range blocks {
		doc := docs[path]
		for _, name := range names {
			want, err := goldenBlock(doc, name)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if want == got[name] {
				continue
			}
			if *updateDocs {
				if doc, err = replaceGoldenBlock(doc, name, got[name]); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s, block golden:%s is out of date: the code now produces\n%s\nthe document says\n%s\n"+
				"If the format changed on purpose, run\n\tgo test ./internal/receipt -run TestDocumentedExample -update-docs\n"+
				"and reread the prose around the block.", path, name, got[name], want)
		}
		if *updateDocs && doc != docs[path] {
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote %s", filepath.Base(path))
		}
	}
}

func docDecode(raw []byte) any {
	v, _ := jsonvalue.Decode(raw)
	return v
}

func docB64(t *testing.T, s string) []byte {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// docMTH is RFC 6962's MTH, written out as the document states it, logging
// every interior node: for n > 1 leaves, k is the largest power of two
// smaller than n, and MTH(D[lo:hi]) = SHA-256(0x01 || MTH(D[lo:lo+k]) ||
// MTH(D[lo+k:hi])).
func docMTH(leaves [][]byte, lo, hi int, log *[]string) []byte {
	if hi-lo == 1 {
		return leaves[lo]
	}
	k := 1
	for k*2 < hi-lo {
		k *= 2
	}
	l := docMTH(leaves, lo, lo+k, log)
	r := docMTH(leaves, lo+k, hi, log)
	sum := sha256.Sum256(append(append([]byte{1}, l...), r...))
	*log = append(*log, fmt.Sprintf("MTH[%d:%d] = SHA-256(01 || %s || %s) = %x", lo, hi, docName(lo, lo+k), docName(lo+k, hi), sum))
	return sum[:]
}

func docName(lo, hi int) string {
	if hi-lo == 1 {
		return fmt.Sprintf("leaf %d", lo)
	}
	return fmt.Sprintf("MTH[%d:%d]", lo, hi)
}

// docOpenAll finds every {"$sealed": ...} object in v, in canonical key
// order, opens it with nothing but the documented algorithm (AES-256-GCM,
// the 12-byte nonce, AAD = the run id) and writes a line for it.
func docOpenAll(t *testing.T, w *strings.Builder, event int, ptr string, v any, keys map[string][]byte, aad []byte) {
	switch x := v.(type) {
	case map[string]any:
		if inner, ok := x["$sealed"].(map[string]any); ok && len(x) == 1 {
			s := &trace.Sealed{Subject: inner["subject"].(string), Nonce: inner["nonce"].(string), Ciphertext: inner["ciphertext"].(string)}
			plain, err := trace.Open(keys[s.Subject], s, aad)
			if err != nil {
				t.Fatalf("event %d %s: %v", event, ptr, err)
			}
			fmt.Fprintf(w, "event %d %s\n  nonce      %x\n  ciphertext %x\n  plaintext  %s\n", event, ptr, docB64(t, s.Nonce), docB64(t, s.Ciphertext), plain)
			return
		}
		names := make([]string, 0, len(x))
		for k := range x {
			names = append(names, k)
		}
		sort.Strings(names) // the names here are ASCII: UTF-16 order is byte order
		for _, k := range names {
			docOpenAll(t, w, event, ptr+"/"+jsonvalue.EscapePointerToken(k), x[k], keys, aad)
		}
	case []any:
		for i, e := range x {
			docOpenAll(t, w, event, fmt.Sprintf("%s/%d", ptr, i), e, keys, aad)
		}
	}
}

// goldenBlock returns the content of the first fenced block after the line
// <!-- golden:NAME -->, each line ending in "\n".
func goldenBlock(doc, name string) (string, error) {
	start, end, err := goldenSpan(doc, name)
	if err != nil {
		return "", err
	}
	return doc[start:end], nil
}

func replaceGoldenBlock(doc, name, content string) (string, error) {
	start, end, err := goldenSpan(doc, name)
	if err != nil {
		return "", err
	}
	return doc[:start] + content + doc[end:], nil
}

// goldenSpan locates the content of the block: from after the opening
// fence's line to the start of the closing fence's line.
func goldenSpan(doc, name string) (int, int, error) {
	marker := "<!-- golden:" + name + " -->\n"
	at := strings.Index(doc, marker)
	if at < 0 {
		return 0, 0, fmt.Errorf("no %q marker", strings.TrimSpace(marker))
	}
	if strings.Contains(doc[at+len(marker):], marker) {
		return 0, 0, fmt.Errorf("two %q markers", strings.TrimSpace(marker))
	}
	rest := doc[at+len(marker):]
	open := strings.Index(rest, "```")
	if open < 0 || strings.TrimSpace(rest[:open]) != "" {
		return 0, 0, fmt.Errorf("marker %q is not followed by a fenced block", strings.TrimSpace(marker))
	}
	nl := strings.IndexByte(rest[open:], '\n')
	if nl < 0 {
		return 0, 0, fmt.Errorf("block golden:%s is not closed", name)
	}
	start := at + len(marker) + open + nl + 1
	closing := strings.Index(doc[start:], "```\n")
	if closing < 0 || (closing > 0 && doc[start+closing-1] != '\n') {
		return 0, 0, fmt.Errorf("block golden:%s is not closed", name)
	}
	return start, start + closing, nil
}
