package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/console"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/lab"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tools"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// TestFourVerifiersAgree feeds the same exported receipt and trace to the
// four verifiers: the CLI's verify, MCP's verify_receipt, the console's
// verify endpoint (the trace as the store holds it) and the laboratory's
// check. Each must give the verdict receipt.Check gives, over the intact
// export, corrupt_receipt's tamperings, every single-bit flip of each byte
// of trace.jsonl and receipt.json, and receipt.json with whitespace or a
// CRLF around it.
func TestFourVerifiersAgree(t *testing.T) {
	v := newVerifiers(t)
	type input struct {
		name           string
		receipt, trace []byte
		json           bool // receipt.json's bytes alter only what JSON skips
		bare           bool // the bare envelope: what the console's form and verify_receipt carry
	}
	inputs := []input{{name: "intact", receipt: v.receipt, trace: v.trace}}
	for _, tm := range lab.ReceiptTamperings() {
		r, tr, err := tm.Apply(bytes.Clone(v.receipt), bytes.Clone(v.trace))
		if err != nil {
			t.Fatalf("%s: %v", tm.Name, err)
		}
		inputs = append(inputs, input{name: "corrupt_receipt/" + tm.Name, receipt: r, trace: tr})
	}
	env := bytes.TrimSuffix(v.receipt, []byte("\n"))
	for name, r := range map[string]string{
		"a space before":     " " + string(env) + "\n",
		"a space after":      string(env) + " \n",
		"a CRLF line end":    string(env) + "\r\n",
		"a blank line after": string(env) + "\n\n",
		"a newline before":   "\n" + string(env) + "\n",
	} {
		inputs = append(inputs, input{name: "receipt.json with " + name, receipt: []byte(r), trace: v.trace, json: true})
	}
	inputs = append(inputs, input{name: "the bare envelope, no final newline", receipt: env, trace: v.trace, json: true, bare: true})
	// Every byte; -short takes every ninth (the whole set takes minutes
	// under -race on a busy machine).
	stride := 1
	if testing.Short() {
		stride = 9
	}
	for i := 0; i < len(v.trace); i += stride {
		tr := bytes.Clone(v.trace)
		tr[i] ^= 0x01
		inputs = append(inputs, input{name: fmt.Sprintf("trace byte %d flipped", i), receipt: v.receipt, trace: tr})
	}
	for i := 0; i < len(v.receipt); i += stride {
		r := bytes.Clone(v.receipt)
		r[i] ^= 0x01
		inputs = append(inputs, input{name: fmt.Sprintf("receipt byte %d flipped", i), receipt: r, trace: v.trace})
	}

	valid := 0
	for n, in := range inputs {
		want := receipt.CheckExport(in.receipt, in.trace, v.key, receipt.Options{})
		if want.Valid {
			valid++
		}
		got := map[string]bool{
			"cli": v.cli(t, in.receipt, in.trace),
			"lab": lab.VerifyExport(in.receipt, in.trace, v.key).Valid,
		}
		// The console's form posts the bare envelope, or receipt.json's
		// bytes; it reads the latter as verify does.
		if page := v.console(t, n, in.receipt, in.trace); in.bare && !page {
			t.Errorf("%s: the console refused the envelope itself", in.name)
		} else if !in.bare {
			got["console"] = page
		}
		// A tool argument is JSON: the bytes around receipt.json's envelope
		// never reach verify_receipt, which is asked about the envelope
		// itself (docs/decisions.md, House (issue 14)).
		if mcpValid, ok := v.mcp(t, in.receipt, in.trace); ok {
			if in.json && !mcpValid {
				t.Errorf("%s: verify_receipt refused the envelope itself", in.name)
			} else if !in.json {
				got["verify_receipt"] = mcpValid
			}
		} else if !in.json {
			got["verify_receipt"] = false // no client can make the call: nothing verified
		}
		for face, ok := range got {
			if ok != want.Valid {
				t.Errorf("%s: %s says valid=%t, receipt.Check says %t (%v)", in.name, face, ok, want.Valid, want.Problems)
			}
		}
	}
	if valid != 1 {
		t.Errorf("%d inputs verified; only the intact export should", valid)
	}
}

