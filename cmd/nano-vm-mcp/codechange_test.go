package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
)

// demoRepo runs examples/code-change-demo/new-repo.sh into a temporary
// directory, sets what it exports (as the quickstart's eval does) and
// returns the repository.
func demoRepo(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"git", "bwrap"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed; .ci/run installs it", bin)
			}
			t.Skipf("%s is not installed", bin)
		}
	}
	repo := filepath.Join(t.TempDir(), "repo")
	out, err := exec.Command("sh", "../../examples/code-change-demo/new-repo.sh", repo).Output()
	if err != nil {
		t.Fatalf("new-repo.sh: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		rest, ok := strings.CutPrefix(l, "export ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, strings.Trim(v, "'"))
		}
	}
	if got := os.Getenv("CODE_CHANGE_REPO"); got != repo {
		t.Fatalf("new-repo.sh exported CODE_CHANGE_REPO=%q, want %q", got, repo)
	}
	return repo
}

func gitOut(t *testing.T, repo string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// exitCodes are the exit codes the trace's tool_call_completed events
// record, by state, in order.
func exitCodes(t *testing.T, trace string) []string {
	t.Helper()
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var e struct {
			Type, State string
			Call        struct {
				Result map[string]any
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if code, ok := e.Call.Result["exit_code"]; ok && e.Type == "tool_call_completed" {
			out = append(out, e.State+"="+strings.TrimSuffix(strings.TrimSpace(mustJSON(t, code)), ".0"))
		}
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCodeChangeQuickstartCommitsOnlyThePassingPatch is issue 15's
// acceptance test of the code change, through `run --tools` as the README
// shows it: on the throwaway repository, a patch that breaks a test and
// then one that passes. The base branch never moves; only the passing
// patch gets its branch, whose parent is the base; no stage or worktree
// is left; the trace records each command's exit status, and the receipt
// verifies.
func TestCodeChangeQuickstartCommitsOnlyThePassingPatch(t *testing.T) {
	repo := demoRepo(t)
	base := gitOut(t, repo, "rev-parse", "main")
	data := t.TempDir()
	for _, c := range []struct {
		answers, outcome string
		branches         string
		exits            []string
	}{
		{"abandoned", "ABANDONED", "main", []string{"type_check=0", "run_tests=1"}},
		{"committed", "COMMITTED", "CR-1\nmain", []string{"type_check=0", "run_tests=0"}},
	} {
		t.Run(c.answers, func(t *testing.T) {
			code, out, errOut := runCLI(t, "run", "code-change", "--data-dir", data, "--tools", "../../examples/code-change.tools.yaml",
				"--input", "../../examples/code-change-demo/input.json", "--answers", "../../examples/code-change-demo/"+c.answers+".answers.jsonl", "--json")
			var s summary
			if err := json.Unmarshal([]byte(lastLine(out)), &s); err != nil || code != exitOK {
				t.Fatalf("exit %d, last line %v\n%s\n%s", code, err, out, errOut)
			}
			if s.Outcome != c.outcome {
				t.Fatalf("outcome %s (%s), want %s; path %v", s.Outcome, s.Reason, c.outcome, s.Path)
			}
			if got := gitOut(t, repo, "rev-parse", "main"); got != base {
				t.Errorf("main moved from %s to %s", base, got)
			}
			if got := gitOut(t, repo, "branch", "--format=%(refname:short)"); got != c.branches {
				t.Errorf("branches:\n%s\nwant:\n%s", got, c.branches)
			}
			if got := gitOut(t, repo, "worktree", "list", "--porcelain"); strings.Count(got, "worktree ") != 1 {
				t.Errorf("worktrees left behind:\n%s", got)
			}
			if stages, _ := os.ReadDir(filepath.Join(data, "stages")); len(stages) != 0 {
				t.Errorf("stages left behind: %v", stages)
			}
			if got := gitOut(t, repo, "status", "--porcelain"); got != "" {
				t.Errorf("the repository's work tree changed:\n%s", got)
			}
			dir := exportVerified(t, data, s.RunID)
			if got := exitCodes(t, filepath.Join(dir, "trace.jsonl")); strings.Join(got, " ") != strings.Join(c.exits, " ") {
				t.Errorf("exit statuses in the trace %v, want %v", got, c.exits)
			}
		})
	}
	if parent := gitOut(t, repo, "rev-parse", "CR-1^"); parent != base {
		t.Errorf("the commit's parent is %s, want the base %s", parent, base)
	}
	if files := gitOut(t, repo, "show", "--name-only", "--format=", "CR-1"); files != "calc.go\ncalc_test.go" {
		t.Errorf("the commit changes %q", files)
	}
}

// exportVerified exports the run from the data directory and checks its
// receipt offline with verify, as an auditor would; it returns the export.
func exportVerified(t *testing.T, data, runID string) string {
	t.Helper()
	dir := t.TempDir()
	if code, out, errOut := runCLI(t, "export", runID, "--data-dir", data, "--out", dir); code != exitOK {
		t.Fatalf("export: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "keys", "--data-dir", data); code != exitOK || os.WriteFile(filepath.Join(dir, "key.pub"), []byte(out), 0o600) != nil {
		t.Fatalf("keys: exit %d\n%s", code, errOut)
	}
	if code, out, errOut := runCLI(t, "verify", "--receipt", filepath.Join(dir, "receipt.json"), "--trace", filepath.Join(dir, "trace.jsonl"), "--public-key", filepath.Join(dir, "key.pub")); code != exitOK {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
	return dir
}

// A stage that no discard removed (its run was cancelled: a cancelled run
// runs no tool) is removed by tools sweep once older than its bound, with
// its worktree; a younger bound leaves it.
func TestToolsSweepRemovesAStageARunLeftBehind(t *testing.T) {
	repo := demoRepo(t)
	data := t.TempDir()
	reg, err := executor.Load("../../examples/code-change.tools.yaml", registryOptions("../../examples/code-change.tools.yaml", nil, filepath.Join(data, "stages")))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := reg.Executor("git.stage")
	patch := `diff --git a/calc.go b/calc.go
--- a/calc.go
+++ b/calc.go
@@ -1,3 +1,5 @@
 package calc
 
 func Add(a, b int) int { return a + b }
+
+func Sub(a, b int) int { return a - b }
`
	v, err := e.Invoke(context.Background(), executor.Call{Tool: "git.stage", Arguments: map[string]any{"repository": "demo", "base_ref": "main", "patch": patch}, IdempotencyKey: "k", Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	reg.Close()
	stage := v.(map[string]any)["stage"].(string)
	day := time.Now().Add(-24 * time.Hour)
	if err := os.Chtimes(stage, day, day); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		olderThan, out string
	}{
		{"48h", ""},
		{"12h", "removed " + stage + "\n"},
	} {
		if code, out, errOut := runCLI(t, "tools", "sweep", "--tools", "../../examples/code-change.tools.yaml", "--data-dir", data, "--older-than", c.olderThan); code != exitOK || out != c.out {
			t.Errorf("--older-than %s: exit %d, %q; want %q\n%s", c.olderThan, code, out, c.out, errOut)
		}
	}
	if _, err := os.Stat(stage); !os.IsNotExist(err) {
		t.Errorf("the stage is still there: %v", err)
	}
	if got := gitOut(t, repo, "worktree", "list", "--porcelain"); strings.Count(got, "worktree ") != 1 {
		t.Errorf("worktrees left behind:\n%s", got)
	}
}
