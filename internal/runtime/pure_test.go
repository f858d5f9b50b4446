package runtime

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The core is pure (doc.go): these tests hold it to that. make check runs
// them on their own, so a change that gives the core I/O, a clock or
// randomness fails before the unit suite runs.

const module = "github.com/nano-vm/nano-vm-mcp/"

// forbiddenImports may not be imported by a file of the core itself. Some
// of them (os, net/url, math/rand) are reached through libraries the core
// uses (cel-go, the JSON Schema library); that is their business, so only
// the core's own files are held to this list.
var forbiddenImports = []string{
	"os", "os/exec", "os/signal", "io/ioutil", "net", "net/http", "net/url",
	"math/rand", "math/rand/v2", "crypto/rand", "syscall", "log", "log/slog",
}

// forbiddenDeps may not be reached at all, directly or through any other
// package: the shell's packages and the logger.
var forbiddenDeps = []string{
	module + "internal/tracestore", module + "internal/keyring", module + "internal/subjectkeys",
	module + "internal/service", module + "internal/tools", module + "internal/console",
	"go.uber.org/zap", "database/sql",
}

// clockCalls are the time package's functions that read the clock or wait
// on it: the time arrives in every input instead.
var clockCalls = map[string]bool{"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true, "AfterFunc": true, "NewTimer": true, "NewTicker": true, "Tick": true}

// impurities lists what in one file's source breaks the core's purity:
// a forbidden import, or a call that reads the clock.
func impurities(name string, src []byte) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	timeName := ""
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		for _, bad := range forbiddenImports {
			if path == bad {
				out = append(out, fset.Position(imp.Pos()).String()+": imports "+path)
			}
		}
		for _, bad := range forbiddenDeps {
			if path == bad || strings.HasPrefix(path, bad+"/") {
				out = append(out, fset.Position(imp.Pos()).String()+": imports "+path)
			}
		}
		if path == "time" {
			timeName = "time"
			if imp.Name != nil {
				timeName = imp.Name.Name
			}
			if timeName == "." {
				// Now() would then be a bare call the check below
				// cannot tell from the core's own functions.
				out = append(out, fset.Position(imp.Pos()).String()+": dot-imports time")
			}
		}
	}
	if timeName != "" {
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == timeName && clockCalls[sel.Sel.Name] {
				out = append(out, fset.Position(sel.Pos()).String()+": reads the clock (time."+sel.Sel.Name+")")
			}
			return true
		})
	}
	return out, nil
}

func TestImpuritiesAreFound(t *testing.T) {
	cases := []struct {
		name, src string
		want      int
	}{
		{"pure", "package runtime\nimport \"time\"\nfunc f(t time.Time) time.Time { return t.Add(time.Second) }\n", 0},
		{"clock", "package runtime\nimport \"time\"\nfunc f() time.Time { return time.Now() }\n", 1},
		{"renamed clock", "package runtime\nimport tm \"time\"\nvar _ = tm.Since\n", 1},
		{"dot-imported clock", "package runtime\nimport . \"time\"\nfunc f() Time { return Now() }\n", 1},
		{"store", "package runtime\nimport _ \"" + module + "internal/tracestore\"\n", 1},
		{"store subpackage", "package runtime\nimport _ \"" + module + "internal/service/x\"\n", 1},
		{"randomness", "package runtime\nimport _ \"crypto/rand\"\nimport _ \"math/rand/v2\"\n", 2},
		{"files", "package runtime\nimport _ \"os\"\n", 1},
		{"logger", "package runtime\nimport _ \"go.uber.org/zap\"\n", 1},
		{"database", "package runtime\nimport _ \"database/sql\"\n", 1},
		{"network", "package runtime\nimport _ \"net/http\"\n", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := impurities(c.name+".go", []byte(c.src))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.want {
				t.Fatalf("found %q, want %d", got, c.want)
			}
		})
	}
}

// TestCoreIsPure checks every non-test file of this package, and the
// package's whole dependency graph for the shell's packages.
func TestCoreIsPure(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		bad, err := impurities(name, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bad {
			t.Error(b)
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("checked %d files: not the core's directory", checked)
	}

	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the dependencies with")
	}
	out, err := exec.Command(goCmd, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	sort.Strings(deps)
	for _, d := range deps {
		for _, bad := range forbiddenDeps {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("the core depends on %s", d)
			}
		}
	}
}
