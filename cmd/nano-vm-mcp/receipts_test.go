package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
)

// TestMain keeps every test's default store out of the user's home.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nano-vm-cli-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("NANO_VM_DATA_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestRunExportKeysVerify is the auditor's path end to end: a run on the
// embedded SQLite store, exported with its signed receipt, checked offline
// with the public key; a tampered copy fails with exit 3.
func TestRunExportKeysVerify(t *testing.T) {
	data := t.TempDir()
	code, out, errOut := runCLI(t, "run", "kyc-onboarding", "--data-dir", data, "--json",
		"--input", "../../examples/kyc-onboarding.input.json", "--answers", "../../examples/kyc-onboarding.approved.answers.jsonl")
	if code != exitOK {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	var s summary
	if err := json.Unmarshal([]byte(lastLine(out)), &s); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(data, "traces.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the store file: %v %v", fi, err)
	}
	exported := t.TempDir()
	if code, out, errOut := runCLI(t, "export", s.RunID, "--data-dir", data, "--out", exported); code != exitOK || !strings.Contains(out, "final receipt (completed APPROVED)") {
		t.Fatalf("export: exit %d\n%s\n%s", code, out, errOut)
	}
	code, pub, _ := runCLI(t, "keys", "--data-dir", data)
	if code != exitOK {
		t.Fatalf("keys: exit %d", code)
	}
	keyFile := filepath.Join(exported, "key.pub")
	os.WriteFile(keyFile, []byte(pub), 0o600)
	traceFile, receiptFile := filepath.Join(exported, "trace.jsonl"), filepath.Join(exported, "receipt.json")
	code, out, _ = runCLI(t, "verify", "--receipt", receiptFile, "--trace", traceFile, "--public-key", keyFile)
	if code != exitOK || !strings.HasPrefix(out, "valid:") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "verify", "--receipt", receiptFile, "--trace", traceFile, "--public-key", keyFile, "--program", "kyc-onboarding")
	if code != exitOK {
		t.Fatalf("verify --program: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "verify", "--receipt", receiptFile, "--trace", traceFile, "--public-key", keyFile, "--program", "refund")
	if code != exitVerifyFailed || !strings.Contains(out, "policy: policy check: the run is pinned to") {
		t.Fatalf("verify --program with another program: exit %d\n%s", code, out)
	}
	for _, pii := range []string{"Johanna M. Lindqvist", "CUS-88213"} {
		if data, _ := os.ReadFile(traceFile); bytes.Contains(data, []byte(pii)) {
			t.Fatalf("the export holds %q in plaintext", pii)
		}
	}
	// Tamper with one character of the trace.
	data2, _ := os.ReadFile(traceFile)
	tampered := bytes.Replace(data2, []byte(`"agent_review"`), []byte(`"agent_reviev"`), 1)
	os.WriteFile(traceFile, tampered, 0o600)
	code, out, _ = runCLI(t, "verify", "--receipt", receiptFile, "--trace", traceFile, "--public-key", keyFile)
	if code != exitVerifyFailed || !strings.Contains(out, "FAIL: trace: event") {
		t.Fatalf("tampered trace: exit %d\n%s", code, out)
	}
}

func TestRunStaysPutAcrossInvocations(t *testing.T) {
	data := t.TempDir()
	for i := 0; i < 2; i++ {
		code, out, _ := runCLI(t, "run", "refund", "--data-dir", data, "--json",
			"--input", "../../examples/refund.input.json", "--answers", "../../examples/refund.refunded.answers.jsonl")
		if code != exitOK {
			t.Fatalf("run %d: exit %d\n%s", i, code, out)
		}
	}
	code1, pub1, _ := runCLI(t, "keys", "--data-dir", data)
	code2, pub2, _ := runCLI(t, "keys", "--data-dir", data)
	if code1 != exitOK || code2 != exitOK || pub1 != pub2 || !strings.HasPrefix(pub1, "nano-vm-mcp-ed25519 ") {
		t.Fatalf("keys changed between invocations: %q %q", pub1, pub2)
	}
	if code, _, _ := runCLI(t, "export", "run_missing", "--data-dir", data, "--out", t.TempDir()); code != exitUsage {
		t.Fatalf("export of an unknown run: exit %d", code)
	}
}

func TestReplay(t *testing.T) {
	data := t.TempDir()
	code, out, _ := runCLI(t, "run", "refund", "--data-dir", data, "--json",
		"--input", "../../examples/refund.input.json", "--answers", "../../examples/refund.refunded.answers.jsonl")
	if code != exitOK {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	var s summary
	json.Unmarshal([]byte(lastLine(out)), &s)
	if code, out, _ := runCLI(t, "replay", s.RunID, "--data-dir", data); code != exitOK || !strings.HasPrefix(out, "identical:") {
		t.Fatalf("replay under the pinned definition: exit %d\n%s", code, out)
	}
	// A version that refunds nothing automatically diverges at the decision.
	src, _ := os.ReadFile("../../examples/refund.yaml")
	strict := filepath.Join(t.TempDir(), "refund-strict.yaml")
	os.WriteFile(strict, bytes.Replace(src, []byte("data.assess_refund.amount_cents <= 50000"), []byte("data.assess_refund.amount_cents <= 0"), 1), 0o600)
	code, out, _ = runCLI(t, "replay", s.RunID, "--data-dir", data, "--program", strict, "--json")
	if code != exitDiverged || !strings.Contains(out, `"identical":false`) {
		t.Fatalf("replay under a stricter program: exit %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "replay", "run_missing", "--data-dir", data); code != exitUsage {
		t.Fatalf("replay of an unknown run: exit %d", code)
	}
}

// TestVerifyReadsReceiptFileAsItIs: verify refuses a receipt.json with
// anything around the canonical envelope and its one \n (it trimmed it
// before), and warns that events after the covered ones are not attested.
// The files are the worked example of docs/receipt-format.md as exported
// before run_started recorded the trace format, so this also shows such
// exports still verify.
func TestVerifyReadsReceiptFileAsItIs(t *testing.T) {
	src := filepath.Join("..", "..", "internal", "receipt", "testdata", "untagged")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	traceFile, keyFile := write("trace.jsonl", read("trace.jsonl")), write("key.pub", read("key.pub"))
	env := string(bytes.TrimSuffix(read("receipt.json"), []byte("\n")))
	around := func(before, after string) []byte { return []byte(before + env + after) }
	// The example's provisional receipt over its first 2 events, signed
	// with the documented key (seed 32 bytes of 0x03).
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	recs, err := receipt.ParseTrace(bytes.NewReader(read("trace.jsonl")))
	if err != nil {
		t.Fatal(err)
	}
	body, err := receipt.Derive(recs, 2, receipt.KeyID(priv.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	signed, _ := receipt.Sign(body, priv)
	provisional, _ := jsonvalue.Canonical(signed)
	const refused = "FAIL: receipt: receipt.json must be the canonical envelope followed by one \\n, nothing else; it has "
	tests := []struct {
		name string
		file []byte
		code int
		want string
	}{
		{"as exported", around("", "\n"), exitOK, "valid: the receipt covers 6 events; 0 later events continue the chain\n"},
		{"CRLF", around("", "\r\n"), exitVerifyFailed, refused + "a CRLF line end"},
		{"a space before", around(" ", "\n"), exitVerifyFailed, refused + "whitespace around the envelope"},
		{"a blank line after", around("", "\n\n"), exitVerifyFailed, refused + "whitespace around the envelope"},
		{"no final newline", around("", ""), exitVerifyFailed, refused + "no final \\n"},
		{"provisional, with later events", append(provisional, '\n'), exitOK,
			"valid: the receipt covers 2 events; 4 later events continue the chain\n" +
				"warning: the 4 events after the first 2 are not attested by this receipt: they continue the chain, but nothing signed covers their content\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			receiptFile := write("receipt.json", tt.file)
			code, out, errOut := runCLI(t, "verify", "--receipt", receiptFile, "--trace", traceFile, "--public-key", keyFile)
			if code != tt.code || !strings.HasPrefix(out, tt.want) {
				t.Fatalf("exit %d, want %d\n%s%s\nwant output starting\n%s", code, tt.code, out, errOut, tt.want)
			}
		})
	}
}
