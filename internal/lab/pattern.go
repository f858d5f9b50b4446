package lab

import (
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// Strings for the pattern keyword, generated from the regular expression
// itself rather than guessed: the validator still has the last word.

// maxPatternStrings bounds what one pattern yields.
const maxPatternStrings = 16

// fromPattern returns strings the regular expression matches, shortest
// repetitions first, with more repetitions tried when minLen asks for
// longer ones. Go's RE2 syntax, as the validator's.
func fromPattern(pattern string, minLen int) []string {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	re = re.Simplify()
	var out []string
	seen := map[string]bool{}
	for _, extra := range []int{0, 1, 2, 4, 8, 16, 32, 64, 128, 256} {
		for _, s := range expand(re, extra) {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		if len(out) > 0 && longest(out) >= minLen {
			break
		}
	}
	if len(out) > maxPatternStrings {
		out = out[:maxPatternStrings]
	}
	return out
}

func longest(ss []string) int {
	n := 0
	for _, s := range ss {
		n = max(n, utf8.RuneCountInString(s))
	}
	return n
}

// expand lists strings re matches; unbounded repetitions repeat their
// minimum plus extra times.
func expand(re *syntax.Regexp, extra int) []string {
	switch re.Op {
	case syntax.OpLiteral:
		return []string{string(re.Rune)}
	case syntax.OpCharClass:
		return classSamples(re.Rune)
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return []string{"a"}
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return []string{""}
	case syntax.OpCapture:
		return expand(re.Sub[0], extra)
	case syntax.OpStar:
		return repeat(re.Sub[0], extra)
	case syntax.OpPlus:
		return repeat(re.Sub[0], 1+extra)
	case syntax.OpQuest:
		return append(repeat(re.Sub[0], 0), repeat(re.Sub[0], 1)...)
	case syntax.OpRepeat:
		n := re.Min
		if re.Max == -1 {
			n += extra
		} else {
			n = min(re.Min+extra, re.Max)
		}
		return repeat(re.Sub[0], n)
	case syntax.OpConcat:
		// The first sample of each part, then one part varied at a time.
		parts := make([][]string, len(re.Sub))
		for i, s := range re.Sub {
			if parts[i] = expand(s, extra); len(parts[i]) == 0 {
				return nil
			}
		}
		var out []string
		for i := range parts {
			for j, alt := range parts[i] {
				if j == 0 && i > 0 {
					continue
				}
				var b strings.Builder
				for k := range parts {
					if k == i {
						b.WriteString(alt)
					} else {
						b.WriteString(parts[k][0])
					}
				}
				out = append(out, b.String())
				if len(out) >= maxPatternStrings {
					return out
				}
			}
		}
		return out
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			out = append(out, expand(s, extra)...)
		}
		return out
	}
	return nil
}

// repeat is sub repeated n times, once with each of its samples.
func repeat(sub *syntax.Regexp, n int) []string {
	samples := expand(sub, 0)
	if len(samples) == 0 {
		if n == 0 {
			return []string{""}
		}
		return nil
	}
	var out []string
	for _, s := range samples {
		out = append(out, strings.Repeat(s, n))
		if len(out) >= 4 {
			break
		}
	}
	return out
}

// classSamples picks readable runes of a character class (pairs of
// ranges): a letter or digit where the class has one, else its first
// printable rune.
func classSamples(ranges []rune) []string {
	in := func(r rune) bool {
		for i := 0; i+1 < len(ranges); i += 2 {
			if ranges[i] <= r && r <= ranges[i+1] {
				return true
			}
		}
		return false
	}
	var out []string
	for _, r := range "aA0zZ9-_ .:/@" {
		if in(r) {
			out = append(out, string(r))
			if len(out) == 2 {
				return out
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	for i := 0; i+1 < len(ranges); i += 2 {
		for r := max(ranges[i], 0x21); r <= ranges[i+1] && r < 0x110000; r++ {
			if utf8.ValidRune(r) {
				return []string{string(r)}
			}
		}
	}
	return nil
}
