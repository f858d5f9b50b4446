package policy

import (
	"testing"

	"cel.dev/cel-go/cel"
)

const (
	simpleGuard = "output.approved && output.amount <= input.order_total"
	kycGuard    = "has(data.collect) && data.collect.verified && output.risk in ['low', 'medium'] && " +
		"output.amount <= input.order_total && data.collect.docs.exists(d, d == 'passport')"
)

func benchmarkGuard(b *testing.B, src string, costTracking bool) {
	env := mustEnv(b, fixtureDecls(), Options{})
	x := mustCompile(b, env, src, GuardKind)
	if !costTracking {
		// Same program without cel.CostLimit, to measure what tracking
		// costs.
		ast, iss := env.cel.Compile(src)
		if iss.Err() != nil {
			b.Fatal(iss.Err())
		}
		prg, err := env.cel.Program(ast, cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			b.Fatal(err)
		}
		x.prg = prg
	}
	vars := fixtureVars()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ok, _, err := x.EvalBool(vars)
		if err != nil || !ok {
			b.Fatalf("EvalBool = %v, %v", ok, err)
		}
	}
}

func BenchmarkEvalSimpleGuard(b *testing.B) { benchmarkGuard(b, simpleGuard, true) }
func BenchmarkEvalKYCGuard(b *testing.B)    { benchmarkGuard(b, kycGuard, true) }

func BenchmarkEvalSimpleGuardNoCostTracking(b *testing.B) { benchmarkGuard(b, simpleGuard, false) }
func BenchmarkEvalKYCGuardNoCostTracking(b *testing.B)    { benchmarkGuard(b, kycGuard, false) }

func BenchmarkCompileKYCGuard(b *testing.B) {
	env := mustEnv(b, fixtureDecls(), Options{})
	b.ReportAllocs()
	for b.Loop() {
		if _, probs := env.Compile(kycGuard, GuardKind); len(probs) > 0 {
			b.Fatal(probs)
		}
	}
}
