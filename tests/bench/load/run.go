package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// run measures every store at every C, then the reference echo, and
// returns what it measured; the report is returned, partial, with an
// error as well when a server could not run or a call failed. Progress
// and every failed call's error go to log.
func run(ctx context.Context, cfg config, log io.Writer) (*report, error) {
	base, err := os.MkdirTemp(cfg.dir, "nano-vm-load-")
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	defer os.RemoveAll(base)

	rep := &report{
		Started:  time.Now().UTC().Format(time.RFC3339),
		GOOS:     runtime.GOOS,
		GOARCH:   runtime.GOARCH,
		CPUs:     runtime.NumCPU(),
		Go:       runtime.Version(),
		Duration: cfg.duration.String(),
		Warmup:   cfg.warmup.String(),
		LoadAvg:  []string{loadAverage()},
	}
	bin := cfg.bin
	if bin == "" {
		fmt.Fprintln(log, "load: building nano-vm-mcp")
		if bin, err = buildServer(ctx, base); err != nil {
			return nil, err
		}
	}
	// The disk's floor first, while nothing of ours runs.
	rep.Fdatasync, err = measureFdatasync(base, cfg.syncSamples)
	if err != nil {
		return nil, err
	}
	rep.Fdatasync.Dir = cfg.dir // base is gone when the report is read

	var failed int
	measureAll := func(name string, s *server, w workload) error {
		for _, c := range cfg.concurrency {
			fmt.Fprintf(log, "load: %s, %d sessions, %v + %v warm-up\n", name, c, cfg.duration, cfg.warmup)
			r, err := measure(ctx, s, c, cfg.warmup, cfg.duration, w)
			if err != nil {
				return fmt.Errorf("%s, %d sessions: %w", name, c, err)
			}
			r.Target = name
			for _, e := range r.ErrorSamples {
				fmt.Fprintf(log, "load: %s, %d sessions: %s\n", name, c, e)
			}
			failed += r.Errors
			rep.Rows = append(rep.Rows, r)
		}
		return nil
	}

	for _, store := range cfg.stores {
		dataDir, err := os.MkdirTemp(base, store+"-")
		if err != nil {
			return rep, fmt.Errorf("data directory: %w", err)
		}
		args := []string{"serve", "--transport", "http", "--addr", "127.0.0.1:0", "--store", store, "--data-dir", dataDir}
		var dropSchema func() error
		if store == "postgres" {
			dsn, drop, err := freshSchema(ctx, cfg.pgDSN)
			if err != nil {
				return rep, err
			}
			dropSchema = drop
			args = append(args, "--dsn", dsn)
		}
		err = func() error {
			s, err := startNanoVM(ctx, bin, args)
			if err != nil {
				return fmt.Errorf("%s: %w", store, err)
			}
			werr := measureAll(store, s, refundRuns)
			if err := s.stop(); err != nil && werr == nil {
				werr = fmt.Errorf("%s: %w", store, err)
			}
			return werr
		}()
		if dropSchema != nil {
			if derr := dropSchema(); derr != nil && err == nil {
				err = derr
			}
		}
		if err != nil {
			return rep, err
		}
	}

	if cfg.echo {
		node, entry, err := findEverything(cfg)
		switch {
		case errors.Is(err, errNotInstalled):
			fmt.Fprintf(log, "load: no echo baseline: %v\n", err)
			rep.Notes = append(rep.Notes, "no echo baseline: "+err.Error())
		case err != nil:
			return rep, err
		default:
			s, err := startEverything(ctx, node, entry)
			if err != nil {
				return rep, fmt.Errorf("echo: %w", err)
			}
			werr := measureAll("echo", s, echoCalls)
			s.stop() // Node's exit status on SIGTERM says nothing about the calls.
			if werr != nil {
				return rep, werr
			}
		}
	}
	rep.LoadAvg = append(rep.LoadAvg, loadAverage())
	if failed > 0 {
		return rep, fmt.Errorf("%d calls failed (printed above)", failed)
	}
	return rep, nil
}

// moduleRoot is the directory of the go.mod above the working directory.
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
			return "", errors.New("not inside the nano-vm-mcp module (no go.mod above the working directory): pass -bin")
		}
		dir = parent
	}
}

// buildServer builds the server as it ships into dir.
func buildServer(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nano-vm-mcp")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/nano-vm-mcp")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/nano-vm-mcp: %v\n%s", err, out)
	}
	return bin, nil
}

// errNotInstalled: the reference server is not where setup.sh puts it.
var errNotInstalled = errors.New("server-everything is not installed (run tests/bench/setup.sh)")

// everythingEntry is where tests/bench/setup.sh installs the reference
// server, from the module's root.
const everythingEntry = ".cache/bench/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

// findEverything locates node and the reference server. Not installed in
// its default place is errNotInstalled; a -everything or -node given but
// missing is an error of its own.
func findEverything(cfg config) (node, entry string, err error) {
	entry = cfg.everything
	if entry == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", "", fmt.Errorf("%w: %v", errNotInstalled, err)
		}
		entry = filepath.Join(root, everythingEntry)
		if _, err := os.Stat(entry); errors.Is(err, os.ErrNotExist) {
			return "", "", errNotInstalled
		}
	}
	if _, err := os.Stat(entry); err != nil {
		return "", "", fmt.Errorf("-everything: %w", err)
	}
	node = cfg.node
	if node == "" {
		if node, err = exec.LookPath("node"); err != nil {
			return "", "", fmt.Errorf("%w: no node on PATH (or -node, NANO_VM_BENCH_NODE)", errNotInstalled)
		}
	}
	return node, entry, nil
}

// loadAverage is the machine's 1, 5 and 15 minute load averages, from
// /proc/loadavg; empty where there is none.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
