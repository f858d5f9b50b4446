package service

import (
	"github.com/nano-vm/nano-vm-mcp/internal/executor"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// Which tool states of a program the service runs itself, as the
// program's declarations and the operator's registry decide together.
// The rule is the program's (program.CheckExecution, program.Executed);
// this file only asks it with the registry.

// registryHas answers the program's questions about the registry: whether
// it has a tool, and of which executor kind. A nil registry has none.
func registryHas(reg *executor.Registry) func(tool string) (string, bool) {
	return func(tool string) (string, bool) {
		if reg == nil {
			return "", false
		}
		t, ok := reg.Tool(tool)
		if !ok {
			return "", false
		}
		return t.Kind(), true
	}
}

// checkExecution is the load error of a program one of whose states
// requires runtime execution of a tool the registry lacks, else nil.
// (AddProgram also checks the arguments: checkArguments.)
func checkExecution(p *program.Program, reg *executor.Registry) error {
	has := registryHas(reg)
	probs := program.CheckExecution(p, func(tool string) bool { _, ok := has(tool); return ok })
	if len(probs) == 0 {
		return nil
	}
	return &program.Error{File: p.Source(), Problems: probs}
}

// executedStates is the state → executor kind map the program's runs
// start with (runtime.Start.Executors); nil when the service runs none.
func executedStates(p *program.Program, reg *executor.Registry) map[string]string {
	m := program.Executed(p, registryHas(reg))
	if len(m) == 0 {
		return nil
	}
	return m
}

// checkArguments is the load error of a program that hands a tool the
// service runs arguments its registry entry refuses, where the types known
// at load say so (for a downstream MCP tool: its input schema, as listed
// when the registry connected), else nil.
func checkArguments(p *program.Program, reg *executor.Registry) error {
	if reg == nil {
		return nil
	}
	probs := program.CheckArguments(p, executedStates(p, reg), func(st *program.State) []string {
		e, ok := reg.Executor(st.Tool)
		if !ok {
			return nil
		}
		return executor.CheckArguments(e, st.ArgumentShape())
	})
	if len(probs) == 0 {
		return nil
	}
	return &program.Error{File: p.Source(), Problems: probs}
}
