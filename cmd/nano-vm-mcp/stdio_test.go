package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// piped is a scripted stdio session with the real binary: JSON-RPC lines
// written to its stdin, its stdout read line by line.
type piped struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Scanner
	answers map[float64]map[string]any

	errLines chan string   // stderr, line by line
	errDone  chan struct{} // closed when stderr has ended
	errMu    sync.Mutex
	errAll   []string
}

func startPiped(bin string, args ...string) (*piped, error) {
	p := &piped{cmd: exec.Command(bin, args...), answers: map[float64]map[string]any{},
		errLines: make(chan string, 1000), errDone: make(chan struct{})}
	var err error
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewScanner(stdout)
	p.out.Buffer(nil, 1<<20)
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(p.errDone)
		defer close(p.errLines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.errMu.Lock()
			p.errAll = append(p.errAll, sc.Text())
			p.errMu.Unlock()
			select {
			case p.errLines <- sc.Text():
			default: // nobody waits for stderr lines
			}
		}
	}()
	return p, nil
}

// stderr is what the server wrote on stderr so far.
func (p *piped) stderr() string {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return strings.Join(p.errAll, "\n")
}

// awaitStderr reads stderr up to a line that matches want, and returns
// the line's submatches.
func (p *piped) awaitStderr(want *regexp.Regexp) ([]string, error) {
	for line := range p.errLines {
		if m := want.FindStringSubmatch(line); m != nil {
			return m, nil
		}
	}
	return nil, fmt.Errorf("stderr ended without a line matching %s:\n%s", want, p.stderr())
}

func (p *piped) send(msgs ...any) error {
	var b []byte
	for _, m := range msgs {
		line, err := json.Marshal(m)
		if err != nil {
			return err
		}
		b = append(append(b, line...), '\n')
	}
	_, err := p.in.Write(b)
	return err
}

// next reads stdout up to the first message match accepts, recording every
// answer on the way.
func (p *piped) next(match func(map[string]any) bool) (map[string]any, error) {
	for p.out.Scan() {
		var m map[string]any
		if err := json.Unmarshal(p.out.Bytes(), &m); err != nil || m["jsonrpc"] != "2.0" {
			return nil, fmt.Errorf("stdout line is not JSON-RPC: %q", p.out.Text())
		}
		if id, ok := m["id"].(float64); ok && m["method"] == nil {
			p.answers[id] = m
		}
		if match(m) {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w (%v)", errStdoutEnded, p.out.Err())
}

// errStdoutEnded is next's error when stdout ends before a match.
var errStdoutEnded = errors.New("stdout ended")

// call sends a request and returns its answer.
func (p *piped) call(id float64, method string, params any) (map[string]any, error) {
	if err := p.send(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params}); err != nil {
		return nil, err
	}
	return p.next(func(map[string]any) bool { return p.answers[id] != nil })
}

// finish reads stdout to its end, every line JSON-RPC, and waits for the
// exit.
func (p *piped) finish() error {
	if _, err := p.next(func(map[string]any) bool { return false }); !errors.Is(err, errStdoutEnded) || p.out.Err() != nil {
		return err
	}
	<-p.errDone
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("exit: %v; stderr:\n%s", err, p.stderr())
	}
	return nil
}

func toolCall(name string, args any) map[string]any {
	return map[string]any{"name": name, "arguments": args}
}

func request(id float64, method string, params any) map[string]any {
	return map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params}
}

// structured returns a tools/call answer's result, or its error JSON.
func structured(ans map[string]any) (map[string]any, map[string]any, error) {
	res, ok := ans["result"].(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("not a result: %v", ans)
	}
	if res["isError"] == true {
		var e map[string]any
		text := res["content"].([]any)[0].(map[string]any)["text"].(string)
		return nil, e, json.Unmarshal([]byte(text), &e)
	}
	sc, _ := res["structuredContent"].(map[string]any)
	return sc, nil, nil
}

func initializeLine(caps map[string]any) map[string]any {
	return request(1, "initialize", map[string]any{"protocolVersion": "2025-11-25", "capabilities": caps, "clientInfo": map[string]any{"name": "piped", "version": "1"}})
}

var initializedLine = map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}

// scriptedSession is one scripted CI session: it starts a refund run,
// then pipes a step and three reads and closes stdin at once, without
// waiting for any answer. Every call must be answered.
func scriptedSession(bin string, input json.RawMessage, answer json.RawMessage) error {
	p, err := startPiped(bin, "serve", "--store", "memory")
	if err != nil {
		return err
	}
	defer func() { p.cmd.Process.Kill(); p.cmd.Wait() }() // after finish, both are no-ops
	if err := p.send(initializeLine(map[string]any{}), initializedLine, request(2, "tools/list", nil)); err != nil {
		return err
	}
	ans, err := p.call(3, "tools/call", toolCall("start_run", map[string]any{"program": "refund", "input": input}))
	if err != nil {
		return err
	}
	started, e, err := structured(ans)
	if err != nil || e != nil {
		return fmt.Errorf("start_run: %v %v", e, err)
	}
	runID, seq := started["run_id"], started["task"].(map[string]any)["seq"]
	if err := p.send(
		request(4, "tools/call", toolCall("step", map[string]any{"run_id": runID, "seq": seq, "output": answer})),
		request(5, "tools/call", toolCall("get_run", map[string]any{"run_id": runID})),
		request(6, "tools/call", toolCall("list_programs", map[string]any{})),
		request(7, "tools/call", toolCall("get_receipt", map[string]any{"run_id": runID})),
	); err != nil {
		return err
	}
	if err := p.in.Close(); err != nil {
		return err
	}
	if err := p.finish(); err != nil {
		return err
	}
	for id := 1.0; id <= 7; id++ {
		if p.answers[id] == nil {
			return fmt.Errorf("no answer to call %v", id)
		}
	}
	if _, e, err := structured(p.answers[4]); err != nil || e != nil {
		return fmt.Errorf("step: %v %v", e, err)
	}
	return nil
}

