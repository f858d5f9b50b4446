package service

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// inboxLine is what a test compares of a decision.
func inboxLine(ds []AwaitedDecision) string {
	out := ""
	for _, d := range ds {
		out += fmt.Sprintf("%s %s %s %d/%d you=%v; ", d.RunID, d.State, d.Role, d.Given, d.Needed, d.ApprovedByYou)
	}
	return out
}

// The inbox lists each open approval task by role, soonest deadline first:
// a four-eyes release (two officers, one hour) and a board decision (three
// directors, no timeout). An officer's own approval is marked; a decided
// task leaves the inbox, and so does one whose deadline has passed.
func TestInboxListsOpenApprovalsByRoleAndDeadline(t *testing.T) {
	for name, open := range map[string]func() tracestore.Store{
		"memory": func() tracestore.Store { return tracestore.NewMemory() },
		"sqlite": func() tracestore.Store {
			s, err := tracestore.OpenSQLite(t.TempDir()+"/traces.db", tracestore.SQLiteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	} {
		t.Run(name, func(t *testing.T) { testInbox(t, open()) })
	}
}

func testInbox(t *testing.T, store tracestore.Store) {
	ctx := context.Background()
	p := fourEyes(t)
	now := t0
	n := 0
	svc := New(Options{Store: store, Clock: func() time.Time { return now }, NewID: func() string { n++; return fmt.Sprintf("run-%d", n) }})
	if err := svc.AddProgram(ctx, p, readTestdata(t, "../runtime/testdata/four-eyes.yaml")); err != nil {
		t.Fatal(err)
	}
	small1, _ := svc.Start(ctx, p.Name, js(t, smallPayment), "ops")
	if _, err := svc.Start(ctx, p.Name, js(t, largePayment), "ops"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	small2, _ := svc.Start(ctx, p.Name, js(t, smallPayment), "ops")
	if _, err := svc.Decide(ctx, small2.RunID, runtime.Decide{Seq: small2.Seq, Role: "officer", Principal: "alice", Decision: js(t, `{"release": true}`)}); err != nil {
		t.Fatal(err)
	}

	list := func(q InboxQuery) string {
		t.Helper()
		got, next, err := svc.Inbox(ctx, q)
		if err != nil || next != "" {
			t.Fatalf("Inbox(%+v): next %q, %v", q, next, err)
		}
		return inboxLine(got)
	}
	for _, c := range []struct {
		q    InboxQuery
		want string
	}{
		{InboxQuery{Role: "officer", Approver: "alice"}, "run-1 release officer 0/2 you=false; run-3 release officer 1/2 you=true; "},
		{InboxQuery{Role: "officer", Approver: "bob"}, "run-1 release officer 0/2 you=false; run-3 release officer 1/2 you=false; "},
		{InboxQuery{Role: "director"}, "run-2 board director 0/3 you=false; "},
		{InboxQuery{}, "run-1 release officer 0/2 you=false; run-3 release officer 1/2 you=false; run-2 board director 0/3 you=false; "},
	} {
		if got := list(c.q); got != c.want {
			t.Errorf("Inbox(%+v) =\n%s\nwant\n%s", c.q, got, c.want)
		}
	}
	got, _, _ := svc.Inbox(ctx, InboxQuery{Role: "officer"})
	if d := got[0]; d.Seq != small1.Seq || !d.Since.Equal(t0) || !d.Deadline.Equal(t0.Add(time.Hour)) || d.Program != p.Name || d.Remaining() != 2 {
		t.Errorf("first officer decision %+v", d)
	}

	// Bob's approval decides run-3; then run-1's hour passes.
	if _, err := svc.Decide(ctx, small2.RunID, runtime.Decide{Seq: small2.Seq, Role: "officer", Principal: "bob", Decision: js(t, `{"release": true}`)}); err != nil {
		t.Fatal(err)
	}
	if got := list(InboxQuery{Role: "officer"}); got != "run-1 release officer 0/2 you=false; " {
		t.Errorf("after run-3's decision: %s", got)
	}
	now = t0.Add(time.Hour)
	if got := list(InboxQuery{}); got != "run-2 board director 0/3 you=false; " {
		t.Errorf("after run-1's deadline: %s", got)
	}
	if _, _, err := svc.Inbox(ctx, InboxQuery{Cursor: "x"}); err == nil {
		t.Error("a bad cursor was accepted")
	}
}
