// Package lab is the failure laboratory: it attacks runs the way a hostile
// client would, through the same public entry points (service.Service
// Submit and Decide as the step and approve tools call them, the program
// loader, receipt.Check), and checks that each attack meets its one
// expected, typed outcome while the run stays as it was.
//
// Every attack made on a run is recorded in that run's trace as a
// fault_injected event (service.Service.RecordFault), which the receipt
// counts under faults, and then the run's stored trace and receipts are
// verified as an auditor would (verify.go). The laboratory never decides
// an outcome itself: it reads the code the runtime answered with, the
// loader's problems or the verifier's report. Programs without example
// answers are driven by answers synthesised from their schemas and guards
// (synth.go, explore.go). docs/faults.md describes every fault.
package lab

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Faults, in the order the laboratory runs them.
const (
	ToolInjection  = "tool_injection"
	PolicyBypass   = "policy_bypass"
	SkipStep       = "skip_step"
	ReorderSteps   = "reorder_steps"
	CorruptReceipt = "corrupt_receipt"
	GDPRErase      = "gdpr_erase"
	InvalidProgram = "invalid_program"
)

// Faults lists every fault, in order.
var Faults = []string{ToolInjection, PolicyBypass, SkipStep, ReorderSteps, CorruptReceipt, GDPRErase, ToolFailure, InvalidProgram}

// Outcomes besides the runtime's rejection codes.
const (
	// NA: the sub-attack does not apply to this program or run (Reason says why).
	NA = "n/a"
	// Duplicate: an exact repeat got the original answer and wrote nothing.
	Duplicate = "duplicate"
	// Inert: injected text passed the schema, was accepted as data, and
	// the run took exactly the transition the guards give for that output.
	Inert = "inert"
	// VerificationFailed: the verifier refused the tampered copy and named
	// the place the tampering shows.
	VerificationFailed = "verification_failed"
	// InvalidProgramOutcome: the loader refused the mutated program with
	// positioned problems.
	InvalidProgramOutcome = "invalid_program"
)

// ErrUnknownFault is returned for a fault name outside Faults.
var ErrUnknownFault = errors.New("unknown fault")

// Env is what attacks go through.
type Env struct {
	Service *service.Service
	Store   tracestore.TraceReader // corrupt_receipt reads the stored trace
	Signer  ed25519.PrivateKey     // corrupt_receipt signs the receipt it tampers with
	// Principal is who attacks: the caller, as the step tool would name it.
	Principal string
	// Operator may erase data subjects: gdpr_erase on a caller's run
	// destroys the key of every run of that subject, so it is an
	// operator's attack only. Likewise tool_failure, which starts a lab
	// run of its own.
	Operator bool

	// held is the laboratory's own tools while Service runs through them
	// (toolfail.go).
	held *labTools
}

// Result is one sub-attack's outcome.
type Result struct {
	Fault     string `json:"fault"`
	SubAttack string `json:"sub_attack"`
	RunID     string `json:"run_id,omitempty"`
	Expected  string `json:"expected"`
	Observed  string `json:"observed"`
	// Applicable is false for n/a: Detail says why, and nothing was done.
	Applicable bool `json:"applicable"`
	// Pass: applicable, the observed outcome is the expected one, the
	// run is unchanged where the attack must leave it so, and its trace and
	// receipt verify after the attack.
	Pass bool `json:"pass"`
	// RunUnchanged: the run's status, state, seq, data, path and counters
	// of steps and rollbacks are as before the attack (attempts may be
	// used), compared by snapshot.
	RunUnchanged bool `json:"run_unchanged"`
	// TraceVerified: after the attack and its record, the stored trace
	// holds together, matches the store's commitment, and begins with the
	// events it had before the attack (verify.go). Nil when no run was
	// attacked (n/a, or a sub-attack that meets no run).
	TraceVerified *bool `json:"trace_verified"`
	// ReceiptVerified: the receipt signed before the attack still
	// verifies against the stored trace, and one derived and signed after
	// it verifies and agrees with the run. Nil as TraceVerified.
	ReceiptVerified *bool `json:"receipt_verified"`
	// Verification lists what those checks found wrong.
	Verification []string `json:"verification,omitempty"`
	Detail       string   `json:"detail"`
}

// VerifiedText is a verification column as the matrix shows it: yes, NO,
// or n/a where no run was attacked.
func VerifiedText(ok *bool) string {
	switch {
	case ok == nil:
		return NA
	case *ok:
		return "yes"
	}
	return "NO"
}

// Failed reports whether r is an applicable sub-attack that did not pass.
func (r Result) Failed() bool { return r.Applicable && !r.Pass }

// Verified reports whether the run's trace and receipt verified after the
// attack; true when there was no run to verify.
func (r Result) Verified() bool {
	return (r.TraceVerified == nil || *r.TraceVerified) && (r.ReceiptVerified == nil || *r.ReceiptVerified)
}

