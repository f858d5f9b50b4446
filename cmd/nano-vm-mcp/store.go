package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// storeFlags are the same on every subcommand that touches runs.
type storeFlags struct {
	kind    string
	dataDir string
	dsn     string
	sync    string
}

func (f *storeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.kind, "store", "sqlite", "trace store: sqlite (embedded, in --data-dir), postgres (--dsn) or memory (gone at exit)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory: the SQLite store and the server's keys (default $XDG_DATA_HOME/nano-vm-mcp, else ~/.local/share/nano-vm-mcp)")
	fs.StringVar(&f.dsn, "dsn", "", "PostgreSQL connection string, for --store postgres")
	fs.StringVar(&f.sync, "sqlite-synchronous", "full", "full: every acknowledged step survives power loss; normal: faster, but power loss can lose the last steps")
}

// dir resolves the data directory.
func (f *storeFlags) dir() (string, error) {
	if f.dataDir != "" {
		return filepath.Abs(f.dataDir)
	}
	d, err := tracestore.DefaultDataDir()
	if err != nil {
		return "", &exitErr{exitUsage, fmt.Errorf("%w; set --data-dir", err)}
	}
	return d, nil
}

// open opens the chosen store and the server's keyring (from the data
// directory; a memory store gets throwaway keys).
func (f *storeFlags) open(ctx context.Context) (tracestore.Store, *keyring.Keyring, error) {
	if f.kind == "memory" {
		keys, err := keyring.Ephemeral(rand.Reader)
		if err != nil {
			return nil, nil, &exitErr{exitError, err}
		}
		return tracestore.NewMemory(), keys, nil
	}
	dir, err := f.dir()
	if err != nil {
		return nil, nil, err
	}
	keys, err := keyring.Open(dir, rand.Reader)
	if err != nil {
		return nil, nil, &exitErr{exitError, err}
	}
	switch f.kind {
	case "sqlite":
		sync := strings.ToUpper(f.sync)
		if sync != "FULL" && sync != "NORMAL" {
			return nil, nil, &exitErr{exitUsage, fmt.Errorf("--sqlite-synchronous must be full or normal, not %q", f.sync)}
		}
		st, err := tracestore.OpenSQLite(tracestore.SQLitePath(dir), tracestore.SQLiteOptions{Synchronous: sync})
		if err != nil {
			return nil, nil, &exitErr{exitError, err}
		}
		return st, keys, nil
	case "postgres":
		if f.dsn == "" {
			return nil, nil, &exitErr{exitUsage, fmt.Errorf("--store postgres needs --dsn")}
		}
		st, err := tracestore.OpenPostgres(ctx, f.dsn)
		if err != nil {
			return nil, nil, &exitErr{exitError, err}
		}
		return st, keys, nil
	}
	return nil, nil, &exitErr{exitUsage, fmt.Errorf("--store must be sqlite, postgres or memory, not %q", f.kind)}
}

// openService opens the store and the server's keys (open) and builds the
// service over them: how every subcommand that drives or reads runs gets
// its service. The caller closes the store.
func (f *storeFlags) openService(ctx context.Context, log *zap.Logger, o service.Options) (*service.Service, tracestore.Store, *keyring.Keyring, error) {
	st, keys, err := f.open(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	return newService(st, keys, log, o), st, keys, nil
}

// newService builds the service over an open store with the server's
// keys: the one place cmd makes one. o carries what differs by command
// (the run cache's size); log may be nil (no logging).
func newService(st tracestore.Store, keys *keyring.Keyring, log *zap.Logger, o service.Options) *service.Service {
	o.Store, o.Log, o.Secret, o.KEKs = st, log, keys.Secret, keys.KEKs
	return service.New(o)
}
