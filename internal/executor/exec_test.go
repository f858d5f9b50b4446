package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

// helperEnv switches the test binary into the helper process that the exec
// tests run as their tool (see TestMain).
const helperEnv = "EXECUTOR_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helper(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helper is the tool: its first argument says what to do.
func helper(args []string) int {
	switch args[0] {
	case "report": // print what the tool was given
		stdin, _ := io.ReadAll(os.Stdin)
		wd, _ := os.Getwd()
		env := os.Environ()
		sort.Strings(env)
		b, _ := json.Marshal(map[string]any{"argv": args[1:], "stdin": string(stdin), "cwd": wd, "env": env})
		os.Stdout.Write(b)
	case "exit": // print stdout and stderr, exit with a status
		fmt.Print(args[1])
		fmt.Fprint(os.Stderr, args[2])
		var code int
		fmt.Sscan(args[3], &code)
		return code
	case "flood": // more output than any cap
		chunk := strings.Repeat("x", 64<<10)
		for {
			if _, err := os.Stdout.WriteString(chunk); err != nil {
				return 1
			}
		}
	case "hang": // a grandchild in the same group, its pid in args[1], then block
		self, _ := os.Executable()
		child := exec.Command(self, "block")
		child.Env = os.Environ()
		child.Stdout = os.Stdout // it holds the pipe: Wait ends only when it is gone
		if err := child.Start(); err != nil {
			return 2
		}
		os.WriteFile(args[1], []byte(fmt.Sprint(child.Process.Pid)), 0o600)
		select {}
	case "block":
		select {}
	}
	return 0
}

// execTool builds the exec executor of a one-tool registry.
func execTool(t *testing.T, f *fixture, spec string) Executor {
	t.Helper()
	r, err := Parse([]byte("tools:\n  t:\n"+spec), "tools.yaml", f.options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	e, _ := r.Executor("t")
	return e
}

// helperFixture is a fixture whose PATH holds the test binary as "helper".
func helperFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	self, err := os.Executable()
	must(t, err)
	must(t, os.Symlink(self, filepath.Join(f.dir, "bin", "helper")))
	f.env[helperEnv] = "1"
	f.env["SECRETISH"] = "not passed"
	return f
}

func failureOf(t *testing.T, err error) *Failure {
	t.Helper()
	var fl *Failure
	if !errors.As(err, &fl) {
		t.Fatalf("err = %v, want a *Failure", err)
	}
	return fl
}

func TestExecPassesArgumentsAsWholeElementsAndStdinWithOnlyTheAllowlist(t *testing.T) {
	f := helperFixture(t)
	e := execTool(t, f, "    exec: {argv: [helper, report, '{{args.name}}', '{{args.n}}', '{{args.ok}}', '{{args.none}}'], env: [EXECUTOR_TEST_HELPER, HOME]}\n")
	args := map[string]any{"name": "a b; rm -rf / $(x)", "n": json.Number("3.5"), "ok": true, "none": nil, "extra": []any{"x"}}
	v, err := e.Invoke(context.Background(), Call{Tool: "t", Arguments: args, IdempotencyKey: "key-1", Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := v.(map[string]any)
	wantArgv := []any{"a b; rm -rf / $(x)", "3.5", "true", "null"}
	if !reflect.DeepEqual(got["argv"], wantArgv) {
		t.Errorf("argv %v, want %v", got["argv"], wantArgv)
	}
	if got["stdin"] != `{"extra":["x"],"n":3.5,"name":"a b; rm -rf / $(x)","none":null,"ok":true}` {
		t.Errorf("stdin %v", got["stdin"])
	}
	wantEnv := []any{"EXECUTOR_TEST_HELPER=1", "HOME=" + f.dir, "NANO_VM_IDEMPOTENCY_KEY=key-1"}
	if !reflect.DeepEqual(got["env"], wantEnv) {
		t.Errorf("env %v, want %v", got["env"], wantEnv)
	}
	cwd := got["cwd"].(string)
	if !strings.Contains(filepath.Base(cwd), "nano-vm-exec-") {
		t.Errorf("cwd %s is not a fresh temporary directory", cwd)
	}
	if _, err := os.Stat(cwd); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the working directory %s is left behind", cwd)
	}
	if n, ok := got["env"].([]any); !ok || len(n) != 3 {
		t.Errorf("env %v", got["env"])
	}
}

func TestExecRefusesArgumentsArgvCannotHold(t *testing.T) {
	f := helperFixture(t)
	e := execTool(t, f, "    exec: {argv: [helper, report, '{{args.x}}'], env: [EXECUTOR_TEST_HELPER]}\n")
	for _, c := range []struct {
		name string
		args map[string]any
		want string
	}{
		{"object", map[string]any{"x": map[string]any{}}, "argument x is an object or array"},
		{"array", map[string]any{"x": []any{}}, "argument x is an object or array"},
		{"missing", map[string]any{}, "argument x, which argv names, is missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Invoke(context.Background(), Call{Arguments: c.args})
			fl := failureOf(t, err)
			if fl.Class != ClassToolError || !strings.Contains(fl.Detail, c.want) {
				t.Errorf("%+v, want tool_error %q", fl, c.want)
			}
		})
	}
}

