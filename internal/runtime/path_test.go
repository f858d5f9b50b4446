package runtime

import (
	"fmt"
	goruntime "runtime"
	"slices"
	"sync"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// sidesProgram loops: ask, then left or right by the answer, then ask again
// (each step enters two states); or, for the answer "tool", the runtime
// tool call work, whose result leads back to ask (BenchmarkApplyToolLoopStep).
const sidesProgram = `
name: test-sides
version: 1.0
input_schema: {type: object}
limits: {max_steps: 100000}
initial: ask
states:
  ask:
    kind: llm
    instructions: Pick a side.
    max_visits: 10000
    output_schema:
      type: object
      properties: {side: {type: string}}
      required: [side]
    transitions:
      - {to: done, when: "output.side == 'none'"}
      - {to: left, when: "output.side == 'left'"}
      - {to: work, when: "output.side == 'tool'"}
      - {to: right}
  work:
    kind: tool
    tool: echo
    execution: runtime
    arguments:
      message: "'hi'"
    output_schema: {type: object, additionalProperties: true}
    transitions: [{to: ask}]
  left: {kind: decision, transitions: [{to: ask}]}
  right: {kind: decision, transitions: [{to: ask}]}
  done: {kind: terminal, outcome: DONE}
`

func sides(t testing.TB) *program.Program {
	t.Helper()
	p, err := program.Load("sides.yaml", []byte(sidesProgram))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// step answers run's ask task with side; it is an error unless the run
// entered side and then ask.
func step(p *program.Program, run *Run, side string) (*Run, error) {
	res, err := Apply(p, run, Submit{Seq: run.Seq, Output: map[string]any{"side": side}, At: t0})
	if err != nil {
		return nil, fmt.Errorf("step to %s: %w", side, err)
	}
	if want := append(slices.Clone(run.Path), side, "ask"); !slices.Equal(res.Run.Path, want) {
		return nil, fmt.Errorf("step to %s: path %v, want %v", side, res.Run.Path, want)
	}
	return res.Run, nil
}

func stepTo(t testing.TB, p *program.Program, run *Run, side string) *Run {
	t.Helper()
	next, err := step(p, run, side)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

func startSides(t testing.TB, p *program.Program, steps int) *Run {
	t.Helper()
	res, err := Apply(p, nil, Start{RunID: "r", Input: map[string]any{}, Executors: map[string]string{"work": "mcp"}, At: t0})
	if err != nil {
		t.Fatal(err)
	}
	run := res.Run
	for range steps {
		run = stepTo(t, p, run, "left")
	}
	return run
}

// TestAStepCostsTheSameWhateverTheRunsLength pins that Apply does not copy
// the run's path: the bytes one step allocates with 10,000 states on the
// path are those it allocates with 100 (each the median of 51 steps, so
// the path's occasional doubling does not count). Copying the path, a step
// allocated 209 KB at 10,000 states and 9.5 KB at 100; now 4.6 KB at both.
func TestAStepCostsTheSameWhateverTheRunsLength(t *testing.T) {
	p := sides(t)
	run := startSides(t, p, 0)
	left := map[string]any{"side": "left"}
	bytesPerStep := func() uint64 {
		var ms goruntime.MemStats
		per := make([]uint64, 51)
		for i := range per {
			in := Submit{Seq: run.Seq, Output: left, At: t0}
			goruntime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			res, err := Apply(p, run, in)
			goruntime.ReadMemStats(&ms)
			per[i] = ms.TotalAlloc - before
			if err != nil || res.Run.State != "ask" {
				t.Fatalf("at %s: %v", res.Run.State, err)
			}
			run = res.Run
		}
		slices.Sort(per)
		return per[len(per)/2]
	}
	for len(run.Path) < 100 {
		run = stepTo(t, p, run, "left")
	}
	short := bytesPerStep()
	for len(run.Path) < 10_000 {
		run = stepTo(t, p, run, "left")
	}
	long := bytesPerStep()
	t.Logf("a step allocates %d bytes at about 100 states, %d at %d", short, long, len(run.Path))
	if long > short+short/10 {
		t.Errorf("a step allocates %d bytes at %d states on the path, %d at about 100", long, len(run.Path), short)
	}
}

// TestTwoAppliesFromOneRunHaveTheirOwnPaths pins the sharing's hazard: runs
// that share a path's array (a run, its clones, Apply's results from it)
// never see each other's states, whoever appended first.
func TestTwoAppliesFromOneRunHaveTheirOwnPaths(t *testing.T) {
	p := sides(t)
	cases := []struct {
		name  string
		first func(t *testing.T, base *Run) // what happens to base before the step under test
	}{
		{"no other step", func(*testing.T, *Run) {}},
		{"another Apply went left first", func(t *testing.T, base *Run) { stepTo(t, p, base, "left") }},
		{"a clone went left first", func(t *testing.T, base *Run) { stepTo(t, p, base.Clone(), "left") }},
		{"another Apply went left twice", func(t *testing.T, base *Run) { stepTo(t, p, stepTo(t, p, base, "left"), "left") }},
		{"a caller appended to the path", func(t *testing.T, base *Run) { _ = append(base.Path, "bogus") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := startSides(t, p, 2) // 5 states: room to grow in place
			was := slices.Clone(base.Path)
			c.first(t, base)
			// stepTo checks each result's path against its run's.
			right := stepTo(t, p, base, "right")
			stepTo(t, p, right, "right")
			if !slices.Equal(base.Path, was) {
				t.Errorf("the base's path became %v, was %v", base.Path, was)
			}
			if want := append(slices.Clone(was), "right", "ask"); !slices.Equal(right.Path, want) {
				t.Errorf("the step's path became %v after the next step, want %v", right.Path, want)
			}
		})
	}
}

// TestConcurrentAppliesFromOneRunHaveTheirOwnPaths is the hazard under
// -race: reads apply inputs to snapshots outside the run's lock, so several
// goroutines step from one run at once, and each continues its own run.
func TestConcurrentAppliesFromOneRunHaveTheirOwnPaths(t *testing.T) {
	p := sides(t)
	base := startSides(t, p, 3)
	was := slices.Clone(base.Path)
	var wg sync.WaitGroup
	for i := range 8 {
		side := []string{"left", "right"}[i%2]
		wg.Go(func() {
			run := base
			if i%4 == 0 {
				run = base.Clone()
			}
			for range 4 {
				var err error
				if run, err = step(p, run, side); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if !slices.Equal(base.Path, was) {
		t.Errorf("the base's path became %v, was %v", base.Path, was)
	}
}
