package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKYCScreensThroughTheDownstreamServer runs the KYC example with its
// registry (examples/kyc-onboarding.tools.yaml, copied so that its pins
// land in a temporary directory): the server screens the customer through
// examples/screening-mcp over stdio, so the answers files hold no
// screening. The receipt counts each screening as executed, the caller's
// ledger seal as reported, and verifies; the canned data send the
// sanctioned applicant to rejected at the gate and clear the other.
func TestKYCScreensThroughTheDownstreamServer(t *testing.T) {
	reg, err := os.ReadFile("../../examples/kyc-onboarding.tools.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tools := filepath.Join(t.TempDir(), "tools.yaml")
	if err := os.WriteFile(tools, reg, 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	for _, c := range []struct {
		input, answers, outcome string
		executed, reported      int
		path                    string
	}{
		{"kyc-onboarding.sanctioned.input.json", "sanctioned.rejected", "REJECTED", 1, 0, "collect_customer_data screen_sanctions sanctions_gate rejected"},
		// Two visits of both screenings (the approver asks for a newer
		// proof of address), then the caller seals the decision.
		{"kyc-onboarding.input.json", "approved", "APPROVED", 4, 1, "collect_customer_data screen_sanctions sanctions_gate adverse_media_search agent_review human_approval " +
			"collect_customer_data screen_sanctions sanctions_gate adverse_media_search agent_review human_approval governance_seal approved"},
	} {
		t.Run(c.answers, func(t *testing.T) {
			code, out, errOut := runCLI(t, "run", "kyc-onboarding", "--data-dir", data, "--tools", tools,
				"--input", "../../examples/"+c.input, "--answers", "../../examples/screening-mcp/"+c.answers+".answers.jsonl", "--json")
			var s summary
			if err := json.Unmarshal([]byte(lastLine(out)), &s); err != nil || code != exitOK {
				t.Fatalf("exit %d, last line %v\n%s\n%s", code, err, out, errOut)
			}
			if s.Outcome != c.outcome || strings.Join(s.Path, " ") != c.path {
				t.Fatalf("outcome %s (%s), path %v; want %s along %s", s.Outcome, s.Reason, s.Path, c.outcome, c.path)
			}
			b, err := os.ReadFile(filepath.Join(exportVerified(t, data, s.RunID), "receipt.json"))
			if err != nil {
				t.Fatal(err)
			}
			var r struct {
				Receipt struct {
					Counts struct {
						Executed int `json:"tool_calls_executed"`
						Reported int `json:"tool_calls_reported"`
					}
				}
			}
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if got := r.Receipt.Counts; got.Executed != c.executed || got.Reported != c.reported {
				t.Errorf("receipt counts executed %d, reported %d; want %d and %d", got.Executed, got.Reported, c.executed, c.reported)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(tools), "tools.pins.json")); err != nil {
		t.Errorf("the registry's pins were not kept next to it: %v", err)
	}
}

// A registry named relative to the working directory keeps its pins next
// to it, not in a directory of the same name under it (the executors
// resolve a relative pins path against the registry's directory).
func TestRegistryPinsLiveNextToARelativeRegistry(t *testing.T) {
	want, err := filepath.Abs("examples/kyc.tools.pins.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := registryOptions("examples/kyc.tools.yaml", nil, "").Pins; got != want {
		t.Errorf("pins %s, want %s", got, want)
	}
}