func TestExecClassifiesFailures(t *testing.T) {
	f := helperFixture(t)
	cases := []struct {
		name, spec string
		class      Class
		detail     string
	}{
		{"non-zero exit is a tool error", "    exec: {argv: [helper, exit, '{}', oops, '3'], env: [EXECUTOR_TEST_HELPER]}\n", ClassToolError, "exit status 3"},
		{"invalid JSON is a schema violation", "    exec: {argv: [helper, exit, '{\"a\":1', '', '0'], env: [EXECUTOR_TEST_HELPER]}\n", ClassSchemaViolation, "stdout is not one strict JSON document"},
		{"duplicate keys are a schema violation", "    exec: {argv: [helper, exit, '{\"a\":1,\"a\":2}', '', '0'], env: [EXECUTOR_TEST_HELPER]}\n", ClassSchemaViolation, "duplicate"},
		{"two documents are a schema violation", "    exec: {argv: [helper, exit, '{} {}', '', '0'], env: [EXECUTOR_TEST_HELPER]}\n", ClassSchemaViolation, "stdout is not one strict JSON document"},
		{"output over the cap", "    exec: {argv: [helper, flood], env: [EXECUTOR_TEST_HELPER]}\n    output: {max_bytes: 100000}\n", ClassSandbox, "stdout exceeds 100000 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := execTool(t, f, c.spec).Invoke(context.Background(), Call{})
			fl := failureOf(t, err)
			if fl.Class != c.class || !strings.Contains(fl.Detail, c.detail) {
				t.Errorf("%+v, want %s %q", fl, c.class, c.detail)
			}
		})
	}
}

