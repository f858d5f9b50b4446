package tracestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// heldCommits makes s's commits report their batch sizes, in order, on
// the returned channel; the first commit waits until release is closed,
// so that the appends made meanwhile queue behind it. failAt, when
// positive, makes that commit (counting from 1) fail, after rolling back.
func heldCommits(s *SQLite, failAt int) (sizes chan int, release chan struct{}, errInjected error) {
	sizes, release = make(chan int, 1000), make(chan struct{})
	errInjected = errors.New("injected commit failure")
	var n int
	s.commit = func(tx *sql.Tx, size int) error {
		n++
		sizes <- size
		if n == 1 {
			<-release
		}
		if n == failAt {
			tx.Rollback() //nolint:errcheck
			return errInjected
		}
		return tx.Commit()
	}
	return sizes, release, errInjected
}

// waitQueued waits until n appends wait in s's group committer.
func waitQueued(t *testing.T, s *SQLite, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.group.mu.Lock()
		q := len(s.group.queue)
		s.group.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// batchAppend is one append of a test batch and what it must come to.
type batchAppend struct {
	run     string
	records []Record
	info    RunInfo
	cancel  bool  // its caller gives up once it is queued
	want    error // nil: it lands
}

// appendBatch makes a lone append to "lead" that holds the committer while
// the appends of batch queue behind it, then lets them go as one batch,
// and returns their errors and the sizes of the batches committed after
// the lone one.
func appendBatch(t *testing.T, s *SQLite, failAt int, batch []batchAppend) ([]error, []int, error) {
	t.Helper()
	sizes, release, injected := heldCommits(s, failAt)
	ctx := context.Background()
	lead := make(chan error, 1)
	go func() { lead <- s.Append(ctx, "lead", recs(0, 1), info(1)) }()
	// The lead's commit is held: wait for it, then queue the batch.
	if got := <-sizes; got != 1 {
		t.Fatalf("the lone append went in a batch of %d", got)
	}
	errs := make([]error, len(batch))
	ctxs, cancels := make([]context.Context, len(batch)), make([]context.CancelFunc, len(batch))
	for i := range batch {
		ctxs[i], cancels[i] = context.WithCancel(ctx)
		defer cancels[i]()
	}
	var wg sync.WaitGroup
	for i, a := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Append(ctxs[i], a.run, a.records, a.info)
		}()
		// One at a time, so that the batch's order is the table's.
		waitQueued(t, s, i+1)
		if a.cancel {
			cancels[i]()
		}
	}
	close(release)
	wg.Wait()
	if err := <-lead; err != nil {
		t.Fatalf("the lone append: %v", err)
	}
	close(sizes)
	var got []int
	for n := range sizes {
		got = append(got, n)
	}
	return errs, got, injected
}

