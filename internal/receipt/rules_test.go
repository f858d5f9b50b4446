package receipt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
)

// fixture is an exported run to tamper with: its trace lines (without
// newlines) and the receipt.json of its first size events.
type fixture struct {
	lines   [][]byte
	receipt []byte
}

func refundFixture(t *testing.T, size int) fixture {
	t.Helper()
	store, id := refundTrace(t, true)
	traceBytes, recs := export(t, store, id)
	if size <= 0 {
		size = len(recs)
	}
	return fixture{lines: bytes.Split(bytes.TrimSuffix(traceBytes, []byte("\n")), []byte("\n")), receipt: signed(t, recs, uint64(size))}
}

// edit changes event k's decoded form and chains every later event to it
// again, as a forger would: the chain holds, so the rule under test, not
// prev, is what must refuse it.
func (f fixture) edit(t *testing.T, k int, change func(e map[string]any)) fixture {
	t.Helper()
	lines := make([][]byte, len(f.lines))
	copy(lines, f.lines)
	for i := k; i < len(lines); i++ {
		v, err := jsonvalue.DecodeDepth(lines[i], jsonvalue.MaxDepth+jsonvalue.EnvelopeDepth)
		if err != nil {
			t.Fatal(err)
		}
		e := v.(map[string]any)
		if i == k {
			change(e)
		} else {
			e["prev"] = trace.Hex(trace.LeafHash(lines[i-1]))
		}
		if lines[i], err = jsonvalue.Canonical(e); err != nil {
			t.Fatal(err)
		}
	}
	return fixture{lines: lines, receipt: f.receipt}
}

// resign changes the receipt body and signs it again with the test key.
func (f fixture) resign(t *testing.T, change func(b map[string]any)) fixture {
	t.Helper()
	env, err := ParseSigned(f.receipt)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := jsonvalue.Decode(env.Receipt)
	change(v.(map[string]any))
	body, err := jsonvalue.Canonical(v)
	if err != nil {
		t.Fatal(err)
	}
	_, priv := testKey()
	out, err := jsonvalue.Canonical(&Signed{Receipt: body, Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, body)), KeyID: env.KeyID})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{lines: f.lines, receipt: append(out, '\n')}
}

func (f fixture) traceFile() []byte {
	if len(f.lines) == 0 {
		return nil
	}
	return append(bytes.Join(f.lines, []byte("\n")), '\n')
}

func (f fixture) verify() Report { return verify(f.traceFile(), f.receipt) }

func rename(m map[string]any, from, to string) {
	m[to] = m[from]
	delete(m, from)
}

func payload(e map[string]any, name string) map[string]any { return e[name].(map[string]any) }

