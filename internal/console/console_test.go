package console

import (
	"context"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// newTestConsole is a console over a memory store with the three examples
// loaded, and the service behind it.
func newTestConsole(t testing.TB) (*Console, *service.Service, tracestore.Store) {
	t.Helper()
	store := tracestore.NewMemory()
	keys, err := keyring.Ephemeral(strings.NewReader(strings.Repeat("k", 64)))
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(service.Options{Store: store, Secret: keys.Secret, KEKs: keys.KEKs})
	addExamples(t, svc)
	c, err := New(Config{Service: svc, Store: store, Keys: keys, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return c, svc, store
}

// addExamples registers every embedded example program with svc.
func addExamples(t testing.TB, svc *service.Service) {
	t.Helper()
	for _, name := range examples.Programs() {
		p, src := exampleProgram(t, name)
		if err := svc.AddProgram(context.Background(), p, src); err != nil {
			t.Fatal(err)
		}
	}
}

// exampleProgram loads the named example program.
func exampleProgram(t testing.TB, name string) (*program.Program, []byte) {
	t.Helper()
	return examples.MustLoad(name)
}

// get serves one request as who (nil: no principal, the auditor).
func get(t testing.TB, h http.Handler, method, target string, who *access.Principal) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if who != nil {
		r = r.WithContext(access.WithPrincipal(r.Context(), *who))
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

var operator = &access.Principal{ID: access.IDOperator, Profile: access.ProfileOperator}

func TestProgramsPageDrawsEveryGraph(t *testing.T) {
	c, _, _ := newTestConsole(t)
	res, body := get(t, c, "GET", "/ui/programs", nil)
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	for _, want := range []string{"kyc-onboarding", "refund", "code-change", `<svg role="img"`, `id="st_human_approval"`, "kind_terminal", "rollback", "auditor view"} {
		if !strings.Contains(body, want) {
			t.Errorf("the programs page lacks %q", want)
		}
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(body, "<?xml") || strings.Contains(body, "http://") && strings.Contains(body, "<script src=\"http") {
		t.Error("the page embeds a prologue or loads a script from elsewhere")
	}
	_, body = get(t, c, "GET", "/ui/programs", operator)
	if !strings.Contains(body, "Sign out") {
		t.Error("the operator sees no sign-out")
	}
}

func TestStaticAssetsAndRedirects(t *testing.T) {
	c, _, _ := newTestConsole(t)
	for _, path := range []string{"/ui/static/console.css", "/ui/static/console.js"} {
		if res, body := get(t, c, "GET", path, nil); res.StatusCode != 200 || len(body) < 100 {
			t.Errorf("%s: %d, %d bytes", path, res.StatusCode, len(body))
		}
	}
	for _, path := range []string{"/ui", "/ui/"} {
		if res, _ := get(t, c, "GET", path, nil); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/runs" {
			t.Errorf("%s: %d to %q", path, res.StatusCode, res.Header.Get("Location"))
		}
	}
	for _, tc := range []struct {
		query, want, not string
		howToSet         bool // names the variable and flag that set a token
	}{
		{"?failed=1", "not the operator token", "NANO_VM_OPERATOR_TOKEN", false},
		{"?failed=" + access.ConsoleNoOperatorToken, "no operator token", "not the operator token", true},
	} {
		res, body := get(t, c, "GET", "/ui/login"+tc.query, nil)
		if res.StatusCode != 200 || !strings.Contains(body, tc.want) || strings.Contains(body, tc.not) {
			t.Errorf("login page %s: %d, want %q and not %q", tc.query, res.StatusCode, tc.want, tc.not)
		}
		if tc.howToSet && (!strings.Contains(body, "NANO_VM_OPERATOR_TOKEN") || !strings.Contains(body, "--operator-token-file")) {
			t.Errorf("login page %s does not say how to set the operator token", tc.query)
		}
	}
}

// kycGraph is the kyc-onboarding program and its cached graph.
func kycGraph(t *testing.T) (*program.Program, template.HTML) {
	t.Helper()
	c, svc, _ := newTestConsole(t)
	var kyc *program.Program
	for _, p := range svc.Programs() {
		if p.Name == "kyc-onboarding" {
			kyc = p
		}
	}
	svg, err := c.graphs.svg(context.Background(), kyc)
	if err != nil {
		t.Fatal(err)
	}
	return kyc, svg
}

func TestHighlightMarksThePath(t *testing.T) {
	kyc, svg := kycGraph(t)
	path := []string{kyc.Initial.Name, kyc.Initial.Transitions[0].To.Name}
	out := string(highlight(svg, pathSteps(kyc, &runtime.Run{Path: path}, nil)))
	for _, want := range []string{
		`<g id="` + stateID(path[0]) + `" class="on-path `,
		`<g id="` + stateID(path[1]) + `" class="current on-path `,
		`<g id="` + edgeID(path[0], path[1]) + `" class="on-path `,
		`<g id="` + edgeID("__start", path[0]) + `" class="on-path `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("highlighted graph lacks %s", want)
		}
	}
	if strings.Count(out, "on-path ") != 4 {
		t.Errorf("%d elements on the path, want 4", strings.Count(out, "on-path "))
	}
	if strings.Contains(string(svg), "on-path") {
		t.Error("highlighting changed the cached graph")
	}
}

// The run page marks the very edge each hop took, as the trace records it:
// of several edges between two states, the guard that matched, or the
// timeout; the others stay off the path.
func TestHighlightMarksTheEdgeTheTraceRecords(t *testing.T) {
	kyc, svg := kycGraph(t)
	hop := func(from, to string, index int, cause string) runtime.Event {
		return runtime.Event{Type: runtime.EventTransitioned, Transition: &runtime.TransitionRecord{From: from, To: to, Transition: index, Cause: cause}}
	}
	path := []string{"collect_customer_data", "screen_sanctions", "sanctions_gate", "adverse_media_search", "agent_review", "human_approval"}
	events := []runtime.Event{
		hop("collect_customer_data", "screen_sanctions", 0, "default"),
		hop("screen_sanctions", "sanctions_gate", 0, "default"),
		hop("sanctions_gate", "adverse_media_search", 2, "guard"),
		hop("adverse_media_search", "agent_review", 0, "default"),
		hop("agent_review", "human_approval", 1, "guard"), // the second of three guards to the same state
	}
	for _, tc := range []struct {
		name string
		last runtime.Event
		on   []string // edge ids on the path beyond the common ones
		off  []string
	}{
		{
			name: "timed out to escalated",
			last: hop("human_approval", "escalated", timeoutEdge, "timeout"),
			on:   []string{"ed_human_approval_to_escalated_timeout"},
			off:  []string{"ed_human_approval_to_escalated", "ed_agent_review_to_human_approval", "ed_agent_review_to_human_approval_2"},
		},
		{
			name: "escalated by the approver",
			last: hop("human_approval", "escalated", 1, "guard"),
			on:   []string{"ed_human_approval_to_escalated"},
			off:  []string{"ed_human_approval_to_escalated_timeout"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := &runtime.Run{Path: append(slices.Clone(path), tc.last.Transition.To)}
			out := string(highlight(svg, pathSteps(kyc, run, append(slices.Clone(events), tc.last))))
			on := append([]string{"ed___start_to_collect_customer_data", "ed_collect_customer_data_to_screen_sanctions", "ed_sanctions_gate_to_adverse_media_search", "ed_agent_review_to_human_approval_1"}, tc.on...)
			for _, id := range on {
				if !strings.Contains(out, `<g id="`+id+`" class="on-path `) {
					t.Errorf("edge %s is not on the path", id)
				}
			}
			for _, id := range tc.off {
				if !strings.Contains(out, `<g id="`+id+`" class="edge `) {
					t.Errorf("edge %s is on the path, or missing", id)
				}
			}
			// 7 states and 7 edges (the start's included); the last
			// state is current as well.
			if n := strings.Count(out, `on-path `); n != 14 || !strings.Contains(out, `<g id="st_escalated" class="current on-path `) {
				t.Errorf("%d groups on the path, want 14", n)
			}
			if !strings.Contains(out, `<svg role="img" aria-label="State graph of kyc-onboarding" class="graph has-path" `) {
				t.Error("the graph is not marked as showing a path")
			}
		})
	}
}
