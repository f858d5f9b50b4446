package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/pgtest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The size of the cross-instance race. The default is the security
// review's 30 rounds × 16 racers, about 10 s for both stores under -race
// on two cores; these make it larger.
const (
	envRaceRounds = "NANO_VM_TEST_RACE_ROUNDS"
	envRaceRacers = "NANO_VM_TEST_RACE_RACERS"
)

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 {
		t.Fatalf("%s=%q: want an integer of at least 2", name, v)
	}
	return n
}

// TestServeRacingStepsAcrossTwoServersNeverInternal: two `serve --transport
// http` processes share one store, SQLite file or PostgreSQL database, as
// two instances behind a load balancer. Each round, racers split across
// them answer a new run's first task at the same moment, each with its own
// output. Exactly one wins; every loser is told stale_seq with the current
// task, never internal, and every loss is recorded in the trace.
func TestServeRacingStepsAcrossTwoServersNeverInternal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four servers")
	}
	rounds, racers := envInt(t, envRaceRounds, 30), envInt(t, envRaceRacers, 16)
	stores := []struct {
		name string
		open func(t *testing.T, dir string) (args []string, store func() tracestore.Store)
	}{
		{"sqlite", func(t *testing.T, dir string) ([]string, func() tracestore.Store) {
			return []string{"--store", "sqlite"}, func() tracestore.Store {
				s, err := tracestore.OpenSQLite(tracestore.SQLitePath(dir), tracestore.SQLiteOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}},
		{"postgres", func(t *testing.T, _ string) ([]string, func() tracestore.Store) {
			dsn, _ := pgtest.Schema(t, "serve_race_")
			return []string{"--store", "postgres", "--dsn", dsn}, func() tracestore.Store {
				s, err := tracestore.OpenPostgres(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
		}},
	}
	input, err := os.ReadFile("../../examples/kyc-onboarding.input.json")
	if err != nil {
		t.Fatal(err)
	}
	// The second answer is the one the first task accepts.
	var answer map[string]any
	if err := json.Unmarshal(readLines(t, "../../examples/kyc-onboarding.approved.answers.jsonl")[1], &answer); err != nil {
		t.Fatal(err)
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			// One data directory: both instances hold the same keys, as
			// instances sharing a store must.
			dir := t.TempDir()
			args, openStore := st.open(t, dir)
			args = append(args, "--data-dir", dir)
			env := []string{"NANO_VM_ACCESS_TOKEN=" + testAccessToken}
			urls := []string{startHTTP(t, env, args...), startHTTP(t, env, args...)}
			clients := make([]*client.Client, racers)
			for i := range clients {
				clients[i] = httpClient(t, urls[i%2], testAccessToken, mcp.LATEST_PROTOCOL_VERSION)
			}
			var runIDs []string
			codes := map[string]int{}
			for round := range rounds {
				res, e := callTool(t, clients[round%2], "start_run", map[string]any{"program": "kyc-onboarding", "input": json.RawMessage(input)})
				if e != nil {
					t.Fatalf("round %d: start_run: %v", round, e)
				}
				runID, seq := res["run_id"].(string), res["task"].(map[string]any)["seq"]
				runIDs = append(runIDs, runID)
				var (
					wg      sync.WaitGroup
					ready   = make(chan struct{})
					results = make([]raceResult, racers)
				)
				for i, c := range clients {
					wg.Go(func() {
						out := make(map[string]any, len(answer))
						for k, v := range answer {
							out[k] = v
						}
						// A different output each: a loser's is not a duplicate.
						out["occupation"] = fmt.Sprintf("Analyst %d", i)
						<-ready
						results[i] = raceStep(c, map[string]any{"run_id": runID, "seq": seq, "output": out})
					})
				}
				close(ready)
				wg.Wait()
				wins := 0
				for i, r := range results {
					switch {
					case r.err != nil:
						t.Fatalf("round %d, racer %d: %v", round, i, r.err)
					case r.code == "":
						wins++
					default:
						codes[r.code]++
						if r.code == "stale_seq" && r.task == nil {
							t.Errorf("round %d, racer %d: stale_seq without the current task", round, i)
						}
					}
				}
				if wins != 1 {
					t.Fatalf("round %d: %d winners, want 1", round, wins)
				}
			}
			if len(codes) != 1 || codes["stale_seq"] != rounds*(racers-1) {
				t.Fatalf("the losers got %v; want stale_seq for all %d", codes, rounds*(racers-1))
			}
			s := openStore()
			defer s.Close()
			for _, id := range runIDs {
				recs, err := s.Load(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, r := range recs {
					if r.Type == "submission_rejected" {
						n++
					}
				}
				if n != racers-1 {
					t.Fatalf("run %s records %d rejections, want one per loser (%d)", id, n, racers-1)
				}
			}
		})
	}
}

// raceResult is one racer's answer: no code for a success, else the
// error's code and the task it carries.
type raceResult struct {
	code string
	task any
	err  error
}

func raceStep(c *client.Client, args map[string]any) raceResult {
	req := mcp.CallToolRequest{}
	req.Params.Name = "step"
	req.Params.Arguments = args
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		return raceResult{err: err}
	}
	if !res.IsError {
		return raceResult{}
	}
	var body struct {
		Code string `json:"code"`
		Task any    `json:"task"`
	}
	text := res.Content[0].(mcp.TextContent).Text
	if err := json.Unmarshal([]byte(text), &body); err != nil {
		return raceResult{err: fmt.Errorf("%q: %v", text, err)}
	}
	return raceResult{code: body.Code, task: body.Task}
}
