package lab

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

// Synthesis drives a program that came without example inputs and
// answers. It generates a schema-valid input and, state by state, outputs,
// and explores the program with the pure core (runtime.Apply: no store, no
// clock) to find answers that reach every state it can: at each task it
// tries the generated output and its one-place variants (other enum
// values, flipped booleans, the guards' literals...) and keeps those whose
// guards lead somewhere not seen yet. The scripts it returns are the
// fewest explored runs that together enter every state reached, each
// extended as far as the run goes.

// Bounds of the exploration: it is breadth first, so these cut the
// deepest and most exotic branches first.
const (
	maxInputs = 24  // the generated input and its variants
	maxNodes  = 512 // explored runs (prefixes of answers)
)

// synthAt is the clock of explored runs: any fixed time will do.
var synthAt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// node is an explored run: the input and answers that led to it.
type node struct {
	input   any
	answers []any
	run     *runtime.Run
	// children: explored runs that continue this one; none makes it a leaf.
	children int
}

// Synthesize returns scripts for p, generated from its schemas and guards.
// It fails when no input can be generated; a state whose output cannot be
// generated ends the runs that reach it, and notes says so.
func Synthesize(p *program.Program) (scripts []Script, notes []string, err error) {
	h := guardHints(p)
	base, err := synthValue(p.Input, h)
	if err != nil {
		return nil, nil, fmt.Errorf("synthesise an input for %s: input_schema %w", p.Name, err)
	}
	inputs := append([]any{base}, synthVariants(p.Input, h, base)...)
	if len(inputs) > maxInputs {
		inputs = inputs[:maxInputs]
	}
	x := &explorer{p: p, h: h, seen: map[string]bool{}, outputs: map[string][]any{}, failed: map[string]string{}}
	var queue []*node
	for _, in := range inputs {
		res, err := runtime.Apply(p, nil, runtime.Start{RunID: "lab-synth", Principal: "lab", Input: in, Lab: true, At: synthAt})
		if err != nil {
			continue // a variant the runtime refuses (a size limit, say)
		}
		// Every input is a root: guards read the input too, so a variant
		// may open a branch later on. Breadth first, the generated input
		// claims what it reaches before any variant.
		x.enter(res.Run.Path)
		n := &node{input: in, run: res.Run}
		x.nodes = append(x.nodes, n)
		queue = append(queue, n)
	}
	if len(x.nodes) == 0 {
		return nil, nil, fmt.Errorf("synthesise an input for %s: the runtime refuses every generated input", p.Name)
	}
	for len(queue) > 0 && len(x.nodes) < maxNodes {
		n := queue[0]
		queue = queue[1:]
		queue = append(queue, x.expand(n)...)
	}
	for _, name := range slices.Sorted(maps.Keys(x.failed)) {
		notes = append(notes, fmt.Sprintf("state %s: no output synthesised: %s", name, x.failed[name]))
	}
	return x.cover(), notes, nil
}

type explorer struct {
	p       *program.Program
	h       hints
	nodes   []*node
	seen    map[string]bool  // states some explored run entered
	outputs map[string][]any // per state: the generated output and its variants
	failed  map[string]string
}

// enter marks the states of path seen and reports whether one was new.
func (x *explorer) enter(path []string) bool {
	fresh := false
	for _, s := range path {
		if !x.seen[s] {
			x.seen[s], fresh = true, true
		}
	}
	return fresh
}

// candidates are the outputs tried at a state: the generated one first.
func (x *explorer) candidates(st *program.State) []any {
	if c, ok := x.outputs[st.Name]; ok {
		return c
	}
	base, err := synthValue(st.Output, x.h)
	if err != nil {
		x.failed[st.Name] = "output_schema " + err.Error()
		x.outputs[st.Name] = nil
		return nil
	}
	c := append([]any{base}, synthVariants(st.Output, x.h, base)...)
	x.outputs[st.Name] = c
	return c
}

// expand answers n's open task with every candidate and returns the runs
// worth exploring further: those that enter a state not seen yet, and one
// that carries the run on (the first accepted candidate that does not go
// back to a state on its path, else the first accepted), so that every
// script runs as far as it can.
func (x *explorer) expand(n *node) []*node {
	r := n.run
	if r.Status != runtime.StatusRunning || r.Task == nil {
		return nil
	}
	st := x.p.States[r.State]
	var next []*node
	var onward, fallback *node
	for _, out := range x.candidates(st) {
		res, err := answer(x.p, r, out)
		if err != nil {
			continue // rejected: a guard refused it, or the attempt failed
		}
		if res.Run.Seq == r.Seq && res.Run.Status == runtime.StatusRunning {
			continue // still waiting (for more approvers): no progress
		}
		child := &node{input: n.input, answers: append(append([]any(nil), n.answers...), out), run: res.Run}
		added := res.Run.Path[len(r.Path):]
		if x.enter(added) {
			next = append(next, child)
			continue
		}
		if fallback == nil {
			fallback = child
		}
		if onward == nil && !revisits(r.Path, added) {
			onward = child
		}
	}
	if len(next) == 0 {
		if onward == nil {
			onward = fallback
		}
		if onward != nil {
			next = append(next, onward)
		}
	}
	n.children = len(next)
	x.nodes = append(x.nodes, next...)
	return next
}

func revisits(path, added []string) bool {
	for _, s := range added {
		for _, p := range path {
			if s == p {
				return true
			}
		}
	}
	return false
}

// answer applies one answer to the open task, as the lab's driver will
// send it (answerOpen): the input the task's kind takes (runtime.InputFor).
func answer(p *program.Program, r *runtime.Run, out any) (runtime.Result, error) {
	return runtime.Apply(p, r, runtime.InputFor(r.Task, out, runtime.AnswerOptions{Principal: "lab", AllowSelf: true, At: synthAt}))
}

// cover picks the fewest explored runs that end where exploration
// stopped and together enter every state reached: greedily, the run
// entering most states not yet covered, ties to the longer script, then
// to the earlier found.
func (x *explorer) cover() []Script {
	var leaves []*node
	for _, n := range x.nodes {
		if n.children == 0 {
			leaves = append(leaves, n)
		}
	}
	covered := map[string]bool{}
	var out []Script
	for {
		best, gain := -1, 0
		for i, n := range leaves {
			g := 0
			for _, s := range uniq(n.run.Path) {
				if !covered[s] {
					g++
				}
			}
			if g > gain || g == gain && g > 0 && len(n.answers) > len(leaves[best].answers) {
				best, gain = i, g
			}
		}
		if best < 0 {
			break
		}
		n := leaves[best]
		for _, s := range n.run.Path {
			covered[s] = true
		}
		out = append(out, Script{
			Name:    fmt.Sprintf("synthesised %d (%s)", len(out)+1, strings.Join(n.run.Path, ">")),
			Input:   n.input,
			Answers: n.answers,
		})
	}
	return out
}

func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
