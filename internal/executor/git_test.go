package executor

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	calcSource = "package calc\n\nfunc Add(a, b int) int { return a + b }\n"
	calcTest   = "package calc\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal(\"Add(2, 3) != 5\")\n\t}\n}\n"
	// passingPatch adds a function; the tests still pass.
	passingPatch = `diff --git a/calc.go b/calc.go
--- a/calc.go
+++ b/calc.go
@@ -1,3 +1,5 @@
 package calc
 
 func Add(a, b int) int { return a + b }
+
+func Sub(a, b int) int { return a - b }
`
	// breakingPatch breaks TestAdd.
	breakingPatch = `diff --git a/calc.go b/calc.go
--- a/calc.go
+++ b/calc.go
@@ -1,3 +1,3 @@
 package calc
 
-func Add(a, b int) int { return a + b }
+func Add(a, b int) int { return a - b }
`
	// stalePatch's context is not in the file.
	stalePatch = `diff --git a/calc.go b/calc.go
--- a/calc.go
+++ b/calc.go
@@ -1,3 +1,3 @@
 package calc
 
-func Mul(a, b int) int { return a * b }
+func Mul(a, b int) int { return a / b }
`
)

// gitFixture is a fixture whose repo is a real throwaway Go repository
// with one commit on main, and a registry of the three git builtins and a
// run_tests tool that runs go test -json in a stage.
type gitFixture struct {
	*fixture
	reg  *Registry
	base string // main's commit
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func newGitFixture(t *testing.T) *gitFixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is not installed")
	}
	f := newFixture(t)
	must(t, os.RemoveAll(f.repo))
	must(t, os.Mkdir(f.repo, 0o755))
	git(t, f.repo, "init", "-q")
	for name, text := range map[string]string{"go.mod": "module example.com/calc\n\ngo 1.21\n", "calc.go": calcSource, "calc_test.go": calcTest} {
		must(t, os.WriteFile(filepath.Join(f.repo, name), []byte(text), 0o644))
	}
	git(t, f.repo, "add", ".")
	git(t, f.repo, "commit", "-q", "-m", "calc")
	goenv, err := exec.Command("go", "env", "GOCACHE", "GOROOT").Output()
	must(t, err)
	gocache, goroot, _ := strings.Cut(strings.TrimSpace(string(goenv)), "\n")
	f.env["GOCACHE"], f.env["GOTOOLCHAIN"] = gocache, "local"
	f.env["PATH"] = filepath.Join(goroot, "bin") + ":" + f.env["PATH"]
	sandbox := ", sandbox: bwrap, rw_binds: ['" + gocache + "']"
	if !strings.HasPrefix(goroot, "/usr/") {
		sandbox += ", ro_binds: ['" + goroot + "']"
	}
	if _, err := exec.LookPath("bwrap"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bwrap (bubblewrap) is not installed; .ci/run installs it")
		}
		sandbox = ""
	}
	doc := `tools:
  stage:
    git: {op: stage, repositories: {calc: repo}}
  commit:
    git: {op: commit}
  discard:
    git: {op: discard}
    idempotent: true
  run_tests:
    exec: {argv: [go, test, -json, -count=1, ./...], workdir: '{{stage}}', env: [PATH, HOME, GOCACHE, GOTOOLCHAIN]` + sandbox + `}
    timeout: 2m
    output: {format: go-test-json}
`
	r, err := Parse([]byte(doc), "tools.yaml", f.options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &gitFixture{fixture: f, reg: r, base: git(t, f.repo, "rev-parse", "main")}
}

