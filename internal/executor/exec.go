package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// maxTestFailures bounds the failures a go-test-json result lists; the
// failed count stays exact.
const maxTestFailures = 50

// execExecutor runs a command: argv only, never a shell.
type execExecutor struct {
	t      *Tool
	spec   *ExecSpec
	res    *resolved
	stages *stageRoot
	env    []string // the allowlist, NAME=value, read at load
	roots  []bindRoot
	log    *zap.Logger
}

func newExec(t *Tool, res *resolved, stages *stageRoot, o Options) Executor {
	e := &execExecutor{t: t, spec: t.Exec, res: res, stages: stages, log: o.Log}
	for _, n := range t.Exec.Env {
		e.env = append(e.env, n+"="+o.Getenv(n))
	}
	if t.Exec.Sandbox == "bwrap" {
		e.roots = systemRoots()
	}
	return e
}

func (e *execExecutor) Close() error { return nil }

func (e *execExecutor) Invoke(ctx context.Context, c Call) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, e.t.Timeout)
	defer cancel()
	args, stdin, err := canonicalArgs(c)
	if err != nil {
		return nil, err
	}
	var stage string
	argv := make([]string, len(e.spec.Argv))
	argv[0] = e.res.bin
	for i, a := range e.spec.Argv[1:] {
		if argv[i+1], err = e.substitute(a, args, &stage); err != nil {
			return nil, err
		}
	}
	workdir := e.res.workdir
	switch e.spec.Workdir {
	case "{{stage}}":
		if stage == "" {
			if stage, err = e.stages.resolve(args["stage"]); err != nil {
				return nil, err
			}
		}
		workdir = stage
	case "":
		dir, err := os.MkdirTemp("", "nano-vm-exec-")
		if err != nil {
			return nil, Fail(ClassSandbox, "cannot make a working directory: %v", err)
		}
		defer os.RemoveAll(dir)
		workdir = dir
	}
	env := append(append([]string(nil), e.env...), IdempotencyEnv+"="+c.IdempotencyKey)

	var cmd *exec.Cmd
	var status *os.File
	if e.spec.Sandbox == "bwrap" {
		// bwrap reports on fd 3 whether the command ran, which tells the
		// sandbox's own failures apart from the command's.
		r, w, err := os.Pipe()
		if err != nil {
			return nil, Fail(ClassSandbox, "cannot make a status pipe: %v", err)
		}
		defer r.Close()
		status = r
		cmd = exec.Command(e.res.bwrap, e.bwrapArgs(workdir, argv)...)
		cmd.ExtraFiles = []*os.File{w}
		defer w.Close()
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	// The environment is cleared but for the allowlist; bwrap hands its
	// own environment on, so the values never appear on a command line.
	cmd.Env = env
	cmd.Dir = workdir
	out := runGroupStatus(ctx, cmd, stdin, e.spec.MaxOutput, status)
	if f := e.failure(out); f != nil {
		return nil, f
	}
	e.log.Debug("exec tool finished", zap.String("tool", e.t.Name), zap.Int("exit_code", out.exitCode),
		zap.String("stderr_tail", tail(out.stderr, 512)))
	switch e.spec.Output {
	case "exit-status":
		return map[string]any{
			"exit_code":   jsonNumber(out.exitCode),
			"stdout_tail": tail(out.stdout, tailBytes),
			"stderr_tail": tail(out.stderr, tailBytes),
		}, nil
	case "go-test-json":
		return goTestResult(out), nil
	}
	if out.exitCode != 0 {
		return nil, Fail(ClassToolError, "exit status %d", out.exitCode)
	}
	v, err := jsonvalue.Decode(out.stdout)
	if err != nil {
		return nil, Fail(ClassSchemaViolation, "stdout is not one strict JSON document: %v", err)
	}
	return v, nil
}

