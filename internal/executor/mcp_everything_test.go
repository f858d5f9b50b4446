package executor

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// everythingEntry is where tests/bench/setup.sh installs the official
// @modelcontextprotocol/server-everything, the third-party downstream
// server of these tests.
const everythingEntry = "../../.cache/bench/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

// everythingTool is a registry tool on server-everything over stdio
// (node dist/index.js stdio, as the benchmarks start it). Without the
// server or node it skips, except under CI=true, where .ci/run has run
// setup.sh and a missing server is a failure.
func everythingTool(t *testing.T, remote string) (*Tool, Options) {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI=true: .ci/run runs tests/bench/setup.sh before the tests)", why)
		}
		t.Skip(why)
	}
	entry, err := filepath.Abs(everythingEntry)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(entry); err != nil {
		missing("server-everything is not installed: run tests/bench/setup.sh")
	}
	node := os.Getenv("NANO_VM_BENCH_NODE")
	if node == "" {
		if node, err = exec.LookPath("node"); err != nil {
			missing("no node on PATH (or set NANO_VM_BENCH_NODE)")
		}
	}
	return &Tool{Name: "weather", MCP: &MCPSpec{Command: []string{node, entry, "stdio"}, Tool: remote}},
		Options{Pins: filepath.Join(t.TempDir(), "tools.pins.json")}
}

func TestMCPDownstreamEverythingStructuredContentAndPlainText(t *testing.T) {
	tool, o := everythingTool(t, "get-structured-content")
	m := build(t, tool, o)
	got, err := m.Invoke(context.Background(), Call{Arguments: map[string]any{"location": "Chicago"}, IdempotencyKey: "k1", Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	if field(t, got, "temperature") != json.Number("36") || field(t, got, "conditions") != "Light rain / drizzle" {
		t.Fatalf("get-structured-content answered %#v", got)
	}
	pins, err := readPins(o.Pins)
	if err != nil || !strings.HasPrefix(pins["weather"].Server, `stdio:["`) || pins["weather"].DownstreamTool != "get-structured-content" {
		t.Fatalf("pins %v (%v)", pins, err)
	}

	// echo answers "Echo: …", text that is not JSON: a schema violation,
	// never a string "fixed" into a result.
	_, err = invokeAs(t, m, "echo", map[string]any{"message": "hi"}, "k2")
	var f *Failure
	if !errors.As(err, &f) || f.Class != ClassSchemaViolation {
		t.Fatalf("echo: %v, want a schema violation", err)
	}

	// Its zod-made input schema (draft-07) is checked against a program's
	// argument shape.
	if got := CheckArguments(m, map[string]any{"location": "string"}); got != nil {
		t.Fatalf("a fitting shape: %q", got)
	}
	want := []string{`argument "location": the program gives number, the downstream tool takes string`}
	if got := CheckArguments(m, map[string]any{"location": "number"}); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