// Concurrent appends share one commit; in a batch, an append that fails is
// undone alone and the others land; a run's (run, index) has exactly one
// winner even when both contenders are in one batch.
func TestSQLiteGroupCommit(t *testing.T) {
	s := openTestSQLite(t, SQLiteOptions{})
	ctx := context.Background()
	appendN(t, s, "old", 0, 2)
	if err := s.Append(ctx, "leased", recs(0, 1), withCall(1, "c1", "me", time.Hour)); err != nil {
		t.Fatal(err)
	}
	// An append that fails halfway, after its events are inserted, when
	// its run's row is: its savepoint must undo the events too.
	if _, err := s.w.Exec(`CREATE TRIGGER halfway BEFORE INSERT ON runs WHEN NEW.run_id = 'halfway'
		BEGIN SELECT RAISE(ABORT, 'injected: the row of run halfway'); END`); err != nil {
		t.Fatal(err)
	}
	errHalfway := errors.New("injected: the row of run halfway")
	lostLease := withCall(2, "", "", 0)
	lostLease.IfLease = &Lease{Call: "c1", Holder: "someone-else"}
	batch := []batchAppend{
		{run: "a", records: recs(0, 3), info: info(3)},
		{run: "old", records: recs(2, 1), info: info(3)},
		{run: "stale", records: recs(5, 1), info: info(6), want: ErrConflict},
		{run: "b", records: recs(0, 2), info: info(2)},
		// Two appends at one index of one run, in one batch: the first wins.
		{run: "twice", records: recs(0, 1), info: info(1)},
		{run: "twice", records: recs(0, 1), info: info(1), want: ErrConflict},
		{run: "leased", records: recs(1, 1), info: lostLease, want: ErrLeaseLost},
		{run: "gone", records: recs(0, 1), info: info(1), cancel: true, want: context.Canceled},
		{run: "halfway", records: recs(0, 3), info: info(3), want: errHalfway},
		{run: "c", records: recs(0, 1), info: info(1)},
	}
	errs, sizes, _ := appendBatch(t, s, 0, batch)
	if want := []int{len(batch)}; !slices.Equal(sizes, want) {
		t.Fatalf("batch sizes %v, want %v", sizes, want)
	}
	for i, a := range batch {
		match := errors.Is(errs[i], a.want)
		if a.want == errHalfway {
			match = errs[i] != nil && strings.Contains(errs[i].Error(), errHalfway.Error())
		}
		if (a.want == nil) != (errs[i] == nil) || a.want != nil && !match {
			t.Errorf("append %d to %s: %v, want %v", i, a.run, errs[i], a.want)
		}
	}
	for run, want := range map[string]uint64{"a": 3, "old": 3, "b": 2, "twice": 1, "leased": 1, "c": 1, "lead": 1} {
		got, err := s.Load(ctx, run)
		if err != nil || uint64(len(got)) != want {
			t.Errorf("run %s: %d records (%v), want %d", run, len(got), err, want)
		}
		ri, err := s.Run(ctx, run)
		if err != nil || ri.Events != want {
			t.Errorf("run %s: row says %d events (%v), want %d", run, ri.Events, err, want)
		}
	}
	for _, run := range []string{"stale", "gone", "halfway"} {
		if _, err := s.Load(ctx, run); !errors.Is(err, ErrNotFound) {
			t.Errorf("run %s: %v, want not found", run, err)
		}
	}
}

// A commit that fails fails every append of its batch, and none of them
// is applied, half or whole; the store then takes them again.
func TestSQLiteGroupCommitFailedCommitLosesNothingHalfway(t *testing.T) {
	s := openTestSQLite(t, SQLiteOptions{})
	ctx := context.Background()
	appendN(t, s, "old", 0, 2)
	var batch []batchAppend
	for i := range 6 {
		batch = append(batch, batchAppend{run: fmt.Sprintf("r%d", i), records: recs(0, 2), info: info(2)})
	}
	batch = append(batch, batchAppend{run: "old", records: recs(2, 2), info: info(4)})
	// A conflict with a batch-mate whose write is then undone is no
	// conflict: no append won, so none is told it lost.
	batch = append(batch, batchAppend{run: "r0", records: recs(0, 2), info: info(2)})
	errs, sizes, injected := appendBatch(t, s, 2, batch)
	if want := []int{len(batch)}; !slices.Equal(sizes, want) {
		t.Fatalf("batch sizes %v, want %v", sizes, want)
	}
	for i, err := range errs {
		if !errors.Is(err, injected) {
			t.Errorf("append %d: %v, want the injected commit failure", i, err)
		}
	}
	for i := range 6 {
		if _, err := s.Load(ctx, fmt.Sprintf("r%d", i)); !errors.Is(err, ErrNotFound) {
			t.Errorf("run r%d after the failed commit: %v, want not found", i, err)
		}
	}
	if got, err := s.Load(ctx, "old"); err != nil || len(got) != 2 {
		t.Fatalf("run old after the failed commit: %d records (%v), want 2", len(got), err)
	}
	if ri, err := s.Run(ctx, "old"); err != nil || ri.Events != 2 {
		t.Fatalf("run old's row after the failed commit: %d events (%v), want 2", ri.Events, err)
	}
	// Nothing is stuck: the same appends now land.
	s.commit = func(tx *sql.Tx, _ int) error { return tx.Commit() }
	for _, a := range batch[:len(batch)-1] {
		if err := s.Append(ctx, a.run, a.records, a.info); err != nil {
			t.Fatalf("again, to %s: %v", a.run, err)
		}
	}
}

