package service

import (
	"context"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service/servicetest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Two instances share a store. A read through one shows the run as the
// store holds it, also after the other appended to a run the first had
// cached: a client that lost an answer from one instance and asks the
// other with get_run must not see the run from before its acknowledged
// step (and step again into a refusal, or poll a finished tool call).
func TestReadShowsWhatAnotherInstanceAppended(t *testing.T) {
	ctx := context.Background()
	store := tracestore.NewMemory()
	e := servicetest.NewEndpoint(t)
	src := toolProgram("refund", "")
	keks := keyring.MemoryKEKs()
	a := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), src, Options{Instance: "A", KEKs: keks})
	b := newToolService(t, store, servicetest.Registry(t, e, 1, "0s"), src, Options{Instance: "B", KEKs: keks})
	alice := Caller{ID: "alice"}
	started, err := a.svc.StartRun(ctx, StartOptions{Program: "refunds", Input: js(t, `{"order": "o-7"}`), Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		act   func() error
		state string
	}{
		{"the run another instance started", func() error { return nil }, "plan"},
		{"after another instance's step and tool call", func() error {
			_, err := a.svc.Submit(ctx, started.RunID, runtime.Submit{Seq: started.Seq, Principal: "alice", Output: js(t, `{"amount": 12}`)})
			return err
		}, "confirm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.act(); err != nil {
				t.Fatal(err)
			}
			r, _, err := b.svc.Read(ctx, started.RunID, alice)
			if err != nil {
				t.Fatal(err)
			}
			if r.State != c.state || r.Status != runtime.StatusRunning {
				t.Fatalf("the other instance reads the run in %s (%s), want %s", r.State, r.Status, c.state)
			}
		})
	}
}
