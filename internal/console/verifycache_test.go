package console

import (
	"context"
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
	step := func(name, envelope string, wantCached, wantValid bool, wantLoads int32) {
		t.Helper()
		code, v := postVerify(t, f.c, id, envelope)
		if code != http.StatusOK || v.Cached != wantCached || v.Valid != wantValid || loads.Load() != wantLoads {
			t.Fatalf("%s: status %d, cached %t valid %t after %d loads; want cached %t valid %t after %d",
				name, code, v.Cached, v.Valid, loads.Load(), wantCached, wantValid, wantLoads)
		}
	}
	step("first derived", "", false, true, 1)
	step("again", "", true, true, 1)
	step("the page's receipt", env, false, true, 2)
	step("the page's receipt again", env, true, true, 2)
	// A record changed in place behind the runtime's back leaves the
	// index row as it was: the cache answers until the entry expires.
	counting(flipAt(3, false))
	step("changed in place, within the TTL", env, true, true, 2)
	now = now.Add(VerifyCacheTTL)
	step("changed in place, after the TTL", env, false, false, 3)
	counting(nil)
	now = now.Add(VerifyCacheTTL)
	step("restored", env, false, true, 4)
	if _, err := f.svc.RecordFault(context.Background(), id, runtime.FaultRecord{Fault: "late", SubAttack: "after_end", Expected: "run_finished", Observed: "run_finished"}); err != nil {
		t.Fatal(err)
	}
	step("one event more", env, false, true, 5)
	step("one event more, again", env, true, true, 5)
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
