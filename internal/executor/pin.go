package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// Drift pinning. A downstream MCP tool is pinned by a hash of what a model
// or an operator trusted when the registry was set up: the tool's name,
// description and input schema, as the server lists them. A server that
// later lists the tool differently (a "rug pull": new instructions in the
// description, a widened schema) has drifted, and its calls are refused
// with class drifted until the operator re-pins (Pin, `nano-vm-mcp tools
// pin`). docs/tools.md specifies the hash and the pins file.

// PinEntry is one registry tool's pin in the pins file.
type PinEntry struct {
	Tool           string `json:"tool"`            // the registry's name of the tool
	Server         string `json:"server"`          // the downstream server's identity (serverIdentity)
	DownstreamTool string `json:"downstream_tool"` // the tool's name on that server
	Pin            string `json:"pin"`             // "sha256:" and 64 lowercase hex digits
	// PinnedAt is when the pin was taken (RFC 3339, UTC), from
	// Options.Now; absent without a clock.
	PinnedAt string `json:"pinned_at,omitempty"`
}

// pinsVersion is the version of the pins file format.
const pinsVersion = 1

// pinsDoc is the pins file.
type pinsDoc struct {
	Version int        `json:"version"`
	Pins    []PinEntry `json:"pins"`
}

var pinPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// DefaultPinsPath is the pins file conventionally kept next to a registry
// file: tools.yaml's is tools.pins.json.
func DefaultPinsPath(registry string) string {
	return strings.TrimSuffix(registry, filepath.Ext(registry)) + ".pins.json"
}

// listedTool is a tool as a downstream server lists it.
type listedTool struct {
	Name        string
	Description string
	InputSchema any // strict JSON (jsonvalue.Decode)
}

// pin is the tool's pin: "sha256:" and the lowercase hex SHA-256 of the
// RFC 8785 canonical JSON of {"name", "description", "inputSchema"}, with
// the description "" when the listing has none and the schema null.
func (t *listedTool) pin() (string, error) {
	canon, err := jsonvalue.Canonical(map[string]any{
		"name":        t.Name,
		"description": t.Description,
		"inputSchema": t.InputSchema,
	})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// findTool reads the named tool from the JSON text of tools/list result
// pages. Only that tool's entry is read strictly: another tool's odd
// schema is no reason to refuse this one.
func findTool(pages []json.RawMessage, name string) (*listedTool, error) {
	var found json.RawMessage
	for _, page := range pages {
		var p struct {
			Tools []json.RawMessage `json:"tools"`
		}
		if err := json.Unmarshal(page, &p); err != nil {
			return nil, fmt.Errorf("the downstream server's tools/list result is not readable: %v", err)
		}
		for _, raw := range p.Tools {
			var head struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(raw, &head) != nil || head.Name != name {
				continue
			}
			if found != nil {
				return nil, fmt.Errorf("the downstream server lists tool %q twice", name)
			}
			found = raw
		}
	}
	if found == nil {
		return nil, fmt.Errorf("the downstream server does not list tool %q", name)
	}
	v, err := jsonvalue.Decode(found)
	if err != nil {
		return nil, fmt.Errorf("the downstream server's listing of tool %q is not strict JSON: %v", name, err)
	}
	obj, _ := v.(map[string]any)
	t := &listedTool{Name: name, InputSchema: obj["inputSchema"]}
	if d, ok := obj["description"]; ok && d != nil {
		if t.Description, ok = d.(string); !ok {
			return nil, fmt.Errorf("the downstream server's description of tool %q is not a string", name)
		}
	}
	if _, ok := t.InputSchema.(map[string]any); !ok {
		return nil, fmt.Errorf("the downstream server's input schema of tool %q is not an object", name)
	}
	return t, nil
}

// ReadPins reads the pins file at path (resolved against o.RegistryDir
// when relative): each pinned tool's entry by registry name. A file that
// does not exist holds no pins. It connects to nothing (`nano-vm-mcp
// tools list` shows what it holds).
func ReadPins(path string, o Options) (map[string]PinEntry, error) {
	return readPins(o.mcpPath(path))
}

// pinFileMu serialises this process's read-modify-write cycles of pins
// files. Writes are whole-file renames, so a reader never sees half a file.
var pinFileMu sync.Mutex

// readPins reads a pins file; a file that does not exist holds no pins.
func readPins(path string) (map[string]PinEntry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]PinEntry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pins file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var doc pinsDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("pins file %s: %v", path, err)
	}
	if doc.Version != pinsVersion {
		return nil, fmt.Errorf("pins file %s: version %d, want %d", path, doc.Version, pinsVersion)
	}
	pins := make(map[string]PinEntry, len(doc.Pins))
	for _, e := range doc.Pins {
		if _, dup := pins[e.Tool]; dup {
			return nil, fmt.Errorf("pins file %s: tool %q is pinned twice", path, e.Tool)
		}
		if !pinPattern.MatchString(e.Pin) {
			return nil, fmt.Errorf("pins file %s: tool %q: pin %q is not sha256:<64 lowercase hex digits>", path, e.Tool, e.Pin)
		}
		pins[e.Tool] = e
	}
	return pins, nil
}