func (g *gitFixture) call(t *testing.T, tool, key string, args map[string]any) (map[string]any, error) {
	t.Helper()
	e, ok := g.reg.Executor(tool)
	if !ok {
		t.Fatalf("no tool %s", tool)
	}
	v, err := e.Invoke(context.Background(), Call{Tool: tool, Arguments: args, IdempotencyKey: key, Attempt: 1})
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

func (g *gitFixture) mustCall(t *testing.T, tool, key string, args map[string]any) map[string]any {
	t.Helper()
	v, err := g.call(t, tool, key, args)
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return v
}

// stages lists what is left in the stage directory.
func (g *gitFixture) stages(t *testing.T) []string {
	entries, err := os.ReadDir(g.options().StageDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestCodeChangeCommitsOnlyAPassingPatchAndLeavesNoStage(t *testing.T) {
	g := newGitFixture(t)
	for _, c := range []struct {
		name, patch, branch string
		passes              bool
	}{
		{"passing patch", passingPatch, "change/1", true},
		{"breaking patch", breakingPatch, "change/2", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := map[string]any{"repository": "calc", "base_ref": "main", "patch": c.patch}
			st := g.mustCall(t, "stage", c.branch+"/stage", args)
			stage := st["stage"].(string)
			if got, _ := json.Marshal(st["changed_paths"]); string(got) != `["calc.go"]` {
				t.Errorf("changed_paths %s", got)
			}
			// A retry with the same key finds the same stage.
			if again := g.mustCall(t, "stage", c.branch+"/stage", args); again["stage"] != stage {
				t.Errorf("a repeated git.stage made %v, want %v", again["stage"], stage)
			}

			res := g.mustCall(t, "run_tests", c.branch+"/test", map[string]any{"stage": stage})
			wantExit, wantFailed := json.Number("0"), json.Number("0")
			if !c.passes {
				wantExit, wantFailed = json.Number("1"), json.Number("1")
			}
			if res["exit_code"] != wantExit || res["failed"] != wantFailed || res["passed"] == json.Number("0") && c.passes {
				t.Fatalf("go test result %v", res)
			}
			if !c.passes {
				fl := res["failures"].([]any)[0].(map[string]any)
				if fl["test"] != "TestAdd" || fl["package"] != "example.com/calc" || !strings.Contains(fl["output_tail"].(string), "Add(2, 3) != 5") {
					t.Errorf("failure %v", fl)
				}
			}

			if c.passes {
				cm := g.mustCall(t, "commit", c.branch+"/commit", map[string]any{"stage": stage, "message": "Add Sub\n", "branch": c.branch})
				if cm["branch"] != c.branch || cm["commit"] != git(t, g.repo, "rev-parse", c.branch) {
					t.Errorf("commit %v", cm)
				}
				if parent := git(t, g.repo, "rev-parse", c.branch+"^"); parent != g.base {
					t.Errorf("the commit's parent is %s, want the base %s", parent, g.base)
				}
				// A retry with the same key answers the same commit.
				if again := g.mustCall(t, "commit", c.branch+"/commit", map[string]any{"stage": stage, "message": "Add Sub\n", "branch": c.branch}); again["commit"] != cm["commit"] {
					t.Errorf("a repeated git.commit answered %v, want %v", again, cm)
				}
				if author := git(t, g.repo, "log", "-1", "--format=%an <%ae> %cn", c.branch); author != "nano-vm-mcp <nano-vm-mcp@localhost> nano-vm-mcp" {
					t.Errorf("author %q", author)
				}
			}
			d := g.mustCall(t, "discard", c.branch+"/discard", map[string]any{"stage": stage})
			if d["removed"] != true {
				t.Errorf("discard %v", d)
			}
			// Discarding again is success: the stage is already gone.
			if d := g.mustCall(t, "discard", c.branch+"/discard", map[string]any{"stage": stage}); d["removed"] != false {
				t.Errorf("second discard %v", d)
			}
		})
	}
	if got := git(t, g.repo, "rev-parse", "main"); got != g.base {
		t.Errorf("main moved from %s to %s", g.base, got)
	}
	if got := git(t, g.repo, "branch", "--format=%(refname:short)"); got != "change/1\nmain" {
		t.Errorf("branches:\n%s\nwant change/1 and main", got)
	}
	if s := g.stages(t); len(s) != 0 {
		t.Errorf("stages left behind: %v", s)
	}
	if wt := git(t, g.repo, "worktree", "list", "--porcelain"); strings.Count(wt, "worktree ") != 1 {
		t.Errorf("worktrees left behind:\n%s", wt)
	}
	if status := git(t, g.repo, "status", "--porcelain"); status != "" {
		t.Errorf("the repository's work tree changed:\n%s", status)
	}
}

func TestGitStageRefusesWhatItCannotStage(t *testing.T) {
	g := newGitFixture(t)
	cases := []struct {
		name string
		args map[string]any
		want string
	}{
		{"patch that does not apply", map[string]any{"repository": "calc", "base_ref": "main", "patch": stalePatch}, "the patch does not apply: error: patch failed: calc.go:1"},
		{"unknown repository", map[string]any{"repository": "other", "base_ref": "main", "patch": passingPatch}, `unknown repository "other" (this tool knows calc)`},
		{"option as base_ref", map[string]any{"repository": "calc", "base_ref": "--output=/tmp/x", "patch": passingPatch}, "is not a commit id or reference name"},
		{"revision expression as base_ref", map[string]any{"repository": "calc", "base_ref": "main@{1}", "patch": passingPatch}, "is not a commit id or reference name"},
		{"missing base_ref", map[string]any{"repository": "calc", "base_ref": "nope", "patch": passingPatch}, `base_ref "nope" does not name a commit in calc`},
		{"no patch", map[string]any{"repository": "calc", "base_ref": "main"}, "argument patch: want a non-empty string"},
		{"a path as repository", map[string]any{"repository": g.repo, "base_ref": "main", "patch": passingPatch}, "unknown repository"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := g.call(t, "stage", "k-"+c.name, c.args)
			if fl := failureOf(t, err); fl.Class != ClassToolError || !strings.Contains(fl.Detail, c.want) {
				t.Errorf("%+v, want tool_error %q", fl, c.want)
			}
			if s := g.stages(t); len(s) != 0 {
				t.Errorf("a refused git.stage left %v", s)
			}
		})
	}
}

func TestGitCommitNeverMovesAnExistingRef(t *testing.T) {
	g := newGitFixture(t)
	stage := g.mustCall(t, "stage", "s1", map[string]any{"repository": "calc", "base_ref": "main", "patch": passingPatch})["stage"]
	for _, c := range []struct {
		name, branch, key, want string
	}{
		{"existing branch", "main", "c1", `branch "main" already exists`},
		{"invalid branch name", "a..b", "c2", "not a valid new branch name"},
		{"option as branch", "-f", "c3", "not a valid new branch name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := g.call(t, "commit", c.key, map[string]any{"stage": stage, "message": "m", "branch": c.branch})
			if fl := failureOf(t, err); fl.Class != ClassToolError || !strings.Contains(fl.Detail, c.want) {
				t.Errorf("%+v, want tool_error %q", fl, c.want)
			}
		})
	}
	g.mustCall(t, "commit", "c4", map[string]any{"stage": stage, "message": "m", "branch": "feature"})
	// Another call (another key) cannot commit the stage again.
	_, err := g.call(t, "commit", "c5", map[string]any{"stage": stage, "message": "m", "branch": "feature2"})
	if fl := failureOf(t, err); !strings.Contains(fl.Detail, "already committed by another call") {
		t.Errorf("%+v", fl)
	}
	if got := git(t, g.repo, "rev-parse", "main"); got != g.base {
		t.Errorf("main moved")
	}
}

