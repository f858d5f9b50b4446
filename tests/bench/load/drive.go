package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/examples"
)

// callTimeout bounds one call: a server that stops answering fails the
// call instead of hanging the benchmark.
const callTimeout = time.Minute

// keptErrors is how many failed calls' errors a row keeps to print.
const keptErrors = 5

// A workload is what one session does, over and over: one or more calls,
// each made through do, which times it and checks its answer.
type workload func(ctx context.Context, do caller) error

// caller makes one call and checks its answer with check.
type caller func(req mcp.CallToolRequest, check func(*mcp.CallToolResult) error) (*mcp.CallToolResult, error)

// refundInput and refundAnswer are the refund example's input and the
// answer to its first task, which finishes the run (REFUNDED).
var refundInput, refundAnswer = func() (json.RawMessage, json.RawMessage) {
	in, err := examples.FS.ReadFile("refund.input.json")
	if err != nil {
		panic(err) // embedded: cannot happen
	}
	ans, err := examples.FS.ReadFile("refund.refunded.answers.jsonl")
	if err != nil {
		panic(err)
	}
	return json.RawMessage(in), json.RawMessage(bytes.TrimSpace(ans))
}()

// refundRuns is an agent's loop on nano-vm-mcp: start a refund run, then
// answer its one task, which finishes it.
func refundRuns(_ context.Context, do caller) error {
	var started struct {
		RunID string `json:"run_id"`
		Task  struct {
			Seq json.Number `json:"seq"`
		} `json:"task"`
	}
	_, err := do(toolCall("start_run", map[string]any{"program": "refund", "input": refundInput}), func(res *mcp.CallToolResult) error {
		if err := json.Unmarshal([]byte(resultText(res)), &started); err != nil || started.RunID == "" || started.Task.Seq == "" {
			return fmt.Errorf("start_run answered %s", resultText(res))
		}
		return nil
	})
	if err != nil {
		return err
	}
	_, err = do(toolCall("step", map[string]any{"run_id": started.RunID, "seq": started.Task.Seq, "output": refundAnswer}), func(res *mcp.CallToolResult) error {
		var got struct {
			Status  string `json:"status"`
			Outcome string `json:"outcome"`
		}
		if err := json.Unmarshal([]byte(resultText(res)), &got); err != nil || got.Status != "completed" || got.Outcome != "REFUNDED" {
			return fmt.Errorf("step answered %s", resultText(res))
		}
		return nil
	})
	return err
}

// echoCalls is the reference: server-everything's no-op echo with the
// refund answer as its message, so that a request carries as many bytes
// as a step's.
func echoCalls(_ context.Context, do caller) error {
	want := "Echo: " + string(refundAnswer)
	_, err := do(toolCall("echo", map[string]any{"message": string(refundAnswer)}), func(res *mcp.CallToolResult) error {
		if resultText(res) != want {
			return fmt.Errorf("echo answered %s", resultText(res))
		}
		return nil
	})
	return err
}

func toolCall(name string, args any) mcp.CallToolRequest {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	return req
}

// resultText is the first text content of a result: the JSON answer of
// nano-vm-mcp's tools, or their error JSON when IsError.
func resultText(res *mcp.CallToolResult) string {
	if len(res.Content) == 0 {
		return ""
	}
	if t, ok := res.Content[0].(mcp.TextContent); ok {
		if res.IsError {
			return "error " + t.Text
		}
		return t.Text
	}
	return fmt.Sprintf("%#v", res.Content[0])
}

// Phases of a measurement, in order.
const (
	warming int32 = iota
	measuring
	done
)

// session is one agent: its own MCP client, with its own HTTP connection.
type session struct {
	c   *client.Client
	lat []time.Duration // calls that started and ended while measuring
	err error           // the call that failed and ended the session
}

