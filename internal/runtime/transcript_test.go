package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// TestTranscripts runs the core's behaviour scripts, testdata/transcripts/
// *.txt: inputs to one run and, under each, the events the core recorded
// and its answer. testdata/transcripts/README.md says how to read them;
// `go test ./internal/runtime -run TestTranscripts -rewrite` rewrites the
// expected output after a deliberate change (read the diff).
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) { runTranscript(t, path) })
	}
}

func runTranscript(t *testing.T, path string) {
	s := &script{}
	datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
		out := s.run(t, td)
		if s.p != nil {
			// The hash changes with every edit of the program.
			out = strings.ReplaceAll(out, s.p.Hash, "$HASH")
		}
		return out
	})
}

// script is the state of one transcript: the program and the run's driver,
// which checks the core's invariants on every input (the result's run is
// the fold of the events; a rejection changes nothing but its counters).
type script struct {
	p   *program.Program
	d   *driver
	now time.Time
}

// transcriptArgs are the arguments each command takes, besides at= (and
// load's max_ limits).
var transcriptArgs = map[string][]string{
	"load":   {"program"},
	"start":  {"principal", "executors"},
	"step":   {"seq", "state", "hash", "principal", "size", "tool", "actor"},
	"decide": {"seq", "state", "hash", "principal", "size", "role", "allow-self"},
	"cancel": {"principal", "reason"},
	"tick":   nil,
	"show":   nil,
	"replay": nil,
	// Outcomes of the open runtime tool call, as the shell reports them;
	// seq, call and attempt default to the open call's.
	"tool-result":  {"seq", "call", "attempt", "size", "retry"},
	"tool-failure": {"seq", "call", "attempt", "class", "detail", "retry"},
	"tool-unknown": {"seq", "call", "attempt", "detail"},
	"resolve":      {"call", "principal", "failed", "detail"},
	"policy":       nil,
}

