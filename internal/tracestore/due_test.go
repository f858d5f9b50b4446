package tracestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The sweeper's listing on every backend: only runs whose row holds a
// deadline at or before the time asked, soonest first then by id, paged by
// cursor; a later append that closes the task (or moves its deadline)
// takes the run out.
func TestListDueContract(t *testing.T) {
	ctx := context.Background()
	rows := []struct {
		id       string
		deadline time.Duration // from t0; 0: none
	}{
		{"a", 2 * time.Hour}, {"b", 0}, {"c", time.Hour}, {"d", 3 * time.Hour},
		{"e", time.Hour}, {"f", 30 * time.Minute},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			for _, r := range rows {
				ri := info(1)
				if r.deadline > 0 {
					ri.Deadline = t0.Add(r.deadline)
				}
				if err := s.Append(ctx, r.id, recs(0, 1), ri); err != nil {
					t.Fatal(err)
				}
			}
			// f's task is answered: its next append has no deadline.
			appendN(t, s, "f", 1, 1)

			for _, c := range []struct {
				name string
				by   time.Duration
				want string
			}{
				{"nothing due yet", 10 * time.Minute, ""},
				{"exactly at a deadline", time.Hour, "c e"},
				{"several deadlines", 2*time.Hour + time.Minute, "c e a"},
				{"every deadline", 24 * time.Hour, "c e a d"},
			} {
				got, next, err := s.ListDue(ctx, DueFilter{By: t0.Add(c.by)})
				if err != nil || awaitingIDs(got) != c.want || next != "" {
					t.Errorf("%s: %q next %q, %v; want %q", c.name, awaitingIDs(got), next, err, c.want)
				}
			}

			if got := pagesOf(t, func(c string) ([]RunInfo, string, error) {
				return s.ListDue(ctx, DueFilter{By: t0.Add(24 * time.Hour), Limit: 3, Cursor: c})
			}); got != "c e a | d" {
				t.Errorf("pages %q, want %q", got, "c e a | d")
			}
			if ri, err := s.Run(ctx, "c"); err != nil || !ri.Deadline.Equal(t0.Add(time.Hour)) {
				t.Errorf("Run(c) = %+v, %v; want its deadline", ri, err)
			}
			// c's task times out and the next one's deadline is later.
			later := info(2)
			later.Deadline = t0.Add(5 * time.Hour)
			if err := s.Append(ctx, "c", recs(1, 1), later); err != nil {
				t.Fatal(err)
			}
			if got, _, err := s.ListDue(ctx, DueFilter{By: t0.Add(4 * time.Hour)}); err != nil || awaitingIDs(got) != "e a d" {
				t.Errorf("after c's new deadline: %q, %v; want %q", awaitingIDs(got), err, "e a d")
			}
			if _, _, err := s.ListDue(ctx, DueFilter{By: t0, Cursor: "nonsense"}); !errors.Is(err, ErrBadCursor) {
				t.Errorf("a bad cursor: %v, want ErrBadCursor", err)
			}
		})
	}
}

// The sweeper's query walks its partial index in order: no scan of the
// runs table, no sort.
func TestSQLiteDueWalksAnIndex(t *testing.T) {
	s := openTestSQLite(t, SQLiteOptions{})
	for _, after := range []string{"", "r"} {
		q, args := dueQuery(DueFilter{By: t0}, 5, after, 100, func(n int) string { return fmt.Sprintf("?%d", n) })
		p := queryPlan(t, s, q, args)
		if !strings.Contains(p, "runs_due") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("cursor %q: plan %q does not walk runs_due in order", after, p)
		}
	}
}
