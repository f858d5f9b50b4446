package tracestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// withCall is info(events) with an open runtime call, leased to holder
// until t0+lease (no holder: the append claims none).
func withCall(events uint64, call, holder string, lease time.Duration) RunInfo {
	ri := info(events)
	ri.Call, ri.LeaseHolder = call, holder
	if holder != "" {
		ri.LeaseExpires = t0.Add(lease)
	}
	return ri
}

// The open-call index and its lease on every backend: the append that
// opens a call writes its lease; another append to the same call keeps
// it; the holder renews, a stranger takes over only once it expired,
// and of many taking one expired lease exactly one wins; closing the call
// ends the lease and takes the run out of the listing.
func TestOpenCallLeaseContract(t *testing.T) {
	ctx := context.Background()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			take := func(run, call, holder string, now, until time.Duration) bool {
				t.Helper()
				ok, err := s.TakeLease(ctx, run, call, holder, t0.Add(now), t0.Add(until))
				if err != nil {
					t.Fatal(err)
				}
				return ok
			}
			listed := func(by time.Duration) string {
				t.Helper()
				got, next, err := s.ListOpenCalls(ctx, OpenCallFilter{ExpiredBy: t0.Add(by)})
				if err != nil || next != "" {
					t.Fatalf("ListOpenCalls: next %q, %v", next, err)
				}
				return awaitingIDs(got)
			}

			if err := s.Append(ctx, "a", recs(0, 2), withCall(2, "call-1", "A", time.Minute)); err != nil {
				t.Fatal(err)
			}
			if ri, err := s.Run(ctx, "a"); err != nil || ri.Call != "call-1" || ri.LeaseHolder != "A" || !ri.LeaseExpires.Equal(t0.Add(time.Minute)) {
				t.Fatalf("Run(a) = %+v, %v; want call-1 leased to A until t0+1m", ri, err)
			}
			if got := listed(0); got != "" {
				t.Errorf("listed before the lease expires: %q", got)
			}
			if got := listed(time.Minute); got != "a" {
				t.Errorf("listed at the lease's expiry: %q, want a", got)
			}
			// Another instance records a rejection: the call and its lease stay.
			if err := s.Append(ctx, "a", recs(2, 1), withCall(3, "call-1", "", 0)); err != nil {
				t.Fatal(err)
			}
			if ri, _ := s.Run(ctx, "a"); ri.LeaseHolder != "A" || !ri.LeaseExpires.Equal(t0.Add(time.Minute)) {
				t.Errorf("after another's append the lease is %q until %v, want A's", ri.LeaseHolder, ri.LeaseExpires)
			}

			for _, c := range []struct {
				name       string
				call, who  string
				now, until time.Duration
				want       bool
			}{
				{"a stranger before expiry", "call-1", "B", 30 * time.Second, 2 * time.Minute, false},
				{"the holder renews", "call-1", "A", 30 * time.Second, 2 * time.Minute, true},
				{"a stranger before the renewed expiry", "call-1", "B", 90 * time.Second, 3 * time.Minute, false},
				{"another call's id", "call-9", "A", 0, 3 * time.Minute, false},
				{"a stranger after expiry takes over", "call-1", "B", 2 * time.Minute, 4 * time.Minute, true},
				{"the old holder cannot renew", "call-1", "A", 2 * time.Minute, 5 * time.Minute, false},
			} {
				if got := take("a", c.call, c.who, c.now, c.until); got != c.want {
					t.Errorf("%s: took %v, want %v", c.name, got, c.want)
				}
			}
			if ri, _ := s.Run(ctx, "a"); ri.LeaseHolder != "B" || !ri.LeaseExpires.Equal(t0.Add(4*time.Minute)) {
				t.Errorf("lease %q until %v, want B's until t0+4m", ri.LeaseHolder, ri.LeaseExpires)
			}
			if _, err := s.TakeLease(ctx, "a", "", "A", t0, t0); err == nil {
				t.Error("TakeLease without a call id: no error")
			}

			// The call ends: no lease, nothing listed, nothing to take.
			if err := s.Append(ctx, "a", recs(3, 1), info(4)); err != nil {
				t.Fatal(err)
			}
			if ri, _ := s.Run(ctx, "a"); ri.Call != "" || ri.LeaseHolder != "" || !ri.LeaseExpires.IsZero() {
				t.Errorf("after the call ended: %+v", ri)
			}
			if got := listed(time.Hour); got != "" {
				t.Errorf("listed after the call ended: %q", got)
			}
			if take("a", "call-1", "B", time.Hour, 2*time.Hour) {
				t.Error("took the lease of an ended call")
			}

			// A call opened by an append that claims no holder is unheld:
			// listed at any time, and exactly one of many takes it.
			if err := s.Append(ctx, "b", recs(0, 1), withCall(1, "call-1", "", 0)); err != nil {
				t.Fatal(err)
			}
			if got := listed(-time.Hour); got != "b" {
				t.Errorf("an unheld call is listed as %q, want b", got)
			}
			var (
				wg  sync.WaitGroup
				mu  sync.Mutex
				won []string
			)
			for i := range 8 {
				wg.Go(func() {
					who := fmt.Sprintf("i%d", i)
					ok, err := s.TakeLease(ctx, "b", "call-1", who, t0, t0.Add(time.Minute))
					if err != nil {
						t.Error(err)
					}
					if ok {
						mu.Lock()
						won = append(won, who)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if len(won) != 1 {
				t.Fatalf("%d instances took one expired lease (%v), want exactly 1", len(won), won)
			}
			if ri, _ := s.Run(ctx, "b"); ri.LeaseHolder != won[0] {
				t.Errorf("the lease is %q's, want the winner %q's", ri.LeaseHolder, won[0])
			}
		})
	}
}

// An append conditional on a lease (RunInfo.IfLease) on every backend:
// it writes when the row holds that call leased to that holder, expired
// or not, and otherwise is refused with ErrLeaseLost, writing nothing:
// another holder took the call over, the call is another or closed, or
// the run has no row. A stale index stays a conflict.
func TestAppendIfLeaseContract(t *testing.T) {
	ctx := context.Background()
	held := func(events uint64, call, holder string) RunInfo {
		ri := info(events)
		ri.IfLease = &Lease{Call: call, Holder: holder}
		return ri
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			// a: call-1 leased to A, then taken over by B once expired.
			if err := s.Append(ctx, "a", recs(0, 1), withCall(1, "call-1", "A", time.Minute)); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.TakeLease(ctx, "a", "call-1", "B", t0.Add(time.Minute), t0.Add(2*time.Minute)); err != nil || !ok {
				t.Fatalf("B's takeover: %v, %v", ok, err)
			}
			// c: call-1 leased to A, whose lease expired with nobody taking it.
			if err := s.Append(ctx, "c", recs(0, 1), withCall(1, "call-1", "A", -time.Minute)); err != nil {
				t.Fatal(err)
			}
			// d: no open call.
			appendN(t, s, "d", 0, 1)

			for _, c := range []struct {
				name    string
				run     string
				from    uint64
				cond    RunInfo
				wantErr error
			}{
				{"the old holder after a takeover", "a", 1, held(2, "call-1", "A"), ErrLeaseLost},
				{"the holder, naming another call", "a", 1, held(2, "call-2", "B"), ErrLeaseLost},
				{"a run without an open call", "d", 1, held(2, "call-1", "A"), ErrLeaseLost},
				{"a run with no row", "none", 0, held(1, "call-1", "A"), ErrLeaseLost},
				{"the holder at a stale index", "a", 0, held(1, "call-1", "B"), ErrConflict},
				{"the holder, closing the call", "a", 1, held(2, "call-1", "B"), nil},
				{"the holder of an expired lease nobody took", "c", 1, held(2, "call-1", "A"), nil},
			} {
				before, _ := s.Run(ctx, c.run)
				err := s.Append(ctx, c.run, recs(c.from, 1), c.cond)
				if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
					t.Errorf("%s: Append = %v, want %v", c.name, err, c.wantErr)
					continue
				}
				after, _ := s.Run(ctx, c.run)
				if after.IfLease != nil {
					t.Errorf("%s: a read returned the append's condition", c.name)
				}
				if c.wantErr != nil {
					if after.Events != before.Events || after.LeaseHolder != before.LeaseHolder || after.Call != before.Call {
						t.Errorf("%s: a refused append changed the row: %+v, was %+v", c.name, after, before)
					}
					if got, _ := s.Load(ctx, c.run); uint64(len(got)) != before.Events {
						t.Errorf("%s: a refused append left %d events, want %d", c.name, len(got), before.Events)
					}
					continue
				}
				if after.Events != c.cond.Events || after.Call != "" || after.LeaseHolder != "" {
					t.Errorf("%s: after the append the row is %+v, want %d events and the call closed", c.name, after, c.cond.Events)
				}
			}
		})
	}
}