// view is where a sub-attack meets the run.
type view struct {
	run  *runtime.Run
	p    *program.Program
	st   *program.State // the state the run is in
	base any            // a schema-valid output for the open task, or nil
}

func (v *view) open() bool { return v.run.Status == runtime.StatusRunning && v.run.Task != nil }

// outcome is what one attack gave.
type outcome struct {
	expected, observed, detail string
}

// subAttack is one attack of a fault.
type subAttack struct {
	fault, name string
	// applies says why the program cannot meet this attack ("" if it can).
	applies func(p *program.Program) string
	// ready says why the run, as it stands, cannot meet it ("" if it can).
	ready func(v *view) string
	// moves: the attack may legitimately move the run on (injected text
	// accepted as data); inject_fault skips it on a caller's run.
	moves bool
	// erases: the attack erases the run's data subject (and so changes
	// it: moves is set too); inject_fault makes it on a caller's run for
	// an operator only, and the matrix on a run whose subject id is its
	// own.
	erases bool
	// runless: the attack meets no run (a mutated program is loaded, and
	// no run can start under it). The matrix makes it without one;
	// inject_fault records it on the caller's run.
	runless bool
	// tools: the attack needs a run whose tools the laboratory's own
	// executors run, behaving as this mode says (toolfail.go).
	tools string
	do    func(ctx context.Context, env Env, v *view) (outcome, error)
}

func always(*program.Program) string { return "" }

// SubAttacks names the sub-attacks of a fault, in order.
func SubAttacks(fault string) []string {
	var out []string
	for _, a := range catalog() {
		if a.fault == fault {
			out = append(out, a.name)
		}
	}
	return out
}

