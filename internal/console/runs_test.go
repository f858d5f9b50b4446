package console

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// runsFixture is a console over a memory store with the examples loaded,
// a clock the test moves (a second a reading), and a store wrapper that can tamper with what
// the console loads (the service reads the store untouched).
type runsFixture struct {
	c     *Console
	svc   *service.Service
	store *tamperStore
	mu    sync.Mutex
	now   time.Time
}

func newRunsFixture(t testing.TB) *runsFixture {
	return newRunsFixtureOn(t, tracestore.NewMemory())
}

// newRunsFixtureOn is a runsFixture over the given store.
func newRunsFixtureOn(t testing.TB, inner tracestore.Store) *runsFixture {
	t.Helper()
	f := &runsFixture{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	f.store = &tamperStore{Store: inner}
	keys, err := keyring.Ephemeral(strings.NewReader(strings.Repeat("k", 64)))
	if err != nil {
		t.Fatal(err)
	}
	f.svc = service.New(service.Options{Store: inner, Secret: keys.Secret, KEKs: keys.KEKs, Clock: f.clock})
	addExamples(t, f.svc)
	if f.c, err = New(Config{Service: f.svc, Store: f.store, Keys: keys, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *runsFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(time.Second)
	return f.now
}

// at moves the clock to t.
func (f *runsFixture) at(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.mu.Unlock()
}

// start starts a run of the example program with the named input file.
func (f *runsFixture) start(t testing.TB, prog, inputFile string) service.Answer {
	t.Helper()
	a, err := f.svc.Start(context.Background(), prog, exampleValue(t, inputFile), "alice")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// drive answers a's run with the answers file, one line per task.
func (f *runsFixture) drive(t testing.TB, a service.Answer, answersFile string) service.Answer {
	t.Helper()
	data, err := examples.FS.ReadFile(answersFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		a = f.answer(t, a, line)
	}
	return a
}

// answer submits one answer (JSON text) to a's open task, and returns the
// run's answer after it.
func (f *runsFixture) answer(t testing.TB, a service.Answer, line string) service.Answer {
	t.Helper()
	ctx := context.Background()
	out, err := jsonvalue.Decode([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	task := a.Task
	var next service.Answer
	switch {
	case task == nil:
		t.Fatalf("run %s has no open task", a.RunID)
	case task.Kind == string(program.KindApproval):
		next, err = f.svc.Decide(ctx, a.RunID, runtime.Decide{Seq: task.Seq, Role: task.Role, Decision: out, Principal: "carol"})
	case task.Tool != nil:
		next, err = f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: task.Seq, Tool: task.Tool.Name, Actor: runtime.ActorTool, Output: out})
	default:
		next, err = f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: task.Seq, Output: out})
	}
	// The examples' answers include refused ones on purpose: the run
	// records the rejection and the task stays open.
	var rej *runtime.Rejection
	if err != nil && !errors.As(err, &rej) {
		t.Fatalf("answer %s: %v", line, err)
	}
	return next
}

// kyc drives an approved KYC onboarding run to its end.
func (f *runsFixture) kyc(t testing.TB) service.Answer {
	t.Helper()
	a := f.drive(t, f.start(t, "kyc-onboarding", "kyc-onboarding.input.json"), "kyc-onboarding.approved.answers.jsonl")
	if a.Outcome != "APPROVED" {
		t.Fatalf("the KYC run ended %s %s", a.Status, a.Outcome)
	}
	return a
}

func exampleValue(t testing.TB, file string) any {
	t.Helper()
	data, err := examples.FS.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonvalue.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tamperStore hands out records changed by tamper, when set.
type tamperStore struct {
	tracestore.Store
	mu     sync.Mutex
	tamper func([]tracestore.Record) []tracestore.Record
}

func (s *tamperStore) set(f func([]tracestore.Record) []tracestore.Record) {
	s.mu.Lock()
	s.tamper = f
	s.mu.Unlock()
}

func (s *tamperStore) Load(ctx context.Context, runID string) ([]tracestore.Record, error) {
	return s.LoadPrefix(ctx, runID, math.MaxUint64)
}

// LoadPrefix is what the receipt check reads record by record (the
// wrapper has no Scan of its own, so tracestore.Records falls back to it).
func (s *tamperStore) LoadPrefix(ctx context.Context, runID string, n uint64) ([]tracestore.Record, error) {
	recs, err := s.Store.LoadPrefix(ctx, runID, n)
	s.mu.Lock()
	f := s.tamper
	s.mu.Unlock()
	if err != nil || f == nil {
		return recs, err
	}
	cp := make([]tracestore.Record, len(recs))
	for i, r := range recs {
		cp[i] = tracestore.Record{Index: r.Index, Type: r.Type, Body: bytes.Clone(r.Body), Hash: bytes.Clone(r.Hash)}
	}
	return f(cp), nil
}

// flipAt changes one digit of record i's "at" time: still valid JSON, no
// longer the event that was hashed. With rehash, the record's stored hash
// is recomputed too, as a forger would.
func flipAt(i int, rehash bool) func([]tracestore.Record) []tracestore.Record {
	return func(recs []tracestore.Record) []tracestore.Record {
		if i < 0 {
			i += len(recs)
		}
		b := recs[i].Body
		at := bytes.Index(b, []byte(`"at":"`)) + len(`"at":"`)
		b[at+3] = '0' + (b[at+3]-'0'+1)%10 // the year's last digit
		if rehash {
			recs[i].Hash = trace.LeafHash(b)
		}
		return recs
	}
}

// piiOfTheKYCExample is the customer's personal data in the KYC example's
// input and answers: none of it may reach a console page.
var piiOfTheKYCExample = []string{
	"Johanna", "JOHANNA", "Lindqvist", "LINDQVIST", "johanna.lindqvist@example.com", "1988-03-14", "14 MAR 1988",
	"CUS-88213", "Hornsgatan", "94117352", "Nordvik",
}

func assertNoPII(t *testing.T, where, body string) {
	t.Helper()
	for _, pii := range piiOfTheKYCExample {
		if strings.Contains(body, pii) {
			t.Errorf("%s shows personal data %q", where, pii)
		}
	}
}

// runIDsIn lists the run ids of the runs table's rows, in order.
func runIDsIn(body string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`<tr data-run-id="([^"]+)">`).FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestRunsListFiltersByProgramStatusOutcomeAndTime(t *testing.T) {
	f := newRunsFixture(t)
	day := func(d int) time.Time { return time.Date(2026, 3, d, 9, 0, 0, 0, time.UTC) }
	f.at(day(1))
	approved := f.kyc(t).RunID
	f.at(day(2))
	refunded := f.drive(t, f.start(t, "refund", "refund.input.json"), "refund.refunded.answers.jsonl")
	if refunded.Outcome != "REFUNDED" {
		t.Fatalf("refund run ended %s", refunded.Outcome)
	}
	f.at(day(3))
	running := f.start(t, "kyc-onboarding", "kyc-onboarding.input.json").RunID

	for _, tc := range []struct {
		query string
		want  []string // newest first
	}{
		{"", []string{running, refunded.RunID, approved}},
		{"program=kyc-onboarding", []string{running, approved}},
		{"program=refund", []string{refunded.RunID}},
		{"status=running", []string{running}},
		{"status=completed", []string{refunded.RunID, approved}},
		{"outcome=APPROVED", []string{approved}},
		{"outcome=REFUNDED&program=kyc-onboarding", nil},
		{"since=2026-03-02", []string{running, refunded.RunID}},
		{"until=2026-03-02", []string{refunded.RunID, approved}},
		{"since=2026-03-02&until=2026-03-02", []string{refunded.RunID}},
		{"since=2026-03-02T12:00", []string{running}},
		{"status=&outcome=&program=", []string{running, refunded.RunID, approved}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			res, body := get(t, f.c, "GET", "/ui/runs?"+tc.query, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", res.StatusCode, body)
			}
			if got := runIDsIn(body); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("runs %v, want %v", got, tc.want)
			}
			if !strings.Contains(body, `id="runs-table"`) {
				t.Error("no runs table")
			}
		})
	}

	_, body := get(t, f.c, "GET", "/ui/runs", nil)
	for _, want := range []string{
		`<a href="/ui/runs/` + approved + `">`, "kyc-onboarding", "APPROVED", "REFUNDED", ">running<", "2026-03-01 09:00:01Z", "alice",
		`<option value="kyc-onboarding">`, `<option value="FAILED">`, `<option value="cancelled">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the list lacks %q", want)
		}
	}
	assertNoPII(t, "the runs list", body)
}

func TestRunsListRefusesUnknownFilterValues(t *testing.T) {
	f := newRunsFixture(t)
	f.start(t, "refund", "refund.input.json")
	for _, tc := range []struct{ query, says string }{
		{"program=nope", `no program is named &#34;nope&#34;`},
		{"status=done", `&#34;done&#34; is not a run status`},
		{"outcome=MAYBE", `no program ends with the outcome &#34;MAYBE&#34;`},
		{"since=yesterday", "since: &#34;yesterday&#34; is not a date"},
		{"until=2026-13-01", "until: &#34;2026-13-01&#34; is not a date"},
		{"since=2026-03-05&until=2026-03-01", "must come before until"},
		{"cursor=garbage", "the cursor &#34;garbage&#34; is not one this list handed out"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			res, body := get(t, f.c, "GET", "/ui/runs?"+tc.query, nil)
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", res.StatusCode)
			}
			if !strings.Contains(body, `role="alert"`) || !strings.Contains(body, tc.says) {
				t.Errorf("the page does not say %q:\n%s", tc.says, body)
			}
			if strings.Contains(body, `id="runs-table"`) {
				t.Error("a refused filter still lists runs")
			}
		})
	}
}