// TestVerifierRules pins each rule docs/receipt-format.md §7 settles: the
// exact first problem of a tampered export, and the covered and later
// counts of the report. The refund trace has 14 events: 4 and 12 are
// transitioned, 13 run_finished; the receipt covers the first 5.
func TestVerifierRules(t *testing.T) {
	base := refundFixture(t, 5)
	if n := len(base.lines); n != 14 || !bytes.Contains(base.lines[4], []byte(`"type":"transitioned"`)) ||
		!bytes.Contains(base.lines[12], []byte(`"type":"transitioned"`)) {
		t.Fatalf("the refund trace changed shape (%d events); the cases below expect the one described", n)
	}
	const trans, lt = 4, 12
	tests := []struct {
		name           string
		f              fixture
		want           string // the first problem, exactly
		covered, later uint64
	}{
		{"untouched", base, "", 5, 9},

		// Types are checked on every event, covered or not.
		{"transition.to not a string, after tree.size", base.edit(t, lt, func(e map[string]any) { payload(e, "transition")["to"] = jsonNumber("7") }),
			fmt.Sprintf("trace: event %d: field transition.to: expected a string, found 7", lt), 5, 0},
		{"state not a string, after tree.size", base.edit(t, 8, func(e map[string]any) { e["state"] = []any{} }),
			"trace: event 8: field state: expected a string, found []", 5, 0},
		{"rejection.counted not a boolean, on an event of another type", base.edit(t, 9, func(e map[string]any) { e["rejection"] = map[string]any{"counted": "yes"} }),
			`trace: event 9: field rejection.counted: expected a boolean, found "yes"`, 5, 0},
		{"started on a later event, not an object", base.edit(t, 9, func(e map[string]any) { e["started"] = nil }),
			"trace: event 9: field started: expected an object, found null", 5, 0},
		{"transition.rollback null", base.edit(t, lt, func(e map[string]any) { payload(e, "transition")["rollback"] = nil }),
			fmt.Sprintf("trace: event %d: field transition.rollback: expected a boolean, found null", lt), 5, 0},

		// The chain checks, in order; type is required.
		{"type missing", base.edit(t, 6, func(e map[string]any) { delete(e, "type") }),
			"trace: event 6: field type: expected a string, found none", 5, 0},
		{"type null", base.edit(t, 6, func(e map[string]any) { e["type"] = nil }),
			"trace: event 6: field type: expected a string, found null", 5, 0},
		{"index before run_id", base.edit(t, 5, func(e map[string]any) { e["index"] = jsonNumber("9"); e["run_id"] = "x" }),
			"trace: event 5: field index: expected 5, found 9", 5, 0},
		{"index not an integer", base.edit(t, 5, func(e map[string]any) { e["index"] = "5" }),
			`trace: event 5: field index: expected 5, found "5"`, 5, 0},
		{"run_id before type", base.edit(t, 5, func(e map[string]any) { e["run_id"] = "x"; delete(e, "type") }),
			`trace: event 5: field run_id: expected "run-1", found "x"`, 5, 0},
		{"type before prev", base.edit(t, 5, func(e map[string]any) { delete(e, "type"); e["prev"] = "00" }),
			"trace: event 5: field type: expected a string, found none", 5, 0},
		{"prev on event 0", base.edit(t, 0, func(e map[string]any) { e["prev"] = strings.Repeat("0", 64) }),
			`trace: event 0: field prev: expected none, found "` + strings.Repeat("0", 64) + `"`, 5, 0},
		{"prev before the types of the payload", base.edit(t, 5, func(e map[string]any) { e["state"] = jsonNumber("1"); e["prev"] = "00" }),
			"trace: event 5: field prev: expected " + trace.Hex(trace.LeafHash(base.lines[4])) + `, found "00"`, 5, 0},
		{"not an object", fixture{lines: append(append([][]byte{}, base.lines[:3]...), []byte(`[1]`)), receipt: base.receipt},
			"trace: event 3: expected an object, found [1]", 5, 0},

		// run_started is event 0 and no other, over the whole trace.
		{"run_started after tree.size", base.edit(t, 9, func(e map[string]any) { e["type"] = "run_started" }),
			"trace: event 9: run_started must come first, once", 5, 0},
		{"trace without run_started", base.edit(t, 0, func(e map[string]any) { e["type"] = "run_begun" }),
			`trace: event 0: the trace must begin with run_started, not "run_begun"`, 5, 0},
		{"empty trace", fixture{receipt: base.receipt}, "trace: the trace has no events; it must begin with run_started", 5, 0},
		{"tree.size 0", base.resign(t, func(b map[string]any) { payload(b, "tree")["size"] = jsonNumber("0") }),
			"tree.size: the receipt covers 0 events; a receipt covers at least 1", 0, 0},
		{"tree.size beyond the trace", base.resign(t, func(b map[string]any) { payload(b, "tree")["size"] = jsonNumber("15") }),
			"tree.size: the receipt covers 15 events, the trace has 14", 15, 0},

		// Member names match exactly, in the body and in payloads.
		{"body member in another case", base.resign(t, func(b map[string]any) { rename(b, "kind", "Kind") }),
			`receipt: unknown member "Kind"`, 0, 0},
		{"body member missing", base.resign(t, func(b map[string]any) { delete(b, "outcome") }),
			`receipt: member "outcome" missing`, 0, 0},
		{"body tree.size not an integer", base.resign(t, func(b map[string]any) { payload(b, "tree")["size"] = "4" }),
			`receipt field tree.size: expected an integer ≥ 0, found "4"`, 0, 0},
		{"payload member in another case, covered", base.edit(t, trans, func(e map[string]any) { rename(e, "transition", "Transition") }),
			fmt.Sprintf("trace: event %d: transitioned without transition", trans), 5, 9},
		{"program member in another case", base.edit(t, 0, func(e map[string]any) { rename(payload(payload(e, "started"), "program"), "name", "Name") }),
			"trace: event 0: run_started without started.program.name", 5, 9},

		// The trace format version.
		{"unknown trace format", base.edit(t, 0, func(e map[string]any) { payload(e, "started")["trace_format"] = "nano-vm-trace/3" }),
			`trace: event 0: field started.trace_format: expected "nano-vm-trace/1" or "nano-vm-trace/2", found "nano-vm-trace/3": this verifier reads those trace formats only`, 5, 0},
		{"trace format empty", base.edit(t, 0, func(e map[string]any) { payload(e, "started")["trace_format"] = "" }),
			`trace: event 0: field started.trace_format: expected "nano-vm-trace/1" or "nano-vm-trace/2", found "": this verifier reads those trace formats only`, 5, 0},
		{"the first trace format still reads; the hash covers it", base.edit(t, 0, func(e map[string]any) { payload(e, "started")["trace_format"] = "nano-vm-trace/1" }),
			"receipt field tree: the trace gives", 5, 9},
		{"a first-format receipt cannot attest a second-format trace", base.resign(t, func(b map[string]any) {
			b["format"] = "nano-vm-receipt/1"
			c := payload(b, "counts")
			delete(c, "tool_calls_executed")
			delete(c, "tool_calls_reported")
		}), `trace: event 0: run_started in trace format "nano-vm-trace/2", which a "nano-vm-receipt/1" receipt cannot attest`, 5, 9},
		{"unknown receipt format", base.resign(t, func(b map[string]any) { b["format"] = "nano-vm-receipt/3" }),
			`receipt field format: expected "nano-vm-receipt/1" or "nano-vm-receipt/2", found "nano-vm-receipt/3"`, 0, 0},
		{"tool calls reported miscounted", base.resign(t, func(b map[string]any) { payload(b, "counts")["tool_calls_reported"] = jsonNumber("1") }),
			"receipt field counts: the trace gives", 5, 9},
		{"submission actor not a string", base.edit(t, 3, func(e map[string]any) { payload(e, "submission")["actor"] = true }),
			"trace: event 3: field submission.actor: expected a string, found true", 5, 0},
		{"call.failed not a boolean", base.edit(t, 9, func(e map[string]any) { e["call"] = map[string]any{"failed": "no"} }),
			`trace: event 9: field call.failed: expected a boolean, found "no"`, 5, 0},
		{"a trace format on a later event is not read", base.edit(t, 9, func(e map[string]any) { e["started"] = map[string]any{"trace_format": "nano-vm-trace/9"} }),
			"", 5, 9},
		{"trace format checked after the types", base.edit(t, 0, func(e map[string]any) {
			payload(e, "started")["trace_format"] = "nano-vm-trace/3"
			e["finished"] = true
		}), "trace: event 0: field finished: expected an object, found true", 5, 0},
		{"trace format not a string", base.edit(t, 0, func(e map[string]any) { payload(e, "started")["trace_format"] = jsonNumber("1") }),
			"trace: event 0: field started.trace_format: expected a string, found 1", 5, 0},
		{"trace format removed: the hash covers it", base.edit(t, 0, func(e map[string]any) { delete(payload(e, "started"), "trace_format") }),
			"receipt field tree: the trace gives", 5, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := tt.f.verify()
			first := ""
			if len(rep.Problems) > 0 {
				first = rep.Problems[0]
			}
			// A want ending in "gives" names the field; the values follow.
			match := first == tt.want || strings.HasSuffix(tt.want, " gives") && strings.HasPrefix(first, tt.want)
			if !match || (tt.want == "") != rep.Valid {
				t.Fatalf("first problem\n  %q\nwant\n  %q\n(all: %q)", first, tt.want, rep.Problems)
			}
			if rep.Covered != tt.covered || rep.Later != tt.later {
				t.Fatalf("covered %d, later %d; want %d and %d", rep.Covered, rep.Later, tt.covered, tt.later)
			}
		})
	}
}

