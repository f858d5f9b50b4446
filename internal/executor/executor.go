// Package executor runs the tools that a program's runtime-executed states
// name. The operator's registry (tools.yaml, see registry.go) maps each
// tool name to an executor: a tool on a downstream MCP server, a command
// (argv only, optionally in a bubblewrap sandbox), an HTTP endpoint, or a
// builtin git step of the transactional code change. An Executor invokes
// one call; it holds no run state and writes no trace: the service appends
// the intent (tool_call_started) before it calls Invoke and the outcome
// after, so this package only has to make one invocation honest: bounded
// in time and size, keyed for idempotency, and classified when it fails.
package executor

import (
	"context"
	"fmt"
)

// Call is one invocation of a tool.
type Call struct {
	// Tool is the registry name the program's state names.
	Tool string
	// Arguments are the state's evaluated arguments, in clear: the
	// executor is the one place they are meant for.
	Arguments map[string]any
	// IdempotencyKey is derived by the service from the run id, the state
	// visit and the call id: the same on every retry and after a restart,
	// different between visits. Each kind hands it to the tool in its own
	// way (an Idempotency-Key header, the request's _meta, an environment
	// variable); docs/tools.md names them.
	IdempotencyKey string
	// Attempt counts from 1.
	Attempt int
}

// Class says why a call failed; the trace records it in tool_call_failed.
type Class string

const (
	ClassTimeout         Class = "timeout"          // the call ran past its timeout
	ClassTransport       Class = "transport"        // the tool could not be reached or died mid-call
	ClassToolError       Class = "tool_error"       // the tool answered with an error (isError, non-2xx, non-zero exit where that is an error)
	ClassSchemaViolation Class = "schema_violation" // the result is not a JSON document the state accepts
	ClassDrifted         Class = "drifted"          // a downstream tool's description or input schema no longer matches its pin
	ClassSandbox         Class = "sandbox"          // the sandbox refused or could not start the command, or an output cap was hit
)

// Failure is the error every executor returns for a failed call. Detail is
// safe to record: it never carries a secret or the call's arguments.
type Failure struct {
	Class  Class
	Detail string
	// Status is the HTTP status code of an http tool's non-2xx answer; 0 otherwise.
	Status int
}

func (f *Failure) Error() string {
	if f.Status != 0 {
		return fmt.Sprintf("tool %s (HTTP %d): %s", f.Class, f.Status, f.Detail)
	}
	return fmt.Sprintf("tool %s: %s", f.Class, f.Detail)
}

// Fail builds a Failure.
func Fail(c Class, format string, args ...any) *Failure {
	return &Failure{Class: c, Detail: fmt.Sprintf(format, args...)}
}

// Executor invokes calls of one registry tool. Invoke returns the result
// document as internal/jsonvalue.Decode gives it (strict JSON; numbers stay
// json.Number), or a *Failure: a result that is not strict JSON, or larger
// than the output cap, is a failure, never "fixed".
// It must return within the tool's timeout even when the tool does not,
// and must be safe for concurrent use.
type Executor interface {
	Invoke(ctx context.Context, c Call) (any, error)
	// Close releases what the executor holds open (a downstream MCP
	// session, a client's idle connections).
	Close() error
}
