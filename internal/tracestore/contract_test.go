package tracestore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// backends lists every Store under test; each later backend joins here and
// must pass the whole contract.
func backends(t *testing.T) map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"memory": func(t *testing.T) Store { return NewMemory() },
	}
}

func recs(from uint64, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Index: from + uint64(i), Type: "e", Body: []byte(fmt.Sprintf(`{"i":%d}`, from+uint64(i)))}
	}
	return out
}

func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("LoadUnknownRunIsNotFound", func(t *testing.T) {
				s := open(t)
				if _, err := s.Load(ctx, "nope"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Load unknown: got %v, want ErrNotFound", err)
				}
			})
			t.Run("AppendThenLoadReturnsRecordsInOrder", func(t *testing.T) {
				s := open(t)
				if err := s.Append(ctx, "r", recs(0, 3)); err != nil {
					t.Fatal(err)
				}
				if err := s.Append(ctx, "r", recs(3, 2)); err != nil {
					t.Fatal(err)
				}
				got, err := s.Load(ctx, "r")
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 5 {
					t.Fatalf("got %d records, want 5", len(got))
				}
				for i, r := range got {
					if r.Index != uint64(i) || string(r.Body) != fmt.Sprintf(`{"i":%d}`, i) {
						t.Fatalf("record %d = %+v", i, r)
					}
				}
			})
			t.Run("AppendAtWrongIndexConflictsAndWritesNothing", func(t *testing.T) {
				s := open(t)
				if err := s.Append(ctx, "r", recs(0, 2)); err != nil {
					t.Fatal(err)
				}
				for _, bad := range [][]Record{recs(1, 2), recs(3, 1), {{Index: 2}, {Index: 4}}} {
					if err := s.Append(ctx, "r", bad); !errors.Is(err, ErrConflict) {
						t.Fatalf("Append %v: got %v, want ErrConflict", bad, err)
					}
				}
				got, _ := s.Load(ctx, "r")
				if len(got) != 2 {
					t.Fatalf("conflicting appends wrote records: %d", len(got))
				}
			})
			t.Run("ConcurrentAppendsAtSameIndexExactlyOneWins", func(t *testing.T) {
				s := open(t)
				if err := s.Append(ctx, "r", recs(0, 1)); err != nil {
					t.Fatal(err)
				}
				const n = 32
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for i := 0; i < n; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- s.Append(ctx, "r", recs(1, 2))
					}()
				}
				wg.Wait()
				close(errs)
				wins := 0
				for err := range errs {
					switch {
					case err == nil:
						wins++
					case !errors.Is(err, ErrConflict):
						t.Fatalf("unexpected error %v", err)
					}
				}
				if wins != 1 {
					t.Fatalf("%d appends won, want exactly 1", wins)
				}
				if got, _ := s.Load(ctx, "r"); len(got) != 3 {
					t.Fatalf("trace has %d records, want 3", len(got))
				}
			})
			t.Run("ProgramsAreStoredByHash", func(t *testing.T) {
				s := open(t)
				if _, err := s.Program(ctx, "sha256:x"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("unknown program: %v", err)
				}
				if err := s.PutProgram(ctx, "sha256:x", []byte("a")); err != nil {
					t.Fatal(err)
				}
				if err := s.PutProgram(ctx, "sha256:x", []byte("a")); err != nil {
					t.Fatalf("second put: %v", err)
				}
				got, err := s.Program(ctx, "sha256:x")
				if err != nil || string(got) != "a" {
					t.Fatalf("Program = %q, %v", got, err)
				}
			})
		})
	}
}
