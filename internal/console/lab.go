package console

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/lab"
)

// The laboratory page runs the failure laboratory (internal/lab,
// docs/faults.md) against a loaded program, the operator only: each
// sub-attack on a fresh lab run, as nano-vm-mcp lab does, but on the
// server's own store, so that every row links to the run it used. The
// page's script (static/lab.js) asks for one fault at a time and fills
// the matrix in as the answers come; without the script, the form asks for
// every fault at once and the matrix comes back as a page.

// labRoutes registers the routes of the failure laboratory page.
func (c *Console) labRoutes() {
	c.mux.HandleFunc("GET /ui/lab", c.labPage)
	c.mux.HandleFunc("POST /ui/lab/run", c.labRun)
}

// faultNotes say in a line what each fault tries (docs/faults.md has the
// sub-attacks).
var faultNotes = map[string]string{
	lab.ToolInjection:  "claims tools the task does not grant, adds fields, injects instructions into free text",
	lab.PolicyBypass:   "answers no guard accepts, a step on an approval, a widened program",
	lab.SkipStep:       "answers a later state, or an approval before its turn",
	lab.ReorderSteps:   "answers with a future or a past seq, resends an earlier answer, repeats the last exactly",
	lab.CorruptReceipt: "tampers with a signed receipt and with exported copies of the trace",
	lab.GDPRErase:      "erases the run's data subject, then reads every view and erases again",
	lab.InvalidProgram: "loads mutated programs: a missing target, a guard that is not bool, an unreachable state",
}

// labFault is one fault in the page's list.
type labFault struct{ Name, Note string }

// labView is the laboratory page.
type labView struct {
	Programs []string
	Selected string
	Faults   []labFault
	Rows     []labRow // the matrix, when the page answers the form
	Summary  string
	Error    string
}

// labRow is one sub-attack's result, as the page shows it and the run
// endpoint answers it.
type labRow struct {
	Fault           string `json:"fault"`
	SubAttack       string `json:"sub_attack"`
	RunID           string `json:"run_id"` // "" when the sub-attack met no run
	Expected        string `json:"expected"`
	Observed        string `json:"observed"`
	TraceVerified   *bool  `json:"trace_verified"`   // null: no run to verify
	ReceiptVerified *bool  `json:"receipt_verified"` // null: no run to verify
	Pass            bool   `json:"pass"`
	Applicable      bool   `json:"applicable"`
	// Result is what the result column says: pass, FAIL or n/a.
	Result string `json:"result"`
	Detail string `json:"detail"`
	// DetailHead is the start of a long Detail, which the matrix shows
	// with the rest folded away (a mutated program's note lists dozens of
	// load errors); "" when Detail is short enough to show whole.
	DetailHead string `json:"detail_head"`
}

func newLabRow(r lab.Result) labRow {
	row := labRow{Fault: r.Fault, SubAttack: r.SubAttack, RunID: r.RunID, Expected: r.Expected, Observed: r.Observed,
		TraceVerified: r.TraceVerified, ReceiptVerified: r.ReceiptVerified, Pass: r.Pass, Applicable: r.Applicable,
		Result: "pass", Detail: r.Detail}
	switch {
	case !r.Applicable:
		row.Result = "n/a"
	case r.Failed():
		row.Result = "FAIL"
		row.Detail = strings.Join(append([]string{r.Detail}, r.Verification...), "; ")
	}
	row.DetailHead = noteHead(row.Detail)
	return row
}

// noteHeadLen is how much of a note the matrix shows before folding the
// rest away: a few lines of the note column.
const noteHeadLen = 160

// noteHead is the start of a note longer than noteHeadLen, cut at a space
// where one is near, or "" for a shorter note.
func noteHead(s string) string {
	r := []rune(s)
	if len(r) <= noteHeadLen {
		return ""
	}
	head := string(r[:noteHeadLen])
	if i := strings.LastIndexByte(head, ' '); i > noteHeadLen/2 {
		head = head[:i]
	}
	return strings.TrimRight(head, " ;,:") + "…"
}

// SubAttackHTML is the sub-attack's name with a line-break opportunity
// after each colon: prompt_injection:important_instructions wraps between
// its words, not inside one.
func (r labRow) SubAttackHTML() template.HTML {
	parts := strings.Split(r.SubAttack, ":")
	for i, p := range parts {
		parts[i] = template.HTMLEscapeString(p)
	}
	return template.HTML(strings.Join(parts, ":<wbr>")) //nolint:gosec // every part is escaped
}

