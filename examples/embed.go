// Package examples embeds the example programs shipped with nano-vm-mcp,
// together with their run inputs and scripted answers.
//
// For a program <name> the files are:
//
//	<name>.yaml                              the program
//	<name>[.<variant>].input.json            a run input (valid per the input_schema)
//	<name>[.<variant>].<outcome>.answers.jsonl
//	                                         answers, one JSON object per task in
//	                                         order, that drive a run started with
//	                                         the matching input to <outcome>
//
// An answers file without a variant pairs with <name>.input.json; one with
// a variant pairs with <name>.<variant>.input.json. README.md in this
// directory lists every pairing with its expected final path.
//
// <name>.tools.yaml is not a program but the tool registry of <name>
// (docs/tools.md): the executors a server runs its tool states with.
package examples

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// FS holds the example programs, inputs and answers files.
//
//go:embed *.yaml *.json *.jsonl
var FS embed.FS

const (
	programExt  = ".yaml"
	registryExt = ".tools.yaml" // a program's tool registry, not a program
)

// Programs returns the names of the embedded programs (file names without
// the extension), sorted.
func Programs() []string {
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		return nil // cannot happen: the embedded root is always readable
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), programExt) && !strings.HasSuffix(e.Name(), registryExt) {
			names = append(names, strings.TrimSuffix(e.Name(), programExt))
		}
	}
	sort.Strings(names)
	return names
}

// Program returns the source of the embedded program name (without the
// extension), e.g. Program("refund").
func Program(name string) ([]byte, error) {
	if name == "" || strings.ContainsAny(name, "/\\") || strings.Contains(name, "..") || strings.HasSuffix(name+programExt, registryExt) {
		return nil, fmt.Errorf("examples: invalid program name %q", name)
	}
	data, err := FS.ReadFile(name + programExt)
	if err != nil {
		return nil, fmt.Errorf("examples: no example program %q (have %s)", name, strings.Join(Programs(), ", "))
	}
	return data, nil
}

// Load loads the embedded program name, and returns it with its source
// (what Service.AddProgram stores beside it). The embedded programs all
// load; a test of this package keeps it so.
func Load(name string) (*program.Program, []byte, error) {
	src, err := Program(name)
	if err != nil {
		return nil, nil, err
	}
	p, err := program.Load(name+programExt, src)
	if err != nil {
		return nil, nil, err
	}
	return p, src, nil
}

// MustLoad is Load for a name fixed in the code, such as a test's: it
// panics when name is not an embedded program or does not load, which
// TestProgramsLoad rules out for every embedded one.
func MustLoad(name string) (*program.Program, []byte) {
	p, src, err := Load(name)
	if err != nil {
		panic(err)
	}
	return p, src
}
