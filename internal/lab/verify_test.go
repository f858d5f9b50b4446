package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// forgingStore rewrites a run's history once the run has been attacked:
// from its first fault_injected append on, Load returns forge of what is
// stored. The index row stays as the appends left it.
type forgingStore struct {
	tracestore.Store
	forge func(t *testing.T, recs []tracestore.Record) []tracestore.Record
	t     *testing.T

	mu       sync.Mutex
	attacked map[string]bool
}

func (s *forgingStore) Append(ctx context.Context, runID string, recs []tracestore.Record, info tracestore.RunInfo) error {
	if err := s.Store.Append(ctx, runID, recs, info); err != nil {
		return err
	}
	for _, r := range recs {
		if r.Type == string(runtime.EventFaultInjected) {
			s.mu.Lock()
			s.attacked[runID] = true
			s.mu.Unlock()
		}
	}
	return nil
}

func (s *forgingStore) Load(ctx context.Context, runID string) ([]tracestore.Record, error) {
	recs, err := s.Store.Load(ctx, runID)
	s.mu.Lock()
	attacked := s.attacked[runID]
	s.mu.Unlock()
	if err != nil || !attacked {
		return recs, err
	}
	out := make([]tracestore.Record, len(recs))
	for i, r := range recs {
		out[i] = tracestore.Record{Index: r.Index, Type: r.Type, Body: bytes.Clone(r.Body), Hash: bytes.Clone(r.Hash)}
	}
	return s.forge(s.t, out), nil
}

// redate rewrites event 1's time in place.
func redate(t *testing.T, recs []tracestore.Record) {
	v, err := jsonvalue.Decode(recs[1].Body)
	if err != nil {
		t.Fatal(err)
	}
	v.(map[string]any)["at"] = "1999-12-31T23:59:59Z"
	if recs[1].Body, err = jsonvalue.Canonical(v); err != nil {
		t.Fatal(err)
	}
}

// TestVerificationCatchesAForgingStore runs sub-attacks over stores that
// rewrite history behind the runtime's back: the attacks themselves meet
// their outcomes, but the verification columns see the forgery, and the
// rows fail.
func TestVerificationCatchesAForgingStore(t *testing.T) {
	for _, tc := range []struct {
		name              string
		forge             func(t *testing.T, recs []tracestore.Record) []tracestore.Record
		trace, receipt    bool
		traceWant, rcWant string // a problem each must name
	}{
		{
			name: "one event rewritten",
			forge: func(t *testing.T, recs []tracestore.Record) []tracestore.Record {
				redate(t, recs)
				return recs
			},
			traceWant: "trace: event 1: stored hash", rcWant: "receipt: the receipt signed before the attack no longer verifies",
		},
		{
			name: "rewritten and re-chained, as a forger would",
			forge: func(t *testing.T, recs []tracestore.Record) []tracestore.Record {
				redate(t, recs)
				recs[1].Hash = trace.LeafHash(recs[1].Body)
				for i := 2; i < len(recs); i++ {
					v, _ := jsonvalue.Decode(recs[i].Body)
					v.(map[string]any)["prev"] = trace.Hex(recs[i-1].Hash)
					recs[i].Body, _ = jsonvalue.Canonical(v)
					recs[i].Hash = trace.LeafHash(recs[i].Body)
				}
				return recs
			},
			traceWant: "trace: Merkle root: the store committed to", rcWant: "receipt field tree",
		},
		{
			// The receipt of what is left verifies; the store's own
			// commitment says an event is missing.
			name: "the last event withheld",
			forge: func(_ *testing.T, recs []tracestore.Record) []tracestore.Record {
				return recs[:len(recs)-1]
			},
			receipt: true, traceWant: "trace: the store committed to",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store := &forgingStore{Store: tracestore.NewMemory(), forge: tc.forge, t: t, attacked: map[string]bool{}}
			n := 0
			svc := service.New(service.Options{Store: store, Clock: func() time.Time { return t0 },
				NewID: func() string { n++; return fmt.Sprintf("run-%d", n) }})
			p, src := examples.MustLoad("refund")
			if err := svc.AddProgram(ctx, p, src); err != nil {
				t.Fatal(err)
			}
			env := Env{Service: svc, Store: store, Signer: ed25519.NewKeyFromSeed(make([]byte, 32)), Principal: "lab"}
			results, err := Matrix(ctx, env, MatrixOptions{Program: "refund", Faults: []string{SkipStep, ReorderSteps}})
			if err != nil {
				t.Fatal(err)
			}
			applicable := 0
			for _, r := range results {
				if !r.Applicable {
					continue
				}
				applicable++
				key := r.Fault + "/" + r.SubAttack
				if r.Observed != r.Expected || !r.Failed() || r.Verified() {
					t.Errorf("%s: want the expected outcome and a failed row, got %+v", key, r)
				}
				if r.TraceVerified == nil || *r.TraceVerified != tc.trace || r.ReceiptVerified == nil || *r.ReceiptVerified != tc.receipt {
					t.Errorf("%s: trace %v receipt %v, want %v %v: %v", key, r.TraceVerified, r.ReceiptVerified, tc.trace, tc.receipt, r.Verification)
				}
				all := strings.Join(r.Verification, "\n")
				for _, want := range []string{tc.traceWant, tc.rcWant} {
					if want != "" && !strings.Contains(all, want) {
						t.Errorf("%s: the problems do not name %q:\n%s", key, want, all)
					}
				}
			}
			if applicable < 4 {
				t.Fatalf("%d applicable sub-attacks", applicable)
			}
		})
	}
}
