package console

import (
	"html"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// BenchmarkConsolePages measures the pages with 10,000 runs in the store
// (issue 6: every page under 200 ms), on the memory store and on SQLite,
// the embedded default. The runs are real: refund runs driven through the
// service to each of their outcomes, a tenth left running, and 100 KYC
// onboarding runs with their sealed personal data, a rollback and a
// rejection (61 events each).
//
//	go test -run '^$' -bench BenchmarkConsolePages -benchtime 2s ./internal/console
func BenchmarkConsolePages(b *testing.B) {
	for _, store := range []struct {
		name string
		open func(b *testing.B) tracestore.Store
	}{
		{"memory", func(*testing.B) tracestore.Store { return tracestore.NewMemory() }},
		{"sqlite", func(b *testing.B) tracestore.Store {
			// NORMAL: fsync at checkpoints only, so that filling the
			// store takes seconds; reads are the same either way.
			s, err := tracestore.OpenSQLite(filepath.Join(b.TempDir(), "traces.db"), tracestore.SQLiteOptions{Synchronous: "NORMAL"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	} {
		b.Run(store.name, func(b *testing.B) { benchPages(b, newRunsFixtureOn(b, store.open(b))) })
	}
}

func benchPages(b *testing.B, f *runsFixture) {
	refunds := []struct{ input, answers string }{
		{"refund.input.json", "refund.refunded.answers.jsonl"},
		{"refund.large.input.json", "refund.large.refunded.answers.jsonl"},
		{"refund.large.input.json", "refund.large.denied.answers.jsonl"},
		{"refund.late.input.json", "refund.late.denied.answers.jsonl"},
	}
	var kyc, refund string
	const runs, kycRuns = 10_000, 100
	for i := range runs - kycRuns {
		r := refunds[i%len(refunds)]
		a := f.start(b, "refund", r.input)
		if i%10 != 9 {
			a = f.drive(b, a, r.answers)
		}
		refund = a.RunID
	}
	for range kycRuns {
		kyc = f.kyc(b).RunID
	}
	_, first := get(b, f.c, "GET", "/ui/runs?program=refund", nil)
	m := regexp.MustCompile(`<a id="older" rel="next" href="([^"]+)">`).FindStringSubmatch(first)
	if m == nil {
		b.Fatal("no second page")
	}
	for _, bc := range []struct{ name, path string }{
		{"runs", "/ui/runs"},
		{"runs-filtered", "/ui/runs?program=refund&status=completed&outcome=DENIED&since=2026-03-01"},
		{"runs-page-2", html.UnescapeString(m[1])},
		{"run-kyc", "/ui/runs/" + kyc},
		{"run-refund", "/ui/runs/" + refund},
		{"run-state", "/ui/runs/" + kyc + "/state.json"},
		{"programs", "/ui/programs"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if res, body := get(b, f.c, "GET", bc.path, nil); res.StatusCode != http.StatusOK {
				b.Fatalf("%s: %d %s", bc.path, res.StatusCode, body)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				f.c.ServeHTTP(w, httptest.NewRequest("GET", bc.path, nil))
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