func TestGitCommitIsDeterministic(t *testing.T) {
	g := newGitFixture(t)
	var commits []any
	for _, k := range []string{"a", "b"} {
		stage := g.mustCall(t, "stage", "stage-"+k, map[string]any{"repository": "calc", "base_ref": g.base, "patch": passingPatch})["stage"]
		cm := g.mustCall(t, "commit", "commit-"+k, map[string]any{"stage": stage, "message": "Add Sub", "branch": "b-" + k})
		commits = append(commits, cm["commit"])
		g.mustCall(t, "discard", "discard-"+k, map[string]any{"stage": stage})
	}
	if commits[0] != commits[1] {
		t.Errorf("the same change made commits %v", commits)
	}
}

func TestStagePathsOutsideTheStageDirectoryAreRefused(t *testing.T) {
	g := newGitFixture(t)
	root := g.options().StageDir
	g.mustCall(t, "stage", "s", map[string]any{"repository": "calc", "base_ref": "main", "patch": passingPatch})
	for _, p := range []any{g.repo, "/etc", root, filepath.Join(root, "..", "repo"), filepath.Join(root, "stage-x", "sub"), "relative/stage-x", 42, nil} {
		for _, tool := range []string{"commit", "discard", "run_tests"} {
			_, err := g.call(t, tool, "k", map[string]any{"stage": p, "message": "m", "branch": "x"})
			if fl := failureOf(t, err); fl.Class != ClassToolError || !strings.Contains(fl.Detail, "stage") {
				t.Errorf("%s with stage %v: %+v", tool, p, fl)
			}
		}
	}
	if _, err := os.Stat(g.repo); err != nil {
		t.Errorf("the repository is gone: %v", err)
	}
}

