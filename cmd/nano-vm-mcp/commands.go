package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/catalog"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:   "nano-vm-mcp",
		Short: "Governed execution runtime for LLM agents: the system decides, the model computes",
		Long: `nano-vm-mcp runs declared state-machine programs whose transitions are guarded
by type-checked CEL expressions. A calling agent answers one bounded, typed
task at a time; every run writes an append-only trace.

Every flag can also be set through an environment variable NANO_VM_<FLAG>,
upper-cased with '-' as '_' (for example NANO_VM_LOG_LEVEL=debug).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&logLevel, "log-level", "warn", "log level for stderr: debug, info, warn or error")
	root.AddCommand(newValidateCmd(), newRunCmd(&logLevel), newGraphCmd(), newVersionCmd(),
		newExportCmd(), newVerifyCmd(), newKeysCmd(), newReplayCmd(), newServeCmd(&logLevel))
	root.AddCommand(newLabCmd(&logLevel))
	root.AddCommand(newAnalyzeCmd())
	root.AddCommand(newEraseCmd(&logLevel), newInspectCmd())
	root.AddCommand(newToolsCmd(&logLevel))
	var all []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		all = append(all, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, c := range all {
		c.Flags().SetInterspersed(true)
		c.PreRunE = checkFlags
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return &usageError{err}
				}
				return nil
			}
		}
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	documentEnv(root)
	return root
}

// checkFlags fills flags from the environment, then checks the required
// ones here, where a missing one can be told as a usage error (cobra
// checks them again after, and finds them set).
func checkFlags(cmd *cobra.Command, args []string) error {
	if err := envFallback(cmd, args); err != nil {
		return err
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return &usageError{err}
	}
	if err := cmd.ValidateFlagGroups(); err != nil {
		return &usageError{err}
	}
	return nil
}

// envName is the environment variable a flag falls back to.
func envName(f *pflag.Flag) string {
	return "NANO_VM_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
}

// documentEnv names each flag's environment variable in its usage, so
// <command> --help lists them as docs/configuration.md promises. Inherited
// flags are the same *pflag.Flag on every command, hence the seen set.
func documentEnv(c *cobra.Command) {
	seen := map[*pflag.Flag]bool{}
	note := func(f *pflag.Flag) {
		if seen[f] || f.Name == "help" {
			return
		}
		seen[f] = true
		f.Usage += " (env " + envName(f) + ")"
	}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.PersistentFlags().VisitAll(note)
		c.Flags().VisitAll(note)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(c)
}

// envFallback fills every flag the user did not set from NANO_VM_<FLAG>.
// It sets them through their flag set, so they count as given (required
// flags are satisfied by the environment too).
func envFallback(cmd *cobra.Command, _ []string) error {
	var err error
	fill := func(fs *pflag.FlagSet) func(*pflag.Flag) {
		return func(f *pflag.Flag) {
			if f.Changed || err != nil {
				return
			}
			name := envName(f)
			if v, ok := os.LookupEnv(name); ok {
				if e := fs.Set(f.Name, v); e != nil {
					err = &exitErr{exitUsage, fmt.Errorf("%s=%q: %w", name, v, e)}
				}
			}
		}
	}
	cmd.Flags().VisitAll(fill(cmd.Flags()))
	return err
}

func newLogger(level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, &exitErr{exitUsage, fmt.Errorf("--log-level: %w", err)}
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), lvl)
	return zap.New(core), nil
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the runtime version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "nano-vm-mcp", runtime.Version)
			return nil
		},
	}
}

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check programs and print every problem, sorted; exit 2 if there are any",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var problems []program.Problem
			for _, path := range args {
				// An unreadable file is one more problem: the others
				// are still checked and reported.
				src, err := catalog.Read(path)
				if err != nil {
					problems = append(problems, catalog.ReadProblem(path, err))
					continue
				}
				p, err := program.Load(path, src)
				var pe *program.Error
				switch {
				case errors.As(err, &pe):
					problems = append(problems, pe.Problems...)
				case err != nil:
					return &exitErr{exitError, err}
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%s %s, %s)\n", path, p.Name, p.Version, p.Hash)
				}
			}
			problems = program.SortProblems(problems)
			for _, pr := range problems {
				fmt.Fprintln(cmd.OutOrStdout(), pr.String())
			}
			if len(problems) > 0 {
				return &exitErr{exitUsage, fmt.Errorf("%d problem(s)", len(problems))}
			}
			return nil
		},
	}
}

func newGraphCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "graph PROGRAM",
		Short: "Print a program's state graph as Mermaid or Graphviz DOT",
		Long:  "PROGRAM is a file or the name of an embedded example (" + strings.Join(examples.Programs(), ", ") + ").",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _, err := catalog.Load(args[0])
			if err != nil {
				return err
			}
			switch format {
			case "mermaid":
				fmt.Fprint(cmd.OutOrStdout(), program.Mermaid(p))
			case "dot":
				fmt.Fprint(cmd.OutOrStdout(), program.DOT(p))
			default:
				return &exitErr{exitUsage, fmt.Errorf("--format must be mermaid or dot, not %q", format)}
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "mermaid", "mermaid or dot")
	return c
}

// readErr gives a file the user named the exit code docs/configuration.md
// promises: a missing file is a bad argument, any other failure I/O.
func readErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &exitErr{exitUsage, err}
	}
	return &exitErr{exitError, err}
}

func newRunCmd(logLevel *string) *cobra.Command {
	var (
		inputPath, answersPath string
		asJSON                 bool
		store                  storeFlags
		tools                  toolFlags
	)
	c := &cobra.Command{
		Use:   "run PROGRAM --input FILE --answers FILE [--json]",
		Short: "Run a program with scripted answers (JSON Lines, one per task)",
		Long: `Run drives one run of PROGRAM (a file, or the name of an embedded example:
` + strings.Join(examples.Programs(), ", ") + `) with the run input in --input and one
answer per task in --answers: the output object for llm and tool tasks, the
decision object for approvals. It prints each task and transition as it
goes (to stderr under --json, where stdout holds only the summary line). A
rejected answer is reported, counts as the state's attempt, and the next
answer is tried.