func TestExecTimeoutKillsTheWholeProcessGroup(t *testing.T) {
	f := helperFixture(t)
	pidFile := filepath.Join(f.dir, "grandchild.pid")
	e := execTool(t, f, "    exec: {argv: [helper, hang, '{{args.pidfile}}'], env: [EXECUTOR_TEST_HELPER]}\n    timeout: 1s\n")
	_, err := e.Invoke(context.Background(), Call{Arguments: map[string]any{"pidfile": pidFile}})
	if fl := failureOf(t, err); fl.Class != ClassTimeout {
		t.Fatalf("%+v, want a timeout", fl)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the helper never started its grandchild: %v", err)
	}
	// The grandchild held stdout open, so Invoke returning before
	// WaitDelay means it has exited; it may still be a zombie.
	stat, err := os.ReadFile("/proc/" + string(b) + "/stat")
	if err == nil {
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if fields[0] != "Z" && fields[0] != "X" {
			t.Errorf("grandchild %s still runs (state %s)", b, fields[0])
			syscall.Kill(atoi(string(b)), syscall.SIGKILL)
		}
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func TestExecCancelledCallIsATransportFailure(t *testing.T) {
	f := helperFixture(t)
	e := execTool(t, f, "    exec: {argv: [helper, block], env: [EXECUTOR_TEST_HELPER]}\n")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Invoke(ctx, Call{})
	if fl := failureOf(t, err); fl.Class != ClassTransport {
		t.Errorf("%+v, want transport", fl)
	}
}

func TestExecExitStatusFormatKeepsTheStatusAndBoundedTails(t *testing.T) {
	f := helperFixture(t)
	long := strings.Repeat("é", 3000) // 6000 bytes: the tail cuts one rune
	e := execTool(t, f, "    exec: {argv: [helper, exit, '{{args.out}}', 'err', '7'], env: [EXECUTOR_TEST_HELPER]}\n    output: {format: exit-status}\n")
	v, err := e.Invoke(context.Background(), Call{Arguments: map[string]any{"out": long + "END"}})
	if err != nil {
		t.Fatal(err)
	}
	got := v.(map[string]any)
	if got["exit_code"] != json.Number("7") || got["stderr_tail"] != "err" {
		t.Errorf("got %v", got)
	}
	out := got["stdout_tail"].(string)
	if len(out) > tailBytes || !utf8.ValidString(out) || !strings.HasSuffix(out, "END") || strings.ContainsRune(out, utf8.RuneError) {
		t.Errorf("stdout_tail: %d bytes, valid %v", len(out), utf8.ValidString(out))
	}
}

func TestTailIsBoundedValidUTF8(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 10, "abc"},
		{"abcdef", 3, "def"},
		{"aé", 1, ""},  // the cut leaves half a rune: dropped
		{"éé", 3, "é"}, // one byte of the first é is dropped
		{"a\xffb", 10, "a\uFFFDb"},
	} {
		if got := tail([]byte(c.in), c.n); got != c.want {
			t.Errorf("tail(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestGoTestResultCountsTestsAndTurnsBuildFailuresIntoEntries(t *testing.T) {
	ev := func(parts ...string) string {
		b, _ := json.Marshal(map[string]string{"Action": parts[0], "Package": parts[1], "Test": parts[2], "Output": parts[3]})
		return string(b)
	}
	cases := []struct {
		name   string
		stdout []string
		exit   int
		want   string
	}{
		{"all pass", []string{
			ev("run", "m/a", "TestA", ""), ev("output", "m/a", "TestA", "ok\n"), ev("pass", "m/a", "TestA", ""),
			ev("skip", "m/a", "TestS", ""), ev("pass", "m/a", "", ""),
		}, 0, `{"exit_code":0,"failed":0,"failures":[],"passed":1,"skipped":1,"total":2}`},
		{"a failing test and its output", []string{
			ev("output", "m/a", "TestB", "want 2, got 3\n"), ev("fail", "m/a", "TestB", ""),
			ev("pass", "m/a", "TestA", ""), ev("fail", "m/a", "", ""),
		}, 1, `{"exit_code":1,"failed":1,"failures":[{"output_tail":"want 2, got 3\n","package":"m/a","test":"TestB"}],"passed":1,"skipped":0,"total":2}`},
		{"a build failure is an entry of its package", []string{
			`{"ImportPath":"m/b [m/b.test]","Action":"build-output","Output":"b.go:3:1: syntax error\n"}`,
			`{"ImportPath":"m/b [m/b.test]","Action":"build-fail"}`,
			ev("output", "m/b", "", "FAIL\tm/b [build failed]\n"), ev("fail", "m/b", "", ""),
		}, 1, `{"exit_code":1,"failed":0,"failures":[{"output_tail":"b.go:3:1: syntax error\nFAIL\tm/b [build failed]\n","package":"m/b","test":""}],"passed":0,"skipped":0,"total":0}`},
		{"go itself failing is an entry", []string{"not json", "{broken"}, 1,
			`{"exit_code":1,"failed":0,"failures":[{"output_tail":"go: no go.mod","package":"","test":""}],"passed":0,"skipped":0,"total":0}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := outcome{stdout: []byte(strings.Join(c.stdout, "\n") + "\n"), stderr: []byte("go: no go.mod"), exitCode: c.exit}
			b, err := json.Marshal(goTestResult(out))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("got  %s\nwant %s", b, c.want)
			}
		})
	}
}

func TestGoTestResultBoundsItsFailures(t *testing.T) {
	var lines []string
	for i := 0; i < maxTestFailures+10; i++ {
		lines = append(lines, fmt.Sprintf(`{"Action":"fail","Package":"p","Test":"T%d"}`, i))
	}
	r := goTestResult(outcome{stdout: []byte(strings.Join(lines, "\n")), exitCode: 1})
	if len(r["failures"].([]any)) != maxTestFailures || r["failed"] != jsonNumber(maxTestFailures+10) {
		t.Errorf("failures %d, failed %v", len(r["failures"].([]any)), r["failed"])
	}
}

// needBwrap skips a sandbox test where bubblewrap is missing, except in
// CI, where its absence is a failure (.ci/run installs it).
func needBwrap(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bwrap (bubblewrap) is not installed; .ci/run installs it")
		}
		t.Skip("bwrap (bubblewrap) is not installed")
	}
}

func TestBwrapSandboxIsolatesNetworkFilesystemEnvironmentAndProcesses(t *testing.T) {
	needBwrap(t)
	f := newFixture(t)
	f.env["PATH"] = "/usr/bin:/bin"
	outside := filepath.Join(f.dir, "outside")
	must(t, os.Mkdir(outside, 0o755))
	script := `set -u
echo "net=$(grep -c : /proc/net/dev)"
echo "procs=$(ls /proc | grep -c '^[0-9]')"
test -e ` + outside + ` && echo "outside=visible" || echo "outside=hidden"
touch /usr/x 2>/dev/null && echo "usr=writable" || echo "usr=read-only"
touch here && echo "work=writable"
echo "key=$NANO_VM_IDEMPOTENCY_KEY"
echo "home=${HOME:-unset}"
`
	e := execTool(t, f, "    exec: {argv: [/bin/sh, -c, '{{args.script}}'], env: [PATH], sandbox: bwrap}\n    output: {format: exit-status}\n")
	v, err := e.Invoke(context.Background(), Call{Arguments: map[string]any{"script": script}, IdempotencyKey: "k-9"})
	if err != nil {
		t.Fatal(err)
	}
	got := v.(map[string]any)
	out := got["stdout_tail"].(string)
	for _, want := range []string{"net=1\n", "outside=hidden", "usr=read-only", "work=writable", "key=k-9", "home=unset"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in\n%s\nstderr: %s", want, out, got["stderr_tail"])
		}
	}
	var procs int
	fmt.Sscanf(out[strings.Index(out, "procs=")+6:], "%d", &procs)
	if procs == 0 || procs > 5 {
		t.Errorf("the sandbox sees %d processes; want its own few", procs)
	}
}

func TestBwrapThatCannotStartIsASandboxFailure(t *testing.T) {
	needBwrap(t)
	f := newFixture(t)
	gone := filepath.Join(f.dir, "gone")
	must(t, os.Mkdir(gone, 0o755))
	e := execTool(t, f, "    exec: {argv: [/bin/true], sandbox: bwrap, ro_binds: [gone]}\n    output: {format: exit-status}\n")
	must(t, os.Remove(gone)) // the bind's source vanishes after load
	_, err := e.Invoke(context.Background(), Call{})
	if fl := failureOf(t, err); fl.Class != ClassSandbox {
		t.Errorf("%+v, want a sandbox failure", fl)
	}
}

func TestBwrapRegistryRefusesABinaryTheSandboxCannotSee(t *testing.T) {
	needBwrap(t)
	f := newFixture(t)
	_, err := Parse([]byte("tools:\n  t:\n    exec: {argv: [tool], sandbox: bwrap}\n"), "tools.yaml", f.options())
	var re *RegistryError
	if !errors.As(err, &re) || !strings.Contains(re.Problems[0].Message, "not visible in the sandbox") || re.Problems[0].Line != 3 {
		t.Errorf("err = %v", err)
	}
}
