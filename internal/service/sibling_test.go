package service

import (
	"context"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service/servicetest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// WithTools gives a service over the same store that runs tools through
// another registry: its runs call that registry's endpoint, never the
// first one's, and the first service reads them from the store; a program
// whose execution: runtime tool the other registry lacks is left out.
func TestWithToolsRunsToolsThroughItsOwnRegistry(t *testing.T) {
	for _, c := range []struct {
		name    string
		own     bool // the sibling's registry has the program's tool
		wantRun bool
	}{
		{"the sibling's registry has the tool", true, true},
		{"the sibling's registry lacks an execution: runtime tool", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			operatorSide, labSide := servicetest.NewEndpoint(t, servicetest.Reply{Status: 500, Body: `{}`}), servicetest.NewEndpoint(t)
			f := newToolService(t, tracestore.NewMemory(), servicetest.Registry(t, operatorSide, 1, "0s"), toolProgram("refund", ""), Options{})
			sib := f.svc.WithTools(nil, 0)
			if c.own {
				sib = f.svc.WithTools(servicetest.Registry(t, labSide, 1, "0s"), 0)
			}
			defer sib.Close()
			a, err := sib.StartRun(ctx, StartOptions{Program: "refunds", Input: js(t, `{"order": "o-7", "customer": "c-1"}`), Principal: "alice"})
			if !c.wantRun {
				if err == nil {
					t.Fatalf("started %s under a service without the program's runtime tool", a.RunID)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := sib.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Principal: "alice", Output: js(t, `{"amount": 12}`)})
			if err != nil || b.State != "confirm" {
				t.Fatalf("step: %+v, %v; want the confirm task", b, err)
			}
			if keys, _ := operatorSide.Calls(); len(keys) != 0 {
				t.Errorf("the first registry's endpoint got %d calls", len(keys))
			}
			if keys, _ := labSide.Calls(); len(keys) != 1 {
				t.Errorf("the sibling's endpoint got %d calls, want 1", len(keys))
			}
			if r, _, err := f.svc.Get(ctx, a.RunID); err != nil || r.State != "confirm" {
				t.Fatalf("the first service reads the run as %+v, %v", r, err)
			}
		})
	}
}
