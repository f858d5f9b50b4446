package executor

import "errors"

// newMCP builds the executor of a tool on a downstream MCP server.
// Placeholder until the mcp executor lands: the registry refuses mcp tools.
func newMCP(t *Tool, o Options) (Executor, error) {
	return nil, errors.New("mcp executor: not implemented yet")
}
