package service

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/testenv"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// weatherProgram asks the model for a place, then has the runtime call the
// registry's weather tool with it, and routes on the result.
const weatherProgram = `
name: weather-check
version: "1"
input_schema: {type: object, properties: {}}
limits: {max_steps: 10, max_attempts: 2}
initial: ask
states:
  ask:
    kind: llm
    instructions: Name a city.
    output_schema:
      type: object
      properties: {city: {type: string, maxLength: 50}}
      required: [city]
    transitions: [{to: weather}]
  weather:
    kind: tool
    tool: weather
    execution: runtime
    arguments:
      location: data.ask.city
    output_schema:
      type: object
      properties:
        temperature: {type: number}
        conditions: {type: string}
        humidity: {type: number}
      required: [temperature, conditions]
    transitions:
      - {to: cold, when: "output.temperature < 50.0"}
      - {to: mild}
  cold: {kind: terminal, outcome: COLD}
  mild: {kind: terminal, outcome: MILD}
`

// everythingRegistry is a registry whose weather tool is server-everything's
// get-structured-content, over stdio (testenv skips, or fails under
// CI=true, without it).
func everythingRegistry(t *testing.T) *executor.Registry {
	t.Helper()
	node, entry := testenv.Everything(t)
	dir := t.TempDir()
	doc, _ := json.Marshal(map[string]any{"tools": map[string]any{"weather": map[string]any{
		"mcp":        map[string]any{"command": []string{node, entry, "stdio"}, "tool": "get-structured-content"},
		"timeout":    "20s",
		"idempotent": true,
	}}})
	reg, err := executor.Parse(doc, filepath.Join(dir, "tools.yaml"), executor.Options{RegistryDir: dir, Pins: "tools.pins.json", Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// TestRuntimeCallsAThirdPartyMCPServerFromAProgram runs a program whose
// tool state the runtime executes on the official server-everything, over
// stdio, through a registry: the server's structured result is recorded
// as the call's outcome and routes the run.
func TestRuntimeCallsAThirdPartyMCPServerFromAProgram(t *testing.T) {
	reg := everythingRegistry(t)

	f := newToolService(t, tracestore.NewMemory(), reg, weatherProgram, Options{})
	ctx := context.Background()
	a, err := f.svc.StartRun(ctx, StartOptions{Program: "weather-check", Input: js(t, `{}`), Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	a, err = f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Principal: "alice", Output: js(t, `{"city": "Chicago"}`)})
	if err != nil {
		t.Fatal(err)
	}
	// server-everything's canned weather for Chicago is 36°, light rain.
	if a.Status != runtime.StatusCompleted || a.Outcome != "COLD" {
		t.Fatalf("answer %+v, want completed COLD", a)
	}
	events, err := f.svc.Events(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	var started, completed *runtime.ToolCallRecord
	for _, e := range events {
		switch e.Type {
		case runtime.EventToolCallStarted:
			started = e.Call
		case runtime.EventToolCallCompleted:
			completed = e.Call
		}
	}
	if started == nil || started.Executor != "mcp" || started.Arguments["location"] != "Chicago" || started.IdempotencyKey == "" {
		t.Fatalf("tool_call_started %+v", started)
	}
	result, _ := completed.Result.(map[string]any)
	if completed == nil || result["conditions"] != "Light rain / drizzle" {
		t.Fatalf("tool_call_completed %+v", completed)
	}
}

// TestProgramRefusedWhenADownstreamToolsSchemaRefusesItsArguments: at load,
// the arguments a program hands a runtime-run MCP tool are checked against
// the tool's input schema where their types are known; a mismatch refuses
// the program with the state and its position.
func TestProgramRefusedWhenADownstreamToolsSchemaRefusesItsArguments(t *testing.T) {
	reg := everythingRegistry(t)
	for _, tc := range []struct {
		name, args, want string
	}{
		{"fits", "location: data.ask.city", ""},
		{"wrong type", "location: size(data.ask.city)", `weather-check.yaml:21:7: state weather: arguments: tool weather: argument "location": the program gives integer, the downstream tool takes string`},
		{"missing", "place: data.ask.city", `the downstream tool requires argument "location", which the program does not give`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(weatherProgram, "location: data.ask.city", tc.args, 1)
			p, err := program.Load("weather-check.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			svc := New(Options{Store: tracestore.NewMemory(), Tools: reg, Secret: make([]byte, 32)})
			t.Cleanup(svc.Close)
			err = svc.AddProgram(context.Background(), p, []byte(src))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