// Open calls page by lease expiry, then run id, with a cursor.
func TestListOpenCallsPages(t *testing.T) {
	ctx := context.Background()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			for _, r := range []struct {
				id    string
				lease time.Duration
			}{{"a", 2 * time.Minute}, {"b", time.Minute}, {"c", 3 * time.Minute}, {"d", time.Minute}, {"e", 10 * time.Minute}} {
				if err := s.Append(ctx, r.id, recs(0, 1), withCall(1, "call-1", "h", r.lease)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Append(ctx, "z", recs(0, 1), info(1)); err != nil {
				t.Fatal(err)
			}
			if got := pagesOf(t, func(c string) ([]RunInfo, string, error) {
				return s.ListOpenCalls(ctx, OpenCallFilter{ExpiredBy: t0.Add(5 * time.Minute), Limit: 2, Cursor: c})
			}); got != "b d | a c" {
				t.Errorf("pages %q, want %q", got, "b d | a c")
			}
			if _, _, err := s.ListOpenCalls(ctx, OpenCallFilter{Cursor: "nonsense"}); !errors.Is(err, ErrBadCursor) {
				t.Errorf("a bad cursor: %v, want ErrBadCursor", err)
			}
		})
	}
}

// Recovery's query walks its partial index in order: no scan of the runs
// table, no sort.
func TestSQLiteOpenCallsWalkAnIndex(t *testing.T) {
	s := openTestSQLite(t, SQLiteOptions{})
	for _, after := range []string{"", "r"} {
		q, args := openCallQuery(OpenCallFilter{ExpiredBy: t0}, 5, after, 100, func(n int) string { return fmt.Sprintf("?%d", n) })
		p := queryPlan(t, s, q, args)
		if !strings.Contains(p, "runs_open_call") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("cursor %q: plan %q does not walk runs_open_call in order", after, p)
		}
	}
}