func (s *script) run(t *testing.T, td *datadriven.TestData) string {
	if s.d != nil {
		s.d.t = t
	}
	if td.Cmd != "load" && s.p == nil {
		td.Fatalf(t, "load a program first")
	}
	if td.Cmd != "load" && td.Cmd != "start" && s.d == nil {
		td.Fatalf(t, "start the run first")
	}
	for _, arg := range td.CmdArgs {
		// A misspelt argument would otherwise be silently ignored.
		if !slices.Contains(transcriptArgs[td.Cmd], arg.Key) && arg.Key != "at" &&
			(td.Cmd != "load" || !strings.HasPrefix(arg.Key, "max_")) {
			td.Fatalf(t, "%s takes no argument %q", td.Cmd, arg.Key)
		}
	}
	if td.HasArg("at") {
		// The injected clock: an offset from t0 that later inputs keep.
		var at string
		td.ScanArgs(t, "at", &at)
		dur, err := time.ParseDuration(strings.TrimPrefix(at, "+"))
		if err != nil {
			td.Fatalf(t, "at=%s: %v", at, err)
		}
		s.now = t0.Add(dur)
	}
	switch td.Cmd {
	case "load":
		return s.load(t, td)
	case "start":
		return s.start(t, td)
	case "step":
		in := Submit{Seq: s.d.run.Seq, Output: s.payload(t, td), At: s.now}
		in.Size = s.size(t, td, in.Output)
		s.claims(t, td, &in.Seq, &in.State, &in.DefinitionHash, &in.Principal)
		td.MaybeScanArgs(t, "tool", &in.Tool)
		// Without actor=, the core infers it, as it does for the MCP step.
		var actor string
		if td.MaybeScanArgs(t, "actor", &actor) {
			in.Actor = Actor(actor)
		}
		return s.apply(in)
	case "decide":
		in := Decide{Seq: s.d.run.Seq, Role: s.p.States[s.d.run.State].Role, Decision: s.payload(t, td), At: s.now}
		in.Size = s.size(t, td, in.Decision)
		s.claims(t, td, &in.Seq, &in.State, &in.DefinitionHash, &in.Principal)
		td.MaybeScanArgs(t, "role", &in.Role)
		in.AllowSelf = td.HasArg("allow-self")
		return s.apply(in)
	case "cancel":
		in := Cancel{At: s.now}
		td.MaybeScanArgs(t, "principal", &in.Principal)
		td.MaybeScanArgs(t, "reason", &in.Reason)
		return s.apply(in)
	case "tick":
		return s.apply(Tick{At: s.now})
	case "tool-result":
		in := ToolResult{Output: s.payload(t, td), Retry: td.HasArg("retry"), At: s.now}
		in.Size = s.size(t, td, in.Output)
		s.call(t, td, &in.Seq, &in.CallID, &in.Attempt)
		return s.apply(in)
	case "tool-failure":
		in := ToolFailure{Class: "tool_error", Retry: td.HasArg("retry"), At: s.now}
		s.call(t, td, &in.Seq, &in.CallID, &in.Attempt)
		td.MaybeScanArgs(t, "class", &in.Class)
		td.MaybeScanArgs(t, "detail", &in.Detail)
		return s.apply(in)
	case "tool-unknown":
		in := ToolUnknown{At: s.now}
		s.call(t, td, &in.Seq, &in.CallID, &in.Attempt)
		td.MaybeScanArgs(t, "detail", &in.Detail)
		return s.apply(in)
	case "resolve":
		in := ResolveTool{Principal: "operator", Failed: td.HasArg("failed"), At: s.now}
		var seq uint64
		var attempt int
		s.call(t, td, &seq, &in.CallID, &attempt)
		td.MaybeScanArgs(t, "principal", &in.Principal)
		td.MaybeScanArgs(t, "detail", &in.Detail)
		if !in.Failed {
			in.Output = s.payload(t, td)
			in.Size = s.size(t, td, in.Output)
		}
		return s.apply(in)
	case "policy":
		div, err := CheckPolicy(s.p, s.d.events)
		switch {
		case err != nil:
			return "error: " + err.Error() + "\n"
		case div != nil:
			return fmt.Sprintf("diverges at event %d, field %s: recorded %s, checked %s\n", div.Index, div.Field, div.Recorded, div.Replayed)
		}
		return "every guard and transition follows the program\n"
	case "show":
		return s.show()
	case "replay":
		div, err := Replay(s.p, s.d.events)
		switch {
		case err != nil:
			return "error: " + err.Error() + "\n"
		case div != nil:
			return fmt.Sprintf("diverges at event %d, field %s: recorded %s, replayed %s\n", div.Index, div.Field, div.Recorded, div.Replayed)
		}
		return fmt.Sprintf("%d events replay identically\n", len(s.d.events))
	}
	td.Fatalf(t, "unknown command %q", td.Cmd)
	return ""
}

// load reads testdata/<program>; each other argument overrides one of its
// limits (max_rollbacks=0), written into the source, so that the loader
// reads it as a program author would have written it.
func (s *script) load(t *testing.T, td *datadriven.TestData) string {
	var file string
	td.ScanArgs(t, "program", &file)
	src, err := os.ReadFile("testdata/" + file)
	if err != nil {
		td.Fatalf(t, "%v", err)
	}
	text := string(src)
	limits := regexp.MustCompile(`(?m)^limits: \{`)
	for _, arg := range td.CmdArgs {
		if !strings.HasPrefix(arg.Key, "max_") {
			continue
		}
		field := regexp.MustCompile(`(?m)^(limits: \{.*\b` + regexp.QuoteMeta(arg.Key) + `: )\d+`)
		switch {
		case field.MatchString(text):
			text = field.ReplaceAllString(text, "${1}"+arg.SingleVal(t))
		case limits.MatchString(text):
			text = limits.ReplaceAllString(text, "limits: {"+arg.Key+": "+arg.SingleVal(t)+", ")
		default:
			td.Fatalf(t, "%s has no limits line", file)
		}
	}
	p, err := program.Load(file, []byte(text))
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	s.p, s.d, s.now = p, nil, t0
	return fmt.Sprintf("%s %s: initial %s; max_steps=%d max_attempts=%d max_rollbacks=%d max_uncounted_rejections=%d\n",
		p.Name, p.Version, p.Initial.Name, p.Limits.MaxSteps, p.Limits.MaxAttempts, p.Limits.MaxRollbacks, p.Limits.MaxUncountedRejections)
}