// Trace and Receipt write the verification columns.
func (r labRow) Trace() string   { return lab.VerifiedText(r.TraceVerified) }
func (r labRow) Receipt() string { return lab.VerifiedText(r.ReceiptVerified) }

// ResultClass is the result cell's class.
func (r labRow) ResultClass() string {
	switch r.Result {
	case "pass":
		return "pass"
	case "FAIL":
		return "fail"
	}
	return "na"
}

// labSummary counts the rows as the command does: "27 passed, 0 failed, 0 n/a".
func labSummary(rows []labRow) string {
	var pass, fail, na int
	for _, r := range rows {
		switch r.Result {
		case "pass":
			pass++
		case "FAIL":
			fail++
		default:
			na++
		}
	}
	return fmt.Sprintf("%d passed, %d failed, %d n/a", pass, fail, na)
}

func (c *Console) labPrograms() []string {
	var names []string
	for _, p := range c.cfg.Service.Programs() {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return names
}

// newLabView is the page with program chosen if it is loaded, else
// kyc-onboarding if it is, else the first.
func (c *Console) newLabView(program string) labView {
	v := labView{Programs: c.labPrograms()}
	for _, f := range lab.Faults {
		v.Faults = append(v.Faults, labFault{f, faultNotes[f]})
	}
	switch {
	case slices.Contains(v.Programs, program):
		v.Selected = program
	case slices.Contains(v.Programs, "kyc-onboarding"):
		v.Selected = "kyc-onboarding"
	case len(v.Programs) > 0:
		v.Selected = v.Programs[0]
	}
	return v
}

func (c *Console) labPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "lab", "Failure laboratory", "lab", c.newLabView(r.URL.Query().Get("program")))
}

// labRun runs the sub-attacks of one fault (form or query field fault;
// every fault when it is empty) against fresh lab runs of program, for the
// operator only. It answers the rows as JSON, or, to a browser's form
// post (which accepts HTML), the laboratory page with the matrix. A
// program that is not loaded or a fault that does not exist is a 400.
func (c *Console) labRun(w http.ResponseWriter, r *http.Request) {
	if !c.operatorOnly(w, r) {
		return
	}
	asPage := strings.Contains(r.Header.Get("Accept"), "text/html")
	name, fault := r.FormValue("program"), r.FormValue("fault")
	refuse := func(status int, code, msg string) {
		if asPage {
			v := c.newLabView(name)
			v.Error = msg
			w.WriteHeader(status)
			c.render(w, r, "lab", "Failure laboratory", "lab", v)
			return
		}
		c.writeJSON(w, status, map[string]string{"error": code, "message": msg})
	}
	if !slices.Contains(c.labPrograms(), name) {
		refuse(http.StatusBadRequest, "unknown_program", fmt.Sprintf("no program %q is loaded; choose one of: %s", name, strings.Join(c.labPrograms(), ", ")))
		return
	}
	var faults []string // every fault
	if fault != "" {
		if !slices.Contains(lab.Faults, fault) {
			refuse(http.StatusBadRequest, "unknown_fault", fmt.Sprintf("no fault %q; the faults are: %s", fault, strings.Join(lab.Faults, ", ")))
			return
		}
		faults = []string{fault}
	}
	if c.cfg.Keys == nil {
		c.cfg.Log.Error("console: lab: no signing key configured")
		refuse(http.StatusInternalServerError, "lab_failed", "the laboratory needs the server's signing key, which the console was not given")
		return
	}
	p := principal(r.Context())
	env := lab.Env{Service: c.cfg.Service, Store: c.cfg.Store, Signer: c.cfg.Keys.Signing, Principal: p.ID, Operator: true}
	results, err := lab.Matrix(r.Context(), env, lab.MatrixOptions{Program: name, Faults: faults})
	if err != nil {
		c.cfg.Log.Error("console: lab", zap.String("program", name), zap.String("fault", fault), zap.Error(err))
		refuse(http.StatusInternalServerError, "lab_failed", "the laboratory stopped on an error: see the server log")
		return
	}
	rows := make([]labRow, len(results))
	for i, res := range results {
		rows[i] = newLabRow(res)
	}
	c.cfg.Log.Info("console: lab", zap.String("program", name), zap.String("fault", fault), zap.String("principal", p.ID), zap.String("summary", labSummary(rows)))
	if asPage {
		v := c.newLabView(name)
		v.Rows, v.Summary = rows, labSummary(rows)
		c.render(w, r, "lab", "Failure laboratory", "lab", v)
		return
	}
	c.writeJSON(w, http.StatusOK, rows)
}
