package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// shellLines are the command lines of the ```sh blocks of a Markdown file,
// continuation lines joined.
func shellLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllSubmatch(data, -1) {
		block := strings.ReplaceAll(string(m[1]), "\\\n", " ")
		for _, l := range strings.Split(block, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
	}
	return out
}

// section is the text of a Markdown file from the heading to the next one
// of the same level.
func section(t *testing.T, path, heading string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no %q", path, heading)
	}
	level := heading[:strings.Index(heading, " ")+1]
	body, _, _ := strings.Cut(rest, "\n"+level)
	return body
}

// TestExamplesReadmeCommandsRun: every command examples/README.md shows
// is called as the README calls it, from a fresh clone with nothing on
// PATH (go run ./cmd/nano-vm-mcp), and succeeds from the repository root.
func TestExamplesReadmeCommandsRun(t *testing.T) {
	lines := shellLines(t, "../../examples/README.md")
	if len(lines) == 0 {
		t.Fatal("examples/README.md shows no command")
	}
	t.Setenv("NANO_VM_DATA_DIR", t.TempDir())
	t.Chdir("../..")
	const prefix = "go run ./cmd/nano-vm-mcp "
	for _, l := range lines {
		args, ok := strings.CutPrefix(l, prefix)
		if !ok || strings.ContainsAny(args, `"'$|<>;&`) {
			t.Errorf("%q: want a plain %q… line, runnable from a fresh clone", l, prefix)
			continue
		}
		if code, out, errOut := runCLI(t, strings.Fields(args)...); code != exitOK {
			t.Errorf("%q: exit %d\n%s\n%s", l, code, out, errOut)
		}
	}
}

// TestReadmeExportsOnlyWhereGitIgnores: a directory the README's commands
// write into the clone (export --out DIR) is in .gitignore, so following
// the README leaves nothing untracked.
func TestReadmeExportsOnlyWhereGitIgnores(t *testing.T) {
	data, err := os.ReadFile("../../.gitignore")
	if err != nil {
		t.Fatal(err)
	}
	var ignored []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ignored = append(ignored, strings.Trim(l, "/"))
		}
	}
	out := regexp.MustCompile(`--out[ =](\S+)`)
	n := 0
	for _, l := range shellLines(t, "../../README.md") {
		for _, m := range out.FindAllStringSubmatch(l, -1) {
			n++
			dir := strings.Trim(m[1], "/")
			if strings.HasPrefix(m[1], "/") || strings.HasPrefix(dir, "$") {
				continue // outside the clone
			}
			if top, _, _ := strings.Cut(dir, "/"); !slices.Contains(ignored, top) {
				t.Errorf("%q writes %s/ into the clone, and .gitignore does not ignore it", l, top)
			}
		}
	}
	if n == 0 {
		t.Fatal("the README shows no export --out")
	}
}

// TestQuickstartRunIsSeenByTheOperatorOnly: a run from `run` belongs to
// the principal cli. An agent-profile MCP client on the same data
// directory does not see it; the operator profile does. The quickstart
// says both.
func TestQuickstartRunIsSeenByTheOperatorOnly(t *testing.T) {
	quick := section(t, "../../README.md", "## Quickstart")
	for _, want := range []string{"principal `cli`", "`list_runs`", "`serve --profile operator`", "`NANO_VM_OPERATOR_TOKEN`"} {
		if !strings.Contains(quick, want) {
			t.Errorf("the README's quickstart does not say %s", want)
		}
	}
	data := t.TempDir()
	code, out, errOut := runCLI(t, "run", "refund", "--input", "../../examples/refund.input.json",
		"--answers", "../../examples/refund.refunded.answers.jsonl", "--data-dir", data, "--json")
	var s summary
	if code != exitOK || json.Unmarshal([]byte(out), &s) != nil || s.RunID == "" {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	listed := func(profile string) bool {
		c := startStdio(t, nil, "--data-dir", data, "--profile", profile)
		defer c.Close()
		res, e := callTool(t, c, "list_runs", map[string]any{})
		if e != nil {
			t.Fatalf("%s: list_runs: %v", profile, e)
		}
		runs, _ := res["runs"].([]any)
		for _, r := range runs {
			if r.(map[string]any)["run_id"] == s.RunID {
				return true
			}
		}
		_, e = callTool(t, c, "get_run", map[string]any{"run_id": s.RunID})
		if e == nil || e["code"] != "unknown_run" {
			t.Fatalf("%s: get_run of an unlisted run: %v", profile, e)
		}
		return false
	}
	if listed("agent") {
		t.Error("an agent-profile client sees the cli's run")
	}
	if !listed("operator") {
		t.Error("the operator profile does not see the cli's run")
	}
}
