package service

import (
	"fmt"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// Until the core's program.CheckExecution and program.Executed land (issue
// 15, helper W1), these stand in for them with their documented
// signatures and semantics; the merge replaces both with the core's.

func programCheckExecution(p *program.Program, has func(tool string) bool) []program.Problem {
	var out []program.Problem
	for _, name := range p.Order {
		st := p.States[name]
		if st.Kind == program.KindTool && st.Execution == program.ExecutionRuntime && !has(st.Tool) {
			out = append(out, program.Problem{File: p.Source(), State: name, Field: "execution",
				Message: fmt.Sprintf("execution: runtime, but the server's tool registry has no tool %s", st.Tool)})
		}
	}
	return out
}

func programExecuted(p *program.Program, has func(tool string) (kind string, ok bool)) map[string]string {
	out := map[string]string{}
	for _, name := range p.Order {
		st := p.States[name]
		if st.Kind != program.KindTool || st.Execution == program.ExecutionCaller {
			continue
		}
		if kind, ok := has(st.Tool); ok {
			out[name] = kind
		}
	}
	return out
}
