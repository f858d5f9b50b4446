package console

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// A repeated verification of the same run and receipt is answered from
// the cache, without reading the trace, until the run grows or the entry
// is VerifyCacheTTL old.
func TestVerifyAnsweredFromCache(t *testing.T) {
	f := newRunsFixture(t)
	id := f.kyc(t).RunID
	env := pageReceipt(t, f.c, id)
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	f.c.cfg.Clock = func() time.Time { return now }
	var loads atomic.Int32
	counting := func(tamper func([]tracestore.Record) []tracestore.Record) {
		f.store.set(func(recs []tracestore.Record) []tracestore.Record {
			loads.Add(1)
			if tamper != nil {
				return tamper(recs)
			}
			return recs
		})
	}
	counting(nil)
	defer f.store.set(nil)
	// read reports whether the verification read the trace.
	step := func(name, envelope string, wantCached, wantValid, wantRead bool) {
		t.Helper()
		before := loads.Load()
		code, v := postVerify(t, f.c, id, envelope)
		if read := loads.Load() > before; code != http.StatusOK || v.Cached != wantCached || v.Valid != wantValid || read != wantRead {
			t.Fatalf("%s: status %d, cached %t valid %t, read the trace %t; want cached %t valid %t, read %t",
				name, code, v.Cached, v.Valid, read, wantCached, wantValid, wantRead)
		}
	}
	step("first derived", "", false, true, true)
	step("again", "", true, true, false)
	step("the page's receipt", env, false, true, true)
	step("the page's receipt again", env, true, true, false)
	// A record changed in place behind the runtime's back leaves the
	// index row as it was: the cache answers until the entry expires.
	counting(flipAt(3, false))
	step("changed in place, within the TTL", env, true, true, false)
	now = now.Add(VerifyCacheTTL)
	step("changed in place, after the TTL", env, false, false, true)
	counting(nil)
	now = now.Add(VerifyCacheTTL)
	step("restored", env, false, true, true)
	if _, err := f.svc.RecordFault(context.Background(), id, runtime.FaultRecord{Fault: "late", SubAttack: "after_end", Expected: "run_finished", Observed: "run_finished"}); err != nil {
		t.Fatal(err)
	}
	step("one event more", env, false, true, true)
	step("one event more, again", env, true, true, false)
}

// At most VerifyConcurrency verifications run at once; one more is
// answered 429 with Retry-After, while a cached answer needs no slot.
func TestVerifyConcurrencyIsLimited(t *testing.T) {
	f := newRunsFixture(t)
	id := f.kyc(t).RunID
	if code, v := postVerify(t, f.c, id, ""); code != http.StatusOK || v.Cached {
		t.Fatalf("first verification: %d %+v", code, v)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	f.c.verifying = func() { entered <- struct{}{}; <-release }
	var wg sync.WaitGroup
	codes := make([]int, DefaultVerifyConcurrency)
	for i := range DefaultVerifyConcurrency {
		wg.Go(func() {
			// Distinct receipts: distinct keys, each needing a slot.
			codes[i], _ = postVerify(t, f.c, id, "{not json "+strings.Repeat("x", i))
		})
		<-entered
	}
	r := httptest.NewRequest("POST", "/ui/runs/"+id+"/receipt/verify", strings.NewReader(url.Values{"receipt": {"{another"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	f.c.ServeHTTP(w, r)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("one verification beyond the limit: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if code, v := postVerify(t, f.c, id, ""); code != http.StatusOK || !v.Cached {
		t.Fatalf("a cached verification while every slot is taken: %d %+v", code, v)
	}
	close(release)
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("verification %d holding a slot: %d", i, code)
		}
	}
	f.c.verifying = nil
	if code, _ := postVerify(t, f.c, id, "{another"); code != http.StatusOK {
		t.Fatalf("after the slots are free: %d", code)
	}
}

// scanOnly is a store whose traces can be read record by record only.
type scanOnly struct {
	tracestore.Store
	scans atomic.Int32
}

func (s *scanOnly) Load(context.Context, string) ([]tracestore.Record, error) {
	return nil, errors.New("the receipt check loaded the whole trace")
}

func (s *scanOnly) LoadPrefix(context.Context, string, uint64) ([]tracestore.Record, error) {
	return nil, errors.New("the receipt check loaded the whole trace")
}

func (s *scanOnly) Scan(ctx context.Context, runID string, n uint64) iter.Seq2[tracestore.Record, error] {
	s.scans.Add(1)
	return s.Store.(tracestore.Scanner).Scan(ctx, runID, n)
}

// The receipt check reads the trace record by record, never as a whole
// slice, for a posted receipt and a derived one alike.
func TestVerifyReadsTheTraceRecordByRecord(t *testing.T) {
	f := newRunsFixture(t)
	id := f.kyc(t).RunID
	env := pageReceipt(t, f.c, id)
	store := &scanOnly{Store: f.store.Store}
	f.c.cfg.Store = store
	for _, envelope := range []string{env, ""} {
		code, v := postVerify(t, f.c, id, envelope)
		if code != http.StatusOK || !v.Valid {
			t.Fatalf("status %d: %+v", code, v)
		}
	}
	if store.scans.Load() == 0 {
		t.Fatal("the trace was never scanned")
	}
	// A store that fails while a check reads it gets no verdict, and none
	// is cached.
	f.c.cfg.Store = &failingScan{Store: f.store.Store}
	if code, _ := postVerify(t, f.c, id, "{another"); code != http.StatusInternalServerError {
		t.Fatalf("a failing store: %d, want 500", code)
	}
}

// failingScan fails every scan after its first record.
type failingScan struct{ tracestore.Store }

func (s *failingScan) Scan(ctx context.Context, runID string, n uint64) iter.Seq2[tracestore.Record, error] {
	return func(yield func(tracestore.Record, error) bool) {
		for r, err := range s.Store.(tracestore.Scanner).Scan(ctx, runID, n) {
			if err != nil || !yield(r, nil) {
				return
			}
			yield(tracestore.Record{}, errors.New("the disk is gone"))
			return
		}
	}
}
