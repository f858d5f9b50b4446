package service

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

// The fixtures of the service's tests: the runtime's test programs
// (../runtime/testdata) and the embedded examples.

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const (
	smallPayment = `{"amount": 10, "payee": {"id": "p-1"}}`
	largePayment = `{"amount": 5000}`
)

func loadTestProgram(t testing.TB, path string) *program.Program {
	t.Helper()
	p, err := program.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fourEyes(t testing.TB) *program.Program {
	t.Helper()
	return loadTestProgram(t, "../runtime/testdata/four-eyes.yaml")
}

func js(t testing.TB, s string) any {
	t.Helper()
	v, err := jsonvalue.Decode([]byte(s))
	if err != nil {
		t.Fatalf("bad JSON %s: %v", s, err)
	}
	return v
}

func code(err error) runtime.Code {
	var rej *runtime.Rejection
	if errors.As(err, &rej) {
		return rej.Code
	}
	return ""
}

func lastOf(events []runtime.Event, typ runtime.EventType) *runtime.Event {
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Type == typ {
			return &events[i]
		}
	}
	return nil
}

func exampleProgram(t testing.TB, name string) *program.Program {
	t.Helper()
	src, err := examples.Program(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := program.Load(name, src)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func exampleJSON(t testing.TB, file string) any {
	t.Helper()
	v, err := jsonvalue.Decode(mustRead(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustRead(t testing.TB, file string) []byte {
	t.Helper()
	data, err := examples.FS.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readLines is a JSON Lines file's non-empty lines.
func readLines(t testing.TB, file string) []string {
	var out []string
	for _, l := range strings.Split(string(mustRead(t, file)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func readTestdata(t testing.TB, path string) []byte {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return src
}