func (s *script) start(t *testing.T, td *datadriven.TestData) string {
	if !td.HasArg("at") {
		s.now = t0 // each run starts at t0
	}
	in := Start{RunID: "run-1", Input: s.payload(t, td), At: s.now}
	td.MaybeScanArgs(t, "principal", &in.Principal)
	var executors string
	if td.MaybeScanArgs(t, "executors", &executors) {
		// state:kind,state:kind
		in.Executors = map[string]string{}
		for _, pair := range strings.Split(executors, ",") {
			state, kind, _ := strings.Cut(pair, ":")
			in.Executors[state] = kind
		}
	}
	res, err := Apply(s.p, nil, in)
	if err != nil {
		return printAnswer(nil, res, err)
	}
	s.d = &driver{t: t, p: s.p, now: s.now}
	s.d.adopt(res)
	return printAnswer(s.d.run, res, nil)
}

func (s *script) apply(in Input) string {
	s.d.now = s.now
	res, err := s.d.apply(in)
	return printAnswer(s.d.run, res, err)
}

// call reads which call a tool outcome reports: the open call's seq, id
// and attempt (the last call's, once none is open), unless seq=, call= or
// attempt= say otherwise.
func (s *script) call(t *testing.T, td *datadriven.TestData, seq *uint64, id *string, attempt *int) {
	if c := s.lastCall(); c != nil {
		*seq, *id, *attempt = c.Seq, c.CallID, c.Attempt
	}
	td.MaybeScanArgs(t, "seq", seq)
	td.MaybeScanArgs(t, "call", id)
	td.MaybeScanArgs(t, "attempt", attempt)
}

// lastCall is the open call, or the last one the run started.
func (s *script) lastCall() *OpenCall {
	if s.d.run.Call != nil {
		return s.d.run.Call
	}
	for i := len(s.d.events) - 1; i >= 0; i-- {
		if e := s.d.events[i]; e.Type == EventToolCallStarted {
			return &OpenCall{Seq: e.Seq, CallID: e.Call.CallID, Attempt: e.Call.Attempt}
		}
	}
	return nil
}

// claims reads the claims a submission or decision makes.
func (s *script) claims(t *testing.T, td *datadriven.TestData, seq *uint64, state, hash, principal *string) {
	td.MaybeScanArgs(t, "seq", seq)
	td.MaybeScanArgs(t, "state", state)
	td.MaybeScanArgs(t, "hash", hash)
	td.MaybeScanArgs(t, "principal", principal)
}

// payload is the command's JSON input block.
func (s *script) payload(t *testing.T, td *datadriven.TestData) any {
	v, err := jsonvalue.Decode([]byte(td.Input))
	if err != nil {
		td.Fatalf(t, "input %q: %v", td.Input, err)
	}
	return v
}

// size is the size=N argument, or the canonical size of v, the payload, as
// the service measures it; size=limit+1 is one byte over the program's
// max_document_bytes.
func (s *script) size(t *testing.T, td *datadriven.TestData, v any) int {
	var arg string
	if !td.MaybeScanArgs(t, "size", &arg) {
		c, _ := jsonvalue.Canonical(v)
		return len(c)
	}
	if arg == "limit+1" {
		return s.p.Limits.MaxDocumentBytes + 1
	}
	n, err := strconv.Atoi(arg)
	if err != nil {
		td.Fatalf(t, "size=%s: %v", arg, err)
	}
	return n
}

