package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// serve warns once, at the default log level, about every approval state
// that no approval path can reach; an open path silences it for the state.
func TestServeWarnsOfApprovalStatesNobodyCanDecide(t *testing.T) {
	kyc := "kyc-onboarding/human_approval (role compliance_officer)"
	refund := "refund/manager_approval (role support_manager)"
	code := "code-change/security_review (role security_reviewer)"
	cases := []struct {
		name string
		args []string
		want []string // the warning's states; none: no warning
	}{
		{"the README's configuration", nil, []string{code, kyc, refund}},
		{"an approver of one role", []string{"--approvers", writeApprovers(t)}, []string{code, refund}},
		{"the elicitation channel", []string{"--approval-channel", "elicitation"}, nil},
		{"a state that opens the channel itself", []string{"--programs", signOffDir(t)}, []string{code, kyc, refund}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(serverBinary(t), append([]string{"serve", "--store", "memory"}, tc.args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.Stdin = strings.NewReader("") // end of input: the server starts and exits
			if err := cmd.Run(); err != nil {
				t.Fatalf("serve: %v\n%s", err, stderr.String())
			}
			var warnings []map[string]any
			for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				var entry map[string]any
				if json.Unmarshal([]byte(line), &entry) == nil && strings.Contains(entry["msg"].(string), "no approval path") {
					warnings = append(warnings, entry)
				}
			}
			if tc.want == nil {
				if len(warnings) != 0 {
					t.Fatalf("warned with an open path: %v", warnings)
				}
				return
			}
			if len(warnings) != 1 {
				t.Fatalf("%d warnings, want one:\n%s", len(warnings), stderr.String())
			}
			w := warnings[0]
			var states []string
			for _, s := range w["states"].([]any) {
				states = append(states, s.(string))
			}
			if w["level"] != "warn" || !reflect.DeepEqual(states, tc.want) {
				t.Fatalf("warning %v, want level warn and states %v", w, tc.want)
			}
			for _, fix := range []string{"--approval-channel elicitation", "--approvers FILE"} {
				if !strings.Contains(w["msg"].(string), fix) {
					t.Errorf("the warning does not name %s: %s", fix, w["msg"])
				}
			}
		})
	}
}

// signOffDir holds the tools' test program whose only approval state sets
// elicitation: true.
func signOffDir(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../../internal/tools/testdata/sign-off.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sign-off.yaml"), src, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
