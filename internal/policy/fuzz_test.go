package policy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzCompile(f *testing.F) {
	for _, seed := range []string{
		"input.k == 0",
		"output.approved && output.amount <= input.order_total",
		kycGuard,
		"a || b && c",
		"!(input.k == 0) ? output.approved : !output.approved",
		"'vip' in input.tags && input.k in [0, 1, 2]",
		"has(input.customer.age) && input.customer.age > 18",
		"input.customer.age > 18",
		"has(data.review) && data.review.approved",
		"!has(data.review) || data.review.approved",
		"input.customers.exists(c, c.id == '1') && input.tags.all(t, size(t) < 10)",
		"input.tags.exists_one(t, t.startsWith('v') || t.endsWith('p') || t.contains('i'))",
		"input.name.matches('^[a-z]+$')",
		"int(output.amount) + 1 > input.k * 2 - 3 && double(input.k) < 1.5 && string(input.k) == '0'",
		"input.meta.n + 1 == 4 && input.meta.flag == true",
		"input.profile['city'] == 'Paris' && 'city' in input.profile",
		"input.tags[0] == 'a' && input.tags[9] == 'x'",
		"input.items.exists(i, i == 'x')",
		"timestamp('2020-01-01T00:00:00Z') < timestamp('2021-01-01T00:00:00Z')",
		"dyn(input.k) == 'x'",
		"input.k / 0 == 1 || input.k % 0 == 1",
		"input.name + 'x' == 'annx'",
		"input.tags.map(t, t).size() > 0",
		"input.k == 1 @ 2",
		"__import__('os')",
		"$a === 1",
		"input.customer.name == 'Bob'",
		"{'a': [input.k, null, 1.5, true]}",
		"int('9223372036854775807') + 1 > 0",
		"-9223372036854775808 - 1 < 0",
		"output.amount * 1e308 * 10.0 > 0.0",
		"[1, 2, 3].exists(x, [4, 5].all(y, x != y))",
		"input.k == 0 &&\n\toutput.risk == 'low'",
		"\xff\xfe",
		"",
	} {
		f.Add(seed)
	}
	envs := testEnvs(f)
	vars := fixtureVars()
	empty := Vars{}
	f.Fuzz(func(t *testing.T, src string) {
		for _, name := range []string{"state", "decision"} {
			env := envs[name]
			for _, k := range []Kind{GuardKind, ValueKind} {
				x, probs := env.Compile(src, k)
				if x == nil {
					if len(probs) == 0 {
						t.Fatalf("Compile(%q) failed without problems", src)
					}
					checkPositions(t, src, probs)
					continue
				}
				if len(probs) > 0 {
					t.Fatalf("Compile(%q) returned an expression and problems %v", src, probs)
				}
				if x.Cost > env.Options().CostLimit {
					t.Fatalf("Compile(%q) admitted cost %d", src, x.Cost)
				}
				for _, v := range []Vars{vars, empty} {
					if k == GuardKind {
						_, res, err := x.EvalBool(v)
						if err == nil && res.Cost > env.Options().CostLimit {
							t.Fatalf("EvalBool(%q) cost %d over the limit", src, res.Cost)
						}
					} else {
						_, _ = x.Eval(v)
					}
				}
			}
		}
	})
}

// checkPositions requires every position to lie within the source (or just
// past its end, where a parser reports unexpected end of input).
func checkPositions(t *testing.T, src string, probs []Problem) {
	t.Helper()
	lines := strings.Split(src, "\n")
	for _, p := range probs {
		if p.Line == 0 && p.Column == 0 {
			continue
		}
		if p.Line < 1 || p.Line > len(lines) || p.Column < 1 {
			t.Fatalf("Compile(%q): problem %v outside the source", src, p)
		}
		if utf8.ValidString(src) && p.Column > utf8.RuneCountInString(lines[p.Line-1])+1 {
			t.Fatalf("Compile(%q): problem %v past the end of line %q", src, p, lines[p.Line-1])
		}
	}
}