// canonicalArgs returns the call's arguments (never nil) and their
// canonical JSON, the document an exec tool reads on stdin and an http
// tool receives as its body.
func canonicalArgs(c Call) (map[string]any, []byte, error) {
	args := c.Arguments
	if args == nil {
		args = map[string]any{}
	}
	b, err := jsonvalue.Canonical(args)
	if err != nil {
		return nil, nil, Fail(ClassToolError, "the arguments have no JSON form")
	}
	return args, b, nil
}

// runGroupStatus is runGroup for a command started through bwrap, whose
// --json-status-fd pipe (status, nil without a sandbox) says whether the
// command ran.
func runGroupStatus(ctx context.Context, cmd *exec.Cmd, stdin []byte, max int64, status *os.File) outcome {
	if status == nil {
		return runGroup(ctx, cmd, stdin, max)
	}
	started := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(status)
		ok := false
		for sc.Scan() {
			// bwrap reports "child-pid" before it sets the sandbox up, and
			// "exit-code" only for a command that ran.
			ok = ok || bytes.Contains(sc.Bytes(), []byte(`"exit-code"`))
		}
		started <- ok
	}()
	out := runGroup(ctx, cmd, stdin, max)
	// Our copy of the write end must go before the reader can see EOF.
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
	if !<-started && out.startErr == nil && !out.timedOut && !out.cancelled && out.overflow == "" {
		out.startErr = fmt.Errorf("bwrap: %s", strings.TrimSpace(tail(out.stderr, 512)))
		out.sandbox = true
	}
	return out
}

// failure classifies a run that produced no result.
func (e *execExecutor) failure(out outcome) *Failure {
	switch {
	case out.sandbox:
		return Fail(ClassSandbox, "the sandbox could not start the command: %v", out.startErr)
	case out.startErr != nil:
		return Fail(ClassTransport, "cannot start %s: %v", filepath.Base(e.res.bin), out.startErr)
	case out.overflow != "":
		return Fail(ClassSandbox, "%s exceeds %d bytes", out.overflow, e.spec.MaxOutput)
	case out.timedOut:
		return Fail(ClassTimeout, "no exit within %s; the process group was killed", e.t.Timeout)
	case out.cancelled:
		return Fail(ClassTransport, "the call was cancelled; the process group was killed")
	}
	return nil
}

// substitute replaces a whole-element placeholder by its value.
func (e *execExecutor) substitute(a string, args map[string]any, stage *string) (string, error) {
	m := placeholderRe.FindStringSubmatch(a)
	if m == nil {
		return a, nil
	}
	if m[1] == "" { // {{stage}}
		s, err := e.stages.resolve(args["stage"])
		*stage = s
		return s, err
	}
	v, ok := args[m[1]]
	if !ok {
		return "", Fail(ClassToolError, "argument %s, which argv names, is missing", m[1])
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number, bool, nil, float64, int, int64:
		b, _ := json.Marshal(x)
		return string(b), nil
	}
	return "", Fail(ClassToolError, "argument %s is an object or array; an argv element takes a string, number, boolean or null", m[1])
}

// bindRoot is a top-level system directory as the sandbox shows it: bound
// read-only, or (merged /usr) a symbolic link.
type bindRoot struct {
	path, link string
}

// sandboxDirs are the system directories a sandbox sees, read-only.
var sandboxDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// sandboxEtc is the minimal /etc a command needs: users, name
// resolution, certificates, the dynamic linker's cache.
var sandboxEtc = []string{
	"/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/resolv.conf",
	"/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
	"/etc/ld.so.conf.d", "/etc/localtime", "/etc/mime.types",
}

// systemRoots reads how this machine lays out the system directories.
func systemRoots() []bindRoot {
	var out []bindRoot
	for _, d := range sandboxDirs {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSymlink != 0:
			if l, err := os.Readlink(d); err == nil {
				out = append(out, bindRoot{path: d, link: l})
			}
		case fi.IsDir():
			out = append(out, bindRoot{path: d})
		}
	}
	return out
}

