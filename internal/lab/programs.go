package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// document is a deep copy of p's normalised document, to mutate.
func document(p *program.Program) (program.Document, error) {
	var doc program.Document
	b, err := json.Marshal(p.Normalized())
	if err != nil {
		return doc, err
	}
	err = json.Unmarshal(b, &doc)
	return doc, err
}

// load loads a mutated document as the program file it would be.
func load(p *program.Program, doc program.Document, suffix string) (*program.Program, error) {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return program.Load(p.Name+"."+suffix+".json", b)
}

// loosened is p with its first guard widened to hold always: the same
// program but for one guard, under a new definition hash.
func loosened(p *program.Program) (*program.Program, string, error) {
	st, t, _ := firstGuard(p)
	doc, err := document(p)
	if err != nil {
		return nil, "", err
	}
	spec := doc.States[st.Name]
	spec.Transitions[t.Index].When = "(" + t.When + ") || true"
	doc.States[st.Name] = spec
	mod, err := load(p, doc, "loosened")
	if err != nil {
		return nil, "", fmt.Errorf("the loosened program does not load: %w", err)
	}
	return mod, fmt.Sprintf("state %s, transitions[%d]: the guard widened to hold always", st.Name, t.Index), nil
}

// mutation breaks a program document; it says what it did and which
// state the loader must name.
type mutation func(p *program.Program, doc *program.Document) (change, state string)

func missingTarget(p *program.Program, doc *program.Document) (string, string) {
	for _, name := range p.Order {
		if spec := doc.States[name]; len(spec.Transitions) > 0 {
			spec.Transitions[0].To = "lab_no_such_state"
			return fmt.Sprintf("state %s, transitions[0].to: lab_no_such_state", name), name
		}
	}
	return "", ""
}

func guardNotBool(p *program.Program, doc *program.Document) (string, string) {
	st, t, _ := firstGuard(p)
	doc.States[st.Name].Transitions[t.Index].When = "'approve'"
	return fmt.Sprintf("state %s, transitions[%d].when: 'approve' (a string)", st.Name, t.Index), st.Name
}

func unreachableState(_ *program.Program, doc *program.Document) (string, string) {
	doc.States["lab_orphan"] = program.StateSpec{Kind: "terminal", Outcome: "LAB_ORPHAN"}
	return "a terminal state lab_orphan that no transition enters", "lab_orphan"
}

// invalidProgram loads the run's program mutated: the loader must refuse
// it with problems that name the state, and no run can start under it.
func invalidProgram(m mutation) func(ctx context.Context, env Env, v *view) (outcome, error) {
	return func(_ context.Context, _ Env, v *view) (outcome, error) {
		doc, err := document(v.p)
		if err != nil {
			return outcome{}, err
		}
		change, state := m(v.p, &doc)
		o := outcome{expected: InvalidProgramOutcome}
		_, err = load(v.p, doc, "mutated")
		var pe *program.Error
		switch {
		case err == nil:
			o.observed, o.detail = "loaded", change+": the loader accepted it"
		case !errors.As(err, &pe) || len(pe.Problems) == 0:
			o.observed, o.detail = "error", change+": "+err.Error()
		default:
			named := false
			var lines []string
			for _, pr := range pe.Problems {
				lines = append(lines, pr.String())
				if pr.State == state && pr.Line > 0 {
					named = true
				}
			}
			o.observed = InvalidProgramOutcome
			if !named {
				o.observed = "invalid_program_unpositioned"
			}
			o.detail = fmt.Sprintf("%s: %d problem(s): %s", change, len(pe.Problems), strings.Join(lines, "; "))
		}
		return o, nil
	}
}