func TestRunsListPagesThroughEveryRunOnce(t *testing.T) {
	f := newRunsFixture(t)
	want := map[string]bool{}
	for range 2*runsPageSize + 7 {
		want[f.start(t, "refund", "refund.input.json").RunID] = true
	}
	f.start(t, "kyc-onboarding", "kyc-onboarding.input.json") // filtered out
	seen := map[string]bool{}
	next, pages := "/ui/runs?program=refund", 0
	older := regexp.MustCompile(`<a id="older" rel="next" href="([^"]+)">`)
	for next != "" {
		pages++
		res, body := get(t, f.c, "GET", next, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", next, res.StatusCode)
		}
		for _, id := range runIDsIn(body) {
			if seen[id] || !want[id] {
				t.Fatalf("page %d lists %s again or unasked", pages, id)
			}
			seen[id] = true
		}
		if pages > 1 && !strings.Contains(body, `id="newest"`) {
			t.Errorf("page %d has no link to the newest runs", pages)
		}
		next = ""
		if m := older.FindStringSubmatch(body); m != nil {
			next = html.UnescapeString(m[1])
			if u, _ := url.Parse(next); u.Query().Get("program") != "refund" {
				t.Errorf("the next page %s drops the filter", next)
			}
		}
	}
	if pages != 3 || len(seen) != len(want) {
		t.Errorf("%d pages listed %d runs, want 3 pages and %d runs", pages, len(seen), len(want))
	}
}

