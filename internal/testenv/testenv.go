// Package testenv finds, for tests, the third-party programs the test
// suite depends on. A program that is missing skips the test, except under
// CI=true, where .ci/run has installed it and its absence is a failure.
package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Missing skips t for why, or fails it under CI=true.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: .ci/run installs it before the tests)", why)
	}
	t.Skip(why)
}

// Everything is the node binary and the entry point of the official
// @modelcontextprotocol/server-everything, as tests/bench/setup.sh
// installs it into the module's .cache/bench (started as
// `node ENTRY stdio`). NANO_VM_BENCH_NODE chooses the node binary.
func Everything(t testing.TB) (node, entry string) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	entry = filepath.Join(root, ".cache", "bench", "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	if _, err := os.Stat(entry); err != nil {
		Missing(t, "server-everything is not installed: run tests/bench/setup.sh")
	}
	if node = os.Getenv("NANO_VM_BENCH_NODE"); node == "" {
		if node, err = exec.LookPath("node"); err != nil {
			Missing(t, "no node on PATH (or set NANO_VM_BENCH_NODE)")
		}
	}
	return node, entry
}

// moduleRoot is the nearest directory above the working directory (a
// test's package directory) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}
