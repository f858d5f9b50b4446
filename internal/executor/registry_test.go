package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Secret values the fixtures hold; no problem text may contain them.
const (
	fileSecret = "s3cret-from-file"
	envSecret  = "s3cret-from-env"
)

// fixture is a registry directory with a fake binary, a secret file and
// a git repository, and the environment a registry there sees.
type fixture struct {
	dir  string
	env  map[string]string
	repo string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	must(t, os.Mkdir(bin, 0o755))
	must(t, os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\necho '{}'\n"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "secret"), []byte(fileSecret+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "open-secret"), []byte(fileSecret+"\n"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "notrepo"), 0o755))
	repo := filepath.Join(dir, "repo")
	must(t, os.MkdirAll(filepath.Join(repo, ".git"), 0o755))
	path := bin + ":/usr/local/go/bin:/usr/bin:/bin"
	return &fixture{dir: dir, repo: repo, env: map[string]string{
		"PATH": path, "HOME": dir, "TOKEN": envSecret, "BROKEN": "a\nb", "GOCACHE": filepath.Join(dir, "cache"),
	}}
}

func (f *fixture) options() Options {
	return Options{RegistryDir: f.dir, Getenv: func(k string) string { return f.env[k] }, StageDir: filepath.Join(f.dir, "stages")}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestParseReportsEveryProblemWithItsPosition(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        map[string]string // overrides
		want       []string          // "line:col field: message part", one per problem
	}{
		{"empty file", "", nil, []string{"0:0 : empty"}},
		{"not a mapping", "- a\n", nil, []string{"1:1 : want a mapping"}},
		{"missing tools", "other: 1\n", nil, []string{"1:1 other: unknown field", "1:1 : missing the tools mapping"}},
		{"second document", "tools: {}\n---\ntools: {}\n", nil, []string{"2:1 : a second YAML document"}},
		{"unknown top-level key", "tools: {}\nextra: 1\n", nil, []string{"2:1 extra: unknown field (allowed: tools)"}},
		{"bad tool name", "tools:\n  9lives: {exec: {argv: [tool]}}\n", nil, []string{"2:3 : tool name must match"}},
		{"unknown tool field", "tools:\n  a:\n    exec: {argv: [tool]}\n    colour: red\n", nil,
			[]string{"4:5 colour: unknown field"}},
		{"no executor kind", "tools:\n  a:\n    timeout: 1s\n", nil, []string{"2:3 : no executor kind"}},
		{"two executor kinds", "tools:\n  a:\n    exec: {argv: [tool]}\n    http: {url: 'http://x'}\n", nil,
			[]string{"4:5 http: a tool has exactly one executor kind"}},
		{"field given twice", "tools:\n  a:\n    exec: {argv: [tool]}\n    timeout: 1s\n    timeout: 2s\n", nil,
			[]string{"5:5 timeout: given twice (first at line 4)"}},
		{"timeout not a duration", "tools:\n  a:\n    exec: {argv: [tool]}\n    timeout: forever\n", nil,
			[]string{"4:14 timeout: want a Go duration"}},
		{"timeout zero", "tools:\n  a:\n    exec: {argv: [tool]}\n    timeout: 0s\n", nil,
			[]string{"4:14 timeout: must be greater than 0"}},
		{"timeout a number", "tools:\n  a:\n    exec: {argv: [tool]}\n    timeout: 10\n", nil,
			[]string{"4:14 timeout: want a string, got int"}},
		{"timeout too long", "tools:\n  a:\n    exec: {argv: [tool]}\n    timeout: 25h\n", nil,
			[]string{"4:14 timeout: must be at most 24h"}},
		{"idempotent not a bool", "tools:\n  a:\n    exec: {argv: [tool]}\n    idempotent: yes please\n", nil,
			[]string{"4:17 idempotent: want true or false"}},
		{"retry attempts zero", "tools:\n  a:\n    exec: {argv: [tool]}\n    retry: {max_attempts: 0, backoff: 1s}\n", nil,
			[]string{"4:27 retry.max_attempts: want a whole number from 1 to 100"}},
		{"retry negative backoff", "tools:\n  a:\n    exec: {argv: [tool]}\n    retry: {backoff: -1s}\n", nil,
			[]string{"4:22 retry.backoff: must be greater than 0"}},
		{"retry unknown field", "tools:\n  a:\n    exec: {argv: [tool]}\n    retry: {jitter: 1s}\n", nil,
			[]string{"4:13 retry.jitter: unknown field"}},
		{"exec argv empty", "tools:\n  a:\n    exec: {argv: []}\n", nil, []string{"3:18 exec.argv: must not be empty"}},
		{"exec argv missing", "tools:\n  a:\n    exec: {workdir: /tmp}\n", nil, []string{"3:11 exec: missing argv"}},
		{"exec missing binary", "tools:\n  a:\n    exec: {argv: [no-such-tool]}\n", nil,
			[]string{`3:19 exec.argv[0]: binary "no-such-tool" not found on PATH`}},
		{"exec missing binary by path", "tools:\n  a:\n    exec: {argv: [./bin/nope]}\n", nil,
			[]string{`3:19 exec.argv[0]: binary "./bin/nope" not found or not executable`}},
		{"exec spliced placeholder", "tools:\n  a:\n    exec: {argv: [tool, '--x={{args.x}}']}\n", nil,
			[]string{"3:25 exec.argv[1]: a placeholder is a whole element"}},
		{"exec unknown placeholder", "tools:\n  a:\n    exec: {argv: [tool, '{{env.HOME}}']}\n", nil,
			[]string{"3:25 exec.argv[1]: a placeholder is a whole element"}},
		{"exec placeholder binary", "tools:\n  a:\n    exec: {argv: ['{{args.bin}}']}\n", nil,
			[]string{"3:19 exec.argv[0]: the binary cannot be a placeholder"}},
		{"exec argv number", "tools:\n  a:\n    exec: {argv: [tool, 3]}\n", nil,
			[]string{"3:25 exec.argv[1]: want a string, got int"}},
		{"exec env bad name", "tools:\n  a:\n    exec: {argv: [tool], env: [A-B]}\n", nil,
			[]string{`3:32 exec.env[0]: "A-B" is not an environment variable name`}},
		{"exec env unknown", "tools:\n  a:\n    exec: {argv: [tool], env: [PATH, NOT_SET]}\n", nil,
			[]string{"3:38 exec.env[1]: environment variable NOT_SET is not set"}},
		{"exec env reserved", "tools:\n  a:\n    exec: {argv: [tool], env: [NANO_VM_IDEMPOTENCY_KEY]}\n", nil,
			[]string{"3:32 exec.env[0]: NANO_VM_IDEMPOTENCY_KEY is set by the executor itself"}},
		{"exec workdir missing", "tools:\n  a:\n    exec: {argv: [tool], workdir: nowhere}\n", nil,
			[]string{`3:35 exec.workdir: "nowhere" is not a directory`}},
		{"exec workdir placeholder", "tools:\n  a:\n    exec: {argv: [tool], workdir: '{{args.dir}}'}\n", nil,
			[]string{"3:35 exec.workdir: the only placeholder a workdir takes is {{stage}}"}},
		{"exec unknown sandbox", "tools:\n  a:\n    exec: {argv: [tool], sandbox: docker}\n", nil,
			[]string{`3:35 exec.sandbox: want "bwrap" or "", got "docker"`}},
		{"exec bwrap missing", "tools:\n  a:\n    exec: {argv: [/bin/true], sandbox: bwrap}\n", map[string]string{"PATH": "/nonexistent"},
			[]string{"3:40 exec.sandbox: bwrap (bubblewrap) is not on PATH"}},
		{"exec network without sandbox", "tools:\n  a:\n    exec: {argv: [tool], network: false}\n", nil,
			[]string{"3:35 exec.network: cutting the network needs sandbox: bwrap"}},
		{"exec binds without sandbox", "tools:\n  a:\n    exec: {argv: [tool], ro_binds: [/usr]}\n", nil,
			[]string{"3:36 exec.ro_binds: binds need sandbox: bwrap"}},
		{"exec unknown field", "tools:\n  a:\n    exec: {argv: [tool], shell: true}\n", nil,
			[]string{"3:26 exec.shell: unknown field"}},
		{"output unknown format", "tools:\n  a:\n    exec: {argv: [tool]}\n    output: {format: xml}\n", nil,
			[]string{`4:22 output.format: want json, exit-status or go-test-json, got "xml"`}},
		{"output on http", "tools:\n  a:\n    http: {url: 'http://x'}\n    output: {format: json}\n", nil,
			[]string{"4:13 output: only an exec tool has an output format"}},
		{"output max bytes zero", "tools:\n  a:\n    exec: {argv: [tool]}\n    output: {max_bytes: 0}\n", nil,
			[]string{"4:25 output.max_bytes: want a whole number from 1 to 1073741824"}},
		{"http relative url", "tools:\n  a:\n    http: {url: /refunds}\n", nil,
			[]string{"3:17 http.url: want an absolute http or https URL"}},
		{"http ftp url", "tools:\n  a:\n    http: {url: 'ftp://x/y'}\n", nil,
			[]string{"3:17 http.url: want an absolute http or https URL"}},
		{"http url credentials", "tools:\n  a:\n    http: {url: 'https://u:p@x/y'}\n", nil,
			[]string{"3:17 http.url: credentials do not belong in the URL"}},
		{"http url credential in the query", "tools:\n  a:\n    http: {url: 'https://x/y?page=2&api_key=s3cr3t'}\n", nil,
			[]string{`3:17 http.url: query parameter "api_key" looks like a credential`}},
		{"mcp url credential in the query", "tools:\n  a:\n    mcp: {url: 'https://x/mcp?access_token=s3cr3t', tool: t}\n", nil,
			[]string{`3:16 mcp.url: query parameter "access_token" looks like a credential`}},
		{"http missing url", "tools:\n  a:\n    http: {method: POST}\n", nil, []string{"3:11 http: missing url"}},
		{"http GET", "tools:\n  a:\n    http: {url: 'http://x', method: GET}\n", nil,
			[]string{`3:37 http.method: want POST, PUT, PATCH or DELETE, got "GET"`}},
		{"http literal credential", "tools:\n  a:\n    http: {url: 'http://x', headers: {Authorization: Bearer abc}}\n", nil,
			[]string{"3:54 http.headers.Authorization: a credential header takes its value from file:PATH or env:NAME"}},
		{"http secret file missing", "tools:\n  a:\n    http: {url: 'http://x', headers: {Authorization: 'file:nope'}}\n", nil,
			[]string{"3:54 http.headers.Authorization: read secret:"}},
		{"http secret file readable by others", "tools:\n  a:\n    http: {url: 'http://x', headers: {X-Token: 'file:open-secret'}}\n", nil,
			[]string{"3:48 http.headers.X-Token: read secret:"}},
		{"http secret env unset", "tools:\n  a:\n    http: {url: 'http://x', headers: {Authorization: 'env:NOPE'}}\n", nil,
			[]string{"3:54 http.headers.Authorization: environment variable NOPE is not set"}},
		{"http secret with a line break", "tools:\n  a:\n    http: {url: 'http://x', headers: {Authorization: 'env:BROKEN'}}\n", nil,
			[]string{"3:54 http.headers.Authorization: the value holds a line break or NUL"}},
		{"http reserved header", "tools:\n  a:\n    http: {url: 'http://x', headers: {Idempotency-Key: x}}\n", nil,
			[]string{"3:39 http.headers.Idempotency-Key: set by the executor itself"}},
		{"http bad header name", "tools:\n  a:\n    http: {url: 'http://x', headers: {'a b': x}}\n", nil,
			[]string{"3:39 http.headers.a b: not a valid header name"}},
		{"mcp command and url", "tools:\n  a:\n    mcp: {command: [tool], url: 'http://x', tool: t}\n", nil,
			[]string{"3:33 mcp.url: give command (a stdio server) or url (an HTTP server), not both"}},
		{"mcp neither", "tools:\n  a:\n    mcp: {tool: t}\n", nil,
			[]string{"3:10 mcp: missing command (a stdio server) or url"}},
		{"mcp no tool", "tools:\n  a:\n    mcp: {command: [tool]}\n", nil,
			[]string{"3:10 mcp: missing tool"}},
		{"mcp missing binary", "tools:\n  a:\n    mcp: {command: [nope], tool: t}\n", nil,
			[]string{`3:21 mcp.command[0]: binary "nope" not found on PATH`}},
		{"mcp token without url", "tools:\n  a:\n    mcp: {command: [tool], tool: t, token_file: secret}\n", nil,
			[]string{"3:49 mcp.token_file: only an HTTP server (url) takes a token"}},
		{"mcp token file missing", "tools:\n  a:\n    mcp: {url: 'http://x', tool: t, token_file: nope}\n", nil,
			[]string{"3:49 mcp.token_file: read secret:"}},
		{"mcp env with url", "tools:\n  a:\n    mcp: {url: 'http://x', tool: t, env: [PATH]}\n", nil,
			[]string{"3:42 mcp.env: only a stdio server (command) takes an environment"}},
		{"unknown builtin", "tools:\n  a:\n    git: {op: push}\n", nil,
			[]string{"3:15 git.op: unknown builtin git.push"}},
		{"git missing op", "tools:\n  a:\n    git: {repositories: {r: repo}}\n", nil,
			[]string{"3:10 git: missing op", "3:25 git.repositories: only git.stage takes repositories"}},
		{"git stage without repositories", "tools:\n  a:\n    git: {op: stage}\n", nil,
			[]string{"3:10 git: missing repositories"}},
		{"git repository not a repository", "tools:\n  a:\n    git: {op: stage, repositories: {r: notrepo}}\n", nil,
			[]string{`3:40 git.repositories.r: "notrepo" is not a git repository`}},
		{"git author on stage", "tools:\n  a:\n    git: {op: discard, author_name: x}\n", nil,
			[]string{"3:37 git.author_name: only git.commit takes an author"}},
		{"yaml alias", "tools:\n  a: &x {exec: {argv: [tool]}}\n  b: *x\n", nil,
			[]string{"3:6 : YAML aliases are not allowed"}},
		{"every problem at once", "tools:\n  a:\n    exec: {argv: [nope]}\n    timeout: 0s\n  b:\n    http: {url: x}\n", nil,
			[]string{`3:19 exec.argv[0]: binary "nope"`, "4:14 timeout: must be greater than 0", "6:17 http.url: want an absolute"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			for k, v := range c.env {
				f.env[k] = v
			}
			_, err := Parse([]byte(c.yaml), "tools.yaml", f.options())
			var re *RegistryError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *RegistryError", err)
			}
			if re.Code() != "invalid_registry" {
				t.Errorf("code %q", re.Code())
			}
			got := make([]string, len(re.Problems))
			for i, p := range re.Problems {
				got[i] = strings.Join([]string{strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column), p.Field + ":", p.Message}, " ")
				if strings.Contains(p.String(), fileSecret) || strings.Contains(p.String(), envSecret) {
					t.Errorf("problem shows a secret: %s", p)
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("problems:\n  %s\nwant %d:\n  %s", strings.Join(got, "\n  "), len(c.want), strings.Join(c.want, "\n  "))
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) && !strings.Contains(re.Problems[i].Message, w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// fmtAll formats v with every verb a log line or error might use.
func fmtAll(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }

func TestProblemStringNamesFilePositionToolAndField(t *testing.T) {
	p := Problem{File: "tools.yaml", Line: 3, Column: 7, Tool: "run_tests", Field: "exec.argv[0]", Message: "binary not found"}
	if got, want := p.String(), "tools.yaml:3:7: tool run_tests: exec.argv[0]: binary not found"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	e := &RegistryError{File: "tools.yaml", Problems: []Problem{p, p}}
	if !strings.HasPrefix(e.Error(), "invalid tool registry tools.yaml: 2 problems:\n  tools.yaml:3:7") {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestParseAppliesDefaultsAndKeepsFileOrder(t *testing.T) {
	f := newFixture(t)
	doc := `tools:
  zeta:
    exec: {argv: [tool, '{{args.x}}'], env: [HOME]}
  alpha:
    http: {url: 'https://pay.example/refunds', headers: {Authorization: 'file:secret', X-Key: 'env:TOKEN', X-Version: '2'}}
    timeout: 5s
    idempotent: true
    retry: {max_attempts: 3, backoff: 200ms}
  stage:
    git: {op: stage, repositories: {app: repo}}
`
	r, err := Parse([]byte(doc), "tools.yaml", f.options())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var names []string
	for _, tl := range r.Tools() {
		names = append(names, tl.Name)
	}
	if !reflect.DeepEqual(names, []string{"zeta", "alpha", "stage"}) {
		t.Errorf("order %v", names)
	}
	z, _ := r.Tool("zeta")
	if z.Timeout != DefaultTimeout || z.Retry.MaxAttempts != 1 || z.Exec.Output != "json" || z.Exec.MaxOutput != DefaultMaxOutput || z.Idempotent {
		t.Errorf("zeta defaults: %+v %+v", z, z.Exec)
	}
	a, _ := r.Tool("alpha")
	if a.Timeout != 5*time.Second || !a.Idempotent || a.Retry != (RetryPolicy{3, 200 * time.Millisecond}) || a.HTTP.Method != "POST" {
		t.Errorf("alpha: %+v", a)
	}
	s, _ := r.Tool("stage")
	if s.Builtin != "git.stage" || s.Kind() != "builtin" || s.Git.Repositories["app"] != f.repo {
		t.Errorf("stage: %+v %+v", s, s.Git)
	}
	for _, n := range names {
		if _, ok := r.Executor(n); !ok {
			t.Errorf("no executor for %s", n)
		}
	}
	if _, ok := r.Executor("nope"); ok {
		t.Error("an executor for an unknown tool")
	}
}

func TestSecretsNeverReachErrorsDocumentsOrFormatting(t *testing.T) {
	f := newFixture(t)
	doc := "tools:\n  pay:\n    http: {url: 'https://pay.example/', headers: {Authorization: 'file:secret', X-Api-Key: 'env:TOKEN'}}\n"
	r, err := Parse([]byte(doc), "tools.yaml", f.options())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d, err := r.Document()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{string(d), fmtAll(r), fmtAll(r.resolved["pay"]), fmtAll(r.resolved["pay"].headers)} {
		if strings.Contains(s, fileSecret) || strings.Contains(s, envSecret) {
			t.Errorf("a secret shows in %q", s)
		}
	}
	if got := r.resolved["pay"].headers; len(got) != 2 || got[0].value() != fileSecret || got[1].value() != envSecret {
		t.Errorf("headers not resolved at load")
	}
}

func TestDocumentParsesBackToTheSameRegistry(t *testing.T) {
	f := newFixture(t)
	doc := `tools:
  t1:
    exec: {argv: [tool, '{{args.x}}', '{{stage}}'], workdir: '{{stage}}', env: [HOME]}
    output: {format: exit-status, max_bytes: 100}
  t2:
    http: {url: 'https://pay.example/', method: PUT, headers: {Authorization: 'file:secret'}}
  t3:
    git: {op: commit, author_name: Bot, author_email: bot@example.com}
  t4:
    git: {op: discard}
    retry: {max_attempts: 2}
`
	r1, err := Parse([]byte(doc), "tools.yaml", f.options())
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	d1, err := r1.Document()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Parse(d1, "normalised.yaml", f.options())
	if err != nil {
		t.Fatalf("%v\n%s", err, d1)
	}
	defer r2.Close()
	d2, _ := r2.Document()
	if string(d1) != string(d2) {
		t.Errorf("not a fixed point:\n%s\n---\n%s", d1, d2)
	}
}

func TestLoadResolvesRelativePathsAgainstTheFile(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(f.dir, "tools.yaml")
	must(t, os.WriteFile(path, []byte("tools:\n  t:\n    exec: {argv: [./bin/tool]}\n"), 0o600))
	o := f.options()
	o.RegistryDir = ""
	r, err := Load(path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.resolved["t"].bin; got != filepath.Join(f.dir, "bin", "tool") {
		t.Errorf("bin %q", got)
	}
	if _, err := Load(filepath.Join(f.dir, "missing.yaml"), o); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParseRegistry(f *testing.F) {
	for _, s := range []string{
		"tools: {}\n",
		"tools:\n  a:\n    exec: {argv: [/bin/true, '{{args.x}}'], env: [HOME], workdir: '{{stage}}'}\n    output: {format: go-test-json}\n",
		"tools:\n  a:\n    http: {url: 'https://x/y', method: PUT, headers: {X-V: '1', Authorization: 'env:TOKEN'}}\n    timeout: 5s\n    retry: {max_attempts: 3, backoff: 1s}\n",
		"tools:\n  a:\n    git: {op: commit, author_name: a}\n  b:\n    git: {op: discard}\n",
		"tools:\n  a:\n    mcp: {url: 'https://x', tool: t}\n",
		"tools:\n  a: &x {exec: {argv: [x]}}\n  b: *x\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	o := Options{RegistryDir: dir, Getenv: func(k string) string {
		return map[string]string{"PATH": "/usr/bin:/bin", "HOME": dir, "TOKEN": "t"}[k]
	}, StageDir: filepath.Join(dir, "stages")}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, probs := parse(data, "fuzz.yaml", o)
		if len(probs) > 0 {
			if r != nil {
				t.Fatal("problems and a registry")
			}
			for _, p := range probs {
				if p.Message == "" || p.File != "fuzz.yaml" {
					t.Fatalf("problem without a message or file: %+v", p)
				}
			}
			return
		}
		d1, err := r.Document()
		if err != nil {
			t.Fatal(err)
		}
		r2, probs := parse(d1, "normalised.yaml", o)
		if len(probs) > 0 {
			t.Fatalf("the normalised form of an accepted registry is refused: %v\n%s", probs, d1)
		}
		d2, err := r2.Document()
		if err != nil || string(d1) != string(d2) {
			t.Fatalf("the normalised form is not a fixed point (%v):\n%s\n---\n%s", err, d1, d2)
		}
	})
}
