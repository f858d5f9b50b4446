package access

import (
	"context"
	"testing"
)

func TestPrincipalRoundTripsThroughContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("an empty context carries a principal")
	}
	want := Principal{ID: "alice", Profile: ProfileApprover, ApproverRole: "compliance_officer"}
	got, ok := FromContext(WithPrincipal(context.Background(), want))
	if !ok || got != want {
		t.Fatalf("FromContext = %+v, %v; want %+v, true", got, ok, want)
	}
}

func TestParseProfileAcceptsOnlyKnownProfiles(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Profile
		wantErr bool
	}{
		{"agent", ProfileAgent, false},
		{"operator", ProfileOperator, false},
		{"Operator", "", true},
		{"", "", true},
		{"root", "", true},
	} {
		got, err := ParseProfile(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseProfile(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
