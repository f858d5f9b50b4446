package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/nano-vm/nano-vm-mcp/internal/catalog"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/receipt"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// exitVerifyFailed: verify found the receipt, the trace or the signature
// wrong.
const exitVerifyFailed = 3

func newExportCmd() *cobra.Command {
	var (
		out   string
		store storeFlags
	)
	c := &cobra.Command{
		Use:   "export RUN_ID --out DIR",
		Short: "Write a run's trace (trace.jsonl) and its signed receipt (receipt.json) to DIR",
		Long: `Export writes DIR/trace.jsonl, one canonical event per line, and
DIR/receipt.json, the run's receipt signed with the server's key (final if the
run has ended, provisional otherwise). Personal data stays sealed: the export
can be handed to an auditor, who checks it with verify and the public key
that "keys" prints.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return &exitErr{exitUsage, errors.New("--out is required")}
			}
			st, keys, err := store.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			recs, err := st.Load(cmd.Context(), args[0])
			if errors.Is(err, tracestore.ErrNotFound) {
				return &exitErr{exitUsage, fmt.Errorf("no run %s in the store", args[0])}
			}
			if err != nil {
				return &exitErr{exitError, err}
			}
			body, signed, err := receipt.Issue(receipt.Slice(recs), 0, keys.Signing)
			if err != nil {
				return &exitErr{exitError, fmt.Errorf("the stored trace does not hold together: %w", err)}
			}
			env, err := signed.File()
			if err != nil {
				return &exitErr{exitError, err}
			}
			var trace bytes.Buffer
			for _, r := range recs {
				trace.Write(r.Body)
				trace.WriteByte('\n')
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return &exitErr{exitError, err}
			}
			for name, data := range map[string][]byte{"trace.jsonl": trace.Bytes(), "receipt.json": env} {
				if err := os.WriteFile(filepath.Join(out, name), data, 0o600); err != nil {
					return &exitErr{exitError, err}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %s: %d events, %s receipt (%s %s), root %s\n",
				args[0], len(recs), body.Kind, body.Status, body.Outcome, body.Tree.Root)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "directory to write trace.jsonl and receipt.json to; required")
	store.register(c.Flags())
	return c
}

func newVerifyCmd() *cobra.Command {
	var receiptPath, tracePath, keyPath, programRef string
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify --receipt FILE --trace FILE --public-key FILE",
		Short: "Check a signed receipt against an exported trace, offline",
		Long: `Verify recomputes the receipt from the trace and compares bytes, checks
the signature with the public key, and checks the hash chain and the Merkle
root. It needs no server, no store and no network. Events after the ones the
receipt covers must continue the chain; they are reported, with a warning:
the receipt does not attest them. receipt.json is read byte for byte: the
canonical envelope and one \n, as export writes it (no surrounding
whitespace, no CRLF).

With --program (the run's own program file, or an embedded example), it also
refolds the trace and confirms that every guard result is what the guard
gives on the recorded data and every transition the first that holds: the
receipt proves integrity, this proves the policy was followed. It needs no
keys: guards never read personal data.

Exit status: 0 when every check holds; 3 when one fails (the first failure is
named: the event, the field, expected and found); 2 for unreadable files.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			read := func(path string) ([]byte, error) {
				data, err := os.ReadFile(path)
				if err != nil {
					return nil, &exitErr{exitUsage, err}
				}
				return data, nil
			}
			keyText, err := read(keyPath)
			if err != nil {
				return err
			}
			pub, err := keyring.ParsePublicKey(keyText)
			if err != nil {
				return &exitErr{exitUsage, fmt.Errorf("%s: %w", keyPath, err)}
			}
			envText, err := read(receiptPath)
			if err != nil {
				return err
			}
			traceText, err := read(tracePath)
			if err != nil {
				return err
			}
			var p *program.Program
			if programRef != "" {
				if p, _, err = catalog.Load(programRef); err != nil {
					return err
				}
			}
			var opt receipt.Options
			if p != nil {
				opt.Policy = func() error { return checkPolicy(p, traceText) }
			}
			// receipt.json is read as it is: surrounding whitespace or a CRLF
			// line end is refused, not trimmed.
			rep := receipt.CheckExport(envText, traceText, pub, opt)
			if asJSON {
				line, _ := json.Marshal(rep)
				fmt.Fprintln(cmd.OutOrStdout(), string(line))
			} else if rep.Valid {
				fmt.Fprintf(cmd.OutOrStdout(), "valid: the receipt covers %d events; %d later events continue the chain\n", rep.Covered, rep.Later)
				if rep.Later > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "warning: the %d events after the first %d are not attested by this receipt: they continue the chain, but nothing signed covers their content\n", rep.Later, rep.Covered)
				}
			} else {
				for _, p := range rep.Problems {
					fmt.Fprintln(cmd.OutOrStdout(), "FAIL:", p)
				}
			}
			if !rep.Valid {
				return &exitErr{exitVerifyFailed, errors.New("")}
			}
			return nil
		},
	}
	c.Flags().StringVar(&receiptPath, "receipt", "", "signed receipt (receipt.json); required")
	c.Flags().StringVar(&tracePath, "trace", "", "exported trace (trace.jsonl); required")
	c.Flags().StringVar(&keyPath, "public-key", "", "the signer's public key, as `keys` prints it; required")
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	c.Flags().StringVar(&programRef, "program", "", "also refold the trace through this program (the run's own) and confirm every transition is the one its guards give")
	for _, f := range []string{"receipt", "trace", "public-key"} {
		_ = c.MarkFlagRequired(f)
	}
	return c
}

// checkPolicy says whether the exported trace followed p, guard by guard:
// the report's policy check, which receipt.Check runs once every other
// check holds.
func checkPolicy(p *program.Program, traceText []byte) error {
	recs, err := receipt.ParseTrace(bytes.NewReader(traceText))
	if err != nil {
		return err
	}
	events, err := service.DecodeEvents(recs)
	if err != nil {
		return err
	}
	d, err := runtime.CheckPolicy(p, events)
	if d != nil {
		return fmt.Errorf("event %d: field %s: recorded %s, the program gives %s", d.Index, d.Field, d.Recorded, d.Replayed)
	}
	return err
}

func newKeysCmd() *cobra.Command {
	var store storeFlags
	c := &cobra.Command{
		Use:   "keys",
		Short: "Print the public key that verifies this server's receipts",
		Long: `Keys prints the public half of the receipt signing key kept in the data
directory (created there on first use), in the one-line form that
verify --public-key reads:

  nano-vm-mcp keys --data-dir DIR > key.pub

See docs/receipt-format.md for rotating the key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := store.dir()
			if err != nil {
				return err
			}
			keys, err := keyring.Open(dir, rand.Reader)
			if err != nil {
				return &exitErr{exitError, err}
			}
			fmt.Fprint(cmd.OutOrStdout(), keyring.FormatPublicKey(keys.Public()))
			return nil
		},
	}
	c.Flags().StringVar(&store.dataDir, "data-dir", "", "data directory holding the keys (default $XDG_DATA_HOME/nano-vm-mcp, else ~/.local/share/nano-vm-mcp)")
	return c
}
