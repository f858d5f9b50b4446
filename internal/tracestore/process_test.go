package tracestore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The two-process test re-executes the test binary as appenders; these
// variables tell a child its role.
const (
	childRoleEnv   = "NANO_VM_TEST_CHILD"        // "appender"
	childStoreEnv  = "NANO_VM_TEST_CHILD_STORE"  // "sqlite" or "postgres"
	childTargetEnv = "NANO_VM_TEST_CHILD_TARGET" // the file or the DSN
	childNameEnv   = "NANO_VM_TEST_CHILD_NAME"
	childRun       = "twoprocs"
)

func openChildStore(kind, target string) (Store, error) {
	if kind == "postgres" {
		return OpenPostgres(context.Background(), target)
	}
	return OpenSQLite(target, SQLiteOptions{})
}

// TestHelperProcessAppender is not a test: it is the child of
// TestTwoProcessesExactlyOneWinsEachRound. For each round number read on
// stdin it appends two records at index 2*round and says whether it won.
func TestHelperProcessAppender(t *testing.T) {
	if os.Getenv(childRoleEnv) != "appender" {
		return
	}
	name := os.Getenv(childNameEnv)
	s, err := openChildStore(os.Getenv(childStoreEnv), os.Getenv(childTargetEnv))
	if err != nil {
		fmt.Printf("child: error %v\n", err)
		return
	}
	defer s.Close()
	fmt.Println("child: ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		round, err := strconv.Atoi(in.Text())
		if err != nil {
			fmt.Printf("child: error %v\n", err)
			return
		}
		at := uint64(2 * round)
		rs := make([]Record, 2)
		for k := range rs {
			body := fmt.Sprintf(`{"writer":%q,"round":%d,"part":%d}`, name, round, k)
			rs[k] = Record{Index: at + uint64(k), Type: "e", Body: []byte(body), Hash: []byte(name)}
		}
		ri := info(at + 2)
		ri.Head = []byte(name)
		switch err := s.Append(context.Background(), childRun, rs, ri); {
		case err == nil:
			fmt.Println("child: won")
		case errors.Is(err, ErrConflict):
			fmt.Println("child: conflict")
		default:
			fmt.Printf("child: error %v\n", err)
		}
	}
}

// appender is a running child process and its protocol lines.
type appender struct {
	name   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan string
	stderr bytes.Buffer
}

func startAppender(t *testing.T, kind, target, name string) *appender {
	t.Helper()
	a := &appender{name: name, cmd: exec.Command(os.Args[0], "-test.run=^TestHelperProcessAppender$"), lines: make(chan string, 4)}
	a.cmd.Env = append(os.Environ(), childRoleEnv+"=appender", childStoreEnv+"="+kind, childTargetEnv+"="+target, childNameEnv+"="+name)
	a.cmd.Stderr = &a.stderr
	var err error
	if a.in, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// Anything else is the test framework's own output.
			if line, ok := strings.CutPrefix(sc.Text(), "child: "); ok {
				a.lines <- line
			}
		}
	}()
	t.Cleanup(func() {
		a.in.Close()
		a.cmd.Wait()
	})
	return a
}

// next is the child's next protocol line.
func (a *appender) next(t *testing.T) string {
	t.Helper()
	select {
	case line, ok := <-a.lines:
		if !ok {
			t.Fatalf("appender %s exited: %s", a.name, a.stderr.String())
		}
		if strings.HasPrefix(line, "error") {
			t.Fatalf("appender %s: %s", a.name, line)
		}
		return line
	case <-time.After(time.Minute):
		t.Fatalf("appender %s is silent", a.name)
	}
	return ""
}

func TestTwoProcessesExactlyOneWinsEachRound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const rounds = 100
	for _, c := range []struct {
		kind   string
		target func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "traces.db") }},
		{"postgres", func(t *testing.T) string { return pgTestDSN(t) }},
	} {
		t.Run(c.kind, func(t *testing.T) {
			target := c.target(t)
			// Both children open (and create, and migrate) the store at once.
			as := []*appender{startAppender(t, c.kind, target, "a"), startAppender(t, c.kind, target, "b")}
			for _, a := range as {
				if line := a.next(t); line != "ready" {
					t.Fatalf("appender %s: %q, want ready", a.name, line)
				}
			}
			winners := make([]string, rounds)
			wins := map[string]int{}
			for round := range rounds {
				for _, a := range as {
					fmt.Fprintln(a.in, round)
				}
				for _, a := range as {
					switch line := a.next(t); line {
					case "won":
						if winners[round] != "" {
							t.Fatalf("round %d: both %s and %s won", round, winners[round], a.name)
						}
						winners[round] = a.name
						wins[a.name]++
					case "conflict":
					default:
						t.Fatalf("appender %s: %q", a.name, line)
					}
				}
				if winners[round] == "" {
					t.Fatalf("round %d: nobody won", round)
				}
			}
			t.Logf("wins: %v", wins)

			s, err := openChildStore(c.kind, target)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			got, err := s.Load(ctx, childRun)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2*rounds {
				t.Fatalf("trace has %d records, want %d", len(got), 2*rounds)
			}
			for i, r := range got {
				var body struct {
					Writer      string
					Round, Part int
				}
				if err := json.Unmarshal(r.Body, &body); err != nil {
					t.Fatal(err)
				}
				if r.Index != uint64(i) || body.Round != i/2 || body.Part != i%2 || body.Writer != winners[i/2] || string(r.Hash) != body.Writer {
					t.Fatalf("record %d is %s (hash %q), want part %d of round %d by %s", r.Index, r.Body, r.Hash, i%2, i/2, winners[i/2])
				}
			}
			ri, err := s.Run(ctx, childRun)
			if err != nil || ri.Events != 2*rounds || string(ri.Head) != winners[rounds-1] {
				t.Fatalf("index row %+v, %v: want %d events, head by %s", ri, err, 2*rounds, winners[rounds-1])
			}
		})
	}
}
