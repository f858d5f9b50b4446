package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// exportedTraceBytes exports the run from the data directory the server
// is using and returns the size of its trace.jsonl.
func exportedTraceBytes(t *testing.T, data, runID string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	mustBinary(t, exitOK, "export", runID, "--data-dir", data, "--out", dir)
	b, err := os.ReadFile(filepath.Join(dir, "trace.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return len(b), string(b)
}

// TestServeStaleSubmissionsGrowTheTraceByABoundedAmount is issue 13 item 6
// over HTTP against the binary: an agent repeating 1 MB answers to the
// wrong seq of its own KYC run. Each of the first max_uncounted_rejections
// (32 by default) records a few KB (a digest, not the output), the next is
// recorded once as throttled, and the rest record nothing; the personal
// data in the refused outputs is nowhere in clear; the right answer still
// passes, and the exported trace and receipt verify.
func TestServeStaleSubmissionsGrowTheTraceByABoundedAmount(t *testing.T) {
	const (
		calls  = 100
		capped = 32 // the default max_uncounted_rejections
		perKB  = 4  // what one recorded refusal may add
	)
	data := t.TempDir()
	url := startHTTP(t, []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}, "--data-dir", data, "--max-body-bytes", "2097152")
	agent := httpClient(t, url, testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
	res := startKYC(t, agent, "kyc-onboarding.input.json")
	runID := res["run_id"].(string)
	seq := res["task"].(map[string]any)["seq"].(float64)
	// occupation is personal data of the customer in this program.
	marker := "PERSONAL-MARKER-"
	stale := map[string]any{"occupation": strings.Repeat(marker, 1_000_000/len(marker))}

	base, _ := exportedTraceBytes(t, data, runID)
	sizes := map[int]int{0: base}
	for i := 1; i <= calls; i++ {
		_, e := callTool(t, agent, "step", map[string]any{"run_id": runID, "seq": seq + 1, "output": stale})
		want := "stale_seq"
		if i > capped {
			want = "throttled"
		}
		if e == nil || e["code"] != want {
			t.Fatalf("call %d: %v, want %s", i, e, want)
		}
		if i > capped && (e["task"] == nil || !strings.Contains(e["message"].(string), "get_run")) {
			t.Fatalf("call %d: throttled without the open task or advice: %v", i, e)
		}
		switch i {
		case 1, capped, capped + 1, capped + 2, calls:
			sizes[i], _ = exportedTraceBytes(t, data, runID)
		}
	}
	if grew := sizes[1] - sizes[0]; grew > perKB<<10 {
		t.Fatalf("one refused 1 MB answer added %d bytes", grew)
	}
	if grew := sizes[capped+1] - sizes[0]; grew > (capped+1)*perKB<<10 {
		t.Fatalf("%d refused answers added %d bytes", capped+1, grew)
	}
	if sizes[capped+2] != sizes[capped+1] || sizes[calls] != sizes[capped+1] {
		t.Fatalf("the trace grew past the cap: %v", sizes)
	}
	t.Logf("trace bytes after n calls: %v", sizes)

	// The right answer to the open task still passes.
	answers := readLines(t, "../../examples/kyc-onboarding.approved.answers.jsonl")
	// (The first line of the script is refused on purpose; the second is right.)
	if _, e := callTool(t, agent, "step", map[string]any{"run_id": runID, "seq": seq, "output": answers[1]}); e != nil {
		t.Fatalf("the right task after throttling: %v", e)
	}
	_, trace := exportedTraceBytes(t, data, runID)
	if strings.Contains(trace, marker) {
		t.Fatal("the exported trace shows the refused personal data in clear")
	}
	if n := strings.Count(trace, `"code":"throttled"`); n != 1 {
		t.Fatalf("%d throttled records, want 1", n)
	}
	exportAndVerify(t, data, runID)
}
