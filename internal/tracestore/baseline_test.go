package tracestore

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// TestStoreBaselineContract is the contract for the analyzer's baselines,
// run against every backend like TestStoreContract.
func TestStoreBaselineContract(t *testing.T) {
	ctx := context.Background()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Run("UnknownBaselineIsNotFound", func(t *testing.T) {
				s := open(t)
				for _, def := range []string{"sha256:a", ""} {
					if _, err := s.Baseline(ctx, "p", def); !errors.Is(err, ErrNotFound) {
						t.Fatalf("Baseline(p, %q) of an empty store: %v, want ErrNotFound", def, err)
					}
				}
			})
			t.Run("BaselinesAreKeptPerProgramAndDefinition", func(t *testing.T) {
				s := open(t)
				put := func(program, def, data string) {
					t.Helper()
					if err := s.PutBaseline(ctx, program, def, []byte(data)); err != nil {
						t.Fatal(err)
					}
				}
				get := func(program, def string) string {
					t.Helper()
					b, err := s.Baseline(ctx, program, def)
					if err != nil {
						t.Fatalf("Baseline(%s, %q): %v", program, def, err)
					}
					return string(b)
				}
				put("p", "sha256:a", `{"v":1}`)
				put("q", "sha256:a", `{"q":1}`)
				put("p", "sha256:b", `{"v":2}`)
				if got := get("p", "sha256:a"); got != `{"v":1}` {
					t.Fatalf("p a = %s", got)
				}
				if got := get("p", "sha256:b"); got != `{"v":2}` {
					t.Fatalf("p b = %s", got)
				}
				if got := get("q", "sha256:a"); got != `{"q":1}` {
					t.Fatalf("q a = %s", got)
				}
				if got := get("p", ""); got != `{"v":2}` {
					t.Fatalf("p's latest = %s, want the one saved last", got)
				}
				if _, err := s.Baseline(ctx, "p", "sha256:c"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("another definition's baseline: %v, want ErrNotFound", err)
				}
				// Saving again replaces the pair's baseline and makes it the
				// latest.
				put("p", "sha256:a", `{"v":3}`)
				if got := get("p", "sha256:a"); got != `{"v":3}` {
					t.Fatalf("p a after replacing = %s", got)
				}
				if got := get("p", ""); got != `{"v":3}` {
					t.Fatalf("p's latest after replacing = %s", got)
				}
				if got := get("q", ""); got != `{"q":1}` {
					t.Fatalf("q's latest = %s", got)
				}
			})
			t.Run("ConcurrentSavesLeaveOneLatest", func(t *testing.T) {
				s := open(t)
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for i := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- s.PutBaseline(ctx, "p", string(rune('a'+i)), []byte{byte(i)})
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				b, err := s.Baseline(ctx, "p", "")
				if err != nil || len(b) != 1 {
					t.Fatalf("latest = %v, %v", b, err)
				}
				if again, err := s.Baseline(ctx, "p", ""); err != nil || again[0] != b[0] {
					t.Fatalf("the latest changed between reads: %v then %v, %v", b, again, err)
				}
			})
		})
	}
}
