package analyzer

import (
	"cmp"
	"fmt"
	"strings"
)

// BaselineFormat is the format version of a saved Baseline.
const BaselineFormat = "nano-vm-baseline/1"

// Baseline is a snapshot of a window's transition distribution, saved so
// that later windows can measure their drift from it. It is plain JSON and
// round-trips through encoding/json unchanged; storing it is the caller's
// business.
type Baseline struct {
	Format         string `json:"format"`
	Program        string `json:"program"`
	DefinitionHash string `json:"definition_hash"`
	Runs           int    `json:"runs"`
	// Transitions counts the window's transitions per (from, to), sorted by
	// from and then to, each pair once, every count positive.
	Transitions []EdgeCount `json:"transitions"`
}

// EdgeCount counts the transitions from one state to another.
type EdgeCount struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Count int64  `json:"count"`
}

// Baseline returns the snapshot of the report's window.
func (r Report) Baseline() Baseline {
	b := Baseline{Format: BaselineFormat, Program: r.Program, DefinitionHash: r.DefinitionHash, Runs: r.Runs, Transitions: []EdgeCount{}}
	for _, s := range r.States {
		for _, n := range s.Next {
			b.Transitions = append(b.Transitions, EdgeCount{From: s.State, To: n.To, Count: n.Count})
		}
	}
	return b
}

// Validate reports the first problem of a baseline read back from
// storage: another format, a negative run count, an empty state name, a
// count that is not positive, or pairs out of order or repeated. Analyze
// accepts any baseline (it ignores counts ≤ 0 and adds up repeated
// pairs); Validate is for refusing a damaged file.
func (b *Baseline) Validate() error {
	if b.Format != BaselineFormat {
		return fmt.Errorf("analyzer: baseline: format %q, want %q", b.Format, BaselineFormat)
	}
	if b.Runs < 0 {
		return fmt.Errorf("analyzer: baseline: negative run count %d", b.Runs)
	}
	for i, e := range b.Transitions {
		if e.From == "" || e.To == "" {
			return fmt.Errorf("analyzer: baseline: transition %d: empty state name", i)
		}
		if e.Count <= 0 {
			return fmt.Errorf("analyzer: baseline: transition %d (%s → %s): count %d, want > 0", i, e.From, e.To, e.Count)
		}
		if i > 0 {
			p := b.Transitions[i-1]
			if cmp.Or(strings.Compare(p.From, e.From), strings.Compare(p.To, e.To)) >= 0 {
				return fmt.Errorf("analyzer: baseline: transition %d (%s → %s) is not after %s → %s", i, e.From, e.To, p.From, p.To)
			}
		}
	}
	return nil
}
