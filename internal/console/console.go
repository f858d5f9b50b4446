// Package console is the web console: runs, traces, graphs, metrics and the
// failure laboratory in a browser, served by the same binary under /ui on
// the MCP server's HTTP listener (docs/console.md).
//
// Pages are Go html/template, rendered on the server; the little script and
// style sheet are written by hand and embedded, so a plain go build gives a
// working console that fetches nothing from the network. Who is calling is
// decided by internal/access's guard: the operator (signed in with the
// operator token) reads everything and may act (start the demo run, run
// the laboratory); an approver reaches their inbox and the runs waiting
// for their role (scope.go); where the console is public, a visitor
// without a credential is the read-only auditor. Every page shows
// what the auditor view shows and no more: personal data is redacted,
// erased data shows the erased marker, for operators too.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/analysis"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the console reads and acts through.
type Config struct {
	Service *service.Service
	// Store is read only: runs, traces, and the baselines the metrics
	// pages measure against.
	Store   analysis.Store
	Keys    *keyring.Keyring // signs the receipts the run page shows
	Version string
	Log     *zap.Logger
	// VerifyConcurrency is how many receipt verifications may run at once;
	// zero means DefaultVerifyConcurrency.
	VerifyConcurrency int
	// Clock times the verification cache; nil means time.Now.
	Clock func() time.Time
	// Public says that the guard lets visitors without a credential in as
	// the auditor (--console-public): an approver then reads what the
	// auditor reads, besides their inbox, rather than less.
	Public bool
}

// Console serves the pages. It is an http.Handler for everything under
// access.ConsolePath.
type Console struct {
	cfg    Config
	mux    *http.ServeMux
	pages  map[string]*template.Template
	graphs graphs

	verifySlots chan struct{} // one token per verification running
	verified    *verifyCache
	// verifying, when set (tests), is called while a verification holds
	// its slot.
	verifying func()
}

// New returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.VerifyConcurrency <= 0 {
		cfg.VerifyConcurrency = DefaultVerifyConcurrency
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	c := &Console{cfg: cfg, mux: http.NewServeMux(), pages: map[string]*template.Template{},
		verifySlots: make(chan struct{}, cfg.VerifyConcurrency), verified: newVerifyCache(VerifyCacheEntries, VerifyCacheTTL)}
	if err := c.parse(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// routes lists every page and action. Actions that change something are
// POSTs for the operator only; the guard has already refused cross-origin
// ones.
func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", staticFiles(static)))
	c.mux.HandleFunc("GET /ui/{$}", c.home)
	c.mux.HandleFunc("GET /ui", c.home)
	// Browsers ask every site for /favicon.ico; the guard lets it through
	// without a credential.
	c.mux.HandleFunc("GET "+access.FaviconPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		http.ServeFileFS(w, r, staticFS, "static/favicon.ico")
	})
	c.mux.HandleFunc("GET /ui/login", c.login)
	c.mux.HandleFunc("GET /ui/programs", c.programs)
	// Each page family registers its own routes, in its own file.
	c.runRoutes()
	c.metricsRoutes()
	c.labRoutes()
	c.demoRoutes()
	c.inboxRoutes()
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Pages hold run data: never cached by the browser or a proxy, never
	// framed by another site, and no script but our own file.
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	if p := principal(r.Context()); isApprover(p) && !c.cfg.Public && !c.approverMay(r, p) {
		http.Error(w, "forbidden: an approver sees the inbox ("+access.ConsoleApprovalsPath+") and the runs waiting for their role only", http.StatusForbidden)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// staticFiles serves the embedded assets, which may be cached: their names
// change with nothing but the binary.
func staticFiles(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=300")
		files.ServeHTTP(w, r)
	})
}

// parse builds one template set per page: the layout, the shared partials
// and the page.
func (c *Console) parse() error {
	funcs := template.FuncMap{
		"short":    short,
		"time":     formatTime,
		"join":     strings.Join,
		"stateID":  stateID,
		"add":      func(a, b int) int { return a + b },
		"operator": func(p access.Principal) bool { return p.Profile == access.ProfileOperator },
		"approver": isApprover,
	}
	shared, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return err
	}
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, path := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(path, "templates/"), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := shared.Clone()
		if err != nil {
			return err
		}
		if _, err := t.ParseFS(templateFS, path); err != nil {
			return err
		}
		c.pages[name] = t
	}
	return nil
}

