package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nano-vm/nano-vm-mcp/internal/catalog"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// exitDiverged: replay found the events differ.
const exitDiverged = 3

func newReplayCmd() *cobra.Command {
	var (
		programRef string
		asJSON     bool
		store      storeFlags
	)
	c := &cobra.Command{
		Use:   "replay RUN_ID [--program FILE]",
		Short: "Refold a run's recorded inputs through the core and compare the events",
		Long: `Replay feeds a run's recorded inputs to the core again and compares every
event it produces with the recorded one. Under the definition the run is
pinned to (the default: the program stored with the run), the events must be
identical. Under another program (--program, a file or an embedded example),
it reports the first divergence: how a new version would have handled an old
run, before it is deployed.

A run whose data subject was erased still replays: an input whose values
were erased is checked by re-evaluating every guard and transition from the
recorded data (guards never read personal data) instead of being re-applied,
and its events are reported as erased (docs/erasure.md).

Exit status: 0 when identical; 3 at a divergence (the event, the field, the
recorded and the replayed value); 2 for unknown runs or invalid programs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			svc, st, _, err := store.openService(ctx, nil, service.Options{})
			if err != nil {
				return err
			}
			defer st.Close()
			events, err := svc.Events(ctx, args[0])
			var rej *runtime.Rejection
			if errors.As(err, &rej) {
				return &exitErr{exitUsage, err}
			}
			if err != nil {
				return &exitErr{exitError, err}
			}
			var p *program.Program
			if programRef != "" {
				if p, _, err = catalog.Load(programRef); err != nil {
					return err
				}
			} else {
				hash := events[0].Started.Program.DefinitionHash
				src, err := st.Program(ctx, hash)
				if errors.Is(err, tracestore.ErrNotFound) {
					return &exitErr{exitUsage, fmt.Errorf("the store holds no program %s; give --program", hash)}
				}
				if err != nil {
					return &exitErr{exitError, err}
				}
				if p, err = program.Load("stored:"+hash, src); err != nil {
					return err
				}
			}
			rep, err := runtime.ReplayReport(p, events)
			if err != nil {
				return &exitErr{exitError, err}
			}
			d := rep.Divergence
			if asJSON {
				line, _ := json.Marshal(struct {
					Identical bool `json:"identical"`
					runtime.ReplayResult
				}{d == nil, rep})
				fmt.Fprintln(cmd.OutOrStdout(), string(line))
			} else if d == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "identical: %d events replayed under %s %s (%s), %d transitions re-derived\n", len(events), p.Name, p.Version, p.Hash, rep.Transitions)
				if len(rep.Erased) > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "erased: %d events hold erased values; their guards and transitions were re-checked from the recorded data instead of re-applied: %v\n", len(rep.Erased), rep.Erased)
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "diverged at event %d, field %s:\n  recorded: %s\n  replayed: %s\n", d.Index, d.Field, d.Recorded, d.Replayed)
			}
			if d != nil {
				return &exitErr{exitDiverged, errors.New("")}
			}
			return nil
		},
	}
	c.Flags().StringVar(&programRef, "program", "", "replay under this program (a file or an embedded example) instead of the pinned one")
	c.Flags().BoolVar(&asJSON, "json", false, "print {identical, divergence, transitions, erased} as one JSON object")
	store.register(c.Flags())
	return c
}
