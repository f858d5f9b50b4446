package analyzer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
)

func clock(i int) time.Time {
	return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
}

// driveExample runs an example's answers through the core and returns
// every event and the final run. A rejected answer uses up an attempt and
// the same task takes the next line, as in the examples' own test.
func driveExample(t *testing.T, answersFile string) ([]runtime.Event, *runtime.Run) {
	t.Helper()
	parts := strings.Split(strings.TrimSuffix(answersFile, ".answers.jsonl"), ".")
	prog, input := parts[0], parts[0]+".input.json"
	if len(parts) == 3 {
		input = parts[0] + "." + parts[1] + ".input.json"
	}
	p, _ := examples.MustLoad(prog)
	decode := func(b []byte) any {
		v, err := jsonvalue.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	in, err := examples.FS.ReadFile(input)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runtime.Apply(p, nil, runtime.Start{RunID: "run-1", Principal: "test", Input: decode(in), At: clock(0)})
	if err != nil {
		t.Fatal(err)
	}
	events, run := res.Events, res.Run
	data, err := examples.FS.ReadFile(answersFile)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	i := 0
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 || run.Finished() || run.Task == nil {
			continue
		}
		i++
		task, line := run.Task, decode(sc.Bytes())
		var in runtime.Input
		switch task.Kind {
		case string(program.KindApproval):
			in = runtime.Decide{Seq: task.Seq, State: task.State, Role: task.Role, Principal: "test", Decision: line, At: clock(i)}
		case string(program.KindTool):
			in = runtime.Submit{Seq: task.Seq, State: task.State, Tool: task.Tool.Name, Actor: runtime.ActorTool, Principal: "test", Output: line, At: clock(i)}
		default:
			in = runtime.Submit{Seq: task.Seq, State: task.State, Principal: "test", Output: line, At: clock(i)}
		}
		res, err := runtime.Apply(p, run, in)
		var rej *runtime.Rejection
		if err != nil && !errors.As(err, &rej) {
			t.Fatal(err)
		}
		events = append(events, res.Events...)
		if res.Run != nil {
			run = res.Run
		}
	}
	// A late answer after the end: refused, recorded, counted.
	res, err = runtime.Apply(p, run, runtime.Submit{Seq: run.Seq, Output: map[string]any{}, At: clock(i + 1)})
	var rej *runtime.Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("late answer: %v", err)
	}
	events = append(events, res.Events...)
	if res.Run != nil {
		run = res.Run
	}
	return events, run
}

// TestFromEventsMatchesTheRun drives every example's answers through the
// core and checks that the stats derived from the events, read back from
// JSON as a store would hold them, agree with the folded run.
func TestFromEventsMatchesTheRun(t *testing.T) {
	entries, err := fs.Glob(examples.FS, "*.answers.jsonl")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no answers files: %v", err)
	}
	var window []RunStats
	for _, f := range entries {
		t.Run(f, func(t *testing.T) {
			events, run := driveExample(t, f)
			data, err := json.Marshal(events)
			if err != nil {
				t.Fatal(err)
			}
			var back []runtime.Event
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			s, err := FromEvents(back)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			var accepted int64
			for _, e := range events {
				if e.Type == runtime.EventSubmissionAccepted || e.Type == runtime.EventApprovalRecorded {
					accepted++
				}
			}
			switch {
			case s.RunID != run.ID || s.Program != run.Program || !s.Started.Equal(clock(0)):
				t.Errorf("identity %q %+v %v", s.RunID, s.Program, s.Started)
			case !slices.Equal(s.Path, run.Path):
				t.Errorf("path %v, want %v", s.Path, run.Path)
			case len(s.Transitions) != run.Steps || s.Rollbacks() != int64(run.Rollbacks):
				t.Errorf("%d transitions, %d rollbacks; want %d, %d", len(s.Transitions), s.Rollbacks(), run.Steps, run.Rollbacks)
			case s.Rejections != int64(run.Rejections) || s.Rejections < 1:
				t.Errorf("%d rejections, want %d (late answer included)", s.Rejections, run.Rejections)
			case s.Status != run.Status || s.Outcome != run.Outcome:
				t.Errorf("finished %s %s, want %s %s", s.Status, s.Outcome, run.Status, run.Outcome)
			case s.Accepted != accepted || s.Attempts > s.Rejections-1 || s.Faults != 0:
				t.Errorf("accepted %d (want %d), attempts %d, faults %d", s.Accepted, accepted, s.Attempts, s.Faults)
			}
			window = append(window, s)
		})
	}
	// The examples of each program, analysed: every value finite and in range.
	for _, name := range examples.Programs() {
		var runs []RunStats
		for _, s := range window {
			if s.Program.Name == name {
				runs = append(runs, s)
			}
		}
		r := Analyze(runs, Options{})
		if r.Program != name || r.Runs != len(runs) || r.Runs == 0 {
			t.Errorf("%s: report for %q over %d runs", name, r.Program, r.Runs)
		}
		checkReport(t, r)
	}
}

