// Command nano-vm-mcp is the governed execution runtime for LLM agents:
// programs are declared state machines, the runtime decides control flow,
// and the calling agent's model only computes bounded, typed steps.
//
// Subcommands: serve, run, validate, graph, export, verify, keys, replay,
// analyze, lab, erase, inspect, version. See --help.
package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

// Exit codes, documented in docs/configuration.md and run --help.
const (
	exitOK         = 0
	exitError      = 1 // I/O and internal errors
	exitUsage      = 2 // bad flags or arguments, invalid programs or files
	exitRunFailed  = 3 // the run ended without reaching a terminal state of the program
	exitIncomplete = 4 // the answers ran out before the run ended
)

// exitErr carries an exit code up to main.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

// usageError is a command line the command cannot take: a missing or extra
// argument, an unknown or missing flag. run prints it with the command's
// usage line, exit 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	var ee *exitErr
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			printErr(stderr, ee.err)
		}
		return ee.code
	}
	var pe *program.Error
	if errors.As(err, &pe) {
		fmt.Fprintln(stderr, pe.Error())
		return exitUsage
	}
	printErr(stderr, err)
	// The root runs nothing itself: its only errors are an unknown
	// command or flag.
	var ue *usageError
	if errors.As(err, &ue) || cmd == root {
		use := cmd.UseLine()
		if cmd == root {
			use = root.Name() + " COMMAND [flags]"
		}
		fmt.Fprintf(stderr, "Usage: %s\nRun '%s --help' for every flag and argument.\n", use, cmd.CommandPath())
		return exitUsage
	}
	// An OS error that no command classified is I/O, not usage; a missing
	// file is a bad argument.
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) && !errors.Is(err, fs.ErrNotExist) {
		return exitError
	}
	return exitUsage
}

// printErr writes err and, for a runtime rejection, each of its details
// (the schema violations of invalid_input, say), as start_run gives them.
func printErr(w io.Writer, err error) {
	fmt.Fprintln(w, "nano-vm-mcp:", err)
	var rej *runtime.Rejection
	if errors.As(err, &rej) {
		for _, d := range rej.Details {
			fmt.Fprintln(w, "  "+d)
		}
	}
}