// visibleInSandbox reports whether a binary lies in what the sandbox binds.
func visibleInSandbox(bin string, e *ExecSpec) bool {
	for _, d := range append(append(append([]string{}, sandboxDirs...), e.ReadOnly...), e.Writable...) {
		if bin == d || strings.HasPrefix(bin, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// bwrapArgs is bwrap's command line for argv in workdir.
func (e *execExecutor) bwrapArgs(workdir string, argv []string) []string {
	a := []string{"--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
		"--json-status-fd", "3"}
	if !e.spec.Network {
		a = append(a, "--unshare-net")
	}
	for _, r := range e.roots {
		if r.link != "" {
			a = append(a, "--symlink", r.link, r.path)
		} else {
			a = append(a, "--ro-bind", r.path, r.path)
		}
	}
	for _, p := range sandboxEtc {
		a = append(a, "--ro-bind-try", p, p)
	}
	a = append(a, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp")
	for _, p := range e.spec.ReadOnly {
		a = append(a, "--ro-bind", p, p)
	}
	for _, p := range e.spec.Writable {
		a = append(a, "--bind", p, p)
	}
	a = append(a, "--bind", workdir, workdir, "--chdir", workdir, "--")
	return append(a, argv...)
}

func jsonNumber(n int) json.Number { return json.Number(strconv.Itoa(n)) }

// testEvent is one line of `go test -json` (cmd/test2json), build events
// included.
type testEvent struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string
}

// goTestResult summarises a `go test -json` run: every test and subtest
// counts; a package that failed without a failing test (a build failure,
// a panic in init, TestMain) is a failure of its own, with test "".
func goTestResult(out outcome) map[string]any {
	type key struct{ pkg, test string }
	output := map[key][]byte{}
	build := map[string][]byte{}
	keep := func(b []byte, s string) []byte {
		b = append(b, s...)
		if len(b) > 2*tailBytes {
			b = append([]byte(nil), b[len(b)-tailBytes:]...)
		}
		return b
	}
	var passed, failed, skipped int
	var fails []key
	pkgFailed := map[string]bool{}
	var pkgOrder []string
	for _, line := range bytes.Split(out.stdout, []byte("\n")) {
		var ev testEvent
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			continue // go prints some build errors as plain text
		}
		k := key{ev.Package, ev.Test}
		switch ev.Action {
		case "output":
			output[k] = keep(output[k], ev.Output)
		case "build-output":
			build[ev.ImportPath] = keep(build[ev.ImportPath], ev.Output)
		case "pass":
			if ev.Test != "" {
				passed++
			}
		case "skip":
			if ev.Test != "" {
				skipped++
			}
		case "fail":
			if ev.Test != "" {
				failed++
				pkgFailed[ev.Package] = true
				fails = append(fails, k)
			} else {
				pkgOrder = append(pkgOrder, ev.Package)
			}
		}
	}
	failures := []any{}
	add := func(pkg, test string, text []byte) {
		if len(failures) < maxTestFailures {
			failures = append(failures, map[string]any{"package": pkg, "test": test, "output_tail": tail(text, tailBytes)})
		}
	}
	for _, k := range fails {
		add(k.pkg, k.test, output[k])
	}
	for _, pkg := range pkgOrder {
		if !pkgFailed[pkg] {
			var text []byte
			for _, ip := range slices.Sorted(maps.Keys(build)) {
				if ip == pkg || strings.HasPrefix(ip, pkg+" ") { // "pkg [pkg.test]"
					text = append(text, build[ip]...)
				}
			}
			text = append(text, output[key{pkg, ""}]...)
			add(pkg, "", text)
		}
	}
	if len(failures) == 0 && out.exitCode != 0 {
		add("", "", out.stderr) // go itself failed: no module, no such package
	}
	return map[string]any{
		"passed":    jsonNumber(passed),
		"failed":    jsonNumber(failed),
		"skipped":   jsonNumber(skipped),
		"total":     jsonNumber(passed + failed + skipped),
		"exit_code": jsonNumber(out.exitCode),
		"failures":  failures,
	}
}