` + toolsUsage + `
The answers file holds no answer for those states; run waits for them
however long they take.

Exit status: 0 when the run reached a terminal state of the program; 3 when
the runtime ended it (FAILED: a limit, attempts exhausted, a timeout); 4 when
the answers ran out first; 2 for invalid programs, files or flags; 1 otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(*logLevel, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // stderr
			reg, o, err := tools.open(log, &store)
			if err != nil {
				return err
			}
			if reg != nil {
				defer reg.Close()
			}
			st, keys, err := store.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			// Under --json, stdout is the summary line alone.
			human := cmd.OutOrStdout()
			if asJSON {
				human = cmd.ErrOrStderr()
			}
			return scriptedRun(cmd.Context(), cmd.OutOrStdout(), human, log, st, keys, o, args[0], inputPath, answersPath, asJSON)
		},
	}
	c.Flags().StringVar(&inputPath, "input", "", "file with the run input (JSON); required")
	c.Flags().StringVar(&answersPath, "answers", "", "file with one answer per task (JSON Lines); required")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON summary line on stdout, and the tasks and transitions on stderr")
	store.register(c.Flags())
	tools.register(c.Flags())
	_ = c.MarkFlagRequired("input")
	_ = c.MarkFlagRequired("answers")
	return c
}

// summary is the final --json line.
type summary struct {
	RunID          string   `json:"run_id"`
	Program        string   `json:"program"`
	DefinitionHash string   `json:"definition_hash"`
	Status         string   `json:"status"`
	Outcome        string   `json:"outcome"`
	Reason         string   `json:"reason,omitempty"`
	FinalState     string   `json:"final_state"`
	Path           []string `json:"path"`
	Steps          int      `json:"steps"`
	Rollbacks      int      `json:"rollbacks"`
	Rejections     int      `json:"rejections"`
	AnswersUsed    int      `json:"answers_used"`
}

