package executor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"go.uber.org/zap"
)

// maxStdioLine bounds one JSON-RPC message a stdio server writes. mcp-go's
// stdio transport reads a line whatever its length; past this the reader
// ends the stream instead, which fails the calls in flight (class
// transport) and restarts the server on the next call. It is well above
// MaxMCPResult, so that an oversized result is still read and refused with
// its own, clearer, failure.
const maxStdioLine = 4 * MaxMCPResult

// stopGrace is how long a stdio server has to exit after its stdin is
// closed before its process group is killed.
const stopGrace = 2 * time.Second

// stdioProc is a downstream server process on stdio. mcp-go's own stdio
// transport spawns the process itself, but it ties the process to the
// context of Start, inherits the parent's environment and cannot say
// whether the process is still alive; so the executor spawns it here and
// hands mcp-go its pipes (transport.NewIO).
type stdioProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been waited for

	mu     sync.Mutex
	reason string // why the stream ended, once it has
}

// startStdio spawns argv with exactly env as its environment, no shell,
// in a process group of its own, and returns the transport over its
// stdin and stdout. onEnd is called once when its stdout ends (the process
// exited or broke the protocol), so that the session is marked dead.
func startStdio(argv, env []string, log *zap.Logger, onEnd func()) (*stdioProc, transport.Interface, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{}, env...) // never nil: nil would inherit the parent's environment
	setProcessGroup(cmd)
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, nil, err
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	// The server's stderr is its log: kept at debug level, one line an
	// entry, as a downstream's log may hold what the operator's may not.
	cmd.Stderr = &lineLog{log: log}
	cmd.WaitDelay = stopGrace
	if err := cmd.Start(); err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	// The child holds its ends now; the parent's copies would keep the
	// pipes open after the child is gone.
	inR.Close()
	outW.Close()
	p := &stdioProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.end(fmt.Sprintf("the server exited (%v)", exitText(err)))
		close(p.exited)
		onEnd()
	}()
	out := &lineLimit{r: outR, max: maxStdioLine, over: func() {
		p.end(fmt.Sprintf("the server wrote a message over %d bytes", maxStdioLine))
		killProcessGroup(cmd)
	}, eof: onEnd}
	return p, transport.NewIO(out, inW, nil), nil
}

// end records the first reason the stream ended.
func (p *stdioProc) end(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reason == "" {
		p.reason = reason
	}
}

// why says why the stream ended, or "" while it runs.
func (p *stdioProc) why() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reason
}

// stop waits for the process to exit after its stdin was closed (the
// transport's Close closes it), at most stopGrace, then kills its process
// group: the process if it lingers, and whatever it left behind (a child
// still holding the stdout pipe would keep the transport's reader alive).
func (p *stdioProc) stop() {
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
	}
	killProcessGroup(p.cmd)
	<-p.exited
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// lineLimit passes a stream of lines through and ends it (io.EOF, after
// calling over) at the first line longer than max bytes. It calls eof
// when the stream ends for any reason.
type lineLimit struct {
	r    io.Reader
	max  int
	run  int // bytes since the last newline
	over func()
	eof  func()
	done bool
}

func (l *lineLimit) Read(b []byte) (int, error) {
	if l.done {
		return 0, io.EOF
	}
	n, err := l.r.Read(b)
	for rest := b[:n]; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.run += len(rest)
			break
		}
		l.run += i
		if l.run > l.max {
			break
		}
		l.run, rest = 0, rest[i+1:]
	}
	if l.run > l.max {
		l.done = true
		l.over()
		l.eof()
		return 0, io.EOF
	}
	if err != nil {
		l.done = true
		l.eof()
	}
	return n, err
}

// lineLog writes a downstream server's stderr to the log at debug level.
type lineLog struct {
	log *zap.Logger
	buf []byte
}

// maxLogLine bounds one logged stderr line.
const maxLogLine = 4 << 10

func (w *lineLog) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLogLine {
				w.emit(w.buf[:maxLogLine])
				w.buf = w.buf[:0]
			}
			return len(b), nil
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

func (w *lineLog) emit(line []byte) {
	if len(line) > maxLogLine {
		line = line[:maxLogLine]
	}
	if len(bytes.TrimSpace(line)) > 0 {
		w.log.Debug("downstream stderr", zap.ByteString("line", line))
	}
}
