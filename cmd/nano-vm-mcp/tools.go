package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/executor"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// toolFlags are the runtime-executed tools' flags of serve, run and lab.
type toolFlags struct {
	file     string
	stepWait time.Duration
}

func (f *toolFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.file, "tools", "", "the operator's tool registry (YAML, docs/tools.md): tool states whose tool it names are run by the server itself, not by the caller")
	fs.DurationVar(&f.stepWait, "step-wait", service.DefaultStepWait, "how long a start or step waits for the tools the server runs before it answers running, waiting_for tool (the client continues with await_run)")
}

// registryOptions are the executors' options for the registry file: pins
// kept next to it, secrets from the environment, stages (the git
// builtins') under stageDir when given.
func registryOptions(file string, log *zap.Logger, stageDir string) executor.Options {
	return executor.Options{Getenv: os.Getenv, Log: log, Pins: pinsPath(file), Now: time.Now, StageDir: stageDir}
}

// pinsPath is the registry file's pins file, absolute: the executors
// resolve a relative pins path against the registry's directory, not the
// working directory file is relative to.
func pinsPath(file string) string {
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	return executor.DefaultPinsPath(file)
}

// loadRegistry loads the registry file (nil without one). An invalid
// registry is a usage error naming every problem.
func loadRegistry(file string, log *zap.Logger, stageDir string) (*executor.Registry, error) {
	if file == "" {
		return nil, nil
	}
	reg, err := executor.Load(file, registryOptions(file, log, stageDir))
	if err != nil {
		return nil, &exitErr{exitUsage, err}
	}
	return reg, nil
}

// open loads the registry and returns the service options that run its
// tools; the caller closes the registry (nil without --tools) after the
// service.
func (f *toolFlags) open(log *zap.Logger, store *storeFlags) (*executor.Registry, service.Options, error) {
	if f.stepWait <= 0 {
		return nil, service.Options{}, &exitErr{exitUsage, fmt.Errorf("--step-wait must be positive, not %s", f.stepWait)}
	}
	stages := ""
	if f.file != "" && store.kind != "memory" {
		// Stages survive a restart beside the store, so that a repeated
		// git.stage finds its stage again.
		if dir, err := store.dir(); err == nil {
			stages = filepath.Join(dir, "stages")
		}
	}
	reg, err := loadRegistry(f.file, log, stages)
	if err != nil {
		return nil, service.Options{}, err
	}
	return reg, service.Options{Tools: reg, StepWait: f.stepWait}, nil
}

// addPrograms registers the programs with the service; a program that
// requires a tool the registry lacks is a usage error naming the state.
func addPrograms(ctx context.Context, svc *service.Service, p *program.Program, src []byte) error {
	if err := svc.AddProgram(ctx, p, src); err != nil {
		var pe *program.Error
		if errors.As(err, &pe) {
			return err
		}
		return &exitErr{exitError, err}
	}
	return nil
}

func newToolsCmd(logLevel *string) *cobra.Command {
	c := &cobra.Command{
		Use:   "tools",
		Short: "List the tool registry's tools, or pin its downstream MCP tools",
		Long: `Tools works on the operator's tool registry (--tools FILE, docs/tools.md),
the file that maps the tool names programs use to executors the server runs
itself: a tool on a downstream MCP server, a command, an HTTP endpoint, or a
git builtin.

  tools list --tools FILE   each tool: its executor kind, whether it is
                            idempotent, and its pin (mcp tools)
  tools pin  --tools FILE   connect to each downstream MCP server and pin its
                            tool's description and input schema again
  tools sweep --tools FILE --older-than D
                            remove the git builtins' stages older than D that
                            runs left behind (a cancelled run discards nothing)

Both load the registry as serve does: every problem is named with its
position, and downstream MCP servers are connected to. Pins live next to the
registry (tools.yaml's in tools.pins.json). A downstream tool whose
description or input schema no longer matches its pin is refused
(tool_drifted) until it is pinned again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &usageError{errors.New("name a subcommand: list, pin or sweep")}
		},
	}
	c.AddCommand(newToolsListCmd(logLevel), newToolsPinCmd(logLevel), newToolsSweepCmd(logLevel))
	return c
}

// inspectRegistry loads the registry file for tools list and tools pin,
// without the pins file: loading must neither take nor settle a pin.
// done closes the registry and flushes the log.
func inspectRegistry(cmd *cobra.Command, logLevel, file string) (*executor.Registry, executor.Options, func(), error) {
	log, err := newLogger(logLevel, cmd.ErrOrStderr())
	if err != nil {
		return nil, executor.Options{}, nil, err
	}
	o := registryOptions(file, log, "")
	o.Pins = ""
	reg, err := executor.Load(file, o)
	if err != nil {
		log.Sync() //nolint:errcheck // stderr
		return nil, executor.Options{}, nil, &exitErr{exitUsage, err}
	}
	return reg, o, func() { reg.Close(); log.Sync() }, nil //nolint:errcheck // stderr
}

func newToolsListCmd(logLevel *string) *cobra.Command {
	var file string
	c := &cobra.Command{
		Use:   "list --tools FILE",
		Short: "List the registry's tools: kind, idempotent, pin",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, o, done, err := inspectRegistry(cmd, *logLevel, file)
			if err != nil {
				return err
			}
			defer done()
			pins, err := executor.ReadPins(pinsPath(file), o)
			if err != nil {
				return &exitErr{exitUsage, err}
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TOOL\tKIND\tIDEMPOTENT\tRETRY\tTIMEOUT\tPIN")
			for _, t := range reg.Tools() {
				pin := "-"
				if t.MCP != nil {
					pin = "not pinned"
					if e, ok := pins[t.Name]; ok {
						pin = "pinned " + e.Pin[:len("sha256:")+12]
						if e.PinnedAt != "" {
							pin += " at " + e.PinnedAt
						}
					}
				}
				kind := t.Kind()
				if t.Builtin != "" {
					kind = t.Builtin
				}
				fmt.Fprintf(w, "%s\t%s\t%v\t%d\t%s\t%s\n", t.Name, kind, t.Idempotent, t.Retry.MaxAttempts, t.Timeout, pin)
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&file, "tools", "", "the tool registry (YAML); required")
	_ = c.MarkFlagRequired("tools")
	return c
}

func newToolsPinCmd(logLevel *string) *cobra.Command {
	var file string
	var names []string
	c := &cobra.Command{
		Use:   "pin --tools FILE [--tool NAME]...",
		Short: "Pin the registry's downstream MCP tools again (after a reviewed change)",
		Long: `Pin connects to each downstream MCP server of the registry, lists its tool
and writes the tool's current pin (the hash of its description and input
schema) to the pins file next to the registry, replacing the old one. Review
the downstream change first: pinning accepts it. Nothing is written unless
every tool named could be pinned.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, o, done, err := inspectRegistry(cmd, *logLevel, file)
			if err != nil {
				return err
			}
			defer done()
			var tools []*executor.Tool
			for _, t := range reg.Tools() {
				if len(names) == 0 && t.MCP != nil {
					tools = append(tools, t)
				}
			}
			for _, n := range names {
				t, ok := reg.Tool(n)
				if !ok || t.MCP == nil {
					return &exitErr{exitUsage, fmt.Errorf("--tool %s: the registry has no mcp tool of that name", n)}
				}
				tools = append(tools, t)
			}
			if len(tools) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no mcp tools to pin")
				return nil
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			entries, err := executor.Pin(ctx, tools, pinsPath(file), o)
			if err != nil {
				return &exitErr{exitError, err}
			}
			for _, e := range entries {
				fmt.Fprintf(cmd.OutOrStdout(), "pinned %s (%s on %s): %s\n", e.Tool, e.DownstreamTool, e.Server, e.Pin)
			}
			return nil
		},
	}
	c.Flags().StringVar(&file, "tools", "", "the tool registry (YAML); required")
	c.Flags().StringArrayVar(&names, "tool", nil, "pin only this tool (repeatable; default: every mcp tool)")
	_ = c.MarkFlagRequired("tools")
	return c
}