func TestRunPageShowsPathTimelineTasksAndNoPersonalData(t *testing.T) {
	f := newRunsFixture(t)
	id := f.kyc(t).RunID
	ctx := context.Background()
	run, _, err := f.svc.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := f.store.Load(ctx, id)
	events, _ := f.svc.Events(ctx, id)

	for _, who := range []struct {
		name string
		p    *access.Principal
	}{{"auditor", nil}, {"operator", operator}} {
		t.Run(who.name, func(t *testing.T) {
			res, body := get(t, f.c, "GET", "/ui/runs/"+id, who.p)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", res.StatusCode, body)
			}
			assertNoPII(t, "the run page", body)

			// The graph, highlighted: every state of the path, the final one current.
			for _, st := range run.Path {
				if !regexp.MustCompile(`<g id="` + stateID(st) + `" class="(current )?on-path `).MatchString(body) {
					t.Errorf("state %s of the path is not highlighted", st)
				}
			}
			if !strings.Contains(body, `<g id="`+stateID("approved")+`" class="current on-path `) {
				t.Error("the final state is not marked current")
			}
			if !strings.Contains(body, `class="graph"`) || !strings.Contains(body, `id="path-table"`) {
				t.Error("no graph or no path table")
			}
			pathTable := between(body, `<table id="path-table">`, `</table>`)
			if n := strings.Count(pathTable, "<tr"); n != len(run.Path)+1 {
				t.Errorf("the path table has %d rows, want %d and a header", n-1, len(run.Path))
			}
			if !strings.Contains(pathTable, "rollback") {
				t.Error("the path table does not show the rollback")
			}

			// The timeline: one row per event, with the stored hash.
			tl := between(body, `<table id="timeline">`, `</table>`)
			if n := strings.Count(tl, `<tr id="ev-`); n != len(recs) {
				t.Errorf("the timeline has %d rows, want %d", n, len(recs))
			}
			for i, r := range recs {
				h := hex.EncodeToString(r.Hash)
				if !strings.Contains(tl, fmt.Sprintf(`<tr id="ev-%d"`, i)) || !strings.Contains(tl, `title="`+h+`">`+h[:12]+`</code>`) {
					t.Errorf("event %d or its hash %s is missing from the timeline", i, h[:12])
				}
			}
			for _, want := range []string{"run_started", "task_issued", "guard_evaluated", "transitioned", "run_finished", "collect_customer_data → screen_sanctions"} {
				if !strings.Contains(tl, want) {
					t.Errorf("the timeline lacks %q", want)
				}
			}

			// The tasks, as the model saw them, redacted.
			issued := 0
			for _, e := range events {
				if e.Type == runtime.EventTaskIssued {
					issued++
				}
			}
			if n := strings.Count(body, `<article class="card task"`); n != issued {
				t.Errorf("%d tasks shown, %d issued", n, issued)
			}
			for _, want := range []string{
				"Collect the customer&#39;s identity data", "sanctions_screen", "decision_ledger.seal", "Attempts left",
				`&#34;$redacted&#34;: &#34;personal_data&#34;`, `&#34;product&#34;: &#34;current_account&#34;`,
				`&#34;lists&#34;: [`, `&#34;application_id&#34;: &#34;APP-2025-004817&#34;`,
			} {
				if !strings.Contains(body, want) {
					t.Errorf("the tasks lack %s", want)
				}
			}

			// The receipt and the live-update hooks.
			for _, want := range []string{`id="receipt-json"`, `id="verify-receipt"`, `id="receipt-checks"`, `id="receipt-verdict"`,
				`nano-vm-receipt/2`, `data-run-id="` + id + `"`, `data-running="false"`, `id="live"`, `<script src="/ui/static/run.js" defer>`} {
				if !strings.Contains(body, want) {
					t.Errorf("the page lacks %s", want)
				}
			}
			if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") {
				t.Error("inline script on the page")
			}
		})
	}
}

