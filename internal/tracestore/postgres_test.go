package tracestore

import (
	"context"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/pgtest"
)

// pgTestDSN is a DSN for a fresh schema of its own (internal/pgtest).
func pgTestDSN(tb testing.TB) string {
	tb.Helper()
	dsn, _ := pgtest.Schema(tb, "tracestore_test_")
	return dsn
}

// openTestPostgres opens a store in a fresh schema, closed when tb ends.
func openTestPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	dsn := pgTestDSN(tb)
	s, err := OpenPostgres(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestPostgresListsRunIDsInByteOrder(t *testing.T) {
	// In most locales "a-b" sorts after "ab" (punctuation is ignored at
	// first); in byte order it comes before, as in the other backends.
	ctx := context.Background()
	s := openTestPostgres(t)
	for _, id := range []string{"ab", "a-b", "B", "a_b"} {
		appendN(t, s, id, 0, 1)
	}
	page, _, err := s.ListRuns(ctx, ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ri := range page {
		got = append(got, ri.RunID)
	}
	if want := "ab a_b a-b B"; strings.Join(got, " ") != want {
		t.Fatalf("listing order %v, want %s", got, want)
	}
}
