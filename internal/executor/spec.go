package executor

import "time"

// Tool is one entry of the registry: a name the programs use, the kind of
// executor behind it (exactly one of MCP, Exec, HTTP, Builtin is set) and
// how to call it.
type Tool struct {
	Name string
	// Line and Column locate the entry in the registry file, for problems.
	Line, Column int

	MCP     *MCPSpec
	Exec    *ExecSpec
	HTTP    *HTTPSpec
	Builtin string // "git.stage", "git.commit" or "git.discard"
	// Git configures a builtin git step; set exactly when Builtin is.
	Git *GitSpec

	Timeout    time.Duration
	Idempotent bool // safe to invoke again with the same idempotency key
	Retry      RetryPolicy
}

// Kind names the executor kind: "mcp", "exec", "http" or "builtin".
func (t *Tool) Kind() string {
	switch {
	case t.MCP != nil:
		return "mcp"
	case t.Exec != nil:
		return "exec"
	case t.HTTP != nil:
		return "http"
	default:
		return "builtin"
	}
}

// RetryPolicy is the registry's retry policy for a tool; the program's
// max_attempts bounds it further.
type RetryPolicy struct {
	MaxAttempts int
	Backoff     time.Duration
}

// MCPSpec names a tool on a downstream MCP server, reached over stdio
// (Command) or Streamable HTTP (URL).
type MCPSpec struct {
	Command []string // argv of a stdio server; no shell
	Env     []string // names of environment variables passed to a stdio server
	URL     string   // a Streamable HTTP server
	// TokenFile holds the bearer token sent to an HTTP server; it is read
	// when the registry loads and never logged or recorded.
	TokenFile string
	Tool      string // the downstream tool's name
}

// ExecSpec is a command: argv only, never a shell.
type ExecSpec struct {
	// Argv elements may be whole placeholders ({{args.NAME}}, {{stage}}),
	// replaced by the evaluated argument's string form as one element.
	Argv    []string
	Workdir string   // "{{stage}}" or a directory (relative to the registry); empty: a fresh temporary directory
	Env     []string // names of environment variables passed through; all others are cleared
	Sandbox string   // "" (none) or "bwrap"
	Network bool     // with bwrap: keep the network namespace
	Output  string   // "json" (stdout is the result), "exit-status" or "go-test-json"
	// MaxOutput caps stdout and stderr each, in bytes (default 1 MiB).
	MaxOutput int64
	// ReadOnly and Writable are extra absolute paths bound into a bwrap
	// sandbox (a toolchain outside /usr, a shared build cache).
	ReadOnly, Writable []string
}

// GitSpec configures the builtin git steps of the transactional code
// change (git.go).
type GitSpec struct {
	// Repositories maps the names a program's `repository` argument may
	// take to absolute paths: the model never supplies a path (git.stage).
	Repositories map[string]string
	// AuthorName and AuthorEmail are the fixed identity of every commit
	// (git.commit); both default to nano-vm-mcp's.
	AuthorName, AuthorEmail string
}

// HTTPSpec is an HTTP endpoint; the evaluated arguments are the JSON body.
type HTTPSpec struct {
	URL    string
	Method string // default POST
	// Headers' values are literal, or "file:PATH" / "env:NAME" for secrets,
	// read when the registry loads and never logged or recorded.
	Headers map[string]string
}
