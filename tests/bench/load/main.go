// Command load is the many-agents load benchmark (issue 16): it starts the
// real nano-vm-mcp binary with serve --transport http on a loopback port,
// once per trace store, and drives C concurrent MCP sessions over
// Streamable HTTP, each its own mcp-go client looping start_run + step on
// the refund example, for a fixed time after a warm-up. For each store and
// each C it prints calls per second, the p50 and p99 latency of a call,
// the errors (any makes the exit status 1), the server's CPU time per call
// and its peak RSS. The reference server's no-op echo
// (@modelcontextprotocol/server-everything, installed by
// tests/bench/setup.sh) is driven the same way as the side-by-side
// baseline, and a 4 KiB overwrite + fdatasync in the data directory's
// filesystem gives the disk's floor, all in the same run.
//
//	tests/bench/setup.sh
//	go run ./tests/bench/load -stores memory,sqlite,postgres -c 1,8,32,128 -d 10s
//
// make bench-load does both. docs/performance.md ("Load: many agents")
// has the results and how they were taken.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stores are the trace stores the benchmark knows, in the order it runs
// them.
var stores = []string{"memory", "sqlite", "postgres"}

// config is one invocation of the benchmark.
type config struct {
	bin         string        // the nano-vm-mcp binary; empty: build it from this module
	stores      []string      // trace stores to measure, each on a server of its own
	concurrency []int         // session counts, each measured in turn on every store
	duration    time.Duration // measured time per store and C
	warmup      time.Duration // untimed calls before each measurement
	pgDSN       string        // PostgreSQL, for the postgres store; a fresh schema is made in it
	dir         string        // where the fresh data directories go (and the fdatasync file)
	echo        bool          // also drive the reference server's echo, when installed
	everything  string        // server-everything's dist/index.js; empty: .cache/bench in this module
	node        string        // the node binary; empty: node on PATH
	syncSamples int           // 4 KiB overwrite + fdatasync samples
	json        bool          // print JSON instead of the table
}

// usageError is a command line the benchmark cannot take.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: load [flags]

Drives C concurrent MCP sessions over Streamable HTTP (start_run + step on
the refund example) against the real nano-vm-mcp binary on each store, and
the reference server's echo at the same C; prints calls/s, p50 and p99 per
call, errors, server CPU per call and peak RSS per store and C. Exit 1 if
any call failed, 2 on a bad command line.

Flags:
`)
		fs.PrintDefaults()
	}
	var cfg config
	var storeList, cList string
	fs.StringVar(&cfg.bin, "bin", "", "nano-vm-mcp binary to run (default: go build ./cmd/nano-vm-mcp of this module into a temporary directory)")
	fs.StringVar(&storeList, "stores", "memory,sqlite,postgres", "comma-separated trace stores: memory, sqlite (durable, synchronous=FULL), postgres")
	fs.StringVar(&cList, "c", "1,8,32,128", "comma-separated numbers of concurrent sessions")
	fs.DurationVar(&cfg.duration, "d", 10*time.Second, "measured time per store and C")
	fs.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "untimed calls before each measurement")
	fs.StringVar(&cfg.pgDSN, "pg-dsn", os.Getenv("NANO_VM_TEST_PG_DSN"), "PostgreSQL connection string for the postgres store; a fresh schema is created in it and dropped at the end (default $NANO_VM_TEST_PG_DSN)")
	fs.StringVar(&cfg.dir, "dir", os.TempDir(), "directory for the fresh data directories and the fdatasync probe: its filesystem is the one measured")
	fs.BoolVar(&cfg.echo, "echo", true, "also drive the reference server's echo at each C (skipped with a note when it is not installed)")
	fs.StringVar(&cfg.everything, "everything", "", "server-everything's dist/index.js (default: .cache/bench in this module, where tests/bench/setup.sh installs it)")
	fs.StringVar(&cfg.node, "node", os.Getenv("NANO_VM_BENCH_NODE"), "node binary for the reference server (default $NANO_VM_BENCH_NODE, else node on PATH)")
	fs.IntVar(&cfg.syncSamples, "sync-samples", 2000, "4 KiB overwrite + fdatasync samples")
	fs.BoolVar(&cfg.json, "json", false, "print the results as JSON instead of the table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return cfg, usagef("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if cfg.stores, err = parseStores(storeList); err != nil {
		return cfg, err
	}
	if cfg.concurrency, err = parseConcurrency(cList); err != nil {
		return cfg, err
	}
	if cfg.duration <= 0 {
		return cfg, usagef("-d %v: the measured time must be positive", cfg.duration)
	}
	if cfg.warmup < 0 {
		return cfg, usagef("-warmup %v: must not be negative", cfg.warmup)
	}
	if cfg.syncSamples < 1 {
		return cfg, usagef("-sync-samples %d: at least one sample is needed", cfg.syncSamples)
	}
	if slices.Contains(cfg.stores, "postgres") && cfg.pgDSN == "" {
		return cfg, usagef("the postgres store needs -pg-dsn or NANO_VM_TEST_PG_DSN (or leave postgres out of -stores)")
	}
	return cfg, nil
}

// parseStores reads -stores: known names, each once.
func parseStores(list string) ([]string, error) {
	var out []string
	for s := range strings.SplitSeq(list, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(stores, s) {
			return nil, usagef("-stores: unknown store %q (have %s)", s, strings.Join(stores, ", "))
		}
		if slices.Contains(out, s) {
			return nil, usagef("-stores: %s is listed twice", s)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseConcurrency reads -c: positive session counts, each once.
func parseConcurrency(list string) ([]int, error) {
	var out []int
	for s := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, usagef("-c: %q is not a positive number of sessions", s)
		}
		if slices.Contains(out, n) {
			return nil, usagef("-c: %d is listed twice", n)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, os.Stderr)
	if rep != nil {
		if cfg.json {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(rep); jerr != nil && err == nil {
				err = jerr
			}
		} else {
			rep.writeTable(os.Stdout)
		}
	}
	if err != nil {
		stop()
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}