func newToolsSweepCmd(logLevel *string) *cobra.Command {
	var (
		file      string
		store     storeFlags
		olderThan time.Duration
	)
	c := &cobra.Command{
		Use:   "sweep --tools FILE --older-than DURATION [--data-dir DIR]",
		Short: "Remove the git builtins' stages that runs left behind",
		Long: `Sweep removes the stages (git worktrees that git.stage made, in the data
directory's stages/) last modified more than --older-than ago, through git:
the worktree is removed and each repository's worktree list pruned. It
prints each stage it removed.

A program discards its stage on every path it declares (code-change's
git.discard states), but a run that ends another way leaves it: a cancelled
run runs no tool, nor does a run that runs out of steps or whose discard
failed. Choose --older-than above the longest time a live run holds a stage
(code-change: the security review's 72h): a live run whose stage was swept
cannot commit it (its commit fails, and the run ends discarded). Run it from
cron, or by hand; a server with --store memory keeps no stages past its exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderThan <= 0 {
				return &usageError{fmt.Errorf("--older-than must be positive, not %s", olderThan)}
			}
			dir, err := store.dir()
			if err != nil {
				return err
			}
			log, err := newLogger(*logLevel, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // stderr
			o := registryOptions(file, log, filepath.Join(dir, "stages"))
			o.Pins = "" // sweeping neither takes nor settles a pin
			reg, err := executor.Load(file, o)
			if err != nil {
				return &exitErr{exitUsage, err}
			}
			defer reg.Close()
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			swept, err := reg.SweepStages(ctx, time.Now().Add(-olderThan))
			for _, s := range swept {
				fmt.Fprintln(cmd.OutOrStdout(), "removed", s)
			}
			if err != nil {
				return &exitErr{exitError, err}
			}
			return nil
		},
	}
	c.Flags().StringVar(&file, "tools", "", "the tool registry (YAML); required")
	c.Flags().StringVar(&store.dataDir, "data-dir", "", "data directory whose stages/ to sweep (default $XDG_DATA_HOME/nano-vm-mcp, else ~/.local/share/nano-vm-mcp)")
	c.Flags().DurationVar(&olderThan, "older-than", 0, "remove stages last modified longer ago than this; required")
	_ = c.MarkFlagRequired("tools")
	_ = c.MarkFlagRequired("older-than")
	return c
}

// waitForTools continues an answer that waits on the tools the server
// runs until it no longer does: the scripted drivers (run) have nobody
// to hand "running, waiting_for tool" to.
func waitForTools(ctx context.Context, svc *service.Service, a service.Answer) (service.Answer, error) {
	for a.WaitingFor == "tool" {
		var err error
		if a, err = svc.Continue(ctx, a); err != nil {
			return a, err
		}
	}
	return a, nil
}

// toolsUsage is the help text's line on --tools.
var toolsUsage = strings.TrimSpace(`
With --tools FILE (the operator's tool registry, docs/tools.md), tool states
whose tool the registry names are run by the server itself: the step that
enters one answers once the tool and the states after it are done (at most
--step-wait), and records each call in the trace (tool_call_* events).`)