// connect opens a session: a Streamable HTTP client of its own (its own
// connection pool, as a separate agent process has) that initializes in
// the 2025-11-25 era, as the stdio and HTTP benchmarks do.
func connect(ctx context.Context, url string) (*client.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	c, err := client.NewStreamableHttpClient(url, transport.WithHTTPBasicClient(&http.Client{Transport: tr}))
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "nano-vm-load", Version: "1"}
	ictx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := c.Initialize(ictx, req); err != nil {
		c.Close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	return c, nil
}

// measure drives c sessions of w against s: they connect, run untimed for
// warmup, then for d. A call counts when it started and ended within d.
// The server's CPU time is read at both ends of d, its peak RSS is reset
// before the sessions connect and read once they are gone. A session
// whose call fails stops, so a row counts at most one failed call per
// session; the failures are in the row, not in the error, which says the
// measurement could not be made.
func measure(ctx context.Context, s *server, c int, warmup, d time.Duration, w workload) (*row, error) {
	pid := s.pid()
	rssErr := resetPeakRSS(pid)
	sessions := make([]*session, c)
	defer func() {
		for _, se := range sessions {
			if se != nil && se.c != nil {
				se.c.Close()
			}
		}
	}()
	{
		var wg sync.WaitGroup
		errs := make([]error, c)
		for i := range sessions {
			sessions[i] = &session{}
			wg.Go(func() { sessions[i].c, errs[i] = connect(ctx, s.url) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("connecting %d sessions: %w", c, err)
		}
	}

	var phase atomic.Int32
	var wg sync.WaitGroup
	for _, se := range sessions {
		wg.Go(func() { se.loop(ctx, &phase, w) })
	}
	wait := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-s.exited:
			return fmt.Errorf("the server exited (%v); its output ends:\n%s", s.waitErr, s.out)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	err := wait(warmup)
	cpu0, cpuErr0 := procCPU(pid)
	begin := time.Now()
	phase.Store(measuring)
	if err == nil {
		err = wait(d)
	}
	phase.Store(done)
	elapsed := time.Since(begin)
	cpu1, cpuErr1 := procCPU(pid)
	wg.Wait()
	if err != nil {
		return nil, err
	}

	r := &row{C: c, Seconds: elapsed.Seconds()}
	var lat []time.Duration
	for _, se := range sessions {
		lat = append(lat, se.lat...)
		if se.err != nil {
			r.Errors++
			if len(r.ErrorSamples) < keptErrors {
				r.ErrorSamples = append(r.ErrorSamples, se.err.Error())
			}
		}
	}
	slices.Sort(lat)
	r.Calls = len(lat)
	r.CallsPerSec = float64(r.Calls) / elapsed.Seconds()
	r.P50us = micros(percentile(lat, 50))
	r.P99us = micros(percentile(lat, 99))
	if cpuErr0 == nil && cpuErr1 == nil && r.Calls > 0 {
		cpu := micros(cpu1-cpu0) / float64(r.Calls)
		r.ServerCPUus = &cpu
	}
	// The peak covers the whole measurement only if it was reset first.
	if hwm, err := peakRSS(pid); rssErr == nil && err == nil {
		r.PeakRSSBytes = &hwm
	}
	return r, nil
}

// loop runs w until the measurement is done or a call fails.
func (se *session) loop(ctx context.Context, phase *atomic.Int32, w workload) {
	do := func(req mcp.CallToolRequest, check func(*mcp.CallToolResult) error) (*mcp.CallToolResult, error) {
		counted := phase.Load() == measuring
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		t0 := time.Now()
		res, err := se.c.CallTool(cctx, req)
		lat := time.Since(t0)
		if err == nil {
			err = check(res)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", req.Params.Name, err)
		}
		if counted && phase.Load() == measuring {
			se.lat = append(se.lat, lat)
		}
		return res, nil
	}
	for phase.Load() != done {
		if err := w(ctx, do); err != nil {
			if ctx.Err() != nil {
				return // interrupted: not the server's failure
			}
			se.err = err
			return
		}
	}
}

// percentile is the nearest-rank percentile p of sorted latencies.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 × n)
	return sorted[max(rank, 1)-1]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
