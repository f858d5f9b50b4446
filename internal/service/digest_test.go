package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

func TestPersonalDigestIsSealedAndErased(t *testing.T) {
	ctx := context.Background()
	svc, store, _ := kycService(t, 1)
	a, err := svc.Start(ctx, "kyc-onboarding", exampleJSON(t, "kyc-onboarding.input.json"), "t")
	if err != nil {
		t.Fatal(err)
	}
	const name = "Johanna Maria Lindqvist"
	out := js(t, `{"full_name": "`+name+`", "occupation": "engineer"}`)
	if _, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq + 1, Output: out}); code(err) != runtime.CodeStaleSeq {
		t.Fatalf("got %v", err)
	}
	recs, err := store.Load(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	stored := string(recs[len(recs)-1].Body)
	canon, _ := jsonvalue.Canonical(out)
	sum := sha256.Sum256(canon)
	if strings.Contains(stored, "Lindqvist") || strings.Contains(stored, hex.EncodeToString(sum[:])) || !strings.Contains(stored, `"personal":true`) {
		t.Fatalf("the stored digest shows personal data or its bare hash: %s", stored)
	}
	events, err := svc.Events(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	dg := events[len(events)-1].Rejection.Digest
	if dg.SHA256 != hex.EncodeToString(sum[:]) || !strings.Contains(dg.Prefix, name) {
		t.Fatalf("opened digest %+v", dg)
	}
	p := exampleProgram(t, "kyc-onboarding")
	if d, err := runtime.Replay(p, events); err != nil || d != nil {
		t.Fatalf("replay: %+v %v", d, err)
	}
	if _, err := svc.EraseSubject(ctx, EraseOptions{SubjectID: "CUS-88213", Reason: "test", Principal: "dpo"}); err != nil {
		t.Fatal(err)
	}
	erasedEverywhere(t, svc, a.RunID, "Lindqvist")
	events, _ = svc.Events(ctx, a.RunID)
	if d, err := runtime.Replay(p, events); err != nil || d != nil {
		t.Fatalf("replay after erasure: %+v %v", d, err)
	}
}

// Past the cap, neither the trace nor the log above debug grows with the
// refusals: a refusal the trace does not record logs at debug only.
func TestThrottledRefusalsLogOnlyAtDebug(t *testing.T) {
	ctx := context.Background()
	svc, p, _ := newTestService(t, tracestore.NewMemory())
	core, logs := observer.New(zapcore.DebugLevel)
	svc.log = zap.New(core)
	a, err := svc.Start(ctx, p.Name, js(t, `{"limit": 5}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	limit := p.Limits.MaxUncountedRejections
	for i := range limit + 10 {
		_, err := svc.Submit(ctx, a.RunID, runtime.Submit{Seq: a.Seq + 1, Output: js(t, `{"score": 1}`)})
		want := runtime.CodeStaleSeq
		if i >= limit {
			want = runtime.CodeThrottled
		}
		if code(err) != want {
			t.Fatalf("call %d: %v, want %s", i, err, want)
		}
	}
	info := logs.FilterMessage("input rejected").FilterLevelExact(zapcore.InfoLevel).Len()
	debug := logs.FilterMessage("input rejected").FilterLevelExact(zapcore.DebugLevel).Len()
	if info != limit+1 || debug != 9 {
		t.Fatalf("%d info and %d debug lines, want %d and 9", info, debug, limit+1)
	}
	events, err := svc.Events(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if last := events[len(events)-1].Rejection; last == nil || last.Code != runtime.CodeThrottled || last.Uncounted != limit+1 {
		t.Fatalf("last event %+v, want the one throttled record", events[len(events)-1])
	}
}