// page is what every page template gets: the caller, the title, and the
// page's own data in Data.
type page struct {
	Principal access.Principal
	Title     string
	Nav       string // the navigation entry to mark as current
	Version   string
	Public    bool // the console is open to the auditor
	Data      any
}

// render writes a page; a template error becomes a 500 before anything is
// sent, never half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, name, title, nav string, data any) {
	t := c.pages[name]
	if t == nil {
		c.fail(w, r, errors.New("no page template "+name))
		return
	}
	var buf bytes.Buffer
	p := page{Principal: principal(r.Context()), Title: title, Nav: nav, Version: c.cfg.Version, Public: c.cfg.Public, Data: data}
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = buf.WriteTo(w)
}

// fail answers an internal error; the detail goes to the log only.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.cfg.Log.Error("console", zap.String("path", r.URL.Path), zap.Error(err))
	http.Error(w, "internal error: see the server log", http.StatusInternalServerError)
}

// notFound answers a missing run or program with the layout's 404 page.
func (c *Console) notFound(w http.ResponseWriter, r *http.Request, what string) {
	w.WriteHeader(http.StatusNotFound)
	c.render(w, r, "notfound", "Not found", "", what)
}

// principal is the caller as the guard decided; the auditor when none was
// set (the console mounted without the guard, in tests).
func principal(ctx context.Context) access.Principal {
	if p, ok := access.FromContext(ctx); ok {
		return p
	}
	return access.Principal{ID: access.IDAuditor, Profile: access.ProfileAuditor}
}

// operatorOnly refuses an action to anyone but the operator.
func (c *Console) operatorOnly(w http.ResponseWriter, r *http.Request) bool {
	if principal(r.Context()).Profile == access.ProfileOperator {
		return true
	}
	http.Error(w, "forbidden: sign in with the operator token to do this", http.StatusForbidden)
	return false
}

// home sends a visitor to their first page: an approver to the inbox,
// anyone else to the runs.
func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	to := "/ui/runs"
	if isApprover(principal(r.Context())) {
		to = access.ConsoleApprovalsPath
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	failed := r.URL.Query().Get("failed")
	c.render(w, r, "login", "Sign in", "", struct{ Failed, NoOperatorToken bool }{
		Failed: failed != "" && failed != access.ConsoleNoOperatorToken, NoOperatorToken: failed == access.ConsoleNoOperatorToken})
}

// programView is one program on the programs page.
type programView struct {
	Name, Version, Hash, Description string
	States, Terminals                int
	Graph                            template.HTML
}

func (c *Console) programs(w http.ResponseWriter, r *http.Request) {
	progs := c.cfg.Service.Programs()
	sort.Slice(progs, func(i, j int) bool { return progs[i].Name < progs[j].Name })
	views := make([]programView, 0, len(progs))
	for _, p := range progs {
		svg, err := c.graphs.svg(r.Context(), p)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		views = append(views, programView{Name: p.Name, Version: p.Version, Hash: p.Hash, Description: p.Description,
			States: len(p.States), Terminals: countKind(p, program.KindTerminal), Graph: svg})
	}
	c.render(w, r, "programs", "Programs", "programs", views)
}

func countKind(p *program.Program, k program.Kind) int {
	n := 0
	for _, st := range p.States {
		if st.Kind == k {
			n++
		}
	}
	return n
}

// short abbreviates a hash for tables: its algorithm and 12 hex digits.
func short(h string) string {
	alg, hex, ok := strings.Cut(h, ":")
	if !ok {
		alg, hex = "", h
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	if alg != "" {
		return alg + ":" + hex
	}
	return hex
}

func formatTime(t any) string {
	switch x := t.(type) {
	case time.Time:
		if x.IsZero() {
			return ""
		}
		return x.UTC().Format("2006-01-02 15:04:05Z")
	case string:
		if tt, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return tt.UTC().Format("2006-01-02 15:04:05.000Z")
		}
		return x
	}
	return ""
}
