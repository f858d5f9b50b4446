package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long a server may take to say it listens
// (PostgreSQL's migrations on a busy machine included).
const startTimeout = time.Minute

// stopTimeout bounds the wait for a server to exit after SIGTERM; then it
// is killed.
const stopTimeout = 15 * time.Second

// server is an MCP server process the benchmark drives.
type server struct {
	cmd     *exec.Cmd
	url     string        // the Streamable HTTP endpoint
	out     *tailBuffer   // the end of its stdout and stderr
	exited  chan struct{} // closed once it has exited; then waitErr is set
	waitErr error
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop ends the server with SIGTERM (SIGKILL after stopTimeout) and
// returns an error when it did not exit cleanly, with its last output.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("the server did not exit within %v of SIGTERM; its output ends:\n%s", stopTimeout, s.out)
	}
	if s.waitErr != nil {
		return fmt.Errorf("the server exited with %v; its output ends:\n%s", s.waitErr, s.out)
	}
	return nil
}

// listening matches nano-vm-mcp serve's line saying where it listens.
var listening = regexp.MustCompile(`listening on http://(\S+)`)

// startNanoVM starts nano-vm-mcp with args (serve on a loopback port 0)
// and waits for the line that names the address it got. None of the
// caller's NANO_VM_* variables reach it: the flags alone configure it.
func startNanoVM(ctx context.Context, bin string, args []string) (*server, error) {
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NANO_VM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return startServer(ctx, cmd, func(line string) (string, bool) {
		m := listening.FindStringSubmatch(line)
		if m == nil {
			return "", false
		}
		return "http://" + m[1] + "/mcp", true
	})
}

// startEverything starts the reference server's Streamable HTTP mode
// (node dist/index.js streamableHttp) on a free port; it takes the port
// from PORT and says "listening on port N" on stderr. It listens on every
// interface, not only loopback, while it runs.
func startEverything(ctx context.Context, node, entry string) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(node, entry, "streamableHttp")
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	want := "listening on port " + strconv.Itoa(port)
	return startServer(ctx, cmd, func(line string) (string, bool) {
		return fmt.Sprintf("http://127.0.0.1:%d/mcp", port), strings.Contains(line, want)
	})
}

// startServer starts cmd and reads its stderr until ready recognises the
// line that says it listens, and returns the URL ready made of it. It
// fails if the process exits first, or says nothing of the kind within
// startTimeout.
func startServer(ctx context.Context, cmd *exec.Cmd, ready func(line string) (url string, ok bool)) (*server, error) {
	s := &server{cmd: cmd, out: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	cmd.Stdout = s.out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	urls := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.out, line)
			if !found {
				if u, ok := ready(line); ok {
					found = true
					urls <- u
				}
			}
		}
		io.Copy(s.out, stderr) // a line too long for the scanner: keep draining
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it all first
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case s.url = <-urls:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("%s exited before it listened (%v); its output:\n%s", cmd.Path, s.waitErr, s.out)
	case <-timer.C:
		s.stop()
		return nil, fmt.Errorf("%s did not say it listens within %v; its output:\n%s", cmd.Path, startTimeout, s.out)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent
// use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times on Linux.
const clockTicks = 100

// procCPU is the user plus system CPU time of process pid, all threads,
// from /proc (Linux).
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(data)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from the contents
// of /proc/<pid>/stat.
func parseStatCPU(data []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself; the fields after its last ')' start at field 3.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// resetPeakRSS makes the kernel forget process pid's peak RSS (VmHWM), so
// that the next reading is the peak from now on (Linux 4.0 or newer).
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSS is process pid's peak resident set size, VmHWM in
// /proc/<pid>/status, in bytes.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmHWM(data)
}

// parseVmHWM reads the VmHWM line ("VmHWM:     12345 kB") of
// /proc/<pid>/status.
func parseVmHWM(data []byte) (int64, error) {
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc status: VmHWM line %q is not \"N kB\"", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc status: VmHWM: %w", err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("/proc status: no VmHWM line")
}
