package catalog

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// renamed is the refund example under another program name.
func renamed(t *testing.T, name string) []byte {
	t.Helper()
	src, err := examples.Program("refund")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "\nname: refund\n") {
		t.Fatal("the refund example's name line moved")
	}
	return []byte(strings.Replace(string(src), "\nname: refund\n", "\nname: "+name+"\n", 1))
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadResolvesAFileBeforeAnExampleOfTheSameName(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, filepath.Join(dir, "refund"), renamed(t, "local"))
	if err := os.Mkdir(filepath.Join(dir, "a-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "broken.yaml"), []byte("name: broken\n"))
	tests := []struct {
		ref      string
		name     string // the program loaded; "" when it fails
		check    func(error) bool
		wantText string
	}{
		{ref: "refund", name: "local"},
		{ref: "kyc-onboarding", name: "kyc-onboarding"},
		{ref: "nope", check: func(err error) bool {
			var ue *UnknownError
			return errors.As(err, &ue) && errors.Is(err, fs.ErrNotExist)
		}, wantText: "nope: no such file, and no embedded example by that name (examples: " + strings.Join(examples.Programs(), ", ") + ")"},
		{ref: "a-dir", check: func(err error) bool {
			var pe *fs.PathError
			return errors.As(err, &pe) && !errors.Is(err, fs.ErrNotExist)
		}},
		{ref: "broken.yaml", check: func(err error) bool {
			var pe *program.Error
			return errors.As(err, &pe) && pe.File == "broken.yaml"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			p, src, err := Load(tc.ref)
			if tc.name != "" {
				if err != nil || p.Name != tc.name || len(src) == 0 {
					t.Fatalf("Load(%q) = %v, %d bytes, %v; want program %s", tc.ref, p, len(src), err, tc.name)
				}
				return
			}
			if err == nil || !tc.check(err) {
				t.Fatalf("Load(%q) error = %#v", tc.ref, err)
			}
			if tc.wantText != "" && err.Error() != tc.wantText {
				t.Errorf("Load(%q) error\n got %s\nwant %s", tc.ref, err, tc.wantText)
			}
		})
	}
}

func TestReadProblemStatesTheReasonWithoutThePath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	for _, tc := range []struct {
		ref, want string
	}{
		{missing, missing + ": cannot read: no such file or directory"},
		{dir, dir + ": cannot read: is a directory"},
	} {
		_, err := Read(tc.ref)
		if err == nil {
			t.Fatalf("Read(%q) succeeded", tc.ref)
		}
		if got := ReadProblem(tc.ref, err).String(); got != tc.want {
			t.Errorf("ReadProblem(%q) = %q, want %q", tc.ref, got, tc.want)
		}
	}
}

func TestAllServesTheExamplesThenTheDirectoryInNameOrder(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "b.yml"), renamed(t, "bee"))
	write(t, filepath.Join(dir, "a.YAML"), renamed(t, "ay"))
	write(t, filepath.Join(dir, "notes.txt"), []byte("not a program"))
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, name := range examples.Programs() {
		want = append(want, "examples/"+name+".yaml="+name)
	}
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"", want},
		{dir, append(append([]string{}, want...), filepath.Join(dir, "a.YAML")+"=ay", filepath.Join(dir, "b.yml")+"=bee")},
	} {
		got, err := All(tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, e := range got {
			if len(e.Source) == 0 {
				t.Errorf("%s: no source", e.Ref)
			}
			refs = append(refs, e.Ref+"="+e.Program.Name)
		}
		if strings.Join(refs, " ") != strings.Join(tc.want, " ") {
			t.Errorf("All(%q) = %v, want %v", tc.dir, refs, tc.want)
		}
	}
}

func TestAllRefusesAmbiguousInvalidOrUnlistableDirectories(t *testing.T) {
	dup := t.TempDir()
	write(t, filepath.Join(dup, "mine.yaml"), renamed(t, "refund"))
	invalid := t.TempDir()
	write(t, filepath.Join(invalid, "bad.json"), []byte(`{"name": "bad"}`))
	for _, tc := range []struct {
		name, dir string
		check     func(error) bool
		wantText  string
	}{
		{"a second program of a name", dup, func(err error) bool {
			var de *DuplicateError
			return errors.As(err, &de) && de.Name == "refund"
		}, filepath.Join(dup, "mine.yaml") + `: program "refund" is also defined by examples/refund.yaml`},
		{"an invalid program", invalid, func(err error) bool {
			var pe *program.Error
			return errors.As(err, &pe) && pe.File == filepath.Join(invalid, "bad.json")
		}, ""},
		{"a missing directory", filepath.Join(dup, "none"), func(err error) bool {
			var de *DirError
			return errors.As(err, &de) && errors.Is(err, fs.ErrNotExist)
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := All(tc.dir)
			if err == nil || got != nil || !tc.check(err) {
				t.Fatalf("All = %d entries, %#v", len(got), err)
			}
			if tc.wantText != "" && err.Error() != tc.wantText {
				t.Errorf("error\n got %s\nwant %s", err, tc.wantText)
			}
		})
	}
}