func TestValidRef(t *testing.T) {
	for s, want := range map[string]bool{
		"main": true, "feature/x-1": true, "v1.2": true, "0123abcd": true, "HEAD": true,
		"": false, "-x": false, "a..b": false, "a b": false, "a~1": false, "a^": false, "a:b": false,
		"x.lock": false, "/a": false, "a/": false, "a@{1}": false, ".a": false, "a/.b": false, "a\x00": false,
	} {
		if got := validRef(s); got != want {
			t.Errorf("validRef(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCloseRemovesTheStageDirectoryTheRegistryMade(t *testing.T) {
	g := newGitFixture(t)
	o := g.options()
	o.StageDir = "" // the registry makes its own
	r, err := Parse([]byte("tools:\n  stage:\n    git: {op: stage, repositories: {calc: repo}}\n"), "tools.yaml", o)
	must(t, err)
	e, _ := r.Executor("stage")
	v, err := e.Invoke(context.Background(), Call{Arguments: map[string]any{"repository": "calc", "base_ref": "main", "patch": passingPatch}, IdempotencyKey: "k"})
	must(t, err)
	stage := v.(map[string]any)["stage"].(string)
	must(t, r.Close())
	if _, err := os.Stat(filepath.Dir(stage)); !os.IsNotExist(err) {
		t.Errorf("the stage directory %s is left behind (%v)", filepath.Dir(stage), err)
	}
	if wt := git(t, g.repo, "worktree", "list", "--porcelain"); strings.Count(wt, "worktree ") != 1 {
		t.Errorf("worktrees left behind:\n%s", wt)
	}
	if _, ok := r.Executor("stage"); ok {
		t.Error("a closed registry still hands out executors")
	}
}

// A sweep removes the stages older than its bound, through git, and
// leaves the younger ones: what cleans up after a run that ended without
// its git.discard (a cancelled run cannot run a tool).
func TestSweepStagesRemovesOnlyStagesOlderThanTheBound(t *testing.T) {
	g := newGitFixture(t)
	args := map[string]any{"repository": "calc", "base_ref": "main", "patch": passingPatch}
	old := g.mustCall(t, "stage", "old", args)["stage"].(string)
	young := g.mustCall(t, "stage", "young", args)["stage"].(string)
	now := time.Now()
	must(t, os.Chtimes(old, now.Add(-48*time.Hour), now.Add(-48*time.Hour)))
	swept, err := g.reg.SweepStages(context.Background(), now.Add(-24*time.Hour))
	must(t, err)
	if len(swept) != 1 || swept[0] != old {
		t.Fatalf("swept %v, want only %s", swept, old)
	}
	if s := g.stages(t); len(s) != 1 || s[0] != filepath.Base(young) {
		t.Errorf("stages left %v, want only %s", s, filepath.Base(young))
	}
	if wt := git(t, g.repo, "worktree", "list", "--porcelain"); strings.Count(wt, "worktree ") != 2 {
		t.Errorf("worktrees after the sweep:\n%s\nwant the repository and the young stage", wt)
	}
	r, err := Parse([]byte("tools:\n  t:\n    http: {url: 'http://127.0.0.1:1/x'}\n"), "tools.yaml", g.options())
	must(t, err)
	defer r.Close()
	if _, err := r.SweepStages(context.Background(), now); err == nil || !strings.Contains(err.Error(), "no git builtin") {
		t.Errorf("a registry without git builtins swept: %v", err)
	}
}

// Directories the registry names may come from the server's environment
// (env:NAME), read when it loads; an unset one is a positioned problem.
func TestRegistryPathsFromTheEnvironment(t *testing.T) {
	g := newGitFixture(t)
	o := g.options()
	doc := "tools:\n  stage:\n    git: {op: stage, repositories: {calc: 'env:CALC_REPO'}}\n"
	for _, c := range []struct {
		name, value, problem string
	}{
		{"set", g.repo, ""},
		{"unset", "", "tools.yaml:3:43: tool stage: git.repositories.calc: environment variable CALC_REPO is not set"},
		{"not a repository", t.TempDir(), "is not a git repository"},
	} {
		t.Run(c.name, func(t *testing.T) {
			getenv := o.Getenv
			o := o
			o.Getenv = func(k string) string {
				if k == "CALC_REPO" {
					return c.value
				}
				return getenv(k)
			}
			r, err := Parse([]byte(doc), "tools.yaml", o)
			if c.problem == "" {
				must(t, err)
				defer r.Close()
				if got := r.Tools()[0].Git.Repositories["calc"]; got != g.repo {
					t.Errorf("repository %s, want %s", got, g.repo)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.problem) {
				t.Errorf("error %v, want %q", err, c.problem)
			}
		})
	}
}