func jsonNumber(s string) any {
	v, err := jsonvalue.Decode([]byte(s))
	if err != nil {
		panic(err)
	}
	return v
}

// TestReceiptFileIsReadByteForByte: receipt.json is the canonical envelope
// and one \n; whatever surrounds it is refused with a message that says
// so, never trimmed.
func TestReceiptFileIsReadByteForByte(t *testing.T) {
	f := refundFixture(t, 0)
	env := bytes.TrimSuffix(f.receipt, []byte("\n"))
	join := func(parts ...string) []byte {
		return []byte(parts[0] + string(env) + parts[1])
	}
	const msg = `receipt: receipt.json must be the canonical envelope followed by one \n, nothing else; it has `
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"as exported", join("", "\n"), ""},
		{"CRLF", join("", "\r\n"), msg + "a CRLF line end"},
		{"no final newline", join("", ""), msg + `no final \n`},
		{"two newlines", join("", "\n\n"), msg + "whitespace around the envelope"},
		{"space before", join(" ", "\n"), msg + "whitespace around the envelope"},
		{"newline before", join("\n", "\n"), msg + "whitespace around the envelope"},
		{"space after", join("", " \n"), msg + "whitespace around the envelope"},
		{"tab after the newline", join("", "\n\t"), msg + `no final \n`},
		{"byte-order mark", join("\ufeff", "\n"), "receipt: jsonvalue:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := verify(f.traceFile(), tt.file)
			if tt.want == "" {
				if !rep.Valid {
					t.Fatalf("refused: %q", rep.Problems)
				}
				return
			}
			if rep.Valid || len(rep.Problems) != 1 || !strings.HasPrefix(rep.Problems[0], tt.want) {
				t.Fatalf("problems %q, want one starting %q", rep.Problems, tt.want)
			}
		})
	}
}