// writePins replaces the given tools' entries in the pins file, keeping
// the others, and writes it whole (a temporary file renamed over it).
func writePins(path string, entries ...PinEntry) error {
	pinFileMu.Lock()
	defer pinFileMu.Unlock()
	pins, err := readPins(path)
	if err != nil {
		return err
	}
	for _, e := range entries {
		pins[e.Tool] = e
	}
	doc := pinsDoc{Version: pinsVersion, Pins: make([]PinEntry, 0, len(pins))}
	for _, e := range pins {
		doc.Pins = append(doc.Pins, e)
	}
	slices.SortFunc(doc.Pins, func(a, b PinEntry) int { return strings.Compare(a.Tool, b.Tool) })
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pins-*.json")
	if err != nil {
		return fmt.Errorf("pins file: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if err := tmp.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pins file: %w", werr)
	}
	return nil
}

// stamp is a pin's pinned_at from the injected clock, "" without one.
func stamp(now func() time.Time) string {
	if now == nil {
		return ""
	}
	return now().UTC().Format(time.RFC3339)
}

// Pin re-pins every mcp tool among tools: it connects to each downstream
// server, lists its tools and writes the named tool's current pin into the
// pins file at pinsPath (resolved against o.RegistryDir when relative),
// replacing the tool's entry and keeping the entries of tools not given.
// It is what `nano-vm-mcp tools pin` runs. It writes nothing unless every
// tool could be pinned; the error then names each tool that could not.
// The entries written are returned, sorted by tool.
func Pin(ctx context.Context, tools []*Tool, pinsPath string, o Options) ([]PinEntry, error) {
	var entries []PinEntry
	var errs []error
	for _, t := range tools {
		if t.MCP == nil {
			continue
		}
		e, err := pinOne(ctx, t, o)
		if err != nil {
			errs = append(errs, fmt.Errorf("tool %s: %w", t.Name, err))
			continue
		}
		entries = append(entries, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(entries, func(a, b PinEntry) int { return strings.Compare(a.Tool, b.Tool) })
	if len(entries) == 0 {
		return nil, nil
	}
	if err := writePins(o.mcpPath(pinsPath), entries...); err != nil {
		return nil, err
	}
	return entries, nil
}

// pinOne connects to t's server once and takes t's pin.
func pinOne(ctx context.Context, t *Tool, o Options) (PinEntry, error) {
	d, err := newDialer(t, o)
	if err != nil {
		return PinEntry{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.connectTimeout())
	defer cancel()
	s, err := d.dial(ctx, nil)
	if err != nil {
		return PinEntry{}, err
	}
	defer s.close()
	lt, err := s.list(ctx, t.MCP.Tool)
	if err != nil {
		return PinEntry{}, err
	}
	p, err := lt.pin()
	if err != nil {
		return PinEntry{}, err
	}
	return PinEntry{Tool: t.Name, Server: d.identity, DownstreamTool: t.MCP.Tool, Pin: p, PinnedAt: stamp(o.Now)}, nil
}

// pinPrefix shortens a pin for messages: the algorithm and 12 hex digits.
func pinPrefix(p string) string {
	if len(p) > len("sha256:")+12 {
		return p[:len("sha256:")+12]
	}
	return p
}
