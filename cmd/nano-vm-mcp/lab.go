package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/catalog"
	"github.com/nano-vm/nano-vm-mcp/internal/lab"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// exitLabMismatch: an applicable sub-attack met another outcome than the
// one expected (docs/faults.md).
const exitLabMismatch = 5

func newLabCmd(logLevel *string) *cobra.Command {
	var (
		faults                 []string
		inputPath, answersPath string
		programRef             string
		asJSON                 bool
		store                  storeFlags
		tools                  toolFlags
	)
	c := &cobra.Command{
		Use:   "lab [--program PROGRAM | PROGRAM] [--fault F]... [--store sqlite|postgres|memory --data-dir DIR --dsn DSN] [--json]",
		Short: "Run the failure laboratory: every fault against fresh lab runs of PROGRAM",
		Long: `Lab attacks PROGRAM (--program or the one argument: a file, or the name
of an embedded example: ` + strings.Join(examples.Programs(), ", ") + `; default
kyc-onboarding) with every fault (or those --fault names:
` + strings.Join(lab.Faults, ", ") + `), each sub-attack on a fresh lab run
driven to the first task where it applies, through the same entry points a
client uses. Each attack made is recorded in its run's trace
(fault_injected). docs/faults.md describes them.

It prints a matrix: fault, sub-attack, the run attacked, the expected and
the observed outcome, and two checks made after the attack on the run as
stored:
  trace verified    the stored trace holds together (indexes, hash chain,
                    leaf hashes), matches the Merkle root and head the
                    store committed to, and still begins with exactly the
                    events it had before the attack
  receipt verified  a receipt signed before the attack still verifies
                    against the stored trace, and one derived and signed
                    after it verifies, exported and read back, and agrees
                    with the run
(n/a where no run was attacked), then pass, FAIL or n/a (the attack does
not apply to the program; the note says why). A row fails when the outcome
is not the expected one or either check fails. Under --json the matrix goes
to stderr, and stdout holds only the JSON line.

The runs go to the store --store names: memory by default (gone at exit);
sqlite (in --data-dir) or postgres (--dsn) keep them, marked as lab runs,
for export and verify.

Runs are driven by scripted answers: an embedded example's example answers;
for a file, the <name>[.<variant>].input.json and
<name>[.<variant>].<outcome>.answers.jsonl files beside it, named as the
examples are; or --input with --answers. A program without any is driven by
inputs and answers synthesised from its schemas and guards: schema-valid
values, varied one field at a time (enum values, booleans, the guards'
literals) to reach as many states as it can.

` + toolsUsage + `
The tool_injection/forged_tool_result and tool_failure (timeout, crash,
drift) attacks never use that registry: they run the program's tools through
the laboratory's own failing executors (an HTTP endpoint and an MCP server it
starts on loopback), on runs of their own. A program with no tool state the
runtime could run gets them as n/a.

Exit status: 0 when every applicable sub-attack met its expected outcome and
its run verified; 5 when one did not; 2 for invalid programs, files or flags
(or a program input that cannot be synthesised); 1 otherwise.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if cmd.Flags().Changed("program") {
					return &exitErr{exitUsage, errors.New("name the program once: with --program or as the argument")}
				}
				programRef = args[0]
			}
			for _, f := range faults {
				if !slices.Contains(lab.Faults, f) {
					return &exitErr{exitUsage, fmt.Errorf("--fault %q: not a fault (faults: %s)", f, strings.Join(lab.Faults, ", "))}
				}
			}
			log, err := newLogger(*logLevel, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // stderr
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			p, src, err := catalog.Load(programRef)
			if err != nil {
				return err
			}
			scripts, source, err := labScripts(cmd.ErrOrStderr(), programRef, p, inputPath, answersPath)
			if err != nil {
				return err
			}
			reg, o, err := tools.open(log, &store)
			if err != nil {
				return err
			}
			if reg != nil {
				defer reg.Close()
			}
			svc, st, keys, err := store.openService(ctx, log, o)
			if err != nil {
				return err
			}
			defer st.Close()
			defer svc.Close()
			if err := addPrograms(ctx, svc, p, src); err != nil {
				return err
			}
			env := lab.Env{Service: svc, Store: st, Signer: keys.Signing, Principal: "lab"}
			results, err := lab.Matrix(ctx, env, lab.MatrixOptions{Program: p.Name, Faults: faults, Scripts: scripts})
			if err != nil {
				return &exitErr{exitError, err}
			}
			// Under --json, stdout is the JSON line alone.
			human := cmd.OutOrStdout()
			if asJSON {
				human = cmd.ErrOrStderr()
			}
			fmt.Fprintf(human, "lab: %s %s (%s), driven by %s, on the %s store\n", p.Name, p.Version, p.Hash, source, store.kind)
			failed := printMatrix(human, results)
			if asJSON {
				line, err := json.Marshal(labSummary{Program: p.Name, DefinitionHash: p.Hash, Results: results, Failed: failed})
				if err != nil {
					return &exitErr{exitError, err}
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(line))
			}
			if failed > 0 {
				return &exitErr{exitLabMismatch, errors.New("")}
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&faults, "fault", nil, "a fault to run (repeatable; default: every fault)")
	c.Flags().StringVar(&programRef, "program", "kyc-onboarding", "program to attack: a file or an embedded example")
	c.Flags().StringVar(&inputPath, "input", "", "file with the run input (JSON), for a program that is not an example")
	c.Flags().StringVar(&answersPath, "answers", "", "file with one answer per task (JSON Lines), with --input")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON line holding every result on stdout, and the matrix on stderr")
	store.register(c.Flags())
	tools.register(c.Flags())
	// The laboratory's runs are throwaway unless a store is named.
	_ = c.Flags().Set("store", "memory")
	c.Flags().Lookup("store").DefValue = "memory"
	c.Flags().Lookup("store").Changed = false
	return c
}

// labScripts finds what drives the lab's runs, and says what it found:
// --input (and --answers), the answers files beside a program file, an
// embedded example's, or else scripts synthesised from the program.
func labScripts(stderr io.Writer, ref string, p *program.Program, inputPath, answersPath string) ([]lab.Script, string, error) {
	if inputPath != "" {
		input, err := readJSONFile(inputPath)
		if err != nil {
			return nil, "", err
		}
		s := lab.Script{Name: inputPath, Input: input}
		if answersPath != "" {
			data, err := os.ReadFile(answersPath)
			if err != nil {
				return nil, "", readErr(err)
			}
			if s.Answers, err = lab.ParseAnswers(data); err != nil {
				return nil, "", &exitErr{exitUsage, fmt.Errorf("%s: %w", answersPath, err)}
			}
		}
		return []lab.Script{s}, "--input " + inputPath, nil
	}
	if answersPath != "" {
		return nil, "", &exitErr{exitUsage, errors.New("--answers needs --input")}
	}
	var scripts []lab.Script
	var err error
	where := "example answers"
	if fi, statErr := os.Stat(ref); statErr == nil && !fi.IsDir() {
		// A file: its answers are the ones beside it, never an embedded
		// example's that happens to share the program's name.
		stem := strings.TrimSuffix(filepath.Base(ref), filepath.Ext(ref))
		where = "answers files beside " + ref
		scripts, err = lab.ScriptsIn(os.DirFS(filepath.Dir(ref)), stem)
	} else {
		scripts, err = lab.ExampleScripts(p.Name)
	}
	if err != nil {
		return nil, "", &exitErr{exitUsage, err}
	}
	if len(scripts) > 0 {
		return scripts, fmt.Sprintf("%d %s", len(scripts), where), nil
	}
	scripts, notes, err := lab.Synthesize(p)
	if err != nil {
		return nil, "", &exitErr{exitUsage, fmt.Errorf("%w; pass --input and --answers", err)}
	}
	for _, n := range notes {
		fmt.Fprintln(stderr, "nano-vm-mcp: lab:", n)
	}
	return scripts, fmt.Sprintf("%d synthesised scripts", len(scripts)), nil
}

// labSummary is the final --json line.
type labSummary struct {
	Program        string       `json:"program"`
	DefinitionHash string       `json:"definition_hash"`
	Results        []lab.Result `json:"results"`
	Failed         int          `json:"failed"`
}

// printMatrix prints the results and returns how many failed. A row
// fails when its outcome is not the expected one, or when the run's trace
// or receipt did not verify after the attack.
func printMatrix(out io.Writer, results []lab.Result) int {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "FAULT\tSUB-ATTACK\tRUN\tEXPECTED\tOBSERVED\tTRACE VERIFIED\tRECEIPT VERIFIED\tRESULT\tNOTE")
	failed, passed, na := 0, 0, 0
	for _, r := range results {
		verdict, note := "pass", ""
		switch {
		case !r.Applicable:
			verdict, note = "n/a", r.Detail
			na++
		case r.Failed():
			verdict, note = "FAIL", strings.Join(append([]string{r.Detail}, r.Verification...), "; ")
			failed++
		default:
			passed++
		}
		run := r.RunID
		if run == "" {
			run = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Fault, r.SubAttack, run, r.Expected, r.Observed,
			lab.VerifiedText(r.TraceVerified), lab.VerifiedText(r.ReceiptVerified), verdict, strings.ReplaceAll(note, "\n", " "))
	}
	_ = w.Flush()
	fmt.Fprintf(out, "%d passed, %d failed, %d n/a\n", passed, failed, na)
	return failed
}
