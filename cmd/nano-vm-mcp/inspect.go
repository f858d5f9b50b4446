package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

func newInspectCmd() *cobra.Command {
	var (
		view   string
		asJSON bool
		store  storeFlags
	)
	c := &cobra.Command{
		Use:   "inspect RUN_ID [--view operator|auditor|model] [--json]",
		Short: "Print a run's data as the operator, an auditor or the model sees it",
		Long: `Inspect prints where a run stands and its data as one view sees it:

  operator  the run input and every accepted output, opened with the
            subjects' keys: personal data in clear, until it is erased
  auditor   the same, with every personal-data value replaced by
            {"$redacted": "personal_data"}
  model     the last task the runtime issued, as the trace records it: the
            view, instructions and tool arguments the model was given

Where a data subject has been erased (nano-vm-mcp erase), every view shows
the erased marker {"$erased": "<subject id>"} in place of the subject's data,
and the run's subject_erased events are listed.

The text form prints the data as indented JSON; --json prints one object on
one line: run_id, program, version, definition_hash, view, status, outcome,
reason, state, seq, data (input and data, or the model's task, null when no
task was issued) and erasures.

Exit status: 0; 2 for an unknown run or view; 1 when the store fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			audience, err := projection.ParseAudience(view)
			if err != nil {
				return &exitErr{exitUsage, fmt.Errorf("--view must be operator, auditor or model, not %q", view)}
			}
			ctx := cmd.Context()
			svc, st, _, err := store.openService(ctx, nil, service.Options{})
			if err != nil {
				return err
			}
			defer st.Close()
			r, p, err := svc.Get(ctx, args[0])
			var rej *runtime.Rejection
			if errors.As(err, &rej) {
				return &exitErr{exitUsage, fmt.Errorf("no run %s in the store", args[0])}
			}
			if err != nil {
				return &exitErr{exitError, err}
			}
			events, err := svc.Events(ctx, args[0])
			if err != nil {
				return &exitErr{exitError, err}
			}
			in := runtime.Inspect(r, p, events, audience)
			if asJSON {
				line, err := marshal(in, "")
				if err != nil {
					return &exitErr{exitError, err}
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(line))
				return nil
			}
			return printInspection(cmd.OutOrStdout(), in)
		},
	}
	c.Flags().StringVar(&view, "view", string(projection.Auditor), "operator (personal data in clear until erased), auditor (personal data redacted) or model (the last task issued)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on one line")
	store.register(c.Flags())
	return c
}

// marshal encodes v as JSON without escaping <, > and &, which data and
// instructions are full of; indent "" gives one line.
func marshal(v any, indent string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// printInspection prints the text form of inspect.
func printInspection(out io.Writer, in projection.RunView) error {
	fmt.Fprintf(out, "run %s: %s %s (%s)\n", in.RunID, in.Program, in.Version, in.DefinitionHash)
	fmt.Fprintf(out, "status: %s", in.Status)
	if in.Outcome != "" {
		fmt.Fprintf(out, " %s", in.Outcome)
	}
	if in.Reason != "" {
		fmt.Fprintf(out, " (%s)", in.Reason)
	}
	fmt.Fprintf(out, ", state %s, seq %d\n", in.State, in.Seq)
	for _, e := range in.Erasures {
		fmt.Fprintf(out, "erased: subject %s at %s by %s (event %d): %s\n", e.Subject, e.At, e.Principal, e.Index, e.Reason)
	}
	for _, c := range in.ToolCalls {
		fmt.Fprintf(out, "tool call %s at %s: %s, attempt %d (event %d)", c.CallID, c.State, c.Event, c.Attempt, c.Index)
		if c.Principal != "" {
			fmt.Fprintf(out, " by %s", c.Principal)
		}
		if c.Class != "" {
			fmt.Fprintf(out, ": %s", c.Class)
		}
		if c.Detail != "" {
			fmt.Fprintf(out, ": %s", c.Detail)
		}
		fmt.Fprintln(out)
	}
	var data any
	switch in.View {
	case projection.Operator:
		fmt.Fprintln(out, "view: operator (personal data in clear, erased data as the erased marker)")
		data = in.Data
	case projection.Auditor:
		fmt.Fprintln(out, "view: auditor (personal data redacted, erased data as the erased marker)")
		data = in.Data
	case projection.Model:
		t, _ := in.Data.(*projection.Task)
		if t == nil {
			fmt.Fprintln(out, "view: model: no task was issued in this run; the model saw nothing of it")
			return nil
		}
		fmt.Fprintf(out, "view: model (task %d, %s, %s, as issued)\n", t.Seq, t.State, t.Kind)
		if t.Instructions != "" {
			fmt.Fprintf(out, "instructions: %s\n", t.Instructions)
		}
		if t.Tool != nil {
			args, err := marshal(t.Tool.Arguments, "  ")
			if err != nil {
				return &exitErr{exitError, err}
			}
			fmt.Fprintf(out, "tool %s, arguments:\n%s\n", t.Tool.Name, args)
		}
		fmt.Fprintln(out, "task view:")
		data = t.View
	}
	b, err := marshal(data, "  ")
	if err != nil {
		return &exitErr{exitError, err}
	}
	fmt.Fprintln(out, string(b))
	return nil
}
