package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// freshSchema creates a schema of its own in the PostgreSQL database at
// dsn, as make lab does, and returns the connection string that makes it
// the server's search_path, and a function that drops it. A schema per
// run keeps the benchmark's runs away from anything else in the database,
// and the server's subject keys away from another data directory's.
func freshSchema(ctx context.Context, dsn string) (string, func() error, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", nil, fmt.Errorf("postgres (-pg-dsn): %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var b [6]byte
	rand.Read(b[:])
	schema := "nano_vm_load_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("postgres: creating schema %s: %w", schema, err)
	}
	drop := func() error {
		// Dropped even when the benchmark was interrupted.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return fmt.Errorf("postgres: dropping schema %s: %w", schema, err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			return fmt.Errorf("postgres: dropping schema %s: %w", schema, err)
		}
		return nil
	}
	return withSearchPath(dsn, schema), drop, nil
}

// withSearchPath adds search_path=schema to a connection string, a URL or
// keyword/value pairs (the same rule as the Makefile's lab target).
func withSearchPath(dsn, schema string) string {
	switch {
	case !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://"):
		return dsn + " search_path=" + schema
	case strings.Contains(dsn, "?"):
		return dsn + "&search_path=" + schema
	default:
		return dsn + "?search_path=" + schema
	}
}
