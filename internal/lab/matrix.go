package lab

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// Script is a run input and the answers that drive a run started with it,
// one per task, in order (rejected ones included).
type Script struct {
	Name    string
	Input   any
	Answers []any
}

// ExampleScripts returns the embedded example's scripts for a program
// name (ScriptsIn the embedded examples). None for a program that is not
// an example.
func ExampleScripts(name string) ([]Script, error) {
	return ScriptsIn(examples.FS, name)
}

// ScriptsIn returns the scripts for the program file <stem>.yaml found in
// fsys beside it, named as the examples are: every
// <stem>[.<variant>].<outcome>.answers.jsonl with its input
// <stem>[.<variant>].input.json, sorted by file name. None when there are
// no answers files.
func ScriptsIn(fsys fs.FS, stem string) ([]Script, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, stem+".") && strings.HasSuffix(n, ".answers.jsonl") {
			files = append(files, n)
		}
	}
	sort.Strings(files)
	var out []Script
	for _, f := range files {
		mid := strings.TrimSuffix(strings.TrimPrefix(f, stem+"."), ".answers.jsonl")
		input := stem + ".input.json"
		if i := strings.LastIndex(mid, "."); i >= 0 {
			input = stem + "." + mid[:i] + ".input.json"
		}
		b, err := fs.ReadFile(fsys, input)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		in, err := jsonvalue.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", input, err)
		}
		if b, err = fs.ReadFile(fsys, f); err != nil {
			return nil, err
		}
		answers, err := ParseAnswers(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, Script{Name: f, Input: in, Answers: answers})
	}
	return out, nil
}

// ReadAnswers reads an embedded answers file (JSON Lines).
func ReadAnswers(name string) ([]any, error) {
	b, err := examples.FS.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return ParseAnswers(b)
}

// ParseAnswers reads JSON Lines, skipping blank lines.
func ParseAnswers(b []byte) ([]any, error) {
	lines, err := jsonvalue.DecodeLines(bytes.NewReader(b), program.MaxFileBytes)
	if err != nil {
		return nil, err
	}
	var out []any
	for _, l := range lines {
		out = append(out, l.Value)
	}
	return out, nil
}

// knownOutput is a schema-valid output for the open task taken from the
// program's example answers, one that some guard accepts; nil if none.
func knownOutput(v *view) any {
	if !v.open() || v.st.Output == nil {
		return nil
	}
	scripts, err := ExampleScripts(v.p.Name)
	if err != nil {
		return nil
	}
	for _, s := range scripts {
		for _, a := range s.Answers {
			if len(v.st.Output.Validate(a)) > 0 {
				continue
			}
			if _, ok := guardVerdict(v, a); ok {
				return a
			}
		}
	}
	return nil
}

// MatrixOptions choose what the laboratory runs.
type MatrixOptions struct {
	Program string   // a program registered with the service, by name
	Faults  []string // default: every fault
	// Scripts drive the fresh runs to a state where an attack applies.
	// Default (nil): the embedded example's scripts for Program; for a
	// program without any (nil or empty), scripts synthesised from its
	// schemas and guards (Synthesize).
	Scripts []Script
}

// Matrix runs every sub-attack of the chosen faults, each on a fresh lab
// run of the program driven by a script to the first task where it
// applies, and returns one result per sub-attack. gdpr_erase is reported
// n/a: erasure does not exist yet.
func Matrix(ctx context.Context, env Env, o MatrixOptions) ([]Result, error) {
	var p *program.Program
	for _, q := range env.Service.Programs() {
		if q.Name == o.Program {
			p = q
		}
	}
	if p == nil {
		return nil, fmt.Errorf("lab: no program %q registered", o.Program)
	}
	faults := o.Faults
	if len(faults) == 0 {
		faults = Faults
	}
	scripts := o.Scripts
	if scripts == nil {
		var err error
		if scripts, err = ExampleScripts(p.Name); err != nil {
			return nil, err
		}
	}
	if len(scripts) == 0 {
		var err error
		if scripts, _, err = Synthesize(p); err != nil {
			return nil, err
		}
	}
	var out []Result
	for _, f := range faults {
		attacks, err := attacksOf(f)
		if err != nil {
			return nil, err
		}
		for _, a := range attacks {
			res, err := onFreshRun(ctx, env, p, a, scripts)
			if err != nil {
				return nil, fmt.Errorf("%s/%s: %w", a.fault, a.name, err)
			}
			out = append(out, res)
		}
	}
	return out, nil
}

// onFreshRun makes one sub-attack on a run of its own, so that no attack's
// attempts exhaust another's budget.
func onFreshRun(ctx context.Context, env Env, p *program.Program, a subAttack, scripts []Script) (Result, error) {
	if a.tools != "" && env.held == nil && a.applies(p) == "" && len(scripts) > 0 {
		return withLabTools(ctx, env, p, a.tools, func(env Env) (Result, error) {
			return onFreshRun(ctx, env, p, a, scripts)
		})
	}
	na := Result{Fault: a.fault, SubAttack: a.name, Expected: expectedOf(a), Observed: NA}
	if na.Detail = a.applies(p); na.Detail != "" {
		return na, nil
	}
	if a.runless {
		o, err := a.do(ctx, env, &view{p: p})
		if err != nil {
			return Result{}, err
		}
		// No run, so nothing to record the attack in and nothing to
		// verify: the verification columns are n/a.
		return Result{Fault: a.fault, SubAttack: a.name, Expected: o.expected, Observed: o.observed, Applicable: true,
			Pass: o.observed == o.expected, RunUnchanged: true, Detail: o.detail}, nil
	}
	if len(scripts) == 0 {
		na.Detail = "no run input and answers for this program (pass --input and --answers)"
		return na, nil
	}
	// Why each open task was passed over, and how the runs ended, each
	// once: the note names every reason, not only the last one met.
	var passed, ends []string
	note := func(list *[]string, s string) {
		if !slices.Contains(*list, s) {
			*list = append(*list, s)
		}
	}
	for _, s := range scripts {
		input := s.Input
		if a.erases {
			var err error
			if input, err = labSubject(p, input); err != nil {
				na.Detail = err.Error()
				return na, nil
			}
		}
		ans, err := env.Service.StartRun(ctx, service.StartOptions{Program: p.Name, Input: input, Principal: env.Principal, Lab: true})
		if err != nil {
			return Result{}, fmt.Errorf("start with %s: %w", s.Name, err)
		}
		for i := 0; ; i++ {
			r, _, err := env.Service.Get(ctx, ans.RunID)
			if err != nil {
				return Result{}, err
			}
			v := &view{run: r, p: p, st: p.States[r.State]}
			if i < len(s.Answers) && v.open() && v.st.Output != nil && len(v.st.Output.Validate(s.Answers[i])) == 0 {
				v.base = s.Answers[i]
			}
			reason := a.ready(v)
			if reason == "" {
				return attack(ctx, env, a, v)
			}
			if !v.open() {
				end := string(r.Status)
				if reason != needOpenTask(v) {
					end += " (" + reason + ")"
				}
				note(&ends, end)
				break
			}
			note(&passed, fmt.Sprintf("at %s: %s", v.st.Name, reason))
			if i >= len(s.Answers) {
				note(&ends, fmt.Sprintf("at %s with no scripted answer left", v.st.Name))
				break
			}
			if _, err := answerOpen(ctx, env, r, s.Answers[i], ""); err != nil && code(err) == "error" {
				return Result{}, err
			}
		}
	}
	na.Detail = "no scripted run reaches a task where it applies: " + strings.Join(append(passed, "the runs end "+strings.Join(ends, " or ")), "; ")
	return na, nil
}
