package executor

import (
	"time"

	"go.uber.org/zap"
)

// Options is what building executors needs from the server.
type Options struct {
	// RegistryDir resolves relative paths in the registry (token files,
	// binaries given with a relative path, the pins file).
	RegistryDir string
	// Getenv reads the environment (os.Getenv in production, a map in tests).
	Getenv func(string) string
	Log    *zap.Logger

	// Pins is the pins file of the downstream MCP tools (pin.go,
	// docs/tools.md), resolved against RegistryDir when relative;
	// DefaultPinsPath names the usual one, next to the registry. Empty:
	// each mcp executor keeps the pin it takes when it first connects in
	// memory, for its own life only.
	Pins string
	// Now stamps the pins taken (pinned_at); nil leaves the stamp out.
	Now func() time.Time
	// StageDir is the directory the git builtins create stages in, and
	// the only place {{stage}} and git.commit/git.discard accept one from.
	// Set, it survives restarts, so a repeated git.stage finds its stage
	// again; empty, each registry makes a fresh temporary one and removes
	// it on Close.
	StageDir string
}