func attacksOf(fault string) ([]subAttack, error) {
	var out []subAttack
	for _, a := range catalog() {
		if a.fault == fault {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w %q (have %s)", ErrUnknownFault, fault, strings.Join(Faults, ", "))
	}
	return out, nil
}

// Params tune an attack on a caller's run.
type Params struct {
	// Output is a schema-valid output for the open task, the base that
	// extra_fields, no_matching_guard and the like alter. Default: the
	// first scripted answer of the embedded examples that fits.
	Output any
}

// Inject runs every sub-attack of fault against the run as it stands, one
// after the other, except those that would move it on (n/a), and records
// each attack made in the run's trace. Attempt-counting attacks are made
// only while the open task has an attempt to spare, so they never end the
// run. gdpr_erase is made only for an operator (Env.Operator).
func Inject(ctx context.Context, env Env, runID, fault string, params Params) ([]Result, error) {
	attacks, err := attacksOf(fault)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, a := range attacks {
		r, p, err := env.Service.Get(ctx, runID)
		if err != nil {
			return nil, err
		}
		v := &view{run: r, p: p, st: p.States[r.State], base: params.Output}
		if v.base == nil {
			v.base = knownOutput(v)
		}
		res := Result{Fault: a.fault, SubAttack: a.name, RunID: runID}
		reason := a.applies(p)
		if reason == "" && a.tools != "" && a.tools != modeHold {
			// A tool cannot be made to fail under the server's registry:
			// the attack goes to a lab run of its own, driven by this
			// run's input and accepted answers.
			if !env.Operator {
				res.Expected, res.Observed, res.Detail = expectedOf(a), NA, "it starts a lab run of its own with the laboratory's failing tools: an operator's attack"
				out = append(out, res)
				continue
			}
			s, err := scriptOf(ctx, env, r)
			if err != nil {
				return nil, err
			}
			if res, err = onFreshRun(ctx, env, p, a, []Script{s}); err != nil {
				return nil, err
			}
			if res.RunID != "" {
				res.Detail = "on lab run " + res.RunID + ": " + res.Detail
			}
			out = append(out, res)
			continue
		}
		switch {
		case reason != "":
		case a.erases && !env.Operator:
			reason = "erasing the run's data subject erases it in every run of that subject: an operator's attack"
		case a.moves && !a.erases:
			reason = "accepted injected text moves the run on; `nano-vm-mcp lab` makes this attack on runs of its own"
		}
		if reason == "" {
			reason = a.ready(v)
		}
		if reason == "" && counts(a) && v.open() && r.Task.AttemptsLeft <= 1 {
			reason = "the open task has no attempt to spare: a counted rejection would end the run"
		}
		if reason == "" && counts(a) && r.Call != nil && r.Attempts+1 >= v.st.MaxAttempts {
			reason = "the state has no attempt to spare: a counted rejection would end the run"
		}
		if reason != "" {
			res.Expected, res.Observed, res.Detail = expectedOf(a), NA, reason
			out = append(out, res)
			continue
		}
		if res, err = attack(ctx, env, a, v); err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, nil
}

// counts reports whether a sub-attack's rejection uses up an attempt.
func counts(a subAttack) bool {
	switch expectedOf(a) {
	case string(runtime.CodeCapabilityDenied), string(runtime.CodeSchemaViolation), string(runtime.CodeGuardDenied), Inert:
		return true
	}
	return false
}

// expectedOf is the outcome a sub-attack is declared to meet, before it
// is made; attacks whose exact outcome depends on the output (injected
// text) say inert.
func expectedOf(a subAttack) string {
	if e, ok := declared[a.fault+"/"+a.name]; ok {
		return e
	}
	return Inert
}

// attack makes one sub-attack on the run in v, compares the run before and
// after it, and records it.
func attack(ctx context.Context, env Env, a subAttack, v *view) (Result, error) {
	res := Result{Fault: a.fault, SubAttack: a.name, RunID: v.run.ID, Applicable: true}
	before := snapshot(v.run)
	cp, err := takeCheckpoint(ctx, env, v.run.ID)
	if err != nil {
		return res, err
	}
	o, err := a.do(ctx, env, v)
	if err != nil {
		return res, err
	}
	after, _, err := env.Service.Get(ctx, v.run.ID)
	if err != nil {
		return res, err
	}
	res.Expected, res.Observed, res.Detail = o.expected, o.observed, o.detail
	res.RunUnchanged = before == snapshot(after)
	res.Pass = res.Observed == res.Expected && (res.RunUnchanged || a.moves)
	if !res.RunUnchanged && !a.moves {
		res.Detail += "; the run changed: " + before.diff(snapshot(after))
	}
	rec := runtime.FaultRecord{Fault: a.fault, SubAttack: a.name, Expected: o.expected, Observed: o.observed, Detail: res.Detail}
	if _, err := env.Service.RecordFault(ctx, v.run.ID, rec); err != nil {
		return res, fmt.Errorf("record the fault: %w", err)
	}
	// Verified once the record is stored: the trace as an auditor gets it.
	final, _, err := env.Service.Get(ctx, v.run.ID)
	if err != nil {
		return res, err
	}
	vd, err := verifyAfter(ctx, env, cp, final)
	if err != nil {
		return res, fmt.Errorf("verify the run: %w", err)
	}
	res.TraceVerified, res.ReceiptVerified, res.Verification = &vd.trace, &vd.receipt, vd.problems
	res.Pass = res.Pass && res.Verified()
	return res, nil
}

// snap is what an attack must leave as it was.
type snap struct {
	status, state, outcome, data, path string
	seq                                uint64
	steps, rollbacks                   int
}

func snapshot(r *runtime.Run) snap {
	return snap{
		status: string(r.Status), state: r.State, outcome: r.Outcome, seq: r.Seq,
		data: canonical(r.Data), path: strings.Join(r.Path, ">"), steps: r.Steps, rollbacks: r.Rollbacks,
	}
}

func (s snap) diff(t snap) string {
	var d []string
	add := func(name, a, b string) {
		if a != b {
			d = append(d, fmt.Sprintf("%s %s → %s", name, a, b))
		}
	}
	add("status", s.status, t.status)
	add("state", s.state, t.state)
	add("seq", fmt.Sprint(s.seq), fmt.Sprint(t.seq))
	add("outcome", s.outcome, t.outcome)
	if s.data != t.data {
		d = append(d, "data")
	}
	add("steps", fmt.Sprint(s.steps), fmt.Sprint(t.steps))
	add("rollbacks", fmt.Sprint(s.rollbacks), fmt.Sprint(t.rollbacks))
	return strings.Join(d, ", ")
}

func canonical(v any) string {
	c, err := jsonvalue.Canonical(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(c)
}

// Summary folds the results of one fault into the inject_fault answer:
// outcome is the observed outcome of the first applicable sub-attack that
// failed, else of the first applicable one, else n/a; detail lists every
// sub-attack; runUnchanged holds when every applicable one left the run
// unchanged.
func Summary(results []Result) (outcome, detail string, runUnchanged bool) {
	outcome, runUnchanged = NA, true
	var lines []string
	for _, r := range results {
		verdict := "pass"
		switch {
		case !r.Applicable:
			verdict = "n/a"
		case !r.Pass:
			verdict = "FAIL"
		}
		line := fmt.Sprintf("%s: expected %s, observed %s (%s): %s", r.SubAttack, r.Expected, r.Observed, verdict, r.Detail)
		if len(r.Verification) > 0 {
			line += "; " + strings.Join(r.Verification, "; ")
		}
		lines = append(lines, line)
		if !r.Applicable {
			continue
		}
		runUnchanged = runUnchanged && r.RunUnchanged
		if outcome == NA {
			outcome = r.Observed
		}
	}
	for _, r := range results {
		if r.Failed() {
			outcome = r.Observed
			break
		}
	}
	return outcome, strings.Join(lines, "\n"), runUnchanged
}

// code is a runtime answer's outcome: the rejection code, or accepted.
func code(err error) string {
	var rej *runtime.Rejection
	if errors.As(err, &rej) {
		return string(rej.Code)
	}
	if err != nil {
		return "error"
	}
	return "accepted"
}

func message(err error) string {
	var rej *runtime.Rejection
	if errors.As(err, &rej) {
		return rej.Message
	}
	if err != nil {
		return err.Error()
	}
	return ""
}
