package executor

import "go.uber.org/zap"

// Options is what building executors needs from the server.
type Options struct {
	// RegistryDir resolves relative paths in the registry (token files,
	// binaries given with a relative path, the pins file).
	RegistryDir string
	// Getenv reads the environment (os.Getenv in production, a map in tests).
	Getenv func(string) string
	Log    *zap.Logger
}