// Scripted sessions in CI pipe their calls and close stdin: the server
// answers every call it read before it exits, every time (issue 12, A3).
func TestServeStdioAnswersEveryCallReadBeforeEndOfInput(t *testing.T) {
	bin := serverBinary(t)
	input, err := os.ReadFile("../../examples/refund.input.json")
	if err != nil {
		t.Fatal(err)
	}
	answer := readLines(t, "../../examples/refund.refunded.answers.jsonl")[0]
	const sessions, parallel = 200, 8
	sem := make(chan struct{}, parallel)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []error
	)
	for i := range sessions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := scriptedSession(bin, input, answer); err != nil {
				mu.Lock()
				failed = append(failed, fmt.Errorf("session %d: %w", i, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range failed {
		t.Error(err)
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d sessions lost an answer", len(failed), sessions)
	}
}

// A call waiting for the client's answer to an elicitation is finished
// before the server exits: after SIGINT or SIGTERM the client's answer is
// still read within the grace period, and the call completes; when stdin
// closes no answer can come, and the call is answered with an error.
func TestServeStdioFinishesACallInFlightAtTheEnd(t *testing.T) {
	bin := serverBinary(t)
	input, err := os.ReadFile("../../examples/kyc-onboarding.input.json")
	if err != nil {
		t.Fatal(err)
	}
	answers := readLines(t, "../../examples/kyc-onboarding.approved.answers.jsonl")
	for _, tc := range []struct {
		name    string
		stop    func(*piped) error
		decided bool // the client answers the form after the stop
	}{
		{"end of input", func(p *piped) error { return p.in.Close() }, false},
		{"SIGINT", func(p *piped) error { return p.cmd.Process.Signal(os.Interrupt) }, true},
		{"SIGTERM", func(p *piped) error { return p.cmd.Process.Signal(syscall.SIGTERM) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := startPiped(bin, "serve", "--store", "memory", "--approval-channel", "elicitation", "--log-level", "info")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
			if err := p.send(initializeLine(map[string]any{"elicitation": map[string]any{}}), initializedLine); err != nil {
				t.Fatal(err)
			}
			id := 2.0
			ans, err := p.call(id, "tools/call", toolCall("start_run", map[string]any{"program": "kyc-onboarding", "input": json.RawMessage(input)}))
			if err != nil {
				t.Fatal(err)
			}
			res, _, err := structured(ans)
			if err != nil {
				t.Fatal(err)
			}
			runID, tk := res["run_id"], res["task"].(map[string]any)
			var decision json.RawMessage
			for _, a := range answers {
				if tk["kind"] == "approval" {
					decision = a
					break
				}
				args := map[string]any{"run_id": runID, "seq": tk["seq"], "output": a}
				if tool, ok := tk["tool"].(map[string]any); ok {
					args["tool"] = map[string]any{"name": tool["name"]}
				}
				id++
				ans, err := p.call(id, "tools/call", toolCall("step", args))
				if err != nil {
					t.Fatal(err)
				}
				res, e, err := structured(ans)
				if err != nil {
					t.Fatal(err)
				}
				if e != nil {
					res = e // a rejected answer: the error carries the task
				}
				tk, _ = res["task"].(map[string]any)
			}
			if decision == nil {
				t.Fatalf("the run did not reach its approval: %v", tk)
			}
			id++
			if err := p.send(request(id, "tools/call", toolCall("await_approval", map[string]any{"run_id": runID, "seq": tk["seq"]}))); err != nil {
				t.Fatal(err)
			}
			form, err := p.next(func(m map[string]any) bool { return m["method"] == "elicitation/create" })
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.stop(p); err != nil {
				t.Fatal(err)
			}
			if tc.decided {
				// The client answers once the server is stopping.
				if _, err := p.awaitStderr(regexp.MustCompile("stdio: stopping")); err != nil {
					t.Fatal(err)
				}
				answer := map[string]any{"jsonrpc": "2.0", "id": form["id"], "result": map[string]any{"action": "accept", "content": decision}}
				if err := p.send(answer); err != nil {
					t.Fatal(err)
				}
				if _, err := p.next(func(map[string]any) bool { return p.answers[id] != nil }); err != nil {
					t.Fatal(err)
				}
				p.in.Close()
			}
			if err := p.finish(); err != nil {
				t.Fatal(err)
			}
			ans = p.answers[id]
			if ans == nil {
				t.Fatalf("await_approval was not answered; stderr:\n%s", p.stderr())
			}
			res, e, err := structured(ans)
			if !tc.decided {
				// No answer to the form can come: the call fails.
				if err == nil && e == nil {
					t.Fatalf("await_approval after the end of input answered as if decided: %v", ans)
				}
				return
			}
			if err != nil || e != nil {
				t.Fatalf("await_approval after %s: %v %v %v", tc.name, ans, e, err)
			}
			if res["task"] == nil || res["task"].(map[string]any)["seq"] == tk["seq"] {
				t.Fatalf("the decision was not recorded: %v", res)
			}
		})
	}
}
