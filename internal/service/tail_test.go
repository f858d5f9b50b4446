package service

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service/servicetest"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// The answer after a chain of runtime tool calls, and the progress
// reported while it ran, are built from the events this process appended
// (the run's tail), reading nothing back; they are the same, byte for
// byte, as those built from the events read back from the store and
// opened, and the same as another instance gives, which has no tail and
// reads the store.
func TestAnAnswerFromTheTailEqualsOneReadBack(t *testing.T) {
	ctx := context.Background()
	fail := servicetest.Reply{Status: 500, Body: `{"error": "down"}`}
	for _, c := range []struct {
		name     string
		script   []servicetest.Reply
		attempts int
		onError  string
		state    string
	}{
		{"a result with sealed personal data", nil, 1, "", "confirm"},
		{"failed twice, then on_error", []servicetest.Reply{fail, fail}, 2, "manual", "manual"},
		{"failed twice without on_error: the run fails", []servicetest.Reply{fail, fail}, 2, "", "refund"},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := &recordsRead{Store: tracestore.NewMemory()}
			reg := servicetest.Registry(t, servicetest.NewEndpoint(t, c.script...), c.attempts, "0s")
			f := newToolService(t, store, reg, toolProgram("refund", c.onError), Options{})
			a, err := f.svc.StartRun(ctx, StartOptions{Program: "refunds", Input: js(t, `{"order": "o-7", "customer": "c-1"}`), Principal: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			// Submit, in its two halves: the input's answer, then the wait.
			out := js(t, `{"amount": 12}`)
			before, err := f.svc.apply(ctx, a.RunID, runtime.Submit{Seq: a.Seq, Principal: "alice", Output: out, At: f.clock.Now(), Size: jsonSize(out)})
			if err != nil || before.WaitingFor != waitingTool {
				t.Fatalf("the step's answer %+v, %v; want it waiting for the tool", before, err)
			}
			var reported []Progress
			store.take()
			fromTail, err := f.svc.settle(WithProgress(ctx, func(p Progress) { reported = append(reported, p) }), before, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n := store.take(); n != 0 {
				t.Errorf("the answer read %d records back, want none", n)
			}
			if fromTail.State != c.state || fromTail.WaitingFor != "" {
				t.Fatalf("answer %+v, want it settled in %s", fromTail, c.state)
			}

			r, p, err := f.svc.Get(ctx, a.RunID)
			if err != nil {
				t.Fatal(err)
			}
			later, err := f.svc.storedEvents(ctx, a.RunID, before.next, r.NextIndex)
			if err != nil {
				t.Fatal(err)
			}
			if n, want := store.take(), int(r.NextIndex-before.next); n != want {
				t.Errorf("reading back read %d records, want the chain's %d", n, want)
			}
			readBack := continued(before, r, later)
			sameAnswer(t, "read back", fromTail, readBack)
			all, err := f.svc.storedEvents(ctx, a.RunID, before.from, r.NextIndex)
			if err != nil {
				t.Fatal(err)
			}
			if want := progressOf(p, all); len(want) == 0 || !reflect.DeepEqual(reported, want) {
				t.Errorf("progress reported\n%+v\nread back\n%+v", reported, want)
			}

			other := newToolService(t, store, reg, toolProgram("refund", c.onError), Options{Instance: "other"})
			elsewhere, err := other.svc.Continue(ctx, before)
			if err != nil {
				t.Fatal(err)
			}
			if store.take() == 0 {
				t.Error("another instance answered without reading the store")
			}
			sameAnswer(t, "another instance's", fromTail, elsewhere)
		})
	}
}

func sameAnswer(t *testing.T, what string, want, got Answer) {
	t.Helper()
	wj, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	gj, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(gj) != string(wj) || got.next != want.next || got.from != want.from {
		t.Errorf("%s answer\n%s (next %d, from %d)\nfrom the tail\n%s (next %d, from %d)", what, gj, got.next, got.from, wj, want.next, want.from)
	}
}

// A run's tail follows one chain of runtime tool calls, event by event,
// and serves a span only when it holds all of it.
func TestTheTailServesOnlyTheSpansItHolds(t *testing.T) {
	run := func(executes bool) *runtime.Run {
		r := &runtime.Run{Status: runtime.StatusRunning}
		if executes {
			r.Call = &runtime.OpenCall{CallID: "c"}
		}
		return r
	}
	evs := func(from, to uint64) []runtime.Event {
		var out []runtime.Event
		for i := from; i < to; i++ {
			out = append(out, runtime.Event{Index: i})
		}
		return out
	}
	for _, c := range []struct {
		name          string
		tail          []runtime.Event
		before, after *runtime.Run
		events        []runtime.Event
		from, to      uint64
		holds         bool
	}{
		{"the input that starts a chain begins it", evs(0, 3), run(false), run(true), evs(3, 5), 3, 5, true},
		{"nor does it keep what came before", evs(0, 3), run(false), run(true), evs(3, 5), 2, 5, false},
		{"the runner's append extends it", evs(3, 5), run(true), run(false), evs(5, 8), 3, 8, true},
		{"a span past its end is not served", evs(3, 5), run(true), run(true), evs(5, 8), 5, 9, false},
		{"a gap begins it anew", evs(3, 5), run(true), run(true), evs(7, 9), 7, 9, true},
		{"after a gap, nothing before it", evs(3, 5), run(true), run(true), evs(7, 9), 4, 9, false},
		{"after a load (no tail), what follows", nil, run(true), run(false), evs(7, 9), 7, 9, true},
		{"after a load, nothing before", nil, run(true), run(false), evs(7, 9), 6, 9, false},
		{"an append outside a chain keeps none", evs(3, 5), run(false), run(false), evs(5, 7), 5, 7, false},
		{"past tailMax, the latest half", evs(0, tailMax), run(true), run(true), evs(tailMax, tailMax+1), tailMax / 2, tailMax + 1, false},
		{"past tailMax, the latest half is served", evs(0, tailMax), run(true), run(true), evs(tailMax, tailMax+1), tailMax/2 + 1, tailMax + 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tail := grown(c.tail, c.before, c.after, c.events)
			got, ok := span(tail, c.from, c.to)
			if ok != c.holds {
				t.Fatalf("span [%d, %d) of a tail of %d events: held %v, want %v", c.from, c.to, len(tail), ok, c.holds)
			}
			if ok && (uint64(len(got)) != c.to-c.from || got[0].Index != c.from || cap(got) != len(got)) {
				t.Fatalf("span [%d, %d): %d events from %d (cap %d), want them all, clipped", c.from, c.to, len(got), got[0].Index, cap(got))
			}
		})
	}
}

