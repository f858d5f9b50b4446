// Package catalog says where programs come from: a program reference (a
// file path, or the name of an embedded example) and a programs directory
// resolve here to loaded programs with their sources. The format and its
// loader are internal/program's; the embedded files are examples'.
package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// Entry is one program of a catalog: where it came from, the program, and
// its source as read.
type Entry struct {
	Ref     string // the file path, or examples/<name>.yaml
	Program *program.Program
	Source  []byte
}

// UnknownError is a reference that is neither a file nor an embedded
// example. It matches fs.ErrNotExist.
type UnknownError struct{ Ref string }

func (e *UnknownError) Error() string {
	return fmt.Sprintf("%s: no such file, and no embedded example by that name (examples: %s)", e.Ref, strings.Join(examples.Programs(), ", "))
}

func (e *UnknownError) Unwrap() error { return fs.ErrNotExist }

// DuplicateError is a second program of a name already in the catalog.
type DuplicateError struct {
	Ref, Name, Prev string
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%s: program %q is also defined by %s", e.Ref, e.Name, e.Prev)
}

// DirError is a programs directory that cannot be listed.
type DirError struct{ Err error }

func (e *DirError) Error() string { return e.Err.Error() }
func (e *DirError) Unwrap() error { return e.Err }

// Read reads a program file, or the embedded example of that name when no
// such file exists: a file wins over an example of the same name. When
// neither exists the error is the file's (*fs.PathError), for callers
// that report the reason (ReadProblem); Source names the examples instead.
func Read(ref string) ([]byte, error) {
	src, err := os.ReadFile(ref)
	if errors.Is(err, fs.ErrNotExist) {
		if ex, exErr := examples.Program(ref); exErr == nil {
			return ex, nil
		}
	}
	return src, err
}

// Source is Read with a reference that is neither a file nor an example
// as an *UnknownError. A file that is there but cannot be read (a
// directory, say) keeps its read error.
func Source(ref string) ([]byte, error) {
	src, err := Read(ref)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &UnknownError{Ref: ref}
	}
	return src, err
}

// Load resolves ref (Source) and loads it; an invalid program is a
// *program.Error naming ref.
func Load(ref string) (*program.Program, []byte, error) {
	src, err := Source(ref)
	if err != nil {
		return nil, nil, err
	}
	p, err := program.Load(ref, src)
	if err != nil {
		return nil, nil, err
	}
	return p, src, nil
}

// ReadProblem is a file that cannot be read, as one more problem of a
// validation: the reason without the path, which the problem leads with.
func ReadProblem(ref string, err error) program.Problem {
	reason := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err.Error()
	}
	return program.Problem{File: ref, Message: "cannot read: " + reason}
}

// All loads the embedded examples and then every program file (.yaml,
// .yml, .json) in dir, in name order; dir "" adds none. An invalid
// program stops it with its problems (*program.Error); two programs of
// one name are a *DuplicateError, so what is served is never ambiguous.
// A dir that cannot be listed is a *DirError.
func All(dir string) ([]Entry, error) {
	var out []Entry
	names := map[string]string{}
	add := func(e Entry) error {
		if prev, dup := names[e.Program.Name]; dup {
			return &DuplicateError{Ref: e.Ref, Name: e.Program.Name, Prev: prev}
		}
		names[e.Program.Name] = e.Ref
		out = append(out, e)
		return nil
	}
	for _, name := range examples.Programs() {
		p, src, err := examples.Load(name)
		if err != nil {
			return nil, err
		}
		if err := add(Entry{Ref: "examples/" + name + ".yaml", Program: p, Source: src}); err != nil {
			return nil, err
		}
	}
	if dir == "" {
		return out, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &DirError{Err: err}
	}
	var files []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		p, err := program.Load(path, src)
		if err != nil {
			return nil, err
		}
		if err := add(Entry{Ref: path, Program: p, Source: src}); err != nil {
			return nil, err
		}
	}
	return out, nil
}
