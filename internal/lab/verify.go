package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"

	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// After every attack the laboratory checks the run's stored trace the way
// an auditor would, with the same code export and verify use: it never
// trusts that an attack left the store alone. Two checks, each able to
// fail on its own:
//
//   - trace verified: the stored trace holds together (indexes, the hash
//     chain, the stored leaf hashes: receipt.Derive), its Merkle root and
//     head are the ones the store's index row committed to at the last
//     append, and its first events are still the ones the run had before
//     the attack (the root of that prefix is the root recorded then): the
//     attack could only append.
//   - receipt verified: the receipt signed over the trace before the
//     attack still verifies against the stored trace (receipt.Check, with
//     later events continuing the chain), and a receipt derived and signed
//     after the attack, exported and parsed back as `export` and `verify`
//     would, verifies and agrees with the run the service reports.

// checkpoint is what a third party may hold of a run before an attack:
// the store's commitment to its trace (size and Merkle root, from the index
// row) and a receipt signed over the trace.
type checkpoint struct {
	size   uint64
	root   string
	signed *receipt.Signed
	// problem: the trace did not hold together even before the attack.
	problem string
}

// takeCheckpoint records the run's trace as it stands.
func takeCheckpoint(ctx context.Context, env Env, runID string) (checkpoint, error) {
	if env.Signer == nil || env.Store == nil {
		return checkpoint{}, fmt.Errorf("lab: verifying runs needs the store and the signing key")
	}
	info, err := env.Store.Run(ctx, runID)
	if err != nil {
		return checkpoint{}, err
	}
	tree, err := trace.UnmarshalTree(info.Tree)
	if err != nil {
		return checkpoint{problem: "before the attack: the index row's tree: " + err.Error()}, nil
	}
	root, err := tree.Root()
	if err != nil {
		return checkpoint{}, err
	}
	c := checkpoint{size: tree.Size(), root: trace.Hex(root)}
	recs, err := env.Store.Load(ctx, runID)
	if err != nil {
		return checkpoint{}, err
	}
	_, c.signed, err = receipt.Issue(receipt.Slice(recs), 0, env.Signer)
	if err != nil {
		c.problem = "before the attack: " + err.Error()
	}
	return c, nil
}

func publicKey(env Env) ed25519.PublicKey { return env.Signer.Public().(ed25519.PublicKey) }

// verdict is what the checks after an attack found.
type verdict struct {
	trace, receipt bool
	problems       []string
}

// verifyAfter checks run's stored trace against c, once the attack and its
// record are stored.
func verifyAfter(ctx context.Context, env Env, c checkpoint, run *runtime.Run) (verdict, error) {
	if c.problem != "" {
		return verdict{problems: []string{c.problem}}, nil
	}
	recs, err := env.Store.Load(ctx, run.ID)
	if err != nil {
		return verdict{}, err
	}
	info, err := env.Store.Run(ctx, run.ID)
	if err != nil {
		return verdict{}, err
	}
	tp := traceProblems(c, recs, info)
	// The fresh receipt reads the trace again, as an export made later
	// would: a store that answers differently from one read to the next
	// shows here.
	again, err := env.Store.Load(ctx, run.ID)
	if err != nil {
		return verdict{}, err
	}
	rp := receiptProblems(env, c, recs, again, run)
	return verdict{trace: len(tp) == 0, receipt: len(rp) == 0, problems: append(tp, rp...)}, nil
}