// show prints the run: where it is, what it holds and what the open task
// shows its target.
func (s *script) show() string {
	r := s.d.run
	var b strings.Builder
	fmt.Fprintf(&b, "path: %s\n", strings.Join(r.Path, " "))
	fmt.Fprintf(&b, "data: %s\n", canon(r.Data))
	fmt.Fprintf(&b, "steps=%d rollbacks=%d rejections=%d submitters=(%s)\n", r.Steps, r.Rollbacks, r.Rejections, strings.Join(r.Submitters, ", "))
	if task := r.Task; task != nil {
		fmt.Fprintf(&b, "task: seq=%d state=%s kind=%s attempts_left=%d\n", task.Seq, task.State, task.Kind, task.AttemptsLeft)
		fmt.Fprintf(&b, "  view: %s\n", canon(task.View))
		if task.Tool != nil {
			fmt.Fprintf(&b, "  tool: %s %s\n", task.Tool.Name, canon(task.Tool.Arguments))
		}
	}
	if c := r.Call; c != nil {
		fmt.Fprintf(&b, "call: %s seq=%d state=%s tool=%s executor=%s attempt=%d key=%s…\n", c.CallID, c.Seq, c.State, c.Tool, c.Executor, c.Attempt, c.IdempotencyKey[:12])
		fmt.Fprintf(&b, "  arguments: %s\n", canon(c.Arguments))
	}
	return b.String()
}

// printAnswer prints the events an input recorded, the core's answer and where
// the run stands after it.
func printAnswer(r *Run, res Result, err error) string {
	var b strings.Builder
	for _, e := range res.Events {
		b.WriteString(describe(e))
		b.WriteByte('\n')
	}
	var rej *Rejection
	switch {
	case errors.As(err, &rej):
		fmt.Fprintf(&b, "> rejected %s: %s\n", rej.Code, rej.Message)
		for _, d := range rej.Details {
			fmt.Fprintf(&b, ">   %s\n", d)
		}
	case err != nil:
		fmt.Fprintf(&b, "> error: %v\n", err)
	case res.PendingApproval:
		b.WriteString("> duplicate: this approver's decision is already counted\n")
	case res.Duplicate:
		b.WriteString("> duplicate: the original answer stands\n")
	default:
		b.WriteString("> ok\n")
	}
	if len(res.Events) == 0 && !res.Duplicate && err != nil {
		b.WriteString("> (nothing recorded)\n")
	}
	if r != nil {
		b.WriteString(summary(r))
	}
	return b.String()
}

func summary(r *Run) string {
	if r.Finished() {
		return fmt.Sprintf("= %s %s at %s\n", r.Status, r.Outcome, r.State)
	}
	out := fmt.Sprintf("= %s at %s, task %d", r.Status, r.State, r.Seq)
	if r.Call != nil {
		out += fmt.Sprintf(", call %s attempt %d", r.Call.CallID, r.Call.Attempt)
	}
	if r.Task != nil {
		out += fmt.Sprintf(", attempts left %d", r.Task.AttemptsLeft)
	}
	if r.ApprovalsNeeded > 0 {
		out += fmt.Sprintf(", approvals %d/%d", r.ApprovalsGiven, r.ApprovalsNeeded)
		if r.Pending != nil {
			out += fmt.Sprintf(" (%s for %s)", strings.Join(r.Pending.Approvers, ", "), canon(r.Pending.Decision))
		}
	}
	if !r.Deadline.IsZero() {
		out += ", deadline " + stamp(r.Deadline)
	}
	return out + "\n"
}

