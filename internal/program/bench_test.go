package program

import (
	"os"
	"testing"
)

// BenchmarkLoadKYC parses, validates and compiles the KYC example: every
// schema, every guard and argument, the graph checks and the hash.
func BenchmarkLoadKYC(b *testing.B) {
	src, err := os.ReadFile("../../examples/kyc-onboarding.yaml") // not examples.Program: examples imports program
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Load("kyc-onboarding", src); err != nil {
			b.Fatal(err)
		}
	}
}