// scriptedRun prints each task and transition to human, and the --json
// summary line to out.
func scriptedRun(ctx context.Context, out, human io.Writer, log *zap.Logger, st tracestore.Store, keys *keyring.Keyring, o service.Options, ref, inputPath, answersPath string, asJSON bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	p, src, err := catalog.Load(ref)
	if err != nil {
		return err
	}
	input, err := readJSONFile(inputPath)
	if err != nil {
		return err
	}
	answers, err := readAnswers(answersPath)
	if err != nil {
		return err
	}
	svc := newService(st, keys, log, o)
	defer svc.Close()
	if err := addPrograms(ctx, svc, p, src); err != nil {
		return err
	}
	ans, err := svc.Start(ctx, p.Name, input, "cli")
	if err != nil {
		return &exitErr{exitUsage, fmt.Errorf("start: %w", err)}
	}
	if ans, err = waitForTools(ctx, svc, ans); err != nil {
		return &exitErr{exitError, err}
	}
	fmt.Fprintf(human, "run %s started: %s %s (%s)\n", ans.RunID, p.Name, p.Version, p.Hash)
	printHops(human, ans)
	used := 0
	for ans.Status == runtime.StatusRunning && ans.Task != nil {
		task := ans.Task
		fmt.Fprintf(human, "task %d: %s (%s), attempts left %d\n", task.Seq, task.State, task.Kind, task.AttemptsLeft)
		if task.Tool != nil {
			args, _ := json.Marshal(task.Tool.Arguments)
			fmt.Fprintf(human, "  tool %s %s\n", task.Tool.Name, args)
		}
		if used >= len(answers) {
			break
		}
		a := answers[used]
		used++
		fmt.Fprintf(human, "  answer %d: %s\n", a.line, a.raw)
		var next service.Answer
		var stepErr error
		// The operator answers every task, approvals included.
		switch in := runtime.InputFor(task, a.value, runtime.AnswerOptions{Principal: "cli", AllowSelf: true}).(type) {
		case runtime.Decide:
			next, stepErr = svc.Decide(ctx, ans.RunID, in)
		case runtime.Submit:
			next, stepErr = svc.Submit(ctx, ans.RunID, in)
		}
		var rej *runtime.Rejection
		switch {
		case errors.As(stepErr, &rej):
			fmt.Fprintf(human, "  rejected: %s\n", rej.Error())
			for _, d := range rej.Details {
				fmt.Fprintf(human, "    %s\n", d)
			}
		case stepErr != nil:
			return &exitErr{exitError, stepErr}
		}
		if next, stepErr = waitForTools(ctx, svc, next); stepErr != nil {
			return &exitErr{exitError, stepErr}
		}
		printHops(human, next)
		ans = next
	}
	run, _, err := svc.Get(ctx, ans.RunID)
	if err != nil {
		return &exitErr{exitError, err}
	}
	switch run.Status {
	case runtime.StatusRunning:
		fmt.Fprintf(human, "unfinished: the answers ran out at %s (task %d)\n", run.State, run.Seq)
	default:
		fmt.Fprintf(human, "finished: %s %s", run.Status, run.Outcome)
		if run.Reason != "" {
			fmt.Fprintf(human, " (%s)", run.Reason)
		}
		fmt.Fprintln(human)
	}
	if asJSON {
		line, err := json.Marshal(summary{
			RunID: run.ID, Program: p.Name, DefinitionHash: p.Hash,
			Status: string(run.Status), Outcome: run.Outcome, Reason: run.Reason,
			FinalState: run.State, Path: run.Path, Steps: run.Steps, Rollbacks: run.Rollbacks,
			Rejections: run.Rejections, AnswersUsed: used,
		})
		if err != nil {
			return &exitErr{exitError, err}
		}
		fmt.Fprintln(out, string(line))
	}
	switch run.Status {
	case runtime.StatusCompleted:
		return nil
	case runtime.StatusRunning:
		return &exitErr{exitIncomplete, errors.New("")}
	default:
		return &exitErr{exitRunFailed, errors.New("")}
	}
}

func printHops(out io.Writer, a service.Answer) {
	for _, h := range a.Transitions {
		extra := ""
		if h.Rollback {
			extra = " (rollback)"
		}
		fmt.Fprintf(out, "  %s -> %s [%s]%s\n", h.From, h.To, h.Cause, extra)
	}
}

func readJSONFile(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readErr(err)
	}
	v, err := jsonvalue.Decode(data)
	if err != nil {
		return nil, &exitErr{exitUsage, fmt.Errorf("%s: %w", path, err)}
	}
	return v, nil
}

type answerLine struct {
	line  int
	raw   []byte
	value any
}

// readAnswers reads JSON Lines; blank lines are skipped.
func readAnswers(path string) ([]answerLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, readErr(err)
	}
	defer f.Close()
	lines, err := jsonvalue.DecodeLines(f, program.MaxFileBytes)
	var le *jsonvalue.LineError
	switch {
	case errors.As(err, &le):
		return nil, &exitErr{exitUsage, fmt.Errorf("%s:%d: %w", path, le.N, le.Err)}
	case errors.Is(err, bufio.ErrTooLong):
		return nil, &exitErr{exitUsage, fmt.Errorf("%s: %w", path, err)} // the file is wrong, not the disk
	case err != nil:
		return nil, &exitErr{exitError, fmt.Errorf("%s: %w", path, err)}
	}
	var out []answerLine
	for _, l := range lines {
		out = append(out, answerLine{line: l.N, raw: l.Raw, value: l.Value})
	}
	return out, nil
}
