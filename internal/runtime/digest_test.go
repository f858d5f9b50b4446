package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// bigText is an output about n bytes long that the review program's draft
// state would accept if it were on time.
func bigText(n int) string {
	return `{"score": 1, "text": "` + strings.Repeat("é", n/2) + `"}`
}

func TestUncountedRejectionKeepsABoundedDigest(t *testing.T) {
	p := loadTestProgram(t, "testdata/review.yaml")
	atReview := func(d *driver) {
		d.submit(`{"score": 9}`)
		d.submit(`{"ok": true}`, tool("linter"))
	}
	finished := func(d *driver) { d.apply(Cancel{At: t0}) }
	tests := []struct {
		name   string
		setup  func(d *driver)
		in     func(d *driver, out any) Input
		code   Code
		digest bool // a cancel has no output to digest
	}{
		{"stale seq", nil, func(d *driver, out any) Input {
			return Submit{Seq: d.run.Seq + 1, Output: out, At: t0}
		}, CodeStaleSeq, true},
		{"wrong state", nil, func(d *driver, out any) Input {
			return Submit{Seq: d.run.Seq, State: "check", Output: out, At: t0}
		}, CodeWrongState, true},
		{"definition mismatch", nil, func(d *driver, out any) Input {
			return Submit{Seq: d.run.Seq, DefinitionHash: "sha256:00", Output: out, At: t0}
		}, CodeDefinitionMismatch, true},
		{"approval answered by a step", atReview, func(d *driver, out any) Input {
			return Submit{Seq: d.run.Seq, Output: out, At: t0}
		}, CodeApprovalRequired, true},
		{"decision on a step", nil, func(d *driver, out any) Input {
			return Decide{Seq: d.run.Seq, Role: "editor", Decision: out, At: t0}
		}, CodeWrongState, true},
		{"oversized and stale", nil, func(d *driver, out any) Input {
			return Submit{Seq: d.run.Seq + 1, Output: out, Size: 2 << 20, At: t0}
		}, CodeStaleSeq, true},
		{"submission to a finished run", finished, func(d *driver, out any) Input {
			return Submit{Seq: d.run.Seq, Output: out, At: t0}
		}, CodeRunFinished, true},
		{"cancel of a finished run", finished, func(d *driver, out any) Input {
			return Cancel{Reason: "again", At: t0}
		}, CodeRunFinished, false},
	}
	raw := bigText(1 << 20)
	out := js(t, raw)
	canon, _ := jsonvalue.Canonical(out)
	sum := sha256.Sum256(canon)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t, p, `{"limit": 5}`)
			if tt.setup != nil {
				tt.setup(d)
			}
			res, err := d.apply(tt.in(d, out))
			if code(err) != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
			rec := lastEvent(res.Events).Rejection
			if rec == nil || rec.Counted || rec.Output != nil || rec.Uncounted != 1 {
				t.Fatalf("rejection %+v: want uncounted 1 and no output", rec)
			}
			if !tt.digest {
				if rec.Digest != nil {
					t.Fatalf("a cancel has a digest: %+v", rec.Digest)
				}
				return
			}
			dg := rec.Digest
			if dg == nil || dg.SHA256 != hex.EncodeToString(sum[:]) || dg.Bytes != len(canon) || dg.Personal {
				t.Fatalf("digest %+v, want sha256 %x of %d bytes", dg, sum, len(canon))
			}
			if len(dg.Prefix) > DigestPrefixBytes || len(dg.Prefix) < DigestPrefixBytes-3 || !strings.HasPrefix(string(canon), dg.Prefix) {
				t.Fatalf("prefix of %d bytes is not the canonical form's first %d: %q", len(dg.Prefix), DigestPrefixBytes, dg.Prefix)
			}
			body, err := encodeAll(res.Events)
			if err != nil {
				t.Fatal(err)
			}
			size := 0
			for _, r := range body {
				size += len(r)
			}
			if size > 4096 {
				t.Fatalf("the rejection of a 1 MB output recorded %d bytes", size)
			}
		})
	}
}

// withUncountedLimit is the review program with max_uncounted_rejections n.
func withUncountedLimit(t *testing.T, n int) *program.Program {
	t.Helper()
	raw, err := os.ReadFile("testdata/review.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(raw), "limits: {", "limits: {max_uncounted_rejections: "+strconv.Itoa(n)+", ", 1)
	p, err := program.Load("review.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// oldStyle rewrites a trace's uncounted rejections as runtimes before
// digests recorded them: the output whole, no digest, no count.
func oldStyle(events []Event, outputs map[uint64]any) []Event {
	out := make([]Event, len(events))
	for i, e := range events {
		if rec := e.Rejection; rec != nil && rec.Uncounted > 0 {
			old := *rec
			old.Digest, old.Uncounted, old.Output = nil, 0, outputs[e.Index]
			e.Rejection = &old
		}
		out[i] = e
	}
	return out
}

func TestTracesRecordedBeforeDigestsStillReplay(t *testing.T) {
	const limit = 2
	p := withUncountedLimit(t, limit)
	// Record more uncounted rejections on one task than the cap allows
	// today, as an older runtime could, with a cap that never applied.
	d := newDriver(t, p, `{"limit": 5}`)
	var events []Event
	outputs := map[uint64]any{}
	events = append(events, d.events...)
	run := d.run
	for i := range 2*limit + 3 {
		out := js(t, `{"score": `+strconv.Itoa(i)+`}`)
		res, err := Apply(p, run, Submit{Seq: run.Seq + 1, Output: out, At: t0})
		if code(err) != CodeStaleSeq {
			t.Fatalf("rejection %d: %v", i, err)
		}
		old := oldStyle(res.Events, map[uint64]any{res.Events[len(res.Events)-1].Index: out})
		events = append(events, old...)
		outputs[old[len(old)-1].Index] = out
		if run, err = Fold(p, events); err != nil {
			t.Fatal(err)
		}
	}
	// An old runtime finished the run; a new one then capped the finished
	// run's refusals, so one trace holds both kinds.
	res, err := Apply(p, run, Cancel{At: t0})
	if err != nil {
		t.Fatal(err)
	}
	events = append(events, res.Events...)
	run = res.Run
	for range limit + 1 {
		res, _ := Apply(p, run, Submit{Seq: run.Seq, Output: js(t, `{"score": 1}`), At: t0})
		events = append(events, res.Events...)
		run = res.Run
	}
	if last := events[len(events)-1].Rejection; last == nil || last.Code != CodeThrottled {
		t.Fatalf("the new runtime did not throttle: %+v", last)
	}
	if _, err := Fold(p, events); err != nil {
		t.Fatal(err)
	}
	if d, err := Replay(p, events); err != nil || d != nil {
		t.Fatalf("a trace with full-output rejections does not replay: %+v %v", d, err)
	}
}
