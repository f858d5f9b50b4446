package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/service/servicetest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// gatedRuns holds the reads of runs named "burst-*" until gate closes, so
// that a burst of kicks needs a runner each.
type gatedRuns struct {
	tracestore.Store
	gate chan struct{}
}

func (s *gatedRuns) Run(ctx context.Context, id string) (tracestore.RunInfo, error) {
	if strings.HasPrefix(id, "burst-") {
		<-s.gate
	}
	return s.Store.Run(ctx, id)
}

// After a burst, a light steady load is served by the most recently idle
// runner, and the others reach their idle time and end, instead of taking
// turns and all living on.
func TestIdleRunnersEndUnderALightLoad(t *testing.T) {
	store := &gatedRuns{Store: tracestore.NewMemory(), gate: make(chan struct{})}
	f := newToolService(t, store, servicetest.Registry(t, servicetest.NewEndpoint(t), 1, "0s"), toolProgram("refund", "manual"), Options{})
	c := &f.svc.calls
	c.mu.Lock()
	c.idleFor = 200 * time.Millisecond
	c.mu.Unlock()
	runners := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.runners
	}
	const burst = 8
	for i := range burst {
		f.svc.kick(fmt.Sprintf("burst-%d", i))
	}
	if n := runners(); n != burst {
		t.Fatalf("%d runners for a burst of %d kicks", n, burst)
	}
	close(store.gate)
	f.idle()
	// One kick every 20 ms for a second: one runner serves it, and with
	// each of the 8 taking its turn none would idle for 200 ms.
	for i := range 50 {
		f.svc.kick(fmt.Sprintf("trickle-%d", i))
		time.Sleep(20 * time.Millisecond)
	}
	if n := runners(); n > 2 {
		t.Fatalf("%d runners alive after a second of a load one runner serves", n)
	}
}
