package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/lab"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// post sends a form post as who (nil: the auditor), accepting accept.
func post(t testing.TB, h http.Handler, target string, form url.Values, accept string, who *access.Principal) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest("POST", target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	if who != nil {
		r = r.WithContext(access.WithPrincipal(r.Context(), *who))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result(), w.Body.String()
}

var startButton = regexp.MustCompile(`<button id="lab-start"[^>]*>`)

func TestLabPageIsReadOnlyForTheAuditor(t *testing.T) {
	c, _, store := newTestConsole(t)
	res, body := get(t, c, "GET", "/ui/lab", nil)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	btn := startButton.FindString(body)
	if btn == "" || !strings.Contains(btn, " disabled") {
		t.Errorf("the auditor's start button is %q, want it disabled", btn)
	}
	for _, want := range []string{
		`<script src="/ui/static/lab.js" defer></script>`, `<select id="lab-program" name="program">`,
		`<option value="kyc-onboarding" selected>`, `<table id="lab-matrix">`, `id="lab-summary"`, `id="lab-error"`,
		`href="/ui/login">sign in</a>`, `aria-current="page">Lab`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the lab page lacks %q", want)
		}
	}
	for _, f := range lab.Faults {
		if !strings.Contains(body, `<li data-fault="`+f+`">`) {
			t.Errorf("the fault list lacks %s", f)
		}
	}
	if strings.Contains(body, "onclick") || strings.Contains(body, "<script>") {
		t.Error("inline script on the lab page")
	}

	res, _ = get(t, c, "POST", "/ui/lab/run?program=kyc-onboarding&fault=skip_step", nil)
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("the auditor's run: %d, want 403", res.StatusCode)
	}
	if runs, _, _ := store.ListRuns(context.Background(), tracestore.ListFilter{}); len(runs) != 0 {
		t.Errorf("a refused run left %d runs", len(runs))
	}

	_, body = get(t, c, "GET", "/ui/lab?program=refund", operator)
	if btn := startButton.FindString(body); btn == "" || strings.Contains(btn, "disabled") {
		t.Errorf("the operator's start button is %q", btn)
	}
	if !strings.Contains(body, `<option value="refund" selected>`) {
		t.Error("?program= does not choose the program")
	}
}

func TestLabRunAnswersOneFaultsRows(t *testing.T) {
	c, _, store := newTestConsole(t)
	res, body := get(t, c, "POST", "/ui/lab/run?program=kyc-onboarding&fault=skip_step", operator)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, %s: %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(body), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows for skip_step, want its 2 sub-attacks", len(rows))
	}
	for _, r := range rows {
		for _, k := range []string{"fault", "sub_attack", "run_id", "expected", "observed", "trace_verified", "receipt_verified", "pass", "applicable", "detail", "result"} {
			if _, ok := r[k]; !ok {
				t.Errorf("row lacks %s: %v", k, r)
			}
		}
		if r["fault"] != "skip_step" || r["pass"] != true || r["applicable"] != true || r["result"] != "pass" ||
			r["trace_verified"] != true || r["receipt_verified"] != true || r["expected"] != r["observed"] {
			t.Errorf("row %v", r)
		}
		id, _ := r["run_id"].(string)
		info, err := store.Run(context.Background(), id)
		if err != nil || !info.Lab || info.Program != "kyc-onboarding" || info.Principal != access.IDOperator {
			t.Errorf("run %q: %+v, %v; want a lab run of kyc-onboarding started by the operator", id, info, err)
		}
	}

	// A fault that meets no run: the verification columns are null.
	_, body = get(t, c, "POST", "/ui/lab/run?program=refund&fault=invalid_program", operator)
	rows = nil
	if err := json.Unmarshal([]byte(body), &rows); err != nil || len(rows) == 0 {
		t.Fatalf("invalid_program: %v, %s", err, body)
	}
	for _, r := range rows {
		if r["run_id"] != "" || r["trace_verified"] != nil || r["result"] != "pass" {
			t.Errorf("runless row %v", r)
		}
	}
}

func TestLabRunRefusesUnknownProgramsAndFaults(t *testing.T) {
	c, _, _ := newTestConsole(t)
	for _, tc := range []struct{ query, code string }{
		{"program=nope&fault=skip_step", "unknown_program"},
		{"fault=skip_step", "unknown_program"},
		{"program=kyc-onboarding&fault=nope", "unknown_fault"},
	} {
		res, body := get(t, c, "POST", "/ui/lab/run?"+tc.query, operator)
		var e struct{ Error, Message string }
		if res.StatusCode != 400 || json.Unmarshal([]byte(body), &e) != nil || e.Error != tc.code || e.Message == "" {
			t.Errorf("%s: %d %s, want 400 %s", tc.query, res.StatusCode, body, tc.code)
		}
	}
	// The form without the script: the page, with the error shown.
	res, body := post(t, c, "/ui/lab/run", url.Values{"program": {"nope"}}, "text/html", operator)
	if res.StatusCode != 400 || !strings.Contains(body, `<p id="lab-error" class="error" role="alert">no program &#34;nope&#34; is loaded`) {
		t.Errorf("form with an unknown program: %d %s", res.StatusCode, body)
	}
}

