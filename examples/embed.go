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
package examples

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// FS holds the example programs, inputs and answers files.
//
//go:embed *.yaml *.json *.jsonl
var FS embed.FS

const programExt = ".yaml"

// Programs returns the names of the embedded programs (file names without
// the extension), sorted.
func Programs() []string {
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		return nil // cannot happen: the embedded root is always readable
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), programExt) {
			names = append(names, strings.TrimSuffix(e.Name(), programExt))
		}
	}
	sort.Strings(names)
	return names
}

// Program returns the source of the embedded program name (without the
// extension), e.g. Program("refund").
func Program(name string) ([]byte, error) {
	if name == "" || strings.ContainsAny(name, "/\\") || strings.Contains(name, "..") {
		return nil, fmt.Errorf("examples: invalid program name %q", name)
	}
	data, err := FS.ReadFile(name + programExt)
	if err != nil {
		return nil, fmt.Errorf("examples: no example program %q (have %s)", name, strings.Join(Programs(), ", "))
	}
	return data, nil
}