// TestTraceNestingBound: an event line nests at most 144 deep (the event
// object is level 1): 128 for the documents it holds and 16 around them.
func TestTraceNestingBound(t *testing.T) {
	line := func(depth int) string {
		// The event object is level 1, "input"'s array level 2.
		inner := depth - 1
		return `{"index":0,"input":` + strings.Repeat("[", inner) + strings.Repeat("]", inner) + `,"run_id":"r","type":"run_started"}` + "\n"
	}
	if _, err := ParseTrace(strings.NewReader(line(144))); err != nil {
		t.Fatalf("144 deep: %v", err)
	}
	if _, err := ParseTrace(strings.NewReader(line(145))); err == nil || !strings.Contains(err.Error(), "trace line 1: ") {
		t.Fatalf("145 deep: %v", err)
	}
}

// TestUntaggedTraceStillVerifies: an export written before run_started
// recorded started.trace_format (the worked example of docs/*-format.md
// as it was) reads as nano-vm-trace/1 and still verifies.
func TestUntaggedTraceStillVerifies(t *testing.T) {
	dir := filepath.Join("testdata", "untagged")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	traceBytes, receiptBytes := read("trace.jsonl"), read("receipt.json")
	if bytes.Contains(traceBytes, []byte("trace_format")) {
		t.Fatal("the fixture records a trace format; it must be the untagged form")
	}
	pub, err := keyring.ParsePublicKey(read("key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ParseTrace(bytes.NewReader(traceBytes))
	if err != nil {
		t.Fatal(err)
	}
	env, err := ParseSigned(receiptBytes)
	if err != nil {
		t.Fatal(err)
	}
	if rep := Verify(env, recs, pub); !rep.Valid || rep.Covered != 6 || rep.Later != 0 {
		t.Fatalf("the untagged export: %+v", rep)
	}
}