// traceProblems: the chain, the index row's commitment, and the prefix the
// run had before the attack.
func traceProblems(c checkpoint, recs []tracestore.Record, info tracestore.RunInfo) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, "trace: "+fmt.Sprintf(format, args...)) }
	if len(recs) == 0 {
		fail("the store holds no events")
		return out
	}
	// Derive checks what a receipt reads: consecutive indexes, one run,
	// each prev the hash of the last, each stored hash right.
	body, err := receipt.Derive(recs, uint64(len(recs)), "")
	if err != nil {
		fail("%v", err)
		return out
	}
	tree, err := trace.UnmarshalTree(info.Tree)
	if err != nil {
		fail("the index row's tree: %v", err)
		return out
	}
	committed, err := tree.Root()
	if err != nil {
		fail("the index row's tree: %v", err)
		return out
	}
	last := trace.LeafHash(recs[len(recs)-1].Body)
	switch {
	case tree.Size() != uint64(len(recs)) || info.Events != uint64(len(recs)):
		fail("the store committed to %d events (index row %d), it returns %d", tree.Size(), info.Events, len(recs))
	case trace.Hex(committed) != body.Tree.Root:
		fail("Merkle root: the store committed to %s, the events give %s", trace.Hex(committed), body.Tree.Root)
	case !bytes.Equal(info.Head, last):
		fail("head: the store committed to %s, the last event hashes to %s", trace.Hex(info.Head), trace.Hex(last))
	}
	if c.size > uint64(len(recs)) {
		fail("the trace had %d events before the attack, it has %d", c.size, len(recs))
		return out
	}
	prefix := trace.NewTree()
	for _, r := range recs[:c.size] {
		if err := prefix.Append(trace.LeafHash(r.Body)); err != nil {
			fail("%v", err)
			return out
		}
	}
	if root, err := prefix.Root(); err != nil || trace.Hex(root) != c.root {
		fail("the first %d events are not the ones stored before the attack: their root is %s, it was %s", c.size, trace.Hex(root), c.root)
	}
	return out
}

// receiptProblems: the receipt signed before the attack, and a fresh one
// exported and read back.
func receiptProblems(env Env, c checkpoint, recs, again []tracestore.Record, run *runtime.Run) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, "receipt: "+fmt.Sprintf(format, args...)) }
	pub := publicKey(env)
	rep, _ := receipt.Check(c.signed, receipt.Slice(recs), pub, receipt.Options{}) // a slice has no reading error
	switch {
	case !rep.Valid:
		fail("the receipt signed before the attack no longer verifies: %s", firstOf(rep.Problems))
	case rep.Covered != c.size || rep.Covered+rep.Later != uint64(len(recs)):
		fail("the receipt signed before the attack covers %d events and %d follow, the trace has %d", rep.Covered, rep.Later, len(recs))
	}
	body, signed, err := receipt.Issue(receipt.Slice(again), 0, env.Signer)
	if err != nil {
		fail("no receipt derives from the stored trace: %v", err)
		return out
	}
	// Out and back in, as export writes the files and verify reads them.
	x := &exported{signed: signed}
	for _, r := range again {
		x.lines = append(x.lines, r.Body)
	}
	receiptFile, traceFile, err := x.files()
	if err != nil {
		fail("%v", err)
		return out
	}
	if rep := receipt.CheckExport(receiptFile, traceFile, pub, receipt.Options{}); !rep.Valid {
		fail("the receipt signed after the attack does not verify: %s", firstOf(rep.Problems))
	} else if rep.Later != 0 {
		fail("the receipt signed after the attack leaves %d events uncovered", rep.Later)
	}
	// The receipt speaks for the run the service holds.
	switch {
	case body.RunID != run.ID:
		fail("run_id %q, the run is %q", body.RunID, run.ID)
	case body.Program.DefinitionHash != run.Program.DefinitionHash:
		fail("definition_hash %s, the run's is %s", body.Program.DefinitionHash, run.Program.DefinitionHash)
	case body.Status != string(run.Status):
		fail("status %s, the run is %s", body.Status, run.Status)
	case body.FinalState != run.State:
		fail("final_state %s, the run is at %s", body.FinalState, run.State)
	case !slices.Equal(body.Path, run.Path):
		fail("path %v, the run's is %v", body.Path, run.Path)
	}
	return out
}

func firstOf(problems []string) string {
	if len(problems) == 0 {
		return "(no reason given)"
	}
	return problems[0]
}
