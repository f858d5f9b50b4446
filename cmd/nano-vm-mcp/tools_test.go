package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// echoProgram's check state is run by the server when the registry has
// the echo tool: /bin/cat, which answers with the arguments it is given.
const echoProgram = `
name: echo
version: "1"
input_schema: {type: object, properties: {word: {type: string}}, required: [word]}
initial: ask
states:
  ask:
    kind: llm
    view: [input.word]
    output_schema: {type: object, properties: {n: {type: integer}}, required: [n]}
    transitions: [{to: check}]
  check:
    kind: tool
    tool: echo
    arguments: {word: input.word, n: data.ask.n}
    output_schema: {type: object, properties: {word: {type: string}, n: {type: integer}}, required: [word, n]}
    transitions:
      - {to: done, when: output.n == 2}
      - {to: other}
  other: {kind: terminal, outcome: OTHER}
  done: {kind: terminal, outcome: DONE}
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// run --tools: the registry's tool runs in the server, the answers file
// answers only the caller's tasks, and the trace's path goes through the
// tool's own result. Without --tools the same program hands the tool task
// to the answers, which run out.
func TestRunExecutesTheRegistrysTool(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"echo.yaml":     echoProgram,
		"tools.yaml":    "tools:\n  echo:\n    exec: {argv: [/bin/cat]}\n    output: {format: json}\n",
		"input.json":    `{"word": "hi"}`,
		"answers.jsonl": `{"n": 2}` + "\n",
	})
	at := func(name string) string { return filepath.Join(dir, name) }
	code, out, errb := runCLI(t, "run", at("echo.yaml"), "--store", "memory", "--tools", at("tools.yaml"),
		"--input", at("input.json"), "--answers", at("answers.jsonl"), "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errb)
	}
	var sum summary
	if err := json.Unmarshal([]byte(lastLine(out)), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Outcome != "DONE" || strings.Join(sum.Path, " ") != "ask check done" || sum.AnswersUsed != 1 {
		t.Fatalf("summary %+v, want DONE through check with one answer", sum)
	}
	if !strings.Contains(errb, "check -> done") {
		t.Errorf("the hops the tool's result took are not printed:\n%s", errb)
	}

	code, out, errb = runCLI(t, "run", at("echo.yaml"), "--store", "memory",
		"--input", at("input.json"), "--answers", at("answers.jsonl"))
	if code != exitIncomplete || !strings.Contains(out+errb, "task 2: check (tool)") {
		t.Fatalf("without --tools: exit %d, want %d with the tool task handed to the answers\n%s%s", code, exitIncomplete, out, errb)
	}
}

// A program that requires runtime execution of a tool the registry lacks
// is refused at load, naming the state; an invalid registry names its
// problem; --step-wait must be positive.
func TestRunRefusesWhatTheRegistryCannotRun(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"echo.yaml":     strings.Replace(echoProgram, "    tool: echo\n", "    tool: echo\n    execution: runtime\n", 1),
		"tools.yaml":    "tools:\n  other:\n    exec: {argv: [/bin/cat]}\n",
		"bad.yaml":      "tools:\n  echo:\n    exec: {argv: [/bin/cat]}\n    colour: blue\n",
		"input.json":    `{"word": "hi"}`,
		"answers.jsonl": `{"n": 2}` + "\n",
	})
	at := func(name string) string { return filepath.Join(dir, name) }
	for _, c := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"no registry", nil, "state check"},
		{"a registry without the tool", []string{"--tools", at("tools.yaml")}, "has no tool echo"},
		{"an invalid registry", []string{"--tools", at("bad.yaml")}, "colour"},
		{"a step wait of zero", []string{"--tools", at("tools.yaml"), "--step-wait", "0s"}, "--step-wait"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"run", at("echo.yaml"), "--store", "memory", "--input", at("input.json"), "--answers", at("answers.jsonl")}, c.extra...)
			code, out, errb := runCLI(t, args...)
			if code != exitUsage || !strings.Contains(errb, c.want) {
				t.Fatalf("exit %d, stderr %q; want %d naming %q\n%s", code, errb, exitUsage, c.want, out)
			}
		})
	}
}

// tools list shows each tool's kind, idempotence, retries, timeout and pin;
// the registry can come from NANO_VM_TOOLS.
func TestToolsListShowsTheRegistry(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"tools.yaml": "tools:\n  refund:\n    http: {url: 'http://127.0.0.1:9/refund'}\n    idempotent: true\n    retry: {max_attempts: 3, backoff: 1s}\n  echo:\n    exec: {argv: [/bin/cat]}\n",
	})
	t.Setenv("NANO_VM_TOOLS", filepath.Join(dir, "tools.yaml"))
	code, out, errb := runCLI(t, "tools", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[1]), " ") != "refund http true 3 30s -" || strings.Join(strings.Fields(lines[2]), " ") != "echo exec false 1 30s -" {
		t.Fatalf("tools list:\n%s", out)
	}
	if code, out, _ := runCLI(t, "tools", "pin"); code != 0 || strings.TrimSpace(out) != "no mcp tools to pin" {
		t.Fatalf("tools pin: exit %d, %q", code, out)
	}
}