// TestFromEventsCounts pins the counting rules on a hand-made trace.
func TestFromEventsCounts(t *testing.T) {
	at := "2026-11-25T12:00:00.25Z"
	ev := func(typ runtime.EventType) runtime.Event { return runtime.Event{RunID: "r", Type: typ, At: at} }
	started := ev(runtime.EventRunStarted)
	started.State = "a"
	started.Started = &runtime.Started{Program: runtime.ProgramRef{Name: "p", Version: "1", DefinitionHash: "sha256:00"}}
	hop := func(from, to string, rollback bool) runtime.Event {
		e := ev(runtime.EventTransitioned)
		e.Transition = &runtime.TransitionRecord{From: from, To: to, Rollback: rollback}
		return e
	}
	rejected := func(counted bool) runtime.Event {
		e := ev(runtime.EventSubmissionRejected)
		e.Rejection = &runtime.RejectionRecord{Code: runtime.CodeSchemaViolation, Counted: counted}
		return e
	}
	finished := ev(runtime.EventRunFinished)
	finished.Finished = &runtime.Finished{Status: runtime.StatusCompleted, Outcome: "DONE"}
	events := []runtime.Event{
		started, ev(runtime.EventTaskIssued), ev(runtime.EventInputReceived), rejected(true),
		ev(runtime.EventInputReceived), ev(runtime.EventSubmissionAccepted), hop("a", "b", false),
		ev(runtime.EventApprovalRecorded), ev(eventFaultInjected), ev(runtime.EventSubmissionAccepted),
		hop("b", "a", true), ev(runtime.EventSubmissionAccepted), hop("a", "c", false), finished,
		ev(runtime.EventInputReceived), rejected(false), ev("some_future_type"),
	}
	s, err := FromEvents(events)
	if err != nil {
		t.Fatal(err)
	}
	want := RunStats{
		RunID: "r", Program: started.Started.Program, Started: time.Date(2026, 11, 25, 12, 0, 0, 250e6, time.UTC),
		Status: runtime.StatusCompleted, Outcome: "DONE",
		Path:        []string{"a", "b", "a", "c"},
		Transitions: []Transition{{"a", "b", false}, {"b", "a", true}, {"a", "c", false}},
		Accepted:    4, Rejections: 2, Attempts: 1, Faults: 1,
	}
	got, _ := json.Marshal(s)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) || s.Rollbacks() != 1 {
		t.Errorf("got  %s\nwant %s", got, exp)
	}
	// A running run: no run_finished yet.
	s, err = FromEvents(events[:4])
	if err != nil || s.Status != runtime.StatusRunning || s.Outcome != "" || len(s.Path) != 1 {
		t.Errorf("running: %+v %v", s, err)
	}
}

func TestFromEventsRefuses(t *testing.T) {
	ok := runtime.Event{Type: runtime.EventRunStarted, State: "a", At: "2026-11-25T12:00:00Z", Started: &runtime.Started{}}
	with := func(mod func(e *runtime.Event)) runtime.Event { e := ok; mod(&e); return e }
	cases := map[string][]runtime.Event{
		"no events":              nil,
		"not run_started":        {{Type: runtime.EventTaskIssued}},
		"run_started twice":      {ok, ok},
		"no started payload":     {with(func(e *runtime.Event) { e.Started = nil })},
		"no initial state":       {with(func(e *runtime.Event) { e.State = "" })},
		"bad time":               {with(func(e *runtime.Event) { e.At = "yesterday" })},
		"hop without payload":    {ok, {Type: runtime.EventTransitioned}},
		"hop from elsewhere":     {ok, {Type: runtime.EventTransitioned, Transition: &runtime.TransitionRecord{From: "b", To: "c"}}},
		"finish without payload": {ok, {Type: runtime.EventRunFinished}},
	}
	for name, events := range cases {
		if s, err := FromEvents(events); err == nil {
			t.Errorf("%s: accepted, gave %+v", name, s)
		}
	}
}

func TestValidate(t *testing.T) {
	good := withRollbacks(FromPath("a", "b", "a"), 1)
	good.Rejections, good.Attempts = 2, 2
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(s *RunStats){
		"empty path":            func(s *RunStats) { s.Path, s.Transitions = nil, nil },
		"missing transition":    func(s *RunStats) { s.Transitions = s.Transitions[:1] },
		"transition off path":   func(s *RunStats) { s.Transitions[1].To = "z" },
		"negative count":        func(s *RunStats) { s.Faults = -1 },
		"attempts > rejections": func(s *RunStats) { s.Attempts = 3 },
	}
	for name, mod := range bad {
		s := good
		s.Transitions = slices.Clone(good.Transitions)
		mod(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