// verifiers holds one exported run and the four faces to ask about it.
type verifiers struct {
	receipt, trace []byte
	pub            []byte // key.pub's text
	key            ed25519.PublicKey
	keyFile        string
	dir            string
	mcpServer      interface {
		HandleMessage(context.Context, json.RawMessage) mcp.JSONRPCMessage
	}
	page  http.Handler // the console
	store *exportStore
}

func newVerifiers(t *testing.T) *verifiers {
	t.Helper()
	data := t.TempDir()
	code, out, errOut := runCLI(t, "run", "refund", "--data-dir", data, "--json",
		"--input", "../../examples/refund.input.json", "--answers", "../../examples/refund.refunded.answers.jsonl")
	if code != exitOK {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	var s summary
	if err := json.Unmarshal([]byte(lastLine(out)), &s); err != nil {
		t.Fatal(err)
	}
	v := &verifiers{dir: t.TempDir()}
	var err error
	if code, out, errOut := runCLI(t, "export", s.RunID, "--data-dir", data, "--out", v.dir); code != exitOK {
		t.Fatalf("export: exit %d\n%s\n%s", code, out, errOut)
	}
	code, pub, _ := runCLI(t, "keys", "--data-dir", data)
	if code != exitOK {
		t.Fatalf("keys: exit %d", code)
	}
	v.pub = []byte(pub)
	if v.key, err = keyring.ParsePublicKey(v.pub); err != nil {
		t.Fatal(err)
	}
	v.keyFile = filepath.Join(v.dir, "key.pub")
	if err = os.WriteFile(v.keyFile, v.pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if v.receipt, err = os.ReadFile(filepath.Join(v.dir, "receipt.json")); err != nil {
		t.Fatal(err)
	}
	if v.trace, err = os.ReadFile(filepath.Join(v.dir, "trace.jsonl")); err != nil {
		t.Fatal(err)
	}
	// The server's own keys sign nothing here: every face is given the
	// exporter's public key.
	keys, err := keyring.Ephemeral(strings.NewReader(strings.Repeat("k", 64)))
	if err != nil {
		t.Fatal(err)
	}
	mem := tracestore.NewMemory()
	svc := service.New(service.Options{Store: mem, Secret: keys.Secret, KEKs: keys.KEKs})
	v.mcpServer = tools.NewServer(tools.Config{Service: svc, Store: mem, Keys: keys, Version: "test"})
	signer, err := keyring.Open(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	v.store = &exportStore{Store: tracestore.NewMemory(), traces: map[string][]tracestore.Record{}, info: indexOf(t, v.trace)}
	c, err := console.New(console.Config{Store: v.store, Keys: signer, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	v.page = c
	return v
}

// cli runs verify on the files.
func (v *verifiers) cli(t *testing.T, receiptFile, traceFile []byte) bool {
	t.Helper()
	r, tr := filepath.Join(v.dir, "case.receipt.json"), filepath.Join(v.dir, "case.trace.jsonl")
	if err := os.WriteFile(r, receiptFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tr, traceFile, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "verify", "--receipt", r, "--trace", tr, "--public-key", v.keyFile)
	if code != exitOK && code != exitVerifyFailed {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
	return code == exitOK
}

// mcp asks verify_receipt, as a client holding receipt.json would: the
// envelope's members as the arguments, the trace as text. ok is false
// when receipt.json holds no envelope a client could send.
func (v *verifiers) mcp(t *testing.T, receiptFile, traceFile []byte) (valid, ok bool) {
	t.Helper()
	var env struct {
		Receipt   map[string]any `json:"receipt"`
		Signature *string        `json:"signature"`
		KeyID     *string        `json:"key_id"`
	}
	if json.Unmarshal(receiptFile, &env) != nil || env.Receipt == nil || env.Signature == nil || env.KeyID == nil {
		return false, false
	}
	args := map[string]any{"receipt": env.Receipt, "signature": *env.Signature, "key_id": *env.KeyID,
		"public_key": strings.TrimSpace(string(v.pub)), "trace": string(traceFile)}
	msg, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
		"params": map[string]any{"name": "verify_receipt", "arguments": args}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(v.mcpServer.HandleMessage(context.Background(), msg))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Result struct {
			IsError           bool `json:"isError"`
			StructuredContent *struct {
				Valid bool `json:"valid"`
			} `json:"structuredContent"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	if res.Result.IsError {
		return false, true // refused as invalid arguments: not verified
	}
	if res.Result.StructuredContent == nil {
		t.Fatalf("verify_receipt: %s", raw)
	}
	return res.Result.StructuredContent.Valid, true
}

// console posts receipt.json's bytes to the verify endpoint of a run whose
// stored trace is trace.jsonl's lines, under the index row the intact
// trace was appended with: the trace tampered with in place. Each case is
// a run of its own, so that no cached answer is reused.
func (v *verifiers) console(t *testing.T, n int, receiptFile, traceFile []byte) bool {
	t.Helper()
	id := fmt.Sprintf("run_case_%d", n)
	v.store.put(id, traceFile)
	form := url.Values{"receipt": {string(receiptFile)}}
	r := httptest.NewRequest("POST", "/ui/runs/"+id+"/receipt/verify", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Accept", "application/json")
	w := httptest.NewRecorder()
	v.page.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("console: %d %s", w.Code, w.Body)
	}
	var rep struct {
		Valid bool `json:"valid"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	return rep.Valid
}

// exportStore holds traces as the console reads them, one per run id, and
// answers every run's index row with info.
type exportStore struct {
	tracestore.Store
	mu     sync.Mutex
	traces map[string][]tracestore.Record
	info   tracestore.RunInfo
}

// put stores traceFile's lines as run id's records, each with its own
// leaf hash: rewritten in place, as a forger with store access would.
func (s *exportStore) put(id string, traceFile []byte) {
	var recs []tracestore.Record
	for i, line := range bytes.SplitAfter(traceFile, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		body := bytes.TrimSuffix(line, []byte("\n"))
		recs = append(recs, tracestore.Record{Index: uint64(i), Body: body, Hash: trace.LeafHash(body)})
	}
	s.mu.Lock()
	s.traces[id] = recs
	s.mu.Unlock()
}

func (s *exportStore) Run(_ context.Context, id string) (tracestore.RunInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.traces[id]; !ok {
		return tracestore.RunInfo{}, tracestore.ErrNotFound
	}
	info := s.info
	info.RunID = id
	return info, nil
}

func (s *exportStore) Load(ctx context.Context, id string) ([]tracestore.Record, error) {
	return s.LoadPrefix(ctx, id, math.MaxUint64)
}

func (s *exportStore) LoadPrefix(_ context.Context, id string, n uint64) ([]tracestore.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, ok := s.traces[id]
	if !ok {
		return nil, tracestore.ErrNotFound
	}
	return recs[:min(uint64(len(recs)), n)], nil
}

// indexOf is the index row an append of traceFile's events writes.
func indexOf(t *testing.T, traceFile []byte) tracestore.RunInfo {
	t.Helper()
	tree := trace.NewTree()
	var info tracestore.RunInfo
	for _, line := range bytes.Split(bytes.TrimSuffix(traceFile, []byte("\n")), []byte("\n")) {
		info.Head = trace.LeafHash(line)
		if err := tree.Append(info.Head); err != nil {
			t.Fatal(err)
		}
		info.Events++
	}
	var err error
	if info.Tree, err = tree.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	return info
}
