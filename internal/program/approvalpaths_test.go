package program

import (
	"reflect"
	"testing"
)

// An approval state is closed when the elicitation channel is closed for
// it and no approver has its role; opening either path takes it out.
func TestClosedApprovalStatesNameOnlyStatesNobodyCanDecide(t *testing.T) {
	load := func(path string) *Program {
		t.Helper()
		p, err := LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	progs := []*Program{load("../runtime/testdata/four-eyes.yaml"), load("../tools/testdata/sign-off.yaml")}
	roles := func(rs ...string) func(string) bool {
		return func(r string) bool {
			for _, x := range rs {
				if x == r {
					return true
				}
			}
			return false
		}
	}
	for _, c := range []struct {
		name   string
		has    func(string) bool
		elicit bool
		want   []string
	}{
		{"no approver, channel closed", roles(), false, []string{"test-four-eyes/release (role officer)", "test-four-eyes/board (role director)"}},
		{"an approver of one role", roles("officer"), false, []string{"test-four-eyes/board (role director)"}},
		{"approvers of every role", roles("officer", "director"), false, nil},
		{"the elicitation channel open", roles(), true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ClosedApprovalStates(progs, c.has, c.elicit); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}
