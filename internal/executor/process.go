package executor

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// waitDelay bounds how long Wait waits for the output pipes once the
// process group is killed: a descendant that left the group (setsid) may
// still hold them open.
const waitDelay = 2 * time.Second

// tailBytes bounds every output tail a result or failure carries.
const tailBytes = 4 << 10

// outcome is how one process run ended.
type outcome struct {
	stdout, stderr []byte
	exitCode       int    // 128+N for a process killed by signal N
	overflow       string // "stdout" or "stderr" when that stream passed its cap
	timedOut       bool   // the call's deadline passed
	cancelled      bool   // the caller cancelled the call
	startErr       error  // the process could not be started
	sandbox        bool   // with startErr: the sandbox, not the command, failed
}

// capped is an io.Writer that keeps at most max bytes and calls over,
// once, when more arrive.
type capped struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	max  int64
	hit  bool
	over func()
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hit {
		return len(p), nil
	}
	if int64(c.buf.Len()+len(p)) > c.max {
		c.hit = true
		c.over()
		return len(p), nil
	}
	return c.buf.Write(p)
}

// runGroup runs cmd in a process group of its own, feeding it stdin and
// capping stdout and stderr at max bytes each. The deadline of ctx, the
// caller cancelling ctx, or an output passing its cap kills the whole
// group with SIGKILL.
func runGroup(ctx context.Context, cmd *exec.Cmd, stdin []byte, max int64) outcome {
	runCtx, kill := context.WithCancel(ctx)
	defer kill()
	var out outcome
	var overflowMu sync.Mutex
	overflow := func(name string) func() {
		return func() {
			overflowMu.Lock()
			if out.overflow == "" {
				out.overflow = name
			}
			overflowMu.Unlock()
			kill()
		}
	}
	stdout := &capped{max: max, over: overflow("stdout")}
	stderr := &capped{max: max, over: overflow("stderr")}
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	setProcessGroup(cmd)
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		out.startErr = err
		return out
	}
	// exec.CommandContext would kill only the leader; this kills the
	// group once, whichever of the three reasons comes first.
	done := make(chan struct{})
	go func() {
		select {
		case <-runCtx.Done():
			killProcessGroup(cmd)
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	// The leader is gone; descendants still in its group go with it.
	killProcessGroup(cmd)
	out.stdout, out.stderr = stdout.buf.Bytes(), stderr.buf.Bytes()
	out.exitCode = exitCode(cmd, err)
	overflowMu.Lock()
	defer overflowMu.Unlock()
	if out.overflow == "" {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			out.timedOut = true
		case ctx.Err() != nil:
			out.cancelled = true
		}
	}
	return out
}

// exitCode is the process's exit status, or 128+N when signal N killed it.
func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return -1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// tail is the last n bytes of b as valid UTF-8: a rune cut by the bound is
// dropped, and invalid bytes become U+FFFD.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
		for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