// between is the part of s from the first from to the next to.
func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	in, _, _ := strings.Cut(rest, to)
	return in
}

func TestRunPageMarksRejectionsFaultsAndErasure(t *testing.T) {
	f := newRunsFixture(t)
	ctx := context.Background()
	a := f.start(t, "kyc-onboarding", "kyc-onboarding.input.json")
	if _, err := f.svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Task.Seq, Output: map[string]any{"full_name": "Johanna Fake"}}); err == nil {
		t.Fatal("an answer missing required fields was accepted")
	}
	if _, err := f.svc.RecordFault(ctx, a.RunID, runtime.FaultRecord{Fault: "schema_attack", SubAttack: "missing_fields", Expected: "schema_violation", Observed: "schema_violation"}); err != nil {
		t.Fatal(err)
	}

	_, body := get(t, f.c, "GET", "/ui/runs/"+a.RunID, nil)
	assertNoPII(t, "the running run's page", body)
	for _, want := range []string{`class="rejected"`, `<strong>submission_rejected</strong>`, "schema_violation: the output does not match",
		`class="fault"`, "schema_attack/missing_fields", `data-running="true"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}

	res, err := f.svc.EraseSubject(ctx, service.EraseOptions{SubjectID: "CUS-88213", Reason: "request of the data subject", Principal: "dpo"})
	if err != nil || res.Status != service.ErasureErased {
		t.Fatalf("erase: %v %+v", err, res)
	}
	_, body = get(t, f.c, "GET", "/ui/runs/"+a.RunID, operator)
	assertNoPII(t, "the erased run's page", body)
	for _, want := range []string{`class="erased"`, "subject_erased", `&#34;$erased&#34;`, `data-running="false"`, "cancelled"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page of the erased run lacks %s", want)
		}
	}
}

