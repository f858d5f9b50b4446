package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// runRoutes registers the routes of the runs list and the run page.
func (c *Console) runRoutes() {
	c.mux.HandleFunc("GET /ui/runs", c.runs)
	c.mux.HandleFunc("GET /ui/runs/{id}", c.run)
	c.mux.HandleFunc("GET /ui/runs/{id}/state.json", c.runState)
	// Verifying changes nothing, so the auditor may do it too; it is a
	// POST because it carries the receipt to check, and the guard has
	// already refused cross-origin POSTs.
	c.mux.HandleFunc("POST /ui/runs/{id}/receipt/verify", c.verifyReceipt)
}

// runsPageSize is how many runs one page of the list shows.
const runsPageSize = 50

// runStatuses are the statuses a run can have, for the filter.
var runStatuses = []string{
	string(runtime.StatusRunning), string(runtime.StatusWaitingOperator), string(runtime.StatusCompleted),
	string(runtime.StatusFailed), string(runtime.StatusCancelled),
}

// runsForm is the list's filter form as the visitor filled it in, echoed
// back into the form.
type runsForm struct {
	Program, Status, Outcome, Since, Until, Cursor string
	// Lab is labInclude to list laboratory runs too; by default the list
	// leaves them out, as the metrics do.
	Lab string
}

// runsPage is the data of the runs list.
type runsPage struct {
	Form     runsForm
	Programs []string
	Statuses []string
	Outcomes []string
	Runs     []tracestore.RunInfo
	Older    string // the next page's URL; "" on the last page
	Newest   string // the first page's URL, when this is a later one
	Error    string // why the filters were refused (status 400)
}

func (c *Console) runs(w http.ResponseWriter, r *http.Request) {
	progs := c.cfg.Service.Programs()
	data := runsPage{Statuses: runStatuses, Programs: programNames(progs), Outcomes: outcomes(progs)}
	q := r.URL.Query()
	data.Form = runsForm{Program: q.Get("program"), Status: q.Get("status"), Outcome: q.Get("outcome"),
		Since: q.Get("since"), Until: q.Get("until"), Cursor: q.Get("cursor"), Lab: q.Get("lab")}
	f, err := data.filter()
	if err == nil {
		data.Runs, f.Cursor, err = c.cfg.Store.ListRuns(r.Context(), f)
		if errors.Is(err, tracestore.ErrBadCursor) {
			err = badFilter("the cursor %q is not one this list handed out; start again from the newest runs", data.Form.Cursor)
		}
	}
	var bad *filterError
	switch {
	case errors.As(err, &bad):
		data.Error, data.Runs = bad.msg, nil
		w.WriteHeader(http.StatusBadRequest)
		c.render(w, r, "runs", "Runs", "runs", data)
		return
	case err != nil:
		c.fail(w, r, err)
		return
	}
	if f.Cursor != "" {
		data.Older = data.Form.url(f.Cursor)
	}
	if data.Form.Cursor != "" {
		data.Newest = data.Form.url("")
	}
	c.render(w, r, "runs", "Runs", "runs", data)
}

// filterError is a filter the list cannot apply: the visitor's mistake,
// answered with 400 and what to change.
type filterError struct{ msg string }

func (e *filterError) Error() string { return e.msg }

func badFilter(format string, args ...any) error {
	return &filterError{msg: fmt.Sprintf(format, args...)}
}

// filter turns the form into the store's filter, refusing values that
// match no program, status or outcome rather than listing nothing.
func (d *runsPage) filter() (tracestore.ListFilter, error) {
	fm := d.Form
	lab, msg := labParam(fm.Lab)
	f := tracestore.ListFilter{Program: fm.Program, Status: fm.Status, Outcome: fm.Outcome, Cursor: fm.Cursor, Limit: runsPageSize,
		ExcludeLab: !lab}
	if msg != "" {
		return f, badFilter("%s", msg)
	}
	if fm.Program != "" && !slices.Contains(d.Programs, fm.Program) {
		return f, badFilter("no program is named %q; choose one of: %s", fm.Program, strings.Join(d.Programs, ", "))
	}
	if fm.Status != "" && !slices.Contains(d.Statuses, fm.Status) {
		return f, badFilter("%q is not a run status; choose one of: %s", fm.Status, strings.Join(d.Statuses, ", "))
	}
	if fm.Outcome != "" && !slices.Contains(d.Outcomes, fm.Outcome) {
		return f, badFilter("no program ends with the outcome %q; choose one of: %s", fm.Outcome, strings.Join(d.Outcomes, ", "))
	}
	var err error
	if f.Since, err = parseDay(fm.Since, false); err != nil {
		return f, badFilter("since: %v", err)
	}
	if f.Until, err = parseDay(fm.Until, true); err != nil {
		return f, badFilter("until: %v", err)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, badFilter("since (%s) must come before until (%s)", fm.Since, fm.Until)
	}
	return f, nil
}

// parseDay reads a date filter, in UTC: a day (2006-01-02, as a date input
// sends it), a minute (2006-01-02T15:04, a datetime-local input) or an RFC
// 3339 time. A bare day as the end of a range includes that whole day.
func parseDay(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date: write it as YYYY-MM-DD (UTC), or YYYY-MM-DDThh:mm", s)
}

// url is the list's address with these filters and the given cursor.
func (fm runsForm) url(cursor string) string {
	v := url.Values{}
	for k, s := range map[string]string{"program": fm.Program, "status": fm.Status, "outcome": fm.Outcome,
		"since": fm.Since, "until": fm.Until, "cursor": cursor, "lab": fm.Lab} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if len(v) == 0 {
		return "/ui/runs"
	}
	return "/ui/runs?" + v.Encode() // Encode sorts the keys
}

func programNames(progs []*program.Program) []string {
	names := make([]string, 0, len(progs))
	for _, p := range progs {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return slices.Compact(names)
}

// outcomes are every outcome a run of the loaded programs can end with:
// their terminal states' and the runtime's own.
func outcomes(progs []*program.Program) []string {
	out := []string{program.OutcomeFailed, program.OutcomeCancelled}
	for _, p := range progs {
		for _, st := range p.States {
			if st.Kind == program.KindTerminal && st.Outcome != "" {
				out = append(out, st.Outcome)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
