package fastpath

import (
	"os"
	"strings"
	"testing"
)

// libraryPath is the module whose compiled schemas the checker mirrors.
const libraryPath = "github.com/santhosh-tekuri/jsonschema/v6"

// TestLibraryVersionIsTheMirroredOne fails when the JSON Schema library is
// upgraded or replaced in go.mod: the checker reads the library's compiled
// form and must agree with its verdicts (doc.go), so a new version is
// accepted only after someone re-checks the mirror (TestFastSchemaFields,
// the differential tests, a run of FuzzFastPath) and moves
// MirroredVersion. go.mod is read because test binaries carry no module
// build info.
func TestLibraryVersionIsTheMirroredOne(t *testing.T) {
	mod, err := os.ReadFile("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var required []string
	for line := range strings.Lines(string(mod)) {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		switch {
		case len(f) >= 2 && f[0] == libraryPath:
			required = append(required, f[1])
		case len(f) >= 3 && (f[0] == "replace" && f[1] == libraryPath || f[0] == libraryPath && f[1] == "=>"),
			len(f) >= 2 && f[0] == "replace" && strings.HasPrefix(f[1], libraryPath+" "):
			t.Fatalf("go.mod replaces %s: re-check the mirror (doc.go) against the replacement", libraryPath)
		}
	}
	if len(required) != 1 {
		t.Fatalf("go.mod requires %s %d times (%v), want once", libraryPath, len(required), required)
	}
	if required[0] != MirroredVersion {
		t.Fatalf("go.mod requires %s %s; the fast path mirrors %s. Re-check the mirror (doc.go), then set MirroredVersion",
			libraryPath, required[0], MirroredVersion)
	}
}
