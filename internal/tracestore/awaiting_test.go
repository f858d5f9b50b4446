package tracestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The schema versions that added the run_subjects index and the inbox
// columns, and that gave every running run a due time: a store migrated
// from before each fills them in.
const (
	subjectsVersion    = 5
	awaitingVersion    = 6
	dueBackfillVersion = 8
)

// awaitingIDs lists the run ids of a page.
// pagesOf walks a keyset listing page by page from the first (cursor
// ""), and gives each page's run ids, pages apart by " | ".
func pagesOf(t *testing.T, list func(cursor string) ([]RunInfo, string, error)) string {
	t.Helper()
	var pages []string
	for cursor := ""; ; {
		got, next, err := list(cursor)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, awaitingIDs(got))
		if next == "" {
			return strings.Join(pages, " | ")
		}
		cursor = next
	}
}

func awaitingIDs(runs []RunInfo) string {
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.RunID
	}
	return strings.Join(ids, " ")
}

// The inbox listing on every backend: only runs whose row names an awaited
// role, by role or all, soonest deadline first and none last, without lab
// runs unless asked, past deadlines left out, paged by cursor; a run's later
// append that closes the approval takes it out.
func TestListAwaitingContract(t *testing.T) {
	ctx := context.Background()
	type row struct {
		id, role string
		deadline time.Duration // from t0; 0: none
		lab      bool
	}
	rows := []row{
		{"a", "officer", 2 * time.Hour, false},
		{"b", "officer", 0, false},
		{"c", "director", time.Hour, false},
		{"d", "officer", time.Hour, true},
		{"e", "", 0, false},
		{"f", "officer", 30 * time.Minute, false},
		{"g", "officer", 2 * time.Hour, false}, // same deadline as a: by id
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			for _, r := range rows {
				ri := info(1)
				ri.Lab, ri.AwaitingRole = r.lab, r.role
				if r.deadline > 0 {
					ri.AwaitingDeadline = t0.Add(r.deadline)
				}
				if err := s.Append(ctx, r.id, recs(0, 1), ri); err != nil {
					t.Fatal(err)
				}
			}
			// f's approval is decided: its next append awaits nothing.
			appendN(t, s, "f", 1, 1)

			for _, c := range []struct {
				name string
				f    AwaitingFilter
				want string
			}{
				{"one role", AwaitingFilter{Role: "officer"}, "a g b"},
				{"another role", AwaitingFilter{Role: "director"}, "c"},
				{"every role", AwaitingFilter{}, "c a g b"},
				{"with lab runs", AwaitingFilter{Role: "officer", Lab: true}, "d a g b"},
				{"deadlines after a time", AwaitingFilter{Lab: true, After: t0.Add(90 * time.Minute)}, "a g b"},
				{"a role nobody awaits", AwaitingFilter{Role: "auditor"}, ""},
			} {
				got, next, err := s.ListAwaiting(ctx, c.f)
				if err != nil || awaitingIDs(got) != c.want || next != "" {
					t.Errorf("%s: %q next %q, %v; want %q", c.name, awaitingIDs(got), next, err, c.want)
				}
			}

			if got := pagesOf(t, func(c string) ([]RunInfo, string, error) {
				return s.ListAwaiting(ctx, AwaitingFilter{Lab: true, Limit: 2, Cursor: c})
			}); got != "c d | a g | b" {
				t.Errorf("pages %q, want %q", got, "c d | a g | b")
			}

			got, _, err := s.ListAwaiting(ctx, AwaitingFilter{Role: "officer", Limit: 1})
			if err != nil || len(got) != 1 || got[0].AwaitingRole != "officer" || !got[0].AwaitingDeadline.Equal(t0.Add(2*time.Hour)) || got[0].Program != "p" {
				t.Errorf("first officer row %+v, %v", got, err)
			}
			if ri, err := s.Run(ctx, "b"); err != nil || ri.AwaitingRole != "officer" || !ri.AwaitingDeadline.IsZero() {
				t.Errorf("Run(b) = %+v, %v; want officer, no deadline", ri, err)
			}
			if ri, err := s.Run(ctx, "f"); err != nil || ri.AwaitingRole != "" || !ri.AwaitingDeadline.IsZero() {
				t.Errorf("Run(f) = %+v, %v; want awaiting nothing", ri, err)
			}
			// The same role's task issued again (a rollback into the state):
			// only the deadline changes, and the order follows it.
			again := info(2)
			again.AwaitingRole, again.AwaitingDeadline = "officer", t0.Add(10*time.Minute)
			if err := s.Append(ctx, "g", recs(1, 1), again); err != nil {
				t.Fatal(err)
			}
			if got, _, err := s.ListAwaiting(ctx, AwaitingFilter{Role: "officer"}); err != nil || awaitingIDs(got) != "g a b" {
				t.Errorf("after g's new deadline: %q, %v; want %q", awaitingIDs(got), err, "g a b")
			}
			if _, _, err := s.ListAwaiting(ctx, AwaitingFilter{Cursor: "nonsense"}); !errors.Is(err, ErrBadCursor) {
				t.Errorf("a bad cursor: %v, want ErrBadCursor", err)
			}
		})
	}
}

// The inbox query walks one of its partial indexes in order, whatever the
// filter: no scan of the runs table, no sort.
func TestSQLiteAwaitingWalksAnIndex(t *testing.T) {
	s := openTestSQLite(t, SQLiteOptions{})
	for _, f := range []AwaitingFilter{
		{}, {Role: "officer"}, {Lab: true}, {Role: "officer", After: t0}, {After: t0, Lab: true},
	} {
		for _, after := range []*RunInfo{nil, {RunID: "r"}} {
			q, args := awaitingQuery(f, after, 5, 100, func(n int) string { return fmt.Sprintf("?%d", n) })
			p := queryPlan(t, s, q, args)
			want := "runs_awaiting_by_deadline"
			if f.Role != "" {
				want = "runs_awaiting_by_role"
			}
			if !strings.Contains(p, want) || strings.Contains(p, "TEMP B-TREE") {
				t.Errorf("filter %+v, cursor %v: plan %q does not walk %s in order", f, after != nil, p, want)
			}
		}
	}
}
