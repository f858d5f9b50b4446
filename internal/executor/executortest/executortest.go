// Package executortest lends the executor tests' downstream MCP server
// (internal/executor/internal/downstream) to the tests and benchmarks of
// other packages, which Go's internal rule keeps from importing it. A test
// binary that calls ServeIfAsked first thing (from an init function)
// becomes that server, on stdio, when it is started with Env; so a
// registry's stdio mcp tool can name the test binary itself
// (os.Executable), and no go build is needed.
package executortest

import (
	"os"

	"github.com/nano-vm/nano-vm-mcp/internal/executor/internal/downstream"
)

// serveVar is the variable that asks a test binary to serve.
const serveVar = "NANO_VM_DOWNSTREAM"

// ServeIfAsked serves the downstream server on stdio and exits when the
// process was started with Env; otherwise it returns at once.
func ServeIfAsked() {
	if os.Getenv(serveVar) != "1" {
		return
	}
	if err := downstream.ServeStdio(downstream.ConfigFromEnv()); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// Env is the environment, by name, with which a test binary that calls
// ServeIfAsked serves instead of testing. It also spares a race-enabled
// binary the second it otherwise sleeps at exit.
func Env() map[string]string {
	return map[string]string{serveVar: "1", "GORACE": "atexit_sleep_ms=0"}
}