// postVerify posts a receipt (none: "") to the verify endpoint for JSON.
func postVerify(t testing.TB, h http.Handler, id, envelope string) (int, verification) {
	t.Helper()
	form := url.Values{}
	if envelope != "" {
		form.Set("receipt", envelope)
	}
	r := httptest.NewRequest("POST", "/ui/runs/"+id+"/receipt/verify", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Accept", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var v verification
	body, _ := io.ReadAll(w.Result().Body)
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
	}
	return w.Code, v
}

// pageReceipt is the envelope the run page's verify form posts.
func pageReceipt(t testing.TB, h http.Handler, id string) string {
	t.Helper()
	_, body := get(t, h, "GET", "/ui/runs/"+id, nil)
	m := regexp.MustCompile(`name="receipt" value="([^"]*)"`).FindStringSubmatch(body)
	if m == nil || m[1] == "" {
		t.Fatalf("the page has no receipt to verify")
	}
	return html.UnescapeString(m[1])
}

func checksByName(v verification) map[string]check {
	out := map[string]check{}
	for _, c := range v.Checks {
		out[c.Name] = c
	}
	return out
}

func TestVerifyReceiptPassesEveryCheckOnAnIntactTrace(t *testing.T) {
	f := newRunsFixture(t)
	id := f.kyc(t).RunID
	env := pageReceipt(t, f.c, id)
	for _, tc := range []struct{ name, envelope, source string }{
		{"the page's receipt", env, "posted"},
		{"receipt.json's bytes: the envelope and one newline", env + "\n", "posted"},
		{"a receipt derived now", "", "derived"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, v := postVerify(t, f.c, id, tc.envelope)
			if code != http.StatusOK || !v.Valid || len(v.Problems) != 0 || v.Source != tc.source {
				t.Fatalf("status %d, %+v", code, v)
			}
			recs, _ := f.store.Load(context.Background(), id)
			if v.Covered != uint64(len(recs)) || v.Later != 0 {
				t.Errorf("covered %d later %d, want %d and 0", v.Covered, v.Later, len(recs))
			}
			checks := checksByName(v)
			for _, name := range []string{"envelope", "body", "signature", "chain", "tree", "index"} {
				c, ok := checks[name]
				if !ok || !c.OK || c.Detail == "" {
					t.Errorf("check %s: %+v (present %t)", name, c, ok)
				}
			}
		})
	}

	// A later event makes the old receipt cover a prefix: still valid.
	if _, err := f.svc.RecordFault(context.Background(), id, runtime.FaultRecord{Fault: "late", SubAttack: "after_end", Expected: "run_finished", Observed: "run_finished"}); err != nil {
		t.Fatal(err)
	}
	if _, v := postVerify(t, f.c, id, env); !v.Valid || v.Later != 1 {
		t.Errorf("the old receipt after one more event: %+v", v)
	}

	// Without the script, the form posts for an HTML page.
	form := url.Values{"receipt": {env}}
	r := httptest.NewRequest("POST", "/ui/runs/"+id+"/receipt/verify", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	f.c.ServeHTTP(w, r)
	if b := w.Body.String(); w.Code != 200 || !strings.Contains(b, `id="receipt-verdict" class="pass">valid<`) || !strings.Contains(b, `<li class="pass">`) {
		t.Errorf("HTML verification: %d\n%s", w.Code, b)
	}
}

