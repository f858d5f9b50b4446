package executor

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/testenv"
)

// everythingTool is a registry tool on server-everything over stdio
// (node dist/index.js stdio, as the benchmarks start it); testenv skips or,
// under CI=true, fails when it is not installed.
func everythingTool(t *testing.T, remote string) (*Tool, Options) {
	t.Helper()
	node, entry := testenv.Everything(t)
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
