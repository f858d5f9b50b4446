package jsonvalue

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
)

// canonicalReference is the original Canonical: encoding/json, then
// gowebpki/jcs re-parsing and re-serialising the result. Canonical must
// produce exactly its bytes, and fail exactly when it fails.
func canonicalReference(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("jsonvalue: canonical: %w", err)
	}
	out, err := jcs.Transform(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("jsonvalue: canonical: %w", err)
	}
	return out, nil
}

// The types below mirror runtime.Event and what it holds (runtime imports
// this package, so the test cannot use the real ones): pointers to optional
// parts, omitempty, named string types, decoded documents in `any` and in
// map[string]any, and an unexported field.

type testEventType string

type testActor string

type testEvent struct {
	RunID      string              `json:"run_id"`
	Index      uint64              `json:"index"`
	Type       testEventType       `json:"type"`
	At         string              `json:"at"`
	Seq        uint64              `json:"seq,omitempty"`
	State      string              `json:"state,omitempty"`
	Prev       string              `json:"prev,omitempty"`
	Started    *testStarted        `json:"started,omitempty"`
	Input      *testInputRecord    `json:"input,omitempty"`
	Task       *testTask           `json:"task,omitempty"`
	Submission *testSubmission     `json:"submission,omitempty"`
	Rejection  *testRejection      `json:"rejection,omitempty"`
	Transition *testTransition     `json:"transition,omitempty"`
	Finished   *struct{ X string } `json:"finished,omitempty"`

	converted any
}

type testProgramRef struct {
	Name           string `json:"name"`
	Version        string `json:"version"`
	DefinitionHash string `json:"definition_hash"`
}

type testStarted struct {
	Program   testProgramRef    `json:"program"`
	Runtime   string            `json:"runtime_version"`
	CEL       string            `json:"cel_version"`
	Principal string            `json:"principal,omitempty"`
	Lab       bool              `json:"lab,omitempty"`
	Input     any               `json:"input"`
	Subjects  map[string]string `json:"subjects,omitempty"`
}

type testInputRecord struct {
	Kind  string    `json:"kind"`
	Seq   uint64    `json:"seq,omitempty"`
	Actor testActor `json:"actor,omitempty"`
	Size  int       `json:"size,omitempty"`
}

type testTask struct {
	Seq          uint64         `json:"seq"`
	State        string         `json:"state"`
	Kind         string         `json:"kind"`
	Instructions string         `json:"instructions,omitempty"`
	Role         string         `json:"role,omitempty"`
	View         map[string]any `json:"view"`
	OutputSchema map[string]any `json:"output_schema"`
	AttemptsLeft int            `json:"attempts_left"`
	Tool         *testToolCall  `json:"tool,omitempty"`
}

type testToolCall struct {
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

type testSubmission struct {
	Actor     testActor `json:"actor"`
	Principal string    `json:"principal,omitempty"`
	Output    any       `json:"output"`
	Approvers []string  `json:"approvers,omitempty"`
}

type testRejection struct {
	Code       string    `json:"code"`
	Message    string    `json:"message"`
	Details    []string  `json:"details,omitempty"`
	Counted    bool      `json:"counted"`
	Attempts   int       `json:"attempts"`
	Actor      testActor `json:"actor,omitempty"`
	ClaimedSeq uint64    `json:"claimed_seq,omitempty"`
	Output     any       `json:"output,omitempty"`
}

type testTransition struct {
	From       string   `json:"from"`
	To         string   `json:"to"`
	Transition int      `json:"transition"`
	Cause      string   `json:"cause"`
	Rollback   bool     `json:"rollback,omitempty"`
	Cleared    []string `json:"cleared,omitempty"`
}

// testEvents reads testdata/events.jsonl: the canonical events of a KYC
// run's first steps (a start, a task with its view and output schema, a
// rejection, a submission, a transition, a tool task), decoded the way
// service.DecodeEvents does, with every event after the first chained.
func testEvents(tb testing.TB) []testEvent {
	tb.Helper()
	f, err := os.Open("testdata/events.jsonl")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []testEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		var e testEvent
		if err := dec.Decode(&e); err != nil {
			tb.Fatal(err)
		}
		if e.Index > 0 {
			e.Prev = strings.Repeat("0123456789abcdef", 4)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// BenchmarkCanonical times Canonical on what the runtime hashes at every
// step: events (structs holding decoded documents), and one decoded
// document on its own. Each case has a reference twin, the original
// encoding/json + gowebpki/jcs implementation, for comparison.
func BenchmarkCanonical(b *testing.B) {
	events := testEvents(b)
	doc, err := Decode([]byte(mustMarshal(b, events[0].Started.Input)))
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		v    any
	}{
		{"event-task", &events[1]},       // task_issued: view + output schema, ~3.2 KB
		{"event-submission", &events[5]}, // submission_accepted, ~0.7 KB
		{"event-transition", &events[6]}, // transitioned, ~0.3 KB
		{"decoded", doc},                 // the run input, a Decode result, ~1.1 KB
	}
	impls := []struct {
		name string
		fn   func(any) ([]byte, error)
	}{
		{"fast", Canonical},
		{"reference", canonicalReference},
	}
	for _, c := range cases {
		for _, impl := range impls {
			b.Run(c.name+"/"+impl.name, func(b *testing.B) {
				out, err := impl.fn(c.v)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(out)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := impl.fn(c.v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func mustMarshal(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
