// Command serve runs the executor tests' downstream MCP server on stdio:
//
//	go run ./internal/executor/internal/downstream/serve
//
// DOWNSTREAM_DRIFT (description or schema) changes echo's listing, and
// DOWNSTREAM_COUNT_FILE names the file the count tool appends keys to.
package main

import (
	"fmt"
	"os"

	"github.com/nano-vm/nano-vm-mcp/internal/executor/internal/downstream"
)

func main() {
	if err := downstream.ServeStdio(downstream.ConfigFromEnv()); err != nil {
		fmt.Fprintln(os.Stderr, "downstream:", err)
		os.Exit(1)
	}
}
