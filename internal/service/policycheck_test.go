package service

import (
	"context"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

// TestPolicyCheckOnASealedTrace checks the KYC run from its stored records
// without any key: the sealed values stay sealed.
func TestPolicyCheckOnASealedTrace(t *testing.T) {
	ctx := context.Background()
	_, store, id := kycService(t, 1)
	recs, _ := store.Load(ctx, id)
	events, err := DecodeEvents(recs) // not opened: no keys
	if err != nil {
		t.Fatal(err)
	}
	p := exampleProgram(t, "kyc-onboarding")
	if d, err := runtime.CheckPolicy(p, events); err != nil || d != nil {
		t.Fatalf("untouched trace: %+v %v", d, err)
	}
	tests := []struct {
		name   string
		tamper func([]runtime.Event) bool
		field  string
	}{
		{"a guard result flipped", func(es []runtime.Event) bool {
			for i := range es {
				if es[i].Type == runtime.EventGuardEvaluated {
					g := *es[i].Guard
					g.Result = !g.Result
					es[i].Guard = &g
					return true
				}
			}
			return false
		}, "guard.result"},
		{"a transition to another state", func(es []runtime.Event) bool {
			for i := range es {
				if es[i].Type == runtime.EventTransitioned && es[i].Transition.Cause == "guard" {
					tr := *es[i].Transition
					tr.Transition = 0
					tr.To = p.States[tr.From].Transitions[0].To.Name
					if tr.To == es[i].Transition.To {
						continue
					}
					es[i].Transition = &tr
					return true
				}
			}
			return false
		}, "transition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, _ := DecodeEvents(recs)
			if !tt.tamper(es) {
				t.Fatal("nothing to tamper with")
			}
			d, err := runtime.CheckPolicy(p, es)
			if err != nil || d == nil || d.Field != tt.field {
				t.Fatalf("divergence %+v (error %v), want field %s", d, err, tt.field)
			}
		})
	}
}
