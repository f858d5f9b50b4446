package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// testBinary builds the server once for the package's tests.
func testBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "nano-vm-load-bin-"); binErr == nil {
			binPath, binErr = buildServer(context.Background(), binDir)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// The smoke run CI keeps: the program's whole logic, small. Every store
// asked for gets a row with calls and no errors, with the server's CPU and
// peak RSS; echo too when tests/bench/setup.sh has installed it.
func TestLoadMeasuresEveryStoreWithCallsAndNoErrors(t *testing.T) {
	cfg := config{
		bin:         testBinary(t),
		stores:      []string{"memory", "sqlite"},
		concurrency: []int{2},
		duration:    time.Second,
		warmup:      200 * time.Millisecond,
		dir:         t.TempDir(),
		echo:        true,
		syncSamples: 20,
	}
	_, _, echoErr := findEverything(cfg)
	want := []string{"memory", "sqlite"}
	if echoErr == nil {
		want = append(want, "echo")
	}
	var log strings.Builder
	rep, err := run(context.Background(), cfg, &log)
	if err != nil {
		t.Fatalf("run: %v\nlog:\n%s", err, log.String())
	}
	if len(rep.Rows) != len(want) {
		t.Fatalf("%d rows, want %d (%v)", len(rep.Rows), len(want), want)
	}
	for i, r := range rep.Rows {
		if r.Target != want[i] || r.C != 2 {
			t.Errorf("row %d is %s at C=%d, want %s at C=2", i, r.Target, r.C, want[i])
		}
		if r.Calls <= 0 || r.CallsPerSec <= 0 || r.P50us <= 0 || r.P99us < r.P50us {
			t.Errorf("%s: calls %d, %.0f/s, p50 %.0f µs, p99 %.0f µs", r.Target, r.Calls, r.CallsPerSec, r.P50us, r.P99us)
		}
		if r.Errors != 0 {
			t.Errorf("%s: %d errors: %v", r.Target, r.Errors, r.ErrorSamples)
		}
		if runtime.GOOS == "linux" && (r.ServerCPUus == nil || r.PeakRSSBytes == nil || *r.PeakRSSBytes <= 0) {
			t.Errorf("%s: no server CPU or peak RSS from /proc", r.Target)
		}
	}
	if rep.Fdatasync == nil || rep.Fdatasync.Samples != 20 || rep.Fdatasync.P50us <= 0 {
		t.Errorf("fdatasync probe: %+v", rep.Fdatasync)
	}
	var table strings.Builder
	rep.writeTable(&table)
	var rows []string
	for line := range strings.SplitSeq(table.String(), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "2" {
			rows = append(rows, f[1])
		}
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("the table's rows at C=2 are %v, want %v:\n%s", rows, want, table.String())
	}
	if entries, err := os.ReadDir(cfg.dir); err != nil || len(entries) != 0 {
		t.Errorf("data directories left behind in %s: %v %v", cfg.dir, entries, err)
	}
}

// A call that fails ends its session and is counted and kept for
// printing; it does not abort the measurement.
func TestFailedCallsAreCountedAndKept(t *testing.T) {
	s, err := startNanoVM(context.Background(), testBinary(t),
		[]string{"serve", "--transport", "http", "--addr", "127.0.0.1:0", "--store", "memory", "--data-dir", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	unknownRun := func(_ context.Context, do caller) error {
		_, err := do(toolCall("step", map[string]any{"run_id": "no-such-run", "seq": 1, "output": refundAnswer}),
			func(res *mcp.CallToolResult) error {
				if res.IsError {
					return errors.New(resultText(res))
				}
				return nil
			})
		return err
	}
	r, err := measure(context.Background(), s, 3, 0, 200*time.Millisecond, unknownRun)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 3 || len(r.ErrorSamples) != 3 || r.Calls != 0 {
		t.Fatalf("errors %d, samples %v, calls %d; want 3 errors kept and no calls", r.Errors, r.ErrorSamples, r.Calls)
	}
	for _, e := range r.ErrorSamples {
		if !strings.Contains(e, "step: error") || !strings.Contains(e, "unknown_run") {
			t.Errorf("error sample %q does not name the call and the server's error", e)
		}
	}
}

// A server that cannot start is reported with what it said.
func TestServerThatExitsBeforeListeningIsReportedWithItsOutput(t *testing.T) {
	_, err := startNanoVM(context.Background(), testBinary(t),
		[]string{"serve", "--transport", "http", "--addr", "127.0.0.1:0", "--store", "no-such-store", "--data-dir", t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "exited before it listened") || !strings.Contains(err.Error(), "no-such-store") {
		t.Fatalf("error %v, want it to say the server exited and quote its output", err)
	}
}

func TestParseFlags(t *testing.T) {
	t.Setenv("NANO_VM_TEST_PG_DSN", "")
	tests := []struct {
		name    string
		args    []string
		wantErr string // empty: valid
		stores  []string
		c       []int
	}{
		{name: "defaults need a DSN for postgres", args: nil, wantErr: "postgres store needs -pg-dsn"},
		{name: "postgres with a DSN", args: []string{"-pg-dsn", "postgres://x/y"}, stores: []string{"memory", "sqlite", "postgres"}, c: []int{1, 8, 32, 128}},
		{name: "stores and C in the order given", args: []string{"-stores", "sqlite, memory", "-c", "32,1"}, stores: []string{"sqlite", "memory"}, c: []int{32, 1}},
		{name: "unknown store", args: []string{"-stores", "memory,mysql"}, wantErr: `unknown store "mysql"`},
		{name: "store twice", args: []string{"-stores", "memory,memory"}, wantErr: "memory is listed twice"},
		{name: "empty store list", args: []string{"-stores", ""}, wantErr: `unknown store ""`},
		{name: "zero sessions", args: []string{"-stores", "memory", "-c", "0"}, wantErr: `"0" is not a positive number`},
		{name: "sessions not a number", args: []string{"-stores", "memory", "-c", "8,x"}, wantErr: `"x" is not a positive number`},
		{name: "C twice", args: []string{"-stores", "memory", "-c", "8,8"}, wantErr: "8 is listed twice"},
		{name: "no measured time", args: []string{"-stores", "memory", "-d", "0s"}, wantErr: "must be positive"},
		{name: "negative warm-up", args: []string{"-stores", "memory", "-warmup", "-1s"}, wantErr: "must not be negative"},
		{name: "no fdatasync samples", args: []string{"-stores", "memory", "-sync-samples", "0"}, wantErr: "at least one sample"},
		{name: "stray argument", args: []string{"-stores", "memory", "extra"}, wantErr: `unexpected argument "extra"`},
		{name: "unknown flag", args: []string{"-concurrency", "8"}, wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				var ue *usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want a usage error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(cfg.stores) != fmt.Sprint(tt.stores) || fmt.Sprint(cfg.concurrency) != fmt.Sprint(tt.c) {
				t.Errorf("stores %v, C %v; want %v, %v", cfg.stores, cfg.concurrency, tt.stores, tt.c)
			}
		})
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestParseStatCPUAddsUserAndSystemTicks(t *testing.T) {
	tests := []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		{name: "plain", stat: "42 (nano-vm-mcp) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0", want: 3 * time.Second},
		{name: "command with spaces and parentheses", stat: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0", want: 30 * time.Millisecond},
		{name: "no command", stat: "7 a R", wantErr: true},
		{name: "truncated", stat: "7 (x) R 1 7 7", wantErr: true},
		{name: "not a number", stat: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 u 2 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseVmHWMReadsKilobytes(t *testing.T) {
	tests := []struct {
		name, status string
		want         int64
		wantErr      bool
	}{
		{name: "present", status: "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n", want: 2 << 20},
		{name: "absent", status: "Name:\tx\nVmRSS:\t 1024 kB\n", wantErr: true},
		{name: "other unit", status: "VmHWM:\t 2 MB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVmHWM([]byte(tt.status))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i))
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", []time.Duration{5}, 99, 5},
		{"p50 of 100", hundred, 50, 50},
		{"p99 of 100", hundred, 99, 99},
		{"p99 of 3", []time.Duration{1, 2, 3}, 99, 3},
		{"p50 of 3", []time.Duration{1, 2, 3}, 50, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWithSearchPathAddsTheSchemaToEachDSNForm(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"postgres://u@h:5432/db", "postgres://u@h:5432/db?search_path=s"},
		{"postgresql://u@h/db?sslmode=disable", "postgresql://u@h/db?sslmode=disable&search_path=s"},
		{"host=h dbname=db", "host=h dbname=db search_path=s"},
	}
	for _, tt := range tests {
		if got := withSearchPath(tt.dsn, "s"); got != tt.want {
			t.Errorf("withSearchPath(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

func TestTableGroupsByCAndComparesWithMemory(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	rss := int64(64 << 20)
	rep := &report{
		Started: "T", GOOS: "linux", GOARCH: "amd64", CPUs: 2, Go: "go", Duration: "10s", Warmup: "2s",
		LoadAvg:   []string{"1 1 1", "2 2 2"},
		Fdatasync: &syncResult{Dir: "/d", Filesystem: "ext4", Samples: 10, P50us: 80, P99us: 12_345},
		Rows: []*row{
			{Target: "memory", C: 1, CallsPerSec: 4000, P50us: 200, P99us: 900, ServerCPUus: f(150), PeakRSSBytes: &rss},
			{Target: "memory", C: 32, CallsPerSec: 9458, P50us: 3000, P99us: 9000},
			{Target: "sqlite", C: 32, CallsPerSec: 1798, P50us: 1_002_800, P99us: 12_500_000},
			{Target: "sqlite", C: 1, CallsPerSec: 1000, P50us: 700, P99us: 2500, Errors: 1},
			{Target: "echo", C: 1, CallsPerSec: 520, P50us: 1800, P99us: 4000},
		},
	}
	var b strings.Builder
	rep.writeTable(&b)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	want := []string{
		"C target calls/s × memory p50 p99 errors server CPU/call peak RSS",
		"1 memory 4,000 — 200 µs 900 µs 0 150 µs 64 MiB",
		"1 sqlite 1,000 0.25× 700 µs 2,500 µs 1 — —",
		"1 echo 520 0.13× 1,800 µs 4,000 µs 0 — —",
		"32 memory 9,458 — 3,000 µs 9,000 µs 0 — —",
		"32 sqlite 1,798 0.19× 1002.8 ms 12.5 s 0 — —",
	}
	body := lines[len(lines)-len(want):]
	for i := range want {
		if got := strings.Join(strings.Fields(body[i]), " "); got != want[i] {
			t.Errorf("line %d: %q, want %q", i, got, want[i])
		}
	}
	if !strings.Contains(b.String(), "fdatasync in /d (ext4): p50 80 µs, p99 12.3 ms (10 samples)") {
		t.Errorf("no fdatasync line:\n%s", b.String())
	}
}