// describe prints one event: its index, [the task (seq) and state it
// belongs to], its type, then the fields of its payload that carry meaning.
func describe(e Event) string {
	var f []string
	add := func(format string, args ...any) { f = append(f, fmt.Sprintf(format, args...)) }
	opt := func(key, v string) {
		if v != "" {
			add("%s=%s", key, v)
		}
	}
	switch {
	case e.Started != nil:
		opt("program", e.Started.Program.Name)
		opt("principal", e.Started.Principal)
	case e.Input != nil:
		in := e.Input
		add("%s", in.Kind)
		if in.Kind == "submit" || in.Kind == "decide" || in.Seq != 0 {
			add("seq=%d", in.Seq)
		}
		opt("call", in.CallID)
		if in.Attempt != 0 {
			add("attempt=%d", in.Attempt)
		}
		opt("state", in.State)
		opt("tool", in.Tool)
		opt("role", in.Role)
		opt("hash", in.DefinitionHash)
		opt("actor", string(in.Actor))
		opt("principal", in.Principal)
		opt("reason", in.Reason)
		if in.SeparateDuties {
			add("separate_duties")
		}
	case e.Task != nil:
		add("kind=%s attempts_left=%d", e.Task.Kind, e.Task.AttemptsLeft)
		opt("role", e.Task.Role)
		if e.Task.Tool != nil {
			add("tool=%s args=%s", e.Task.Tool.Name, canon(e.Task.Tool.Arguments))
		}
	case e.Guard != nil:
		g := e.Guard
		add("#%d to=%s %q = %t", g.Transition, g.To, g.Expression, g.Result)
		opt("error", g.Error)
	case e.Submission != nil:
		sub := e.Submission
		add("actor=%s", sub.Actor)
		opt("principal", sub.Principal)
		opt("role", sub.Role)
		opt("tool", sub.Tool)
		add("output=%s", canon(sub.Output))
		if len(sub.Approvers) > 0 {
			add("approvers=(%s)", strings.Join(sub.Approvers, ", "))
		}
	case e.Approval != nil:
		a := e.Approval
		add("principal=%s role=%s count=%d/%d", a.Principal, a.Role, a.Count, a.Needed)
		if a.Discarded > 0 {
			add("discarded=%d", a.Discarded)
		}
		add("output=%s", canon(a.Output))
	case e.Rejection != nil:
		rec := e.Rejection
		add("%s", rec.Code)
		if rec.Counted {
			add("counted attempts=%d", rec.Attempts)
		} else {
			add("uncounted=%d", rec.Uncounted)
		}
		opt("principal", rec.Principal)
		switch {
		case rec.Output != nil:
			add("output=%s", canon(rec.Output))
		case rec.Digest != nil:
			add("digest=%dB", rec.Digest.Bytes)
		default:
			add("output not kept")
		}
	case e.Call != nil:
		c := e.Call
		add("%s", c.CallID)
		opt("tool", c.Tool)
		opt("executor", c.Executor)
		if c.Attempt > 0 {
			add("attempt=%d", c.Attempt)
		}
		if c.Arguments != nil {
			add("args=%s", canon(c.Arguments))
		}
		if c.IdempotencyKey != "" {
			add("key=%s…", c.IdempotencyKey[:12])
		}
		opt("class", c.Class)
		if c.Retry {
			add("retry")
		}
		opt("principal", c.Principal)
		if c.Failed {
			add("failed")
		}
		if c.Result != nil {
			add("result=%s", canon(c.Result))
		}
		if c.Detail != "" {
			add("detail=%q", c.Detail)
		}
	case e.Expiry != nil:
		add("deadline=%s", e.Expiry.Deadline)
	case e.Transition != nil:
		tr := e.Transition
		add("%s -> %s (%s", tr.From, tr.To, tr.Cause)
		if tr.Transition >= 0 {
			f[len(f)-1] += fmt.Sprintf(" #%d", tr.Transition)
		}
		f[len(f)-1] += ")"
		if tr.Rollback {
			add("rollback cleared=(%s)", strings.Join(tr.Cleared, ", "))
		}
	case e.Finished != nil:
		add("%s %s", e.Finished.Status, e.Finished.Outcome)
		if e.Finished.Reason != "" {
			add("reason=%q", e.Finished.Reason)
		}
	}
	head := fmt.Sprintf("%2d [%d %s] %s", e.Index, e.Seq, e.State, e.Type)
	if len(f) == 0 {
		return head
	}
	return head + ": " + strings.Join(f, " ")
}

func canon(v any) string {
	if m, ok := v.(map[string]any); ok && len(m) == 0 {
		return "{}"
	}
	c, err := jsonvalue.Canonical(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(c)
}
