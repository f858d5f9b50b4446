package tools

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// errDown is the failure of a database that went away.
var errDown = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

// downStore keeps programs but fails every run read and append, as a
// PostgreSQL store does once its server has stopped.
type downStore struct{ tracestore.Store }

func (downStore) Append(context.Context, string, []tracestore.Record, tracestore.RunInfo) error {
	return errDown
}

func (downStore) Run(context.Context, string) (tracestore.RunInfo, error) {
	return tracestore.RunInfo{}, errDown
}

// TestInternalErrorsAreLogged: a call the server cannot complete answers
// internal with the generic message, and logs the failure behind it at
// error level with the tool, the principal and the run or program. Domain
// errors, which the answer explains, log nothing at error level.
func TestInternalErrorsAreLogged(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := newHarness(t, func(c *Config) {
		st := downStore{tracestore.NewMemory()}
		svc := service.New(service.Options{Store: st})
		addExamples(t, svc)
		c.Service, c.Store, c.Log = svc, st, zap.New(core)
	})
	ctx := as("alice", access.ProfileAgent)
	cases := []struct {
		tool  string
		args  map[string]any
		code  string
		label zap.Field // the field that says what the call was about
	}{
		{"start_run", map[string]any{"program": "refund", "input": exampleInput(t, "refund.input.json")}, CodeInternal, zap.String("program", "refund")},
		{"step", map[string]any{"run_id": "run_7", "seq": 1, "output": map[string]any{}}, CodeInternal, zap.String("run_id", "run_7")},
		{"get_run", map[string]any{"run_id": "run_8"}, CodeInternal, zap.String("run_id", "run_8")},
		{"start_run", map[string]any{"program": "nope", "input": map[string]any{}}, CodeUnknownProgram, zap.Skip()},
	}
	for _, tc := range cases {
		t.Run(tc.tool+"/"+tc.code, func(t *testing.T) {
			logs.TakeAll()
			e := h.mustFail(ctx, tc.tool, tc.args, tc.code)
			if strings.Contains(e.Message, "connection refused") {
				t.Fatalf("the client is shown the failure: %q", e.Message)
			}
			failed := logs.FilterLevelExact(zapcore.ErrorLevel).AllUntimed()
			if tc.code != CodeInternal {
				if len(failed) != 0 {
					t.Fatalf("a domain error logged at error level: %v", failed)
				}
				return
			}
			if len(failed) != 1 {
				t.Fatalf("%d lines at error level, want 1: %v", len(failed), logs.AllUntimed())
			}
			fields := failed[0].ContextMap()
			if fields["tool"] != tc.tool || fields["principal"] != "alice" || fields[tc.label.Key] != tc.label.String {
				t.Fatalf("the line does not say which call failed: %v", fields)
			}
			if msg, _ := fields["error"].(string); !strings.Contains(msg, errDown.Error()) {
				t.Fatalf("the line does not carry the failure: %v", fields)
			}
		})
	}
}