// The tail keeps only what its readers read: no tool result or
// arguments, no task view, no submitted output stays in memory with a
// cached run, however large.
func TestTheTailKeepsNoPayload(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	events := []runtime.Event{
		{RunID: "r", Index: 3, Type: runtime.EventToolCallCompleted, State: "fetch", Seq: 2,
			Call: &runtime.ToolCallRecord{CallID: "c", Tool: "t", Attempt: 2, Class: "x", Arguments: map[string]any{"a": big}, Result: big, Detail: big}},
		{RunID: "r", Index: 4, Type: runtime.EventTransitioned, State: "fetch", Transition: &runtime.TransitionRecord{From: "fetch", To: "next"}},
		{RunID: "r", Index: 5, Type: runtime.EventTaskIssued, State: "next", Task: &projection.Task{Kind: "llm"}, Submission: &runtime.Submission{}},
	}
	tail := grown(nil, &runtime.Run{Status: runtime.StatusRunning}, &runtime.Run{Status: runtime.StatusRunning, Call: &runtime.OpenCall{CallID: "c"}}, events)
	want := []runtime.Event{
		{RunID: "r", Index: 3, Type: runtime.EventToolCallCompleted, State: "fetch", Seq: 2, Call: &runtime.ToolCallRecord{CallID: "c", Attempt: 2, Class: "x"}},
		{RunID: "r", Index: 4, Type: runtime.EventTransitioned, State: "fetch", Transition: &runtime.TransitionRecord{From: "fetch", To: "next"}},
		{RunID: "r", Index: 5, Type: runtime.EventTaskIssued, State: "next"},
	}
	if !reflect.DeepEqual(tail, want) {
		t.Fatalf("tail\n%+v\nwant\n%+v", tail, want)
	}
}
