package console

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// newTestConsole is a console over a memory store with the three examples
// loaded, and the service behind it.
func newTestConsole(t testing.TB) (*Console, *runtime.Service, tracestore.Store) {
	t.Helper()
	store := tracestore.NewMemory()
	keys, err := keyring.Ephemeral(strings.NewReader(strings.Repeat("k", 64)))
	if err != nil {
		t.Fatal(err)
	}
	svc := runtime.NewService(runtime.Options{Store: store, Secret: keys.Secret, KEKs: keys.KEKs})
	addExamples(t, svc)
	c, err := New(Config{Service: svc, Store: store, Keys: keys, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return c, svc, store
}

// addExamples registers every embedded example program with svc.
func addExamples(t testing.TB, svc *runtime.Service) {
	t.Helper()
	for _, name := range examples.Programs() {
		src, err := examples.Program(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := program.Load(name+".yaml", src)
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.AddProgram(context.Background(), p, src); err != nil {
			t.Fatal(err)
		}
	}
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

func TestHighlightMarksThePath(t *testing.T) {
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
	path := []string{kyc.Initial.Name, kyc.Initial.Transitions[0].To.Name}
	out := string(highlight(svg, path, path[1]))
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
