package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The KYC example's customer: the id at the subject's id path, and the
// surname every spelling of the name in the example shares.
const (
	kycCustomer = "CUS-88213"
	kycSurname  = "lindqvist"
)

// runBinary runs the real nano-vm-mcp with args and returns its exit code,
// stdout and stderr.
func runBinary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(serverBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// mustBinary runs the binary and expects exit code want.
func mustBinary(t *testing.T, want int, args ...string) string {
	t.Helper()
	code, out, errOut := runBinary(t, args...)
	if code != want {
		t.Fatalf("%s: exit %d, want %d\n%s\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out
}

// kycRun runs the KYC example with the first n answers of the approved
// file (all of them when n < 0) and returns the run id.
func kycRun(t *testing.T, data string, n, wantCode int) string {
	t.Helper()
	answers := "../../examples/kyc-onboarding.approved.answers.jsonl"
	if n >= 0 {
		lines := readLines(t, answers)[:n]
		var b bytes.Buffer
		for _, l := range lines {
			b.Write(l)
			b.WriteByte('\n')
		}
		answers = filepath.Join(t.TempDir(), "answers.jsonl")
		if err := os.WriteFile(answers, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := mustBinary(t, wantCode, "run", "kyc-onboarding", "--data-dir", data, "--json",
		"--input", "../../examples/kyc-onboarding.input.json", "--answers", answers)
	var s summary
	if err := json.Unmarshal([]byte(lastLine(out)), &s); err != nil || s.RunID == "" {
		t.Fatalf("run summary: %v\n%s", err, out)
	}
	return s.RunID
}

// inspectJSON runs inspect --json and decodes its one line.
func inspectJSON(t *testing.T, data, runID, view string) (map[string]any, string) {
	t.Helper()
	out := mustBinary(t, exitOK, "inspect", runID, "--data-dir", data, "--view", view, "--json")
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("inspect --json printed %d lines", strings.Count(out, "\n"))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	for _, k := range []string{"run_id", "view", "status", "state", "data", "erasures"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("inspect --json lacks %s: %s", k, out)
		}
	}
	if m["run_id"] != runID || m["view"] != view {
		t.Fatalf("inspect --json: %s", out)
	}
	return m, out
}

func exportAndVerify(t *testing.T, data, runID string) {
	t.Helper()
	dir := t.TempDir()
	mustBinary(t, exitOK, "export", runID, "--data-dir", data, "--out", dir)
	key := filepath.Join(dir, "key.pub")
	if err := os.WriteFile(key, []byte(mustBinary(t, exitOK, "keys", "--data-dir", data)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustBinary(t, exitOK, "verify", "--receipt", filepath.Join(dir, "receipt.json"), "--trace", filepath.Join(dir, "trace.jsonl"),
		"--public-key", key, "--program", "kyc-onboarding"); !strings.HasPrefix(out, "valid:") {
		t.Fatalf("verify: %s", out)
	}
}

// TestEraseAndInspectKYCCustomer is the erasure end to end on the real
// binary: the operator sees the customer until the erasure, no view shows
// them after it, the exported traces still verify, and a repeated or
// unknown erasure is a result.
func TestEraseAndInspectKYCCustomer(t *testing.T) {
	data := t.TempDir()
	done := kycRun(t, data, -1, exitOK)
	waiting := kycRun(t, data, 5, exitIncomplete) // at the compliance officer's decision
	runs := []string{done, waiting}
	sort.Strings(runs)

	// Before: the operator sees the name, the auditor does not; the model
	// was shown it at the approval task, not at the seal.
	if out := mustBinary(t, exitOK, "inspect", done, "--data-dir", data, "--view", "operator"); !strings.Contains(out, "Johanna M. Lindqvist") || !strings.Contains(out, "Johanna Maria Lindqvist") {
		t.Fatalf("the operator view lacks the name:\n%s", out)
	}
	for _, id := range runs {
		if _, out := inspectJSON(t, data, id, "auditor"); strings.Contains(strings.ToLower(out), kycSurname) || !strings.Contains(out, `"$redacted"`) {
			t.Fatalf("the auditor view of %s before the erasure:\n%s", id, out)
		}
	}
	if _, out := inspectJSON(t, data, waiting, "model"); !strings.Contains(out, "Johanna Maria Lindqvist") {
		t.Fatalf("the model was not shown the name at the approval task:\n%s", out)
	}
	exportAndVerify(t, data, done)

	out := mustBinary(t, exitOK, "erase", kycCustomer, "--data-dir", data, "--reason", "test")
	if !strings.HasPrefix(out, "erased: 1 subject key(s) destroyed; 2 run(s)") {
		t.Fatalf("erase:\n%s", out)
	}
	for _, id := range runs {
		if !strings.Contains(out, "  "+id+" (erasure recorded)\n") {
			t.Errorf("erase does not list %s:\n%s", id, out)
		}
	}

	for _, id := range runs {
		for _, view := range []string{"operator", "auditor", "model"} {
			m, line := inspectJSON(t, data, id, view)
			text := mustBinary(t, exitOK, "inspect", id, "--data-dir", data, "--view", view)
			for _, got := range []string{line, text} {
				if strings.Contains(strings.ToLower(got), kycSurname) || strings.Contains(got, kycCustomer) {
					t.Errorf("%s view of %s shows the customer after the erasure:\n%s", view, id, got)
				}
				if !strings.Contains(got, `"$erased"`) {
					t.Errorf("%s view of %s shows no erased marker:\n%s", view, id, got)
				}
			}
			if er, _ := m["erasures"].([]any); len(er) != 1 || er[0].(map[string]any)["reason"] != "test" || er[0].(map[string]any)["principal"] != "cli" {
				t.Errorf("%s view of %s: erasures %v", view, id, m["erasures"])
			}
		}
	}
	if m, _ := inspectJSON(t, data, waiting, "operator"); m["status"] != "cancelled" {
		t.Errorf("the waiting run was not cancelled: %v", m["status"])
	}
	exportAndVerify(t, data, done)
	exportAndVerify(t, data, waiting)

	var again service.EraseResult
	if err := json.Unmarshal([]byte(mustBinary(t, exitOK, "erase", kycCustomer, "--data-dir", data, "--reason", "test", "--json")), &again); err != nil {
		t.Fatal(err)
	}
	if again.Status != service.ErasureAlreadyErased || len(again.Subjects) != 0 || !slices.Equal(again.Runs, runs) || len(again.Recorded) != 0 {
		t.Fatalf("erase again: %+v", again)
	}
	if out := mustBinary(t, exitOK, "erase", "CUS-00000", "--data-dir", data, "--reason", "test"); !strings.HasPrefix(out, "unknown_subject:") {
		t.Fatalf("erase someone unknown:\n%s", out)
	}
}

func TestEraseAndInspectUsage(t *testing.T) {
	data := t.TempDir()
	done := kycRun(t, data, -1, exitOK)
	for _, args := range [][]string{
		{"erase", kycCustomer},                                             // no --reason
		{"erase", "--reason", "test"},                                      // no subject id
		{"erase", "", "--reason", "test"},                                  // an empty one
		{"erase", kycCustomer, "--reason", "test", "--subject", "patient"}, // no program declares it
		{"inspect", done, "--view", "everyone"},
		{"inspect", "run_missing"},
		{"inspect"},
	} {
		if code, out, errOut := runCLI(t, append(args, "--data-dir", data)...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s%s", args, code, exitUsage, out, errOut)
		}
	}
	// Nothing was erased by those.
	if out := mustBinary(t, exitOK, "inspect", done, "--data-dir", data, "--view", "operator"); !strings.Contains(out, "Johanna M. Lindqvist") {
		t.Fatalf("a refused erase changed the run:\n%s", out)
	}
	for _, cmd := range []string{"erase", "inspect"} {
		_, out, _ := runCLI(t, cmd, "--help")
		for _, want := range []string{"NANO_VM_DATA_DIR", "--json", "Exit status"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q", cmd, want)
			}
		}
	}
}

// A run with no task issued has no model view: inspect says so.
func TestInspectModelViewWithoutTask(t *testing.T) {
	src := []byte(`name: nothing
version: "1"
input_schema: {type: object}
initial: done
states:
  done: {kind: terminal, outcome: DONE}
`)
	p, err := program.Load("nothing.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	svc := service.New(service.Options{})
	if err := svc.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	a, err := svc.Start(ctx, "nothing", map[string]any{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := svc.Get(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	events, err := svc.Events(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	in := runtime.Inspect(r, p, events, projection.Model)
	if in.Data != nil {
		t.Fatalf("model data %v", in.Data)
	}
	var b bytes.Buffer
	if err := printInspection(&b, in); err != nil || !strings.Contains(b.String(), "no task was issued") {
		t.Fatalf("%v\n%s", err, b.String())
	}
	line, _ := marshal(in, "")
	if !strings.Contains(string(line), `"data":null`) {
		t.Fatalf("%s", line)
	}
}

// The server drops what it has cached of subjects erased by another
// process sharing the store at its next key refresh.
func TestServeRefreshDropsSubjectsErasedElsewhere(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := tracestore.NewMemory()
	secret := bytes.Repeat([]byte{7}, 32)
	server := service.New(service.Options{Store: st, Secret: secret})
	p, src := examples.MustLoad("kyc-onboarding")
	if err := server.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	input, err := readJSONFile("../../examples/kyc-onboarding.input.json")
	if err != nil {
		t.Fatal(err)
	}
	a, err := server.Start(ctx, "kyc-onboarding", input, "agent")
	if err != nil {
		t.Fatal(err)
	}
	name := func() any {
		t.Helper()
		r, _, err := server.Get(ctx, a.RunID)
		if err != nil {
			t.Fatal(err)
		}
		return r.Input.(map[string]any)["customer"].(map[string]any)["name"]
	}
	if got := name(); got != "Johanna M. Lindqvist" {
		t.Fatalf("name %v", got)
	}
	// Another process (nano-vm-mcp erase) erases the customer.
	cli := service.New(service.Options{Store: st, Secret: secret})
	if res, err := cli.EraseSubject(ctx, service.EraseOptions{SubjectID: kycCustomer, Reason: "test", Principal: "cli"}); err != nil || res.Status != service.ErasureErased {
		t.Fatalf("erase: %+v %v", res, err)
	}
	if got := name(); got != "Johanna M. Lindqvist" {
		t.Fatalf("before the refresh the server's cache holds %v", got)
	}
	tick := make(chan time.Time)
	go refreshKeys(ctx, server, zap.NewNop(), tick)
	tick <- time.Now()
	tick <- time.Now() // taken only once the first refresh is done
	if got := name(); !projection.IsErased(got) {
		t.Fatalf("after the refresh the server shows %v", got)
	}
}

// erase_subject over stdio on the real server; the CLI, another process
// on the same data directory, sees the erasure.
func TestServeStdioEraseSubject(t *testing.T) {
	data := t.TempDir()
	c := startStdio(t, nil, "--data-dir", data, "--profile", "operator", "--approvers", writeApprovers(t))
	got := driveKYC(t, c, c, func(a map[string]any) map[string]any { a["approver_token"] = aliceToken; return a },
		"kyc-onboarding.input.json", "kyc-onboarding.approved.answers.jsonl")
	runID := got["run_id"].(string)
	res, e := callTool(t, c, "erase_subject", map[string]any{"subject_id": kycCustomer, "reason": "test"})
	if e != nil || res["status"] != service.ErasureErased || len(res["runs"].([]any)) != 1 || res["runs"].([]any)[0] != runID {
		t.Fatalf("erase_subject: %v %v", res, e)
	}
	rec, e := callTool(t, c, "get_receipt", map[string]any{"run_id": runID})
	if e != nil {
		t.Fatal(e)
	}
	if v, e := callTool(t, c, "verify_receipt", map[string]any{"receipt": rec["receipt"], "signature": rec["signature"]}); e != nil || v["valid"] != true {
		t.Fatalf("verify after the erasure: %v %v", v, e)
	}
	if out := mustBinary(t, exitOK, "erase", kycCustomer, "--data-dir", data, "--reason", "test"); !strings.HasPrefix(out, "already_erased:") {
		t.Fatalf("the CLI's erase after the server's:\n%s", out)
	}
	if out := mustBinary(t, exitOK, "inspect", runID, "--data-dir", data, "--view", "operator"); strings.Contains(strings.ToLower(out), kycSurname) || !strings.Contains(out, `"$erased"`) {
		t.Fatalf("inspect after the server's erasure:\n%s", out)
	}
	if res, e := callTool(t, c, "erase_subject", map[string]any{"subject_id": kycCustomer, "reason": "test"}); e != nil || res["status"] != service.ErasureAlreadyErased {
		t.Fatalf("erase_subject again: %v %v", res, e)
	}
}