func TestVerifyReceiptFailsOnATamperedTraceOrReceipt(t *testing.T) {
	f := newRunsFixture(t)
	id := f.kyc(t).RunID
	other := f.drive(t, f.start(t, "refund", "refund.input.json"), "refund.refunded.answers.jsonl").RunID
	env := pageReceipt(t, f.c, id)

	for _, tc := range []struct {
		name     string
		tamper   func([]tracestore.Record) []tracestore.Record
		envelope string
		failing  []string // checks that must fail
	}{
		{"an event changed in place", flipAt(3, false), env, []string{"chain", "index"}},
		{"an event changed in place, no receipt posted", flipAt(3, false), "", []string{"receipt", "chain", "index"}},
		{"the last event changed and rehashed", flipAt(-1, true), env, []string{"tree", "index"}},
		{"a middle event changed and rehashed", flipAt(5, true), env, []string{"chain", "index"}},
		{"a receipt with a forged signature", nil, forge(t, env, "signature", strings.Repeat("A", 86)+"=="), []string{"signature"}},
		{"another run's receipt", nil, pageReceipt(t, f.c, other), []string{"body", "tree"}},
		{"a receipt that is not JSON", nil, "{not json", []string{"envelope"}},
		// Read as verify reads receipt.json: nothing around it is trimmed.
		{"the page's receipt with a space before", nil, " " + env, []string{"envelope"}},
		{"receipt.json with a CRLF line end", nil, env + "\r\n", []string{"envelope"}},
		{"receipt.json with a blank line after", nil, env + "\n\n", []string{"envelope"}},
		// Member names match exactly, as in the offline verifier.
		{"a body member in another case", nil, renameInBody(t, env, "kind", "Kind"), []string{"body"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.store.set(tc.tamper)
			defer f.store.set(nil)
			// Each case checks what a fresh verification finds; the cache,
			// which would answer the same key for the TTL, has its own test.
			f.c.verified = newVerifyCache(VerifyCacheEntries, VerifyCacheTTL)
			code, v := postVerify(t, f.c, id, tc.envelope)
			if code != http.StatusOK || v.Valid || len(v.Problems) == 0 {
				t.Fatalf("status %d: %+v", code, v)
			}
			checks := checksByName(v)
			for _, name := range tc.failing {
				if c, ok := checks[name]; !ok || c.OK {
					t.Errorf("check %s did not fail: %+v (present %t); all: %+v", name, c, ok, v.Checks)
				}
			}
		})
	}

	// The page of a tampered run says why it has no receipt.
	f.store.set(flipAt(3, false))
	defer f.store.set(nil)
	_, body := get(t, f.c, "GET", "/ui/runs/"+id, nil)
	if !strings.Contains(body, "the stored trace does not hold together") {
		t.Error("the tampered run's page does not say its trace is broken")
	}
}