// Many concurrent appenders, each on its own run, with no held commit:
// every append lands, in order (under -race, the committer's hand-offs
// are checked too).
func TestSQLiteGroupCommitUnderLoad(t *testing.T) {
	s := openTestSQLite(t, SQLiteOptions{})
	var mu sync.Mutex
	commits := 0
	s.commit = func(tx *sql.Tx, _ int) error {
		mu.Lock()
		commits++
		mu.Unlock()
		return tx.Commit()
	}
	const runs, steps = 16, 20
	ctx := context.Background()
	var wg sync.WaitGroup
	for r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range steps {
				if err := s.Append(ctx, fmt.Sprintf("run%d", r), recs(uint64(i), 1), info(uint64(i+1))); err != nil {
					t.Errorf("run%d step %d: %v", r, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for r := range runs {
		got, err := s.Load(ctx, fmt.Sprintf("run%d", r))
		if err != nil || len(got) != steps {
			t.Fatalf("run%d: %d records (%v)", r, len(got), err)
		}
	}
	// How many commits they shared depends on the scheduler; the held
	// tests above pin the batching itself.
	t.Logf("%d appends in %d commits", runs*steps, commits)
}

// waitCheckpoints waits, at most 10 s, until s's checkpointer has run n
// checkpoints, and returns how many it ran.
func waitCheckpoints(s *SQLite, n int64) int64 {
	deadline := time.Now().Add(10 * time.Second)
	for s.checkpoints.done.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return s.checkpoints.done.Load()
}

// The checkpointer copies the log into the database file beside the
// writer: after enough appends it has run, the database file holds the
// data, and the log stopped growing at about the checkpointer's period.
func TestSQLiteCheckpointsBesideTheWriter(t *testing.T) {
	s := openTestSQLite(t, SQLiteOptions{})
	ctx := context.Background()
	size := func(suffix string) int64 {
		fi, err := os.Stat(s.path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	dbBefore := size("")
	const appends = 20 * checkpointEvery
	for i := range appends {
		appendN(t, s, fmt.Sprintf("run%04d", i), 0, 3)
	}
	if n := waitCheckpoints(s, appends/checkpointEvery/2); n < appends/checkpointEvery/2 {
		t.Fatalf("%d checkpoints after %d appends", n, appends)
	}
	if got := size(""); got <= dbBefore {
		t.Fatalf("the database file is %d bytes, as before the appends: nothing was checkpointed", got)
	}
	// Unchecked, the log would hold every page written: far more than the
	// backstop's threshold is ever reached here.
	if wal := size("-wal"); wal >= backstopPages*4096 {
		t.Fatalf("the log is %d bytes: the checkpointer did not keep it short", wal)
	}
	for i := range appends {
		if got, err := s.Load(ctx, fmt.Sprintf("run%04d", i)); err != nil || len(got) != 3 {
			t.Fatalf("run%04d: %d records (%v)", i, len(got), err)
		}
	}
}

// Closing a store twice is harmless, as it was before the checkpointer.
func TestSQLiteCloseTwice(t *testing.T) {
	s, err := OpenSQLite(t.TempDir()+"/traces.db", SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// Large records nudge the checkpointer sooner than checkpointEvery
// appends would.
func TestSQLiteCheckpointsAfterLargeRecords(t *testing.T) {
	s := openTestSQLite(t, SQLiteOptions{})
	ctx := context.Background()
	big := make([]byte, 1<<20)
	for i := range 8 {
		r := Record{Index: 0, Type: "e", Body: big, Hash: []byte{1}}
		if err := s.Append(ctx, fmt.Sprintf("big%d", i), []Record{r}, info(1)); err != nil {
			t.Fatal(err)
		}
	}
	if waitCheckpoints(s, 1) == 0 {
		t.Fatalf("no checkpoint after 8 appends of 1 MiB")
	}
}
