package executor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

// Registry defaults and bounds (docs/tools.md).
const (
	DefaultTimeout   = 30 * time.Second
	MaxTimeout       = 24 * time.Hour
	MaxRetryAttempts = 100
	MaxBackoff       = time.Hour
	DefaultMaxOutput = 1 << 20
	// maxRegistryBytes bounds the registry file, so a mistaken path such
	// as /dev/zero fails instead of filling memory.
	maxRegistryBytes = 1 << 20
)

// IdempotencyEnv is the environment variable that carries a call's
// idempotency key to an exec tool.
const IdempotencyEnv = "NANO_VM_IDEMPOTENCY_KEY"

var (
	toolNamePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]*$`)
	envNamePattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	repoNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	placeholderRe   = regexp.MustCompile(`^\{\{(?:args\.([A-Za-z_][A-Za-z0-9_]*)|stage)\}\}$`)
	// sensitiveHeader names the headers whose values are credentials: a
	// literal value for one is refused, so no secret lives in the file.
	sensitiveHeader = regexp.MustCompile(`(?i)auth|token|key|secret|cookie|password|session`)
)

// Problem is one reason a registry was rejected.
type Problem struct {
	File   string
	Line   int // position in the file; 0 when unknown
	Column int
	Tool   string // the tool concerned, if any
	Field  string // the field inside the tool, e.g. exec.argv[0]
	// Message never holds a secret's value.
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	b.WriteString(": ")
	if p.Tool != "" {
		fmt.Fprintf(&b, "tool %s: ", p.Tool)
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// RegistryError is returned for an invalid registry. It carries every
// problem found, in file order.
type RegistryError struct {
	File     string
	Problems []Problem
}

func (e *RegistryError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid tool registry: " + e.Problems[0].String()
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "  " + p.String()
	}
	return fmt.Sprintf("invalid tool registry %s: %d problems:\n%s", e.File, len(e.Problems), strings.Join(lines, "\n"))
}

// Code is the stable error code for an invalid registry.
func (e *RegistryError) Code() string { return "invalid_registry" }

// Registry is a loaded tool registry: every tool by name, each with its
// executor built. It is safe for concurrent use.
type Registry struct {
	file  string
	tools map[string]*Tool
	order []string // tool names in file order
	// resolved holds what loading found for each tool: secrets, paths.
	resolved map[string]*resolved
	stages   *stageRoot

	mu     sync.Mutex
	execs  map[string]Executor
	closed bool
}

// resolved is what loading a tool read from the machine: the absolute
// path of its binary, its secret headers. Never printed.
type resolved struct {
	bin     string   // exec: argv[0] resolved
	bwrap   string   // exec with sandbox bwrap: the bwrap binary
	git     string   // git builtins: the git binary
	headers []header // http
	workdir string   // exec: an absolute workdir, if one is configured
}

// header is an http tool's header, its value resolved at load.
type header struct {
	name  string
	value secret
}

// secret holds a credential's value behind a function, so that fmt,
// which prints unexported fields by reflection, shows an address and never
// the value, whatever the verb and however deep the secret sits.
type secret func() string

func newSecret(s string) secret { return func() string { return s } }

// Load reads and parses the registry file at path. Relative paths in it
// resolve against the file's directory unless o.RegistryDir is set.
func Load(path string, o Options) (*Registry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tool registry: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRegistryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tool registry: %w", err)
	}
	if o.RegistryDir == "" {
		if o.RegistryDir, err = filepath.Abs(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("tool registry: %w", err)
		}
	}
	return Parse(data, path, o)
}

// Parse validates a registry document (file names it in problems) and
// builds every tool's executor. On any problem it returns a
// *RegistryError with all of them and builds nothing.
func Parse(data []byte, file string, o Options) (*Registry, error) {
	r, probs := parse(data, file, o)
	if len(probs) > 0 {
		return nil, &RegistryError{File: file, Problems: probs}
	}
	if err := r.build(o); err != nil {
		return nil, err
	}
	return r, nil
}

// parse validates without building executors: nothing is started or
// connected, so the fuzz target can call it on any input.
func parse(data []byte, file string, o Options) (*Registry, []Problem) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	p := &parser{file: file, o: o, dir: o.RegistryDir}
	if p.dir == "" {
		p.dir, _ = os.Getwd()
	}
	r := &Registry{file: file, tools: map[string]*Tool{}, resolved: map[string]*resolved{}}
	if len(data) > maxRegistryBytes {
		p.add(nil, "", "", "larger than %d bytes", maxRegistryBytes)
		return nil, p.probs
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(nil, "", "", "empty; want a mapping with a tools mapping")
		} else {
			p.add(nil, "", "", "%v", err)
		}
		return nil, p.probs
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		p.add(&extra, "", "", "a second YAML document; the file must hold one")
		return nil, p.probs
	}
	if len(doc.Content) != 1 {
		p.add(&doc, "", "", "want a mapping with a tools mapping")
		return nil, p.probs
	}
	top := p.mapping(doc.Content[0], "", "", "tools")
	tools, ok := top.get("tools")
	if !ok {
		if top != nil {
			p.add(doc.Content[0], "", "", "missing the tools mapping")
		}
		return nil, p.probs
	}
	for _, kv := range p.mapping(tools, "", "tools").all() {
		name := kv.key.Value
		if !toolNamePattern.MatchString(name) {
			p.add(kv.key, name, "", "tool name must match %s", toolNamePattern)
			continue
		}
		t, res := p.tool(name, kv.key, kv.val)
		if t != nil {
			r.tools[name] = t
			r.resolved[name] = res
			r.order = append(r.order, name)
		}
	}
	if len(p.probs) > 0 {
		sort.SliceStable(p.probs, func(i, j int) bool {
			a, b := p.probs[i], p.probs[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Column < b.Column
		})
		return nil, p.probs
	}
	r.stages = &stageRoot{dir: o.StageDir}
	return r, nil
}

// Tools lists the registry's tools in file order.
func (r *Registry) Tools() []*Tool {
	out := make([]*Tool, len(r.order))
	for i, n := range r.order {
		out[i] = r.tools[n]
	}
	return out
}

// Tool returns the named tool's entry.
func (r *Registry) Tool(name string) (*Tool, bool) {
	t, ok := r.tools[name]
	return t, ok
}

// Executor returns the named tool's executor.
func (r *Registry) Executor(name string) (Executor, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.execs[name]
	return e, ok && !r.closed
}

// Close closes every executor and removes the stage directory when the
// registry made it. It is safe to call more than once.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for _, n := range r.order {
		if e := r.execs[n]; e != nil {
			if err := e.Close(); err != nil {
				errs = append(errs, fmt.Errorf("tool %s: %w", n, err))
			}
		}
	}
	if err := r.stages.close(r.gitBinary()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// gitBinary is the git any builtin resolved, for cleaning stages up.
func (r *Registry) gitBinary() string {
	for _, n := range r.order {
		if g := r.resolved[n].git; g != "" {
			return g
		}
	}
	return ""
}

// build makes every tool's executor; a failure is a problem of the tool.
func (r *Registry) build(o Options) error {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	r.execs = make(map[string]Executor, len(r.order))
	var probs []Problem
	for _, n := range r.order {
		t, res := r.tools[n], r.resolved[n]
		var (
			e   Executor
			err error
		)
		switch t.Kind() {
		case "mcp":
			e, err = newMCP(t, o)
		case "exec":
			e = newExec(t, res, r.stages, o)
		case "http":
			e = newHTTP(t, res)
		default:
			e = newGit(t, res, r.repositories(), r.stages, o)
		}
		if err != nil {
			probs = append(probs, Problem{File: r.file, Line: t.Line, Column: t.Column, Tool: n, Field: t.Kind(), Message: err.Error()})
			continue
		}
		r.execs[n] = e
	}
	if len(probs) > 0 {
		r.Close()
		return &RegistryError{File: r.file, Problems: probs}
	}
	return nil
}

// repositories is the union of every git.stage tool's repositories: the
// ones git.discard prunes after a stage that is already gone.
func (r *Registry) repositories() []string {
	var out []string
	for _, n := range r.order {
		if g := r.tools[n].Git; g != nil {
			for _, p := range g.Repositories {
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// parser collects the problems of one registry document.
type parser struct {
	file  string
	o     Options
	dir   string
	probs []Problem
}

func (p *parser) add(n *yaml.Node, tool, field, format string, args ...any) {
	pr := Problem{File: p.file, Tool: tool, Field: field, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		pr.Line, pr.Column = n.Line, n.Column
	}
	p.probs = append(p.probs, pr)
}

type pair struct{ key, val *yaml.Node }

// fields is a mapping's members in file order.
type fields struct {
	node  *yaml.Node
	pairs []pair
}

// all is the members; none for a node that was not a mapping.
func (f *fields) all() []pair {
	if f == nil {
		return nil
	}
	return f.pairs
}

func (f *fields) get(k string) (*yaml.Node, bool) {
	if f == nil {
		return nil, false
	}
	for _, kv := range f.pairs {
		if kv.key.Value == k {
			return kv.val, true
		}
	}
	return nil, false
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}

// mapping checks that n is a mapping with string keys, none repeated and,
// when allowed is given, every one of them allowed.
func (p *parser) mapping(n *yaml.Node, tool, field string, allowed ...string) *fields {
	if n.Kind == yaml.AliasNode {
		p.add(n, tool, field, "YAML aliases are not allowed")
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, tool, field, "want a mapping, got a %s", kindName(n.Kind))
		return nil
	}
	f := &fields{node: n}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			p.add(k, tool, field, "keys must be strings")
			continue
		}
		if len(allowed) > 0 && !contains(allowed, k.Value) {
			p.add(k, tool, join(field, k.Value), "unknown field (allowed: %s)", strings.Join(allowed, ", "))
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			p.add(k, tool, join(field, k.Value), "given twice (first at line %d)", prev.Line)
			continue
		}
		seen[k.Value] = k
		f.pairs = append(f.pairs, pair{k, v})
	}
	return f
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func join(field, sub string) string {
	if field == "" {
		return sub
	}
	return field + "." + sub
}

// str returns a string scalar; numbers and booleans must be quoted.
func (p *parser) str(n *yaml.Node, tool, field string) (string, bool) {
	switch {
	case n.Kind == yaml.AliasNode:
		p.add(n, tool, field, "YAML aliases are not allowed")
	case n.Kind != yaml.ScalarNode:
		p.add(n, tool, field, "want a string, got a %s", kindName(n.Kind))
	case n.ShortTag() != "!!str":
		p.add(n, tool, field, "want a string, got %s %q (quote it)", strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
	default:
		return n.Value, true
	}
	return "", false
}

// nonEmpty is str that also refuses the empty string.
func (p *parser) nonEmpty(n *yaml.Node, tool, field string) (string, bool) {
	s, ok := p.str(n, tool, field)
	if ok && s == "" {
		p.add(n, tool, field, "must not be empty")
		return "", false
	}
	return s, ok
}

func (p *parser) boolean(n *yaml.Node, tool, field string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		p.add(n, tool, field, "want true or false")
		return false, false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", true
}

func (p *parser) integer(n *yaml.Node, tool, field string, lo, hi int64) (int64, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		if v, err := strconv.ParseInt(n.Value, 10, 64); err == nil && v >= lo && v <= hi {
			return v, true
		}
	}
	p.add(n, tool, field, "want a whole number from %d to %d", lo, hi)
	return 0, false
}

// duration parses a Go duration ("10s", "200ms") within (lo, hi], or
// [0, hi] when zero is allowed.
func (p *parser) duration(n *yaml.Node, tool, field string, zeroOK bool, hi time.Duration) (time.Duration, bool) {
	s, ok := p.str(n, tool, field)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		p.add(n, tool, field, "want a Go duration such as 10s or 200ms, got %q", s)
	case d < 0 || (d == 0 && !zeroOK):
		p.add(n, tool, field, "must be greater than 0")
	case d > hi:
		p.add(n, tool, field, "must be at most %s", hi)
	default:
		return d, true
	}
	return 0, false
}

// strings reads a list of strings.
func (p *parser) strList(n *yaml.Node, tool, field string) ([]string, []*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		p.add(n, tool, field, "want a list, got a %s", kindName(n.Kind))
		return nil, nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for i, e := range n.Content {
		s, good := p.str(e, tool, fmt.Sprintf("%s[%d]", field, i))
		ok = ok && good
		out = append(out, s)
	}
	return out, n.Content, ok
}

// dirPath resolves a directory the registry names: `env:NAME` takes it
// from the server's environment when the registry loads (a throwaway
// repository, a build cache: paths that differ between machines), and a
// relative path resolves against the registry's directory.
func (p *parser) dirPath(n *yaml.Node, tool, field, s string) (string, bool) {
	if name, ok := strings.CutPrefix(s, "env:"); ok {
		if !envNamePattern.MatchString(name) {
			p.add(n, tool, field, "%q is not an environment variable name", name)
			return "", false
		}
		if s = strings.TrimSpace(p.o.Getenv(name)); s == "" {
			p.add(n, tool, field, "environment variable %s is not set", name)
			return "", false
		}
	}
	return p.path(s), true
}

// given names a directory in a problem as the registry gives it, with
// the value an env:NAME read.
func given(s, dir string) string {
	if strings.HasPrefix(s, "env:") {
		return fmt.Sprintf("%s (%q)", s, dir)
	}
	return strconv.Quote(s)
}

// path resolves a path against the registry's directory.
func (p *parser) path(s string) string {
	if filepath.IsAbs(s) {
		return filepath.Clean(s)
	}
	return filepath.Join(p.dir, s)
}

// lookPath finds a binary: a name with a slash is a path (relative ones
// against the registry's directory), a bare name is searched on the
// server's PATH. It returns "" when there is no such executable file.
func (p *parser) lookPath(name string) string {
	if strings.ContainsRune(name, '/') {
		if path := p.path(name); isExecutable(path) {
			return path
		}
		return ""
	}
	for _, dir := range filepath.SplitList(p.o.Getenv("PATH")) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // a relative PATH entry would depend on the working directory
		}
		if path := filepath.Join(dir, name); isExecutable(path) {
			return path
		}
	}
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// binary resolves argv[0] of a command, adding a problem when it is missing.
func (p *parser) binary(n *yaml.Node, tool, field, name string) string {
	if name == "" {
		p.add(n, tool, field, "must not be empty")
		return ""
	}
	bin := p.lookPath(name)
	if bin == "" {
		if strings.ContainsRune(name, '/') {
			p.add(n, tool, field, "binary %q not found or not executable", name)
		} else {
			p.add(n, tool, field, "binary %q not found on PATH", name)
		}
	}
	return bin
}

// envNames checks a list of environment variable names: each valid, not
// reserved, and set in the server's environment.
func (p *parser) envNames(n *yaml.Node, tool, field string) []string {
	names, nodes, _ := p.strList(n, tool, field)
	for i, name := range names {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case nodes[i].ShortTag() != "!!str":
		case !envNamePattern.MatchString(name):
			p.add(nodes[i], tool, f, "%q is not an environment variable name", name)
		case name == IdempotencyEnv:
			p.add(nodes[i], tool, f, "%s is set by the executor itself", IdempotencyEnv)
		case p.o.Getenv(name) == "":
			p.add(nodes[i], tool, f, "environment variable %s is not set", name)
		}
	}
	return names
}

// Every tool has exactly one of these executor kinds.
var kinds = []string{"mcp", "exec", "http", "git"}

func (p *parser) tool(name string, key, n *yaml.Node) (*Tool, *resolved) {
	f := p.mapping(n, name, "", "mcp", "exec", "http", "git", "timeout", "idempotent", "retry", "output")
	if f == nil {
		return nil, nil
	}
	t := &Tool{Name: name, Line: key.Line, Column: key.Column, Timeout: DefaultTimeout, Retry: RetryPolicy{MaxAttempts: 1}}
	res := &resolved{}
	var kind string
	for _, kv := range f.pairs {
		if !contains(kinds, kv.key.Value) {
			continue
		}
		if kind != "" {
			p.add(kv.key, name, kv.key.Value, "a tool has exactly one executor kind; this one already has %s", kind)
			continue
		}
		kind = kv.key.Value
		switch kind {
		case "mcp":
			t.MCP = p.mcp(name, kv.val)
		case "exec":
			t.Exec = p.exec(name, kv.val, res)
		case "http":
			t.HTTP = p.http(name, kv.val, res)
		case "git":
			t.Git, t.Builtin = p.git(name, kv.val, res)
		}
	}
	if kind == "" {
		p.add(key, name, "", "no executor kind: want one of %s", strings.Join(kinds, ", "))
	}
	if v, ok := f.get("timeout"); ok {
		t.Timeout, _ = p.duration(v, name, "timeout", false, MaxTimeout)
	}
	if v, ok := f.get("idempotent"); ok {
		t.Idempotent, _ = p.boolean(v, name, "idempotent")
	}
	if v, ok := f.get("retry"); ok {
		if rf := p.mapping(v, name, "retry", "max_attempts", "backoff"); rf != nil {
			if a, ok := rf.get("max_attempts"); ok {
				m, _ := p.integer(a, name, "retry.max_attempts", 1, MaxRetryAttempts)
				t.Retry.MaxAttempts = int(m)
			}
			if b, ok := rf.get("backoff"); ok {
				t.Retry.Backoff, _ = p.duration(b, name, "retry.backoff", true, MaxBackoff)
			}
		}
	}
	if v, ok := f.get("output"); ok {
		switch {
		case t.Exec != nil:
			p.output(name, v, t.Exec)
		case kind != "exec": // a broken exec spec already has its problems
			p.add(v, name, "output", "only an exec tool has an output format")
		}
	}
	if kind == "" || (kind == "mcp" && t.MCP == nil) || (kind == "exec" && t.Exec == nil) ||
		(kind == "http" && t.HTTP == nil) || (kind == "git" && t.Git == nil) {
		return nil, nil
	}
	return t, res
}

func (p *parser) output(tool string, n *yaml.Node, e *ExecSpec) {
	f := p.mapping(n, tool, "output", "format", "max_bytes")
	if v, ok := f.get("format"); ok {
		if s, ok := p.str(v, tool, "output.format"); ok {
			switch s {
			case "json", "exit-status", "go-test-json":
				e.Output = s
			default:
				p.add(v, tool, "output.format", "want json, exit-status or go-test-json, got %q", s)
			}
		}
	}
	if v, ok := f.get("max_bytes"); ok {
		e.MaxOutput, _ = p.integer(v, tool, "output.max_bytes", 1, 1<<30)
	}
}

func (p *parser) mcp(tool string, n *yaml.Node) *MCPSpec {
	f := p.mapping(n, tool, "mcp", "command", "env", "url", "token_file", "tool")
	if f == nil {
		return nil
	}
	s := &MCPSpec{}
	start := len(p.probs)
	cmd, hasCmd := f.get("command")
	u, hasURL := f.get("url")
	switch {
	case hasCmd && hasURL:
		p.add(u, tool, "mcp.url", "give command (a stdio server) or url (an HTTP server), not both")
	case !hasCmd && !hasURL:
		p.add(n, tool, "mcp", "missing command (a stdio server) or url (an HTTP server)")
	case hasCmd:
		argv, nodes, ok := p.strList(cmd, tool, "mcp.command")
		if ok && len(argv) == 0 {
			p.add(cmd, tool, "mcp.command", "must not be empty")
		} else if ok {
			if bin := p.binary(nodes[0], tool, "mcp.command[0]", argv[0]); bin != "" {
				argv[0] = bin
			}
			s.Command = argv
		}
	default:
		s.URL = p.httpURL(u, tool, "mcp.url")
	}
	if v, ok := f.get("env"); ok {
		if !hasCmd {
			p.add(v, tool, "mcp.env", "only a stdio server (command) takes an environment")
		}
		s.Env = p.envNames(v, tool, "mcp.env")
	}
	if v, ok := f.get("token_file"); ok {
		if !hasURL {
			p.add(v, tool, "mcp.token_file", "only an HTTP server (url) takes a token")
		} else if path, ok := p.nonEmpty(v, tool, "mcp.token_file"); ok {
			s.TokenFile = p.path(path)
			if _, err := access.ReadSecret(s.TokenFile, ""); err != nil {
				p.add(v, tool, "mcp.token_file", "%v", err)
			}
		}
	}
	if v, ok := f.get("tool"); ok {
		s.Tool, _ = p.nonEmpty(v, tool, "mcp.tool")
	} else {
		p.add(n, tool, "mcp", "missing tool (the downstream tool's name)")
	}
	if len(p.probs) > start {
		return nil
	}
	return s
}

// httpURL checks an absolute http(s) URL that carries no credentials.
func (p *parser) httpURL(n *yaml.Node, tool, field string) string {
	s, ok := p.nonEmpty(n, tool, field)
	if !ok {
		return ""
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.add(n, tool, field, "want an absolute http or https URL")
	case u.User != nil:
		p.add(n, tool, field, "credentials do not belong in the URL; use a header from file: or env:")
	case credentialParam(u) != "":
		// The URL is written to logs, pins and failure details.
		p.add(n, tool, field, "query parameter %q looks like a credential, and the URL is logged and recorded; send it in a header from file: or env:", credentialParam(u))
	default:
		return s
	}
	return ""
}

// credentialParam is the first query parameter of u whose name looks like
// a credential (as sensitiveHeader judges header names), or "".
func credentialParam(u *url.URL) string {
	names := slices.Sorted(maps.Keys(u.Query()))
	for _, name := range names {
		if sensitiveHeader.MatchString(name) {
			return name
		}
	}
	return ""
}

func (p *parser) exec(tool string, n *yaml.Node, res *resolved) *ExecSpec {
	f := p.mapping(n, tool, "exec", "argv", "workdir", "env", "sandbox", "network", "ro_binds", "rw_binds")
	if f == nil {
		return nil
	}
	start := len(p.probs)
	e := &ExecSpec{Output: "json", MaxOutput: DefaultMaxOutput}
	if v, ok := f.get("argv"); ok {
		argv, nodes, ok := p.strList(v, tool, "exec.argv")
		if ok && len(argv) == 0 {
			p.add(v, tool, "exec.argv", "must not be empty")
		} else if ok {
			for i, a := range argv {
				if strings.Contains(a, "{{") || strings.Contains(a, "}}") {
					if i == 0 {
						p.add(nodes[i], tool, "exec.argv[0]", "the binary cannot be a placeholder")
					} else if !placeholderRe.MatchString(a) {
						p.add(nodes[i], tool, fmt.Sprintf("exec.argv[%d]", i), "a placeholder is a whole element, {{args.NAME}} or {{stage}}; got %q", a)
					}
				}
			}
			if !strings.Contains(argv[0], "{{") {
				res.bin = p.binary(nodes[0], tool, "exec.argv[0]", argv[0])
			}
			e.Argv = argv
		}
	} else {
		p.add(n, tool, "exec", "missing argv")
	}
	if v, ok := f.get("workdir"); ok {
		if w, ok := p.nonEmpty(v, tool, "exec.workdir"); ok {
			e.Workdir = w
			if w != "{{stage}}" {
				if strings.Contains(w, "{{") {
					p.add(v, tool, "exec.workdir", "the only placeholder a workdir takes is {{stage}}")
				} else if fi, err := os.Stat(p.path(w)); err != nil || !fi.IsDir() {
					p.add(v, tool, "exec.workdir", "%q is not a directory", w)
				} else {
					res.workdir = p.path(w)
				}
			}
		}
	}
	if v, ok := f.get("env"); ok {
		e.Env = p.envNames(v, tool, "exec.env")
	}
	if v, ok := f.get("sandbox"); ok {
		if s, ok := p.str(v, tool, "exec.sandbox"); ok {
			switch s {
			case "":
			case "bwrap":
				e.Sandbox = s
				if res.bwrap = p.lookPath("bwrap"); res.bwrap == "" {
					p.add(v, tool, "exec.sandbox", "bwrap (bubblewrap) is not on PATH; install it (apt-get install bubblewrap) or drop the sandbox")
				}
			default:
				p.add(v, tool, "exec.sandbox", `want "bwrap" or "", got %q`, s)
			}
		}
	}
	if v, ok := f.get("network"); ok {
		if b, ok := p.boolean(v, tool, "exec.network"); ok {
			e.Network = b
			if !b && e.Sandbox == "" {
				p.add(v, tool, "exec.network", "cutting the network needs sandbox: bwrap")
			}
		}
	}
	for _, kv := range []struct {
		field string
		dst   *[]string
	}{{"ro_binds", &e.ReadOnly}, {"rw_binds", &e.Writable}} {
		v, ok := f.get(kv.field)
		if !ok {
			continue
		}
		field := "exec." + kv.field
		if e.Sandbox == "" {
			p.add(v, tool, field, "binds need sandbox: bwrap")
			continue
		}
		paths, nodes, _ := p.strList(v, tool, field)
		for i, s := range paths {
			if nodes[i].ShortTag() != "!!str" {
				continue
			}
			dir, ok := p.dirPath(nodes[i], tool, fmt.Sprintf("%s[%d]", field, i), s)
			if !ok {
				continue
			}
			if fi, err := os.Stat(dir); s == "" || err != nil || !fi.IsDir() {
				p.add(nodes[i], tool, fmt.Sprintf("%s[%d]", field, i), "%s is not a directory", given(s, dir))
				continue
			}
			*kv.dst = append(*kv.dst, dir)
		}
	}
	if e.Sandbox == "bwrap" && res.bin != "" && !visibleInSandbox(res.bin, e) {
		v, _ := f.get("argv")
		p.add(v.Content[0], tool, "exec.argv[0]", "%s is not visible in the sandbox; add its directory to ro_binds", res.bin)
	}
	if len(p.probs) > start {
		return nil
	}
	return e
}

func (p *parser) http(tool string, n *yaml.Node, res *resolved) *HTTPSpec {
	f := p.mapping(n, tool, "http", "url", "method", "headers")
	if f == nil {
		return nil
	}
	start := len(p.probs)
	h := &HTTPSpec{Method: "POST"}
	if v, ok := f.get("url"); ok {
		h.URL = p.httpURL(v, tool, "http.url")
	} else {
		p.add(n, tool, "http", "missing url")
	}
	if v, ok := f.get("method"); ok {
		if m, ok := p.str(v, tool, "http.method"); ok {
			switch m {
			case "POST", "PUT", "PATCH", "DELETE":
				h.Method = m
			default:
				p.add(v, tool, "http.method", "want POST, PUT, PATCH or DELETE, got %q", m)
			}
		}
	}
	if v, ok := f.get("headers"); ok {
		h.Headers = map[string]string{}
		for _, kv := range p.mapping(v, tool, "http.headers").all() {
			name, field := kv.key.Value, "http.headers."+kv.key.Value
			if !validHeaderName(name) {
				p.add(kv.key, tool, field, "not a valid header name")
				continue
			}
			switch strings.ToLower(name) {
			case "content-type", "content-length", "host", "idempotency-key", "transfer-encoding", "connection":
				p.add(kv.key, tool, field, "set by the executor itself")
				continue
			}
			val, ok := p.str(kv.val, tool, field)
			if !ok {
				continue
			}
			h.Headers[name] = val
			var got secret
			switch {
			case strings.HasPrefix(val, "file:"):
				s, err := access.ReadSecret(p.path(strings.TrimPrefix(val, "file:")), "")
				if err != nil {
					p.add(kv.val, tool, field, "%v", err)
					continue
				}
				got = newSecret(s)
			case strings.HasPrefix(val, "env:"):
				env := strings.TrimPrefix(val, "env:")
				if !envNamePattern.MatchString(env) {
					p.add(kv.val, tool, field, "%q is not an environment variable name", env)
					continue
				}
				s := strings.TrimSpace(p.o.Getenv(env))
				if s == "" {
					p.add(kv.val, tool, field, "environment variable %s is not set", env)
					continue
				}
				got = newSecret(s)
			case sensitiveHeader.MatchString(name):
				p.add(kv.val, tool, field, "a credential header takes its value from file:PATH or env:NAME, never from the registry itself")
				continue
			default:
				got = newSecret(val)
			}
			if strings.ContainsAny(got(), "\r\n\x00") {
				p.add(kv.val, tool, field, "the value holds a line break or NUL")
				continue
			}
			res.headers = append(res.headers, header{name: name, value: got})
		}
	}
	if len(p.probs) > start {
		return nil
	}
	return h
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func (p *parser) git(tool string, n *yaml.Node, res *resolved) (*GitSpec, string) {
	f := p.mapping(n, tool, "git", "op", "repositories", "author_name", "author_email")
	if f == nil {
		return nil, ""
	}
	start := len(p.probs)
	g := &GitSpec{AuthorName: DefaultAuthorName, AuthorEmail: DefaultAuthorEmail}
	var op string
	if v, ok := f.get("op"); ok {
		if op, ok = p.str(v, tool, "git.op"); ok && op != "stage" && op != "commit" && op != "discard" {
			p.add(v, tool, "git.op", "unknown builtin git.%s: want stage, commit or discard", op)
		}
	} else {
		p.add(n, tool, "git", "missing op (stage, commit or discard)")
	}
	if v, ok := f.get("repositories"); ok {
		if op != "stage" {
			p.add(v, tool, "git.repositories", "only git.stage takes repositories")
		} else {
			g.Repositories = map[string]string{}
			for _, kv := range p.mapping(v, tool, "git.repositories").all() {
				field := "git.repositories." + kv.key.Value
				if !repoNamePattern.MatchString(kv.key.Value) {
					p.add(kv.key, tool, field, "a repository name must match %s", repoNamePattern)
					continue
				}
				s, ok := p.nonEmpty(kv.val, tool, field)
				if !ok {
					continue
				}
				dir, ok := p.dirPath(kv.val, tool, field, s)
				if !ok {
					continue
				}
				if !isRepository(dir) {
					p.add(kv.val, tool, field, "%s is not a git repository", given(s, dir))
					continue
				}
				g.Repositories[kv.key.Value] = dir
			}
			if len(g.Repositories) == 0 && len(p.probs) == start {
				p.add(v, tool, "git.repositories", "name at least one repository")
			}
		}
	} else if op == "stage" {
		p.add(n, tool, "git", "missing repositories (name: path) for git.stage")
	}
	for _, a := range []struct {
		field string
		dst   *string
	}{{"author_name", &g.AuthorName}, {"author_email", &g.AuthorEmail}} {
		if v, ok := f.get(a.field); ok {
			if op != "commit" {
				p.add(v, tool, "git."+a.field, "only git.commit takes an author")
			} else if s, ok := p.nonEmpty(v, tool, "git."+a.field); ok {
				if strings.ContainsAny(s, "<>\n\x00") {
					p.add(v, tool, "git."+a.field, "must not hold <, >, a line break or NUL")
				}
				*a.dst = s
			}
		}
	}
	if op != "" {
		if res.git = p.lookPath("git"); res.git == "" {
			p.add(n, tool, "git", "git is not on PATH")
		}
	}
	if len(p.probs) > start {
		return nil, ""
	}
	return g, "git." + op
}

// isRepository reports whether dir looks like a git repository: a work
// tree with .git, or a bare repository.
func isRepository(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		return true
	}
	fi, err := os.Stat(filepath.Join(dir, "objects"))
	_, herr := os.Stat(filepath.Join(dir, "HEAD"))
	return err == nil && fi.IsDir() && herr == nil
}

// Document is the registry in its normalised form: every default written
// out, paths absolute, kinds in the order mcp, exec, http, git. Header
// values are shown as the registry gives them (file:PATH, env:NAME), never
// resolved. Parsing it again gives the same registry.
func (r *Registry) Document() ([]byte, error) {
	type docOutput struct {
		Format   string `yaml:"format"`
		MaxBytes int64  `yaml:"max_bytes"`
	}
	type docRetry struct {
		MaxAttempts int    `yaml:"max_attempts"`
		Backoff     string `yaml:"backoff"`
	}
	type docExec struct {
		Argv     []string `yaml:"argv,flow"`
		Workdir  string   `yaml:"workdir,omitempty"`
		Env      []string `yaml:"env,omitempty,flow"`
		Sandbox  string   `yaml:"sandbox,omitempty"`
		Network  *bool    `yaml:"network,omitempty"`
		ReadOnly []string `yaml:"ro_binds,omitempty"`
		Writable []string `yaml:"rw_binds,omitempty"`
	}
	type docMCP struct {
		Command   []string `yaml:"command,omitempty,flow"`
		Env       []string `yaml:"env,omitempty,flow"`
		URL       string   `yaml:"url,omitempty"`
		TokenFile string   `yaml:"token_file,omitempty"`
		Tool      string   `yaml:"tool"`
	}
	type docHTTP struct {
		URL     string            `yaml:"url"`
		Method  string            `yaml:"method"`
		Headers map[string]string `yaml:"headers,omitempty"`
	}
	type docGit struct {
		Op           string            `yaml:"op"`
		Repositories map[string]string `yaml:"repositories,omitempty"`
		AuthorName   string            `yaml:"author_name,omitempty"`
		AuthorEmail  string            `yaml:"author_email,omitempty"`
	}
	type docTool struct {
		MCP        *docMCP    `yaml:"mcp,omitempty"`
		Exec       *docExec   `yaml:"exec,omitempty"`
		HTTP       *docHTTP   `yaml:"http,omitempty"`
		Git        *docGit    `yaml:"git,omitempty"`
		Timeout    string     `yaml:"timeout"`
		Idempotent bool       `yaml:"idempotent"`
		Retry      docRetry   `yaml:"retry"`
		Output     *docOutput `yaml:"output,omitempty"`
	}
	tools := make(map[string]docTool, len(r.order))
	for _, n := range r.order {
		t := r.tools[n]
		d := docTool{Timeout: t.Timeout.String(), Idempotent: t.Idempotent,
			Retry: docRetry{MaxAttempts: t.Retry.MaxAttempts, Backoff: t.Retry.Backoff.String()}}
		switch {
		case t.MCP != nil:
			d.MCP = &docMCP{Command: t.MCP.Command, Env: t.MCP.Env, URL: t.MCP.URL, TokenFile: t.MCP.TokenFile, Tool: t.MCP.Tool}
		case t.Exec != nil:
			e := t.Exec
			x := &docExec{Argv: append([]string{r.resolved[n].bin}, e.Argv[1:]...), Env: e.Env, Sandbox: e.Sandbox,
				ReadOnly: e.ReadOnly, Writable: e.Writable, Workdir: e.Workdir}
			if r.resolved[n].workdir != "" {
				x.Workdir = r.resolved[n].workdir
			}
			if e.Sandbox != "" {
				x.Network = &e.Network
			}
			d.Exec, d.Output = x, &docOutput{Format: e.Output, MaxBytes: e.MaxOutput}
		case t.HTTP != nil:
			d.HTTP = &docHTTP{URL: t.HTTP.URL, Method: t.HTTP.Method, Headers: t.HTTP.Headers}
		default:
			g := &docGit{Op: strings.TrimPrefix(t.Builtin, "git."), Repositories: t.Git.Repositories}
			if g.Op == "commit" {
				g.AuthorName, g.AuthorEmail = t.Git.AuthorName, t.Git.AuthorEmail
			}
			d.Git = g
		}
		tools[n] = d
	}
	return yaml.Marshal(map[string]any{"tools": tools})
}
