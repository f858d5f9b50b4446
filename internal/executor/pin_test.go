package executor

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPinIsSHA256OfTheCanonicalNameDescriptionAndInputSchema(t *testing.T) {
	// The definition in docs/tools.md, computed by hand: members
	// sorted, no whitespace.
	canon := `{"description":"Looks up a credit file.","inputSchema":{"properties":{"id":{"type":"string"}},"type":"object"},"name":"lookup"}`
	sum := sha256.Sum256([]byte(canon))
	want := "sha256:" + hex.EncodeToString(sum[:])

	pages := []json.RawMessage{json.RawMessage(`{"tools":[
		{"name":"other","inputSchema":{"type":"object","x":99999999999999999999}},
		{"name":"lookup","description":"Looks up a credit file.","annotations":{"readOnlyHint":true},
		 "inputSchema":{"type":"object","properties":{"id":{"type":"string"}}}}]}`)}
	lt, err := findTool(pages, "lookup")
	if err != nil {
		t.Fatal(err)
	}
	got, err := lt.pin()
	if err != nil || got != want {
		t.Fatalf("pin %s (%v), want %s", got, err, want)
	}
}

func TestPinFindToolRefusesWhatItCannotPin(t *testing.T) {
	cases := []struct {
		name, page, want string
	}{
		{"a tool that is not listed", `{"tools":[{"name":"a","inputSchema":{"type":"object"}}]}`, `does not list tool "lookup"`},
		{"a tool listed twice", `{"tools":[{"name":"lookup","inputSchema":{}},{"name":"lookup","inputSchema":{}}]}`, "twice"},
		{"a listing that is not strict JSON", `{"tools":[{"name":"lookup","inputSchema":{"a":1,"a":2}}]}`, "not strict JSON"},
		{"an input schema that is not an object", `{"tools":[{"name":"lookup","inputSchema":true}]}`, "not an object"},
		{"a description that is not a string", `{"tools":[{"name":"lookup","description":1,"inputSchema":{}}]}`, "not a string"},
		{"a result that is not a tools/list result", `[]`, "not readable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := findTool([]json.RawMessage{json.RawMessage(tc.page)}, "lookup")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPinsFileKeepsOtherToolsSortedAndStamped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tools.pins.json")
	pin := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	if err := writePins(path, PinEntry{Tool: "zeta", Server: "https://z/mcp", DownstreamTool: "z", Pin: pin('a')}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 18, 0, 0, 0, time.FixedZone("x", 3600))
	if err := writePins(path, PinEntry{Tool: "alpha", Server: `stdio:["/bin/a"]`, DownstreamTool: "a", Pin: pin('b'), PinnedAt: stamp(func() time.Time { return at })}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "version": 1,
  "pins": [
    {
      "tool": "alpha",
      "server": "stdio:[\"/bin/a\"]",
      "downstream_tool": "a",
      "pin": "sha256:` + strings.Repeat("b", 64) + `",
      "pinned_at": "2026-12-07T17:00:00Z"
    },
    {
      "tool": "zeta",
      "server": "https://z/mcp",
      "downstream_tool": "z",
      "pin": "sha256:` + strings.Repeat("a", 64) + `"
    }
  ]
}
`
	if string(b) != want {
		t.Fatalf("pins file:\n%s\nwant:\n%s", b, want)
	}
}

func TestPinsFileRefusesWhatItCannotTrust(t *testing.T) {
	good := "sha256:" + strings.Repeat("0", 64)
	cases := []struct {
		name, doc, want string
	}{
		{"another version", `{"version":2,"pins":[]}`, "version 2"},
		{"a tool pinned twice", `{"version":1,"pins":[{"tool":"a","pin":"` + good + `"},{"tool":"a","pin":"` + good + `"}]}`, "twice"},
		{"a pin of another form", `{"version":1,"pins":[{"tool":"a","pin":"sha256:ABC"}]}`, "is not sha256"},
		{"an unknown member", `{"version":1,"pins":[],"trust":"all"}`, "unknown field"},
		{"not JSON", `pins`, "pins file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.json")
			if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := readPins(path); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPinDefaultPathSitsNextToTheRegistry(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/nano-vm/tools.yaml": "/etc/nano-vm/tools.pins.json",
		"tools.yml":               "tools.pins.json",
		"registry":                "registry.pins.json",
	} {
		if got := DefaultPinsPath(in); got != want {
			t.Errorf("DefaultPinsPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPinRefusesToWriteUnlessEveryToolIsPinned(t *testing.T) {
	good, o := stdioTool(t, "echo", nil)
	bad := &Tool{Name: "gone", MCP: &MCPSpec{Command: good.MCP.Command, Env: good.MCP.Env, Tool: "no_such_tool"}}
	notMCP := &Tool{Name: "shell", Exec: &ExecSpec{Argv: []string{"true"}}}
	_, err := Pin(t.Context(), []*Tool{good, bad, notMCP}, o.Pins, o)
	if err == nil || !strings.Contains(err.Error(), "tool gone") {
		t.Fatalf("Pin: %v, want an error naming tool gone", err)
	}
	if _, err := os.Stat(o.Pins); !os.IsNotExist(err) {
		t.Fatalf("the pins file was written after a failure: %v", err)
	}
	entries, err := Pin(t.Context(), []*Tool{good, notMCP}, o.Pins, o)
	if err != nil || len(entries) != 1 || entries[0].Tool != "bureau" || entries[0].DownstreamTool != "echo" {
		t.Fatalf("Pin: %v %v", entries, err)
	}
	pins, err := readPins(o.Pins)
	if err != nil || pins["bureau"] != entries[0] {
		t.Fatalf("pins file %v (%v), want %v", pins, err, entries[0])
	}
}