// Without the script, the form posts the program and the page comes back
// with the matrix drawn on the server, every row linking to its run.
func TestLabFormWithoutScriptRendersTheMatrix(t *testing.T) {
	c, _, _ := newTestConsole(t)
	res, body := post(t, c, "/ui/lab/run", url.Values{"program": {"kyc-onboarding"}, "fault": {"reorder_steps"}}, "text/html,application/xhtml+xml", operator)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if n := strings.Count(body, `<tr class="lab-row">`); n != 4 {
		t.Errorf("%d rows for reorder_steps, want 4", n)
	}
	if n := strings.Count(body, `<td class="result pass">pass</td>`); n != 4 {
		t.Errorf("%d passing rows, want 4", n)
	}
	if n := len(regexp.MustCompile(`<td class="run"><a href="/ui/runs/run_[0-9a-f]+" title="run_[0-9a-f]+">run_[0-9a-f]{8}</a></td>`).FindAllString(body, -1)); n != 4 {
		t.Errorf("%d rows link to their run, want 4", n)
	}
	if !strings.Contains(body, `<p id="lab-summary" class="lab-summary" role="status" aria-live="polite">4 passed, 0 failed, 0 n/a</p>`) {
		t.Error("no summary")
	}
}

// The script finds the page's elements by the ids the template gives
// them, and draws the rows the template draws.
func TestLabScriptMatchesThePage(t *testing.T) {
	c, _, _ := newTestConsole(t)
	_, js := get(t, c, "GET", "/ui/static/lab.js", nil)
	for _, want := range []string{`"#lab-form"`, `"lab-start"`, `"lab-program"`, `"#lab-matrix tbody"`, `"lab-summary"`, `"lab-error"`,
		`"#lab-faults [data-fault]"`, `"/ui/lab/run?program="`, `"&fault="`, `{ class: "lab-row" }`, `"result " + resultClass`, `"/ui/runs/"`, `r.detail_head`, `"details"`, `"summary"`, `"wbr"`,
		`" passed, "`, `" failed, "`, `" n/a"`} {
		if !strings.Contains(js, want) {
			t.Errorf("lab.js lacks %s", want)
		}
	}
}

// A mutated program's note lists dozens of load errors: the matrix shows
// its start and folds the rest into <details>, so that no row is a page
// tall; a short note is shown whole.
func TestLabMatrixFoldsLongNotes(t *testing.T) {
	c, _, _ := newTestConsole(t)
	_, body := get(t, c, "POST", "/ui/lab/run?program=kyc-onboarding&fault=invalid_program", operator)
	var rows []labRow
	if err := json.Unmarshal([]byte(body), &rows); err != nil || len(rows) == 0 {
		t.Fatalf("%v: %s", err, body)
	}
	long := 0
	for _, r := range rows {
		n := len([]rune(r.Detail))
		switch {
		case n <= noteHeadLen && r.DetailHead != "":
			t.Errorf("%s: a %d-character note is folded", r.SubAttack, n)
		case n > noteHeadLen:
			long++
			head := strings.TrimSuffix(r.DetailHead, "…")
			if !strings.HasSuffix(r.DetailHead, "…") || !strings.HasPrefix(r.Detail, head) || len([]rune(head)) > noteHeadLen || len([]rune(head)) < noteHeadLen/2 {
				t.Errorf("%s: the head of a %d-character note is %q", r.SubAttack, n, r.DetailHead)
			}
		}
	}
	if long == 0 {
		t.Fatal("no note is long enough to fold: the fixture no longer tests folding")
	}
	_, page := post(t, c, "/ui/lab/run", url.Values{"program": {"kyc-onboarding"}, "fault": {"invalid_program"}}, "text/html", operator)
	if n := strings.Count(page, `<td class="detail"><details><summary>`); n != long {
		t.Errorf("%d notes folded on the page, want %d", n, long)
	}
	if !strings.Contains(page, `<table id="lab-matrix">`) || !strings.Contains(page, `<col class="c-note">`) {
		t.Error("the matrix has no fixed columns")
	}
}

func TestSubAttackBreaksAfterColonsOnly(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"undeclared_tool", "undeclared_tool"},
		{"prompt_injection:important_instructions", "prompt_injection:<wbr>important_instructions"},
		{"a<b:c&d", "a&lt;b:<wbr>c&amp;d"},
	} {
		if got := string(labRow{SubAttack: tc.in}.SubAttackHTML()); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}
