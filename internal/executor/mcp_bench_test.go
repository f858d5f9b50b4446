package executor

import (
	"context"
	"testing"
)

// BenchmarkMCPInvokeStdio: one call of the downstream's echo over stdio
// through the mcp executor (tools/call, the tap, strict decoding), the
// downstream's own time included. Issue 15's overhead target compares it
// with a bare mcp-go client's call of the same tool.
func BenchmarkMCPInvokeStdio(b *testing.B) {
	benchInvoke(b, "echo", map[string]any{"message": "hi"})
}

// BenchmarkMCPInvokeStdioText: the same with a JSON text result, which
// the executor decodes from the text.
func BenchmarkMCPInvokeStdioText(b *testing.B) {
	benchInvoke(b, "text_json", map[string]any{"q": "x"})
}

func benchInvoke(b *testing.B, remote string, args map[string]any) {
	tool, o := stdioTool(b, remote, nil)
	m := build(b, tool, o)
	call := Call{Tool: "bureau", Arguments: args, IdempotencyKey: "run/1/call", Attempt: 1}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Invoke(ctx, call); err != nil {
			b.Fatal(err)
		}
	}
}
