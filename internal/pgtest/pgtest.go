// Package pgtest gives tests a PostgreSQL schema of their own. Tests run
// against NANO_VM_TEST_PG_DSN (default: the local server's test database),
// each in a fresh schema dropped when the test ends. Without a server they
// skip, unless CI=true or NANO_VM_REQUIRE_PG=1 says the server is part of
// the run; then they fail.
package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultDSN is the server tests use when NANO_VM_TEST_PG_DSN is unset.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Required reports whether a missing server is a failure, not a skip.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("NANO_VM_REQUIRE_PG") == "1"
}

// Schema creates a schema named prefix + random hex, dropped when tb ends,
// and returns a DSN whose search_path selects it, and the schema's name.
func Schema(tb testing.TB, prefix string) (dsn, schema string) {
	tb.Helper()
	base := cmp.Or(os.Getenv("NANO_VM_TEST_PG_DSN"), DefaultDSN)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if Required() {
			tb.Fatalf("PostgreSQL is required here (CI=true or NANO_VM_REQUIRE_PG=1) but unreachable: %v", err)
		}
		tb.Skipf("PostgreSQL unreachable, skipping (set NANO_VM_TEST_PG_DSN; CI=true or NANO_VM_REQUIRE_PG=1 make this a failure): %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	schema = prefix + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create test schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop test schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop test schema %s: %v", schema, err)
		}
	})
	return WithSearchPath(tb, base, schema), schema
}

// WithSearchPath adds search_path to a URL or a key=value DSN.
func WithSearchPath(tb testing.TB, dsn, schema string) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn + " search_path=" + schema
	}
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("NANO_VM_TEST_PG_DSN: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