// forge returns the envelope with one member replaced, canonical again.
// renameInBody renames a member of the envelope's receipt body.
func renameInBody(t *testing.T, env, from, to string) string {
	t.Helper()
	v, err := jsonvalue.Decode([]byte(env))
	if err != nil {
		t.Fatal(err)
	}
	body := v.(map[string]any)["receipt"].(map[string]any)
	body[to] = body[from]
	delete(body, from)
	out, err := jsonvalue.Canonical(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func forge(t *testing.T, env, member string, value any) string {
	t.Helper()
	v, err := jsonvalue.Decode([]byte(env))
	if err != nil {
		t.Fatal(err)
	}
	v.(map[string]any)[member] = value
	out, err := jsonvalue.Canonical(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestRunStateFollowsTheRun(t *testing.T) {
	f := newRunsFixture(t)
	a := f.start(t, "refund", "refund.input.json")
	state := func() runState {
		t.Helper()
		res, body := get(t, f.c, "GET", "/ui/runs/"+a.RunID+"/state.json", nil)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d %s: %s", res.StatusCode, res.Header.Get("Content-Type"), body)
		}
		var s runState
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := state()
	info, _ := f.store.Run(context.Background(), a.RunID)
	if s.Status != "running" || s.State != "assess_refund" || s.Seq != a.Task.Seq || s.Events != info.Events || len(s.Path) != 1 || s.Outcome != "" {
		t.Errorf("running: %+v", s)
	}
	f.drive(t, a, "refund.refunded.answers.jsonl")
	s = state()
	info, _ = f.store.Run(context.Background(), a.RunID)
	if s.Status != "completed" || s.Outcome != "REFUNDED" || s.State != "refunded" || s.Events != info.Events || len(s.Path) < 3 {
		t.Errorf("finished: %+v", s)
	}
}

func TestUnknownRunIsNotFound(t *testing.T) {
	f := newRunsFixture(t)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/ui/runs/run_nope"},
		{"GET", "/ui/runs/run_nope/state.json"},
		{"POST", "/ui/runs/run_nope/receipt/verify"},
	} {
		res, body := get(t, f.c, tc.method, tc.path, nil)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: status %d", tc.method, tc.path, res.StatusCode)
		}
		if tc.method == "GET" && !strings.HasSuffix(tc.path, ".json") && !strings.Contains(body, "There is no run run_nope.") {
			t.Errorf("%s: the 404 page does not say what is missing", tc.path)
		}
	}
}

func TestRunScriptIsServed(t *testing.T) {
	f := newRunsFixture(t)
	res, body := get(t, f.c, "GET", "/ui/static/run.js", nil)
	if res.StatusCode != 200 || !strings.Contains(body, `nc.on("#verify-form"`) || !strings.Contains(body, "state.json") {
		t.Errorf("run.js: %d", res.StatusCode)
	}
}

func TestEventDetailNamesTheClaimsOfInputsAndSubmissions(t *testing.T) {
	for _, tc := range []struct {
		e    runtime.Event
		want string
	}{
		{runtime.Event{Input: &runtime.InputRecord{Kind: "submit", Actor: runtime.ActorTool, Tool: "lookup"}}, "submit by tool, tool lookup"},
		{runtime.Event{Input: &runtime.InputRecord{Kind: "decide", Role: "officer"}}, "decide, role officer"},
		{runtime.Event{Input: &runtime.InputRecord{Kind: "tick"}}, "tick"},
		{runtime.Event{Submission: &runtime.Submission{Actor: runtime.ActorModel}}, "by model"},
		{runtime.Event{Submission: &runtime.Submission{Actor: runtime.ActorTool, Tool: "lookup", Role: "r"}}, "by tool, tool lookup, role r"},
	} {
		if got := eventDetail(&tc.e); got != tc.want {
			t.Errorf("eventDetail = %q, want %q", got, tc.want)
		}
	}
}
