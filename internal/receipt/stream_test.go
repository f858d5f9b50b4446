package receipt

import (
	"errors"
	"slices"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// counted yields recs and counts how many were taken; after fail records
// it yields err instead.
func counted(recs []tracestore.Record, taken *int, fail int, err error) Records {
	return func(yield func(tracestore.Record, error) bool) {
		for i, r := range recs {
			if fail >= 0 && i == fail {
				yield(tracestore.Record{}, err)
				return
			}
			*taken++
			if !yield(r, nil) {
				return
			}
		}
	}
}

// Reading a trace record by record gives what the whole slice gives,
// reads no more than it needs, and hands a reading error back as it is.
func TestRecordByRecordMatchesTheSlice(t *testing.T) {
	store, id := refundTrace(t, true)
	_, recs := export(t, store, id)
	pub, _ := testKey()
	n := uint64(len(recs))
	env, err := ParseSigned(signed(t, recs, n-1))
	if err != nil {
		t.Fatal(err)
	}

	for _, size := range []uint64{1, n - 1, n} {
		want, err := Derive(recs, size, "k")
		if err != nil {
			t.Fatal(err)
		}
		taken := 0
		got, err := DeriveRecords(counted(recs, &taken, -1, nil), size, "k")
		if err != nil || got.Tree != want.Tree || !slices.Equal(got.Path, want.Path) || got.Counts != want.Counts {
			t.Fatalf("DeriveRecords(%d) = %+v, %v; Derive = %+v", size, got, err, want)
		}
		if uint64(taken) != size {
			t.Errorf("DeriveRecords(%d) read %d records", size, taken)
		}
	}
	all, err := DeriveRecords(counted(recs, new(int), -1, nil), 0, "k")
	if want, _ := Derive(recs, n, "k"); err != nil || all.Tree != want.Tree {
		t.Fatalf("DeriveRecords(0) = %+v, %v; want the whole trace's %+v", all, err, want)
	}
	if _, err := DeriveRecords(counted(recs, new(int), -1, nil), n+1, "k"); err == nil {
		t.Fatal("DeriveRecords beyond the trace: no error")
	}

	rep, err := Check(env, counted(recs, new(int), -1, nil), pub, Options{})
	if want := Verify(env, recs, pub); err != nil || !rep.Valid || rep.Later != 1 || rep.Covered != want.Covered || !want.Valid {
		t.Fatalf("Check = %+v, %v; Verify = %+v", rep, err, want)
	}
	// A broken record: the same problems in the same words.
	broken := slices.Clone(recs)
	broken[2].Body = append(slices.Clone(broken[2].Body[:len(broken[2].Body)-1]), ' ', '}')
	rep, err = Check(env, counted(broken, new(int), -1, nil), pub, Options{})
	if want := Verify(env, broken, pub); err != nil || rep.Valid || !slices.Equal(rep.Problems, want.Problems) {
		t.Fatalf("a broken record: Check %+v, %v; Verify %+v", rep, err, want)
	}

	readErr := errors.New("the disk is gone")
	if _, err := DeriveRecords(counted(recs, new(int), 3, readErr), 0, "k"); !errors.Is(err, readErr) {
		t.Fatalf("DeriveRecords with a reading error: %v", err)
	}
	if _, err := Check(env, counted(recs, new(int), 3, readErr), pub, Options{}); !errors.Is(err, readErr) {
		t.Fatalf("Check with a reading error: %v", err)
	}
}
