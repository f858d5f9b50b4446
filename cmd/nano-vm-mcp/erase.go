package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

func newEraseCmd(logLevel *string) *cobra.Command {
	var (
		reason, subject string
		asJSON          bool
		store           storeFlags
	)
	c := &cobra.Command{
		Use:   "erase SUBJECT_ID --reason TEXT [--subject NAME] [--json]",
		Short: "Erase a data subject: destroy its key and record the erasure in each of its runs",
		Long: `Erase crypto-shreds a data subject. SUBJECT_ID is the subject's id as run
inputs hold it at the subject's id path of the program (for kyc-onboarding,
input.customer.id: a customer id such as CUS-88213); an id that is not a
string is given as its canonical JSON (42, {"n":1}).

The subject's key is destroyed, so everything sealed under it, in the store
and in every exported trace, can no longer be read: every view of the runs
shows the erased marker {"$erased": "<subject id>"} in its place. Each run
that holds the subject's data gets a subject_erased event naming the keyed
subject id, the reason and the principal "cli"; runs still going are
cancelled. Traces and receipts still verify. The reason is recorded in clear:
put no personal data in it. A server sharing the store notices the erasure
within 10 seconds.

It prints the status and the affected runs:
  erased           the subject's key existed and is destroyed now
  already_erased   it was destroyed before (runs an interrupted erasure
                   missed get their event now)
  unknown_subject  no run and no key belong to the subject

Exit status: 0 for each of the three; 2 for a missing --reason, an unknown
--subject name or other invalid flags; 1 when the store fails (erase again
to finish an erasure cut short).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" {
				return &exitErr{exitUsage, errors.New("SUBJECT_ID is empty")}
			}
			if reason == "" {
				return &exitErr{exitUsage, errors.New("--reason is required")}
			}
			log, err := newLogger(*logLevel, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // stderr
			ctx := cmd.Context()
			svc, st, _, err := store.openService(ctx, log, service.Options{})
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := svc.EraseSubject(ctx, service.EraseOptions{SubjectID: args[0], Subject: subject, Reason: reason, Principal: "cli"})
			var rej *runtime.Rejection
			switch {
			case err != nil && res.Status != "":
				// The key is destroyed; recording it in a run failed. The
				// message says to erase again.
				return &exitErr{exitError, err}
			case errors.As(err, &rej):
				return &exitErr{exitUsage, errors.New(rej.Message)}
			case err != nil:
				return &exitErr{exitError, err}
			}
			if asJSON {
				line, err := json.Marshal(res)
				if err != nil {
					return &exitErr{exitError, err}
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(line))
				return nil
			}
			printErasure(cmd.OutOrStdout(), res)
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, recorded in clear in each affected run's trace (no personal data); required")
	c.Flags().StringVar(&subject, "subject", "", "erase only under this subject name of the programs (default: every name a stored program declares)")
	c.Flags().BoolVar(&asJSON, "json", false, "print {status, subjects, runs, recorded} as one JSON object")
	store.register(c.Flags())
	return c
}

// printErasure writes the erasure's status, then one line per affected run.
func printErasure(out io.Writer, res service.EraseResult) {
	switch res.Status {
	case service.ErasureErased:
		fmt.Fprintf(out, "erased: %d subject key(s) destroyed; %d run(s) hold the subject's data\n", len(res.Subjects), len(res.Runs))
	case service.ErasureAlreadyErased:
		fmt.Fprintf(out, "already_erased: the subject's key was destroyed before; %d run(s) hold the subject's data\n", len(res.Runs))
	case service.ErasureUnknownSubject:
		fmt.Fprintln(out, "unknown_subject: no run and no key belong to this subject; nothing was changed")
	default:
		fmt.Fprintln(out, res.Status)
	}
	for _, r := range res.Runs {
		if slices.Contains(res.Recorded, r) {
			fmt.Fprintf(out, "  %s (erasure recorded)\n", r)
		} else {
			fmt.Fprintf(out, "  %s\n", r)
		}
	}
}
