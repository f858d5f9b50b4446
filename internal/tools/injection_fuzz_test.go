package tools

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/lab"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// FuzzStepInjection drives runs of the example programs through the step
// tool, as an MCP client does (a JSON-RPC tools/call into the server), and
// attacks one task of each run with a mutated output: prompt-injection
// payloads in string fields, extra fields, tool calls of its own, wrong or
// look-alike tool and state claims, nested objects, huge strings and
// unicode tricks.
//
// Before each attack the oracle (expectStep) works out what must happen
// from the program alone: the output is judged by the state's schema
// validator and the state's compiled guards, in order, on the run's input
// and data as they were before the step; the limits and the tool arguments
// of the states entered are applied as docs/program-format.md states them.
// The server's answer, get_run and the run's fold must then agree with it
// exactly: a rejection with the expected code and the run unchanged (but
// for the attempt it used), or exactly the hops the guards give. Injected
// text never moves a run anywhere the guards do not send it.
//
// The arguments are a scenario (an example input and its answers file), how
// many of its answers to replay first (the attacked task is the one the
// next answer would answer), the claims (tool claim, state claim, padding:
// see stepClaims) and the output's JSON bytes. Bytes that are not one JSON
// value are skipped: they cannot be spliced into arguments.
func FuzzStepInjection(f *testing.F) {
	loadInjectionFixtures()
	for _, s := range injectionSeeds(f) {
		f.Add(s.scenario, s.depth, s.claims, s.output)
	}
	f.Fuzz(func(t *testing.T, scenario, depth, claims uint8, output []byte) {
		sc := &injScenarios[int(scenario)%len(injScenarios)]
		attackStep(t, sc, int(depth)%len(sc.answers), stepClaims(claims), output)
	})
}

// injScenario is an example run: a program, an input and the answers that
// drive it to its outcome.
type injScenario struct {
	name    string // the answers file
	program string
	input   []byte
	answers [][]byte
}

var (
	injOnce      sync.Once
	injPrograms  map[string]*program.Program
	injSources   map[string][]byte
	injScenarios []injScenario
	injInputs    compiledSchemas
	// injPayloads are the failure laboratory's prompt-injection fixtures,
	// AgentDojo-style (internal/lab/testdata/injections.json, read by
	// lab's unexported injections()): read from the same file here, so
	// that the two cannot drift apart.
	injPayloads []lab.Injection
)

const injectionsFile = "../lab/testdata/injections.json"

// loadInjectionFixtures loads the example programs, their runs and the
// payloads, once.
func loadInjectionFixtures() {
	injOnce.Do(func() {
		injInputs = compileInputs()
		injPrograms, injSources = map[string]*program.Program{}, map[string][]byte{}
		for _, name := range examples.Programs() {
			injPrograms[name], injSources[name] = examples.MustLoad(name)
		}
		files, err := examples.FS.ReadDir(".")
		if err != nil {
			panic(err)
		}
		for _, e := range files {
			name := e.Name()
			if !strings.HasSuffix(name, ".answers.jsonl") {
				continue
			}
			// <program>[.<variant>].<outcome>.answers.jsonl pairs with
			// <program>[.<variant>].input.json (examples/embed.go).
			parts := strings.Split(strings.TrimSuffix(name, ".answers.jsonl"), ".")
			inputName := strings.Join(parts[:len(parts)-1], ".") + ".input.json"
			input, err := examples.FS.ReadFile(inputName)
			if err != nil {
				panic(fmt.Sprintf("%s: no input %s", name, inputName))
			}
			data, _ := examples.FS.ReadFile(name)
			sc := injScenario{name: name, program: parts[0], input: input}
			lines := bufio.NewScanner(bytes.NewReader(data))
			lines.Buffer(nil, 1<<20)
			for lines.Scan() {
				if l := bytes.TrimSpace(lines.Bytes()); len(l) > 0 {
					sc.answers = append(sc.answers, bytes.Clone(l))
				}
			}
			if injPrograms[sc.program] == nil || len(sc.answers) == 0 {
				panic(fmt.Sprintf("%s: no program %s or no answers", name, sc.program))
			}
			injScenarios = append(injScenarios, sc)
		}
		sort.Slice(injScenarios, func(i, j int) bool { return injScenarios[i].name < injScenarios[j].name })
		raw, err := os.ReadFile(injectionsFile)
		if err != nil {
			panic(err)
		}
		if err := json.Unmarshal(raw, &injPayloads); err != nil || len(injPayloads) == 0 {
			panic(fmt.Sprintf("%s: %v", injectionsFile, err))
		}
	})
}

// stepClaims packs the claims of an attack into a byte: bits 0-2 the tool
// claim, bits 3-4 the state claim, bits 5-7 the padding of the output's
// free-text field.
type stepClaims uint8

// The tool claims. granted is the task's tool (approve_customer on a task
// that grants none).
const (
	toolNone       = iota
	toolGranted    // the granted name
	toolUndeclared // lab.UndeclaredTool, approve_customer
	toolOther      // git_commit, code-change's commit tool
	toolZeroWidth  // granted + U+200B
	toolHomoglyph  // granted with Cyrillic look-alikes
	toolUpper      // granted, upper-cased
	toolSpace      // granted + " "
)

// The state claims.
const (
	stateNone      = iota
	stateCurrent   // the run's state
	stateTerminal  // the program's first terminal state
	stateZeroWidth // the run's state + U+200B
)

// The paddings of the free-text field (the string with the most room).
const (
	padNone       = iota
	padASCII      // maxLength ASCII letters: valid
	padASCIIOver  // maxLength+1: a schema violation
	padTwoByte    // maxLength × "é", raw UTF-8
	padSurrogates // maxLength × "\ud83d\ude00": 12 bytes a code point
	padFourByte   // maxLength × "😀", raw UTF-8
	padAtLimit    // the output exactly max_document_bytes long, as canonical JSON
	padOverLimit  // the output max_document_bytes+1 bytes long, as canonical JSON
)

// padUnbounded is the room of a string without maxLength: the document
// limit bounds it.
const padUnbounded = program.DefaultMaxDocumentBytes

func (c stepClaims) tool() int  { return int(c & 7) }
func (c stepClaims) state() int { return int(c>>3) & 3 }
func (c stepClaims) pad() int   { return int(c >> 5) }

func claimsOf(tool, state, pad int) uint8 { return uint8(tool | state<<3 | pad<<5) }

// toolClaim is the tool claim c makes for a task of st, nil for none.
func (c stepClaims) toolClaim(st *program.State) *string {
	granted := lab.UndeclaredTool
	if st.Kind == program.KindTool {
		granted = st.Tool
	}
	var s string
	switch c.tool() {
	case toolNone:
		return nil
	case toolGranted:
		s = granted
	case toolUndeclared:
		s = lab.UndeclaredTool
	case toolOther:
		s = "git_commit"
	case toolZeroWidth:
		s = granted + "\u200b"
	case toolHomoglyph:
		s = strings.NewReplacer("a", "\u0430", "e", "\u0435", "o", "\u043e").Replace(granted)
	case toolUpper:
		s = strings.ToUpper(granted)
	case toolSpace:
		s = granted + " "
	}
	return &s
}

// stateClaim is the state claim c makes for a run at st, "" for none.
func (c stepClaims) stateClaim(p *program.Program, st *program.State) string {
	switch c.state() {
	case stateCurrent:
		return st.Name
	case stateTerminal:
		for _, name := range p.Order {
			if p.States[name].Kind == program.KindTerminal {
				return name
			}
		}
	case stateZeroWidth:
		return st.Name + "\u200b"
	}
	return ""
}

// injEnv is one attack's world: a service on a memory store, with a clock
// that moves a second a reading, and the tool handlers NewServer registers
// for it. Every attack gets a fresh one, so that nothing, coverage
// included, depends on the attacks before it. The handlers are built as
// NewServer builds them but for the tool schemas, compiled once: NewServer
// reflects and compiles every schema anew, which would cost more than the
// attack itself.
type injEnv struct {
	t   testing.TB
	svc *service.Service
	h   *handlers
	id  int
}

func newInjEnv(t testing.TB) *injEnv {
	ctx := context.Background()
	rnd := &lockedRand{r: rand.New(rand.NewSource(1))}
	keys, err := keyring.Ephemeral(rnd)
	if err != nil {
		t.Fatal(err)
	}
	st := tracestore.NewMemory()
	clock := &testClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	svc := service.New(service.Options{Store: st, Secret: keys.Secret, Rand: rnd, Clock: clock.tick,
		NewID: func() string { return "run_fuzz" }})
	for _, name := range examples.Programs() {
		if err := svc.AddProgram(ctx, injPrograms[name], injSources[name]); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Service: svc, Store: st, Keys: keys, Profile: access.ProfileAgent, Version: "fuzz", Log: zap.NewNop()}
	return &injEnv{t: t, svc: svc, h: &handlers{Config: cfg, inputs: injInputs, stateKey: []byte("k")}}
}

// call delivers a tools/call as the MCP server does: the JSON-RPC message
// decoded into a CallToolRequest (the arguments kept as they arrived),
// handed to the tool's handler, and the result encoded for the wire. It
// returns the result's text. A handler error (a protocol error), an empty
// result or an error result with structuredContent fails the test.
func (e *injEnv) call(name string, args []byte) (text string, isError bool) {
	e.t.Helper()
	e.id++
	msg := make([]byte, 0, len(args)+128)
	msg = append(msg, `{"jsonrpc":"2.0","id":`...)
	msg = strconv.AppendInt(msg, int64(e.id), 10)
	msg = append(msg, `,"method":"tools/call","params":{"name":`...)
	msg = strconv.AppendQuote(msg, name)
	msg = append(msg, `,"arguments":`...)
	msg = append(msg, args...)
	msg = append(msg, "}}"...)
	var req mcp.CallToolRequest
	if err := json.Unmarshal(msg, &req); err != nil {
		e.t.Fatalf("%s: the request does not decode: %v", name, err)
	}
	res, err := e.h.dispatch(specByName(req.Params.Name))(context.Background(), req)
	if err != nil {
		e.t.Fatalf("%s: protocol error: %v", name, err)
	}
	wire, err := json.Marshal(res)
	if err != nil {
		e.t.Fatal(err)
	}
	var reply struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		IsError           bool            `json:"isError"`
		StructuredContent json.RawMessage `json:"structuredContent"`
	}
	if err := json.Unmarshal(wire, &reply); err != nil || len(reply.Content) == 0 || reply.Content[0].Type != "text" {
		e.t.Fatalf("%s: not a tool result: %.2000s", name, wire)
	}
	if reply.IsError && len(reply.StructuredContent) > 0 && string(reply.StructuredContent) != "null" {
		e.t.Fatalf("%s: an error result with structuredContent", name)
	}
	return reply.Content[0].Text, reply.IsError
}

func (e *injEnv) mustCall(name string, args []byte, into any) {
	e.t.Helper()
	text, isError := e.call(name, args)
	if isError {
		e.t.Fatalf("%s: %s", name, text)
	}
	if err := json.Unmarshal([]byte(text), into); err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
}

func (e *injEnv) get(runID string) (*runtime.Run, *program.Program) {
	e.t.Helper()
	r, p, err := e.svc.Get(context.Background(), runID)
	if err != nil {
		e.t.Fatal(err)
	}
	return r, p
}

// stepArgs are the step tool's arguments with output spliced in as it is.
func stepArgs(runID string, seq uint64, state string, tool *string, output []byte) []byte {
	b := make([]byte, 0, len(output)+256)
	b = append(b, `{"run_id":`...)
	b = appendJSONString(b, runID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	if state != "" {
		b = append(b, `,"state":`...)
		b = appendJSONString(b, state)
	}
	if tool != nil {
		b = append(b, `,"tool":{"name":`...)
		b = appendJSONString(b, *tool)
		b = append(b, '}')
	}
	b = append(b, `,"output":`...)
	b = append(b, output...)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// start starts sc's run and replays its first k answers: tasks through
// the step tool, approvals through the service. The answers files reject
// some lines on purpose (schema_violation, guard_denied).
func (e *injEnv) start(sc *injScenario, k int) string {
	e.t.Helper()
	args := []byte(`{"program":` + strconv.Quote(sc.program) + `,"input":` + string(sc.input) + `}`)
	var started RunResult
	e.mustCall("start_run", args, &started)
	for i, line := range sc.answers[:k] {
		r, p := e.get(started.RunID)
		if r.Task == nil {
			e.t.Fatalf("%s: no open task for answer %d", sc.name, i+1)
		}
		st := p.States[r.State]
		if st.Kind == program.KindApproval {
			decision, err := jsonvalue.Decode(line)
			if err != nil {
				e.t.Fatal(err)
			}
			_, err = e.svc.Decide(context.Background(), started.RunID, runtime.Decide{
				Seq: r.Seq, State: r.State, Role: st.Role, Principal: "approver-1", Decision: decision,
			})
			var rej *runtime.Rejection
			if err != nil && !(errors.As(err, &rej) && (rej.Code == runtime.CodeSchemaViolation || rej.Code == runtime.CodeGuardDenied)) {
				e.t.Fatalf("%s: answer %d: %v", sc.name, i+1, err)
			}
			continue
		}
		var tool *string
		if st.Kind == program.KindTool {
			tool = &st.Tool
		}
		text, isError := e.call("step", stepArgs(started.RunID, r.Seq, "", tool, line))
		if isError && !strings.Contains(text, `"code":"schema_violation"`) && !strings.Contains(text, `"code":"guard_denied"`) {
			e.t.Fatalf("%s: answer %d: %s", sc.name, i+1, text)
		}
	}
	return started.RunID
}

// observe reads the step's answer, get_run and the run's fold.
func (e *injEnv) observe(runID, text string, isError bool) stepObservation {
	e.t.Helper()
	var o stepObservation
	if isError {
		o.err = &ErrorBody{}
		if err := json.Unmarshal([]byte(text), o.err); err != nil {
			e.t.Fatalf("step: error result %q: %v", text, err)
		}
	} else {
		o.result = &RunResult{}
		if err := json.Unmarshal([]byte(text), o.result); err != nil {
			e.t.Fatalf("step: result %q: %v", text, err)
		}
	}
	e.mustCall("get_run", []byte(`{"run_id":`+strconv.Quote(runID)+`}`), &o.getRun)
	o.run, _ = e.get(runID)
	return o
}

// attackStep runs sc to its k-th answer and answers that task with output
// and the claims; the oracle decides beforehand what must happen.
func attackStep(t testing.TB, sc *injScenario, k int, c stepClaims, output []byte) {
	output = bytes.Trim(output, " \t\r\n")
	if !json.Valid(output) {
		return // not one JSON value: it cannot be spliced into arguments
	}
	e := newInjEnv(t)
	runID := e.start(sc, k)
	before, p := e.get(runID)
	if before.Task == nil {
		t.Fatalf("%s: no open task at answer %d", sc.name, k+1)
	}
	st := p.States[before.State]
	output = padFreeText(st, p.Limits.MaxDocumentBytes, c.pad(), output)
	a := stepAttempt{state: c.stateClaim(p, st), tool: c.toolClaim(st)}
	args := stepArgs(runID, before.Seq, a.state, a.tool, output)
	if _, err := jsonvalue.DecodeDepth(args, jsonvalue.MaxDepth); err == nil {
		a.argsOK = true
		a.output, _ = jsonvalue.Decode(output)
		canon, _ := jsonvalue.Canonical(a.output)
		a.size = len(canon)
	}
	want := expectStep(p, before, a)

	text, isError := e.call("step", args)
	if err := want.check(e.observe(runID, text, isError)); err != nil {
		t.Fatalf("%s, answer %d at %s (claims tool %v state %q, %d bytes):\n%v\noutput: %.600s\nanswer: %.1000s",
			sc.name, k+1, before.State, strOrNil(a.tool), a.state, a.size, err, output, text)
	}
}

func strOrNil(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// padFreeText fills the output's free-text field, the string field with
// the most room (no enum, const, pattern or format; the largest maxLength,
// none being the largest, ties to the first path in byte order; found from
// the schema, so an optional field the output lacks is added), as mode
// says. An output that is not an object with such a field stays as it is.
func padFreeText(st *program.State, limit, mode int, output []byte) []byte {
	if mode == padNone || st.Output == nil {
		return output
	}
	const marker = "nano-vm-fuzz-pad-marker"
	if bytes.Contains(output, []byte(marker)) {
		return output
	}
	v, err := jsonvalue.Decode(output)
	if err != nil {
		return output
	}
	path, room, ok := lab.FreeTextField(st.Output.Doc(), v)
	if !ok {
		return output
	}
	if room == math.MaxInt {
		room = padUnbounded
	}
	setAt(v, path, marker)
	canon, err := jsonvalue.Canonical(v)
	if err != nil {
		return output
	}
	room = min(room, limit)
	var text string
	switch mode {
	case padASCII:
		text = strings.Repeat("a", room)
	case padASCIIOver:
		text = strings.Repeat("a", room+1)
	case padTwoByte:
		text = strings.Repeat("é", room)
	case padSurrogates:
		text = strings.Repeat(`\ud83d\ude00`, room)
	case padFourByte:
		text = strings.Repeat("😀", room)
	case padAtLimit, padOverLimit:
		// The text's bytes make the output size bytes long as canonical
		// JSON, which the output then is byte for byte. Control
		// characters, which canonical JSON escapes (`\u0001`, six bytes a
		// code point), stretch it where maxLength would not let letters
		// reach. Where even they cannot, letters overrun maxLength.
		size := limit
		if mode == padOverLimit {
			size++
		}
		n := size - (len(canon) - len(marker)) // the bytes of the text
		escapes := 0
		if n > room {
			escapes = (n - room + 4) / 5
		}
		if escapes > room || n < 0 {
			escapes = 0
		}
		text = strings.Repeat(`\u0001`, escapes) + strings.Repeat("a", max(n-6*escapes, 0))
	}
	return bytes.Replace(canon, []byte(`"`+marker+`"`), []byte(`"`+text+`"`), 1)
}

func setAt(v any, path []string, s string) {
	for i, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		if i == len(path)-1 {
			m[k] = s
			return
		}
		v = m[k]
	}
}

// injSeed is one seed of the corpus.
type injSeed struct {
	scenario, depth, claims uint8
	output                  []byte
}

// injectionSeeds are the example answers at every task of every example
// run: each as it is, and each with one attack, in turn every payload
// appended to the free text, every structural mutation and every claim.
// The outputs the guards judge in earnest (keyAnswers) get every payload,
// the mutations that aim at the decision and paddings.
func injectionSeeds(tb testing.TB) []injSeed {
	type attack struct {
		claims uint8
		mutate func(any) any
	}
	var attacks []attack
	for _, inj := range injPayloads {
		attacks = append(attacks, attack{0, func(v any) any { return appendToLongest(v, "\n\n"+inj.Text) }})
	}
	for _, m := range structural {
		attacks = append(attacks, attack{0, m})
	}
	for _, c := range []uint8{
		claimsOf(toolGranted, stateNone, padNone),
		claimsOf(toolUndeclared, stateNone, padNone),
		claimsOf(toolOther, stateCurrent, padNone),
		claimsOf(toolZeroWidth, stateNone, padNone),
		claimsOf(toolHomoglyph, stateNone, padNone),
		claimsOf(toolUpper, stateNone, padNone),
		claimsOf(toolSpace, stateNone, padNone),
		claimsOf(toolNone, stateTerminal, padNone),
		claimsOf(toolNone, stateZeroWidth, padNone),
		claimsOf(toolNone, stateCurrent, padASCII),
		claimsOf(toolNone, stateNone, padASCIIOver),
		claimsOf(toolNone, stateNone, padTwoByte),
		claimsOf(toolNone, stateNone, padSurrogates),
		claimsOf(toolNone, stateNone, padFourByte),
		claimsOf(toolNone, stateNone, padAtLimit),
		claimsOf(toolNone, stateNone, padOverLimit),
	} {
		attacks = append(attacks, attack{c, nil})
	}
	var seeds []injSeed
	add := func(i, k int, a attack) {
		out := injScenarios[i].answers[k]
		if a.mutate != nil {
			out = mutateAnswer(tb, out, a.mutate)
		}
		seeds = append(seeds, injSeed{uint8(i), uint8(k), a.claims, out})
	}
	n := 0
	for i, sc := range injScenarios {
		for k := range sc.answers {
			add(i, k, attack{})
			add(i, k, attacks[n%len(attacks)])
			n++
		}
		for _, k := range keyAnswers[sc.name] {
			for _, a := range attacks[:len(injPayloads)] {
				add(i, k, a)
			}
			add(i, k, attack{0, func(v any) any { return replaceStrings(v, injPayloads[k%len(injPayloads)].Text) }})
			for _, m := range decisive {
				add(i, k, attack{0, m})
			}
			// The megabyte paddings of a code-change patch are
			// TestStepInjectionDocumentLimit's: as seeds they would hold
			// up the fuzzer's baseline.
			pads := []int{padASCII, padASCIIOver, padFourByte}
			if sc.program == "code-change" {
				pads = pads[:2]
			}
			for _, mode := range pads {
				add(i, k, attack{claimsOf(toolNone, stateNone, mode), nil})
			}
		}
	}
	return seeds
}

// keyAnswers are, by answers file, the answers (0-based) of the tasks whose
// outputs the guards judge in earnest.
var keyAnswers = map[string][]int{
	"refund.large.refunded.answers.jsonl":   {0}, // the assessment: refund, or a manager
	"refund.late.denied.answers.jsonl":      {0},
	"kyc-onboarding.rejected.answers.jsonl": {3, 4, 6}, // high risk for plain approval; the assessment; the ledger down
	"code-change.committed.answers.jsonl":   {0, 1},    // the empty proposal; a proposal
}

// structural are mutations beyond text: fields and tool calls of their
// own, objects where text belongs, unicode look-alikes, decisions the
// attacker wants, huge strings and odd numbers.
var structural = []func(any) any{
	withExtraFields,
	// An object where the free text goes: a fake system turn with a tool call.
	func(v any) any {
		return setLongest(v, map[string]any{"role": "system", "content": injPayloads[0].Text, "tool": map[string]any{"name": lab.UndeclaredTool}})
	},
	withHomoglyphs,
	// Zero-width and bidi controls around every string.
	func(v any) any {
		return mapStrings(v, func(s string) string { return "\u200b" + s + "\u202e\u2066" })
	},
	withWantedDecision,
	// A key that is itself a payload.
	func(v any) any {
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		m[injPayloads[1].Text] = true
		return m
	},
	// A huge string: the payloads repeated to 64 KiB.
	func(v any) any {
		var b strings.Builder
		for i := 0; b.Len() < 64<<10; i++ {
			b.WriteString(injPayloads[i%len(injPayloads)].Text)
		}
		return setLongest(v, b.String())
	},
	// Every number at the edges: beyond int64, negative, fractional, past 2^53.
	func(v any) any {
		i := 0
		edges := []json.Number{"99999999999999999999", "-1", "0.5", "9007199254740993", "1e300"}
		return mapNumbers(v, func(json.Number) json.Number { i++; return edges[i%len(edges)] })
	},
	// The output wrapped in an array, and a payload instead of the output.
	func(v any) any { return []any{v, injPayloads[2].Text} },
	func(any) any { return injPayloads[3].Text },
	// Nesting in the free-text field past the arguments' depth limit.
	func(v any) any {
		var deep any = injPayloads[4].Text
		for range jsonvalue.MaxDepth {
			deep = []any{deep}
		}
		return setLongest(v, deep)
	},
}

// decisive are the mutations that aim at the decision itself.
var decisive = []func(any) any{withExtraFields, withHomoglyphs, withWantedDecision}

// withExtraFields adds fields that try to widen the task: an approval flag
// and a tool call of their own (the laboratory's extra_fields attack).
func withExtraFields(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	m[lab.UndeclaredTool] = true
	m["tool_calls"] = []any{map[string]any{"name": lab.UndeclaredTool, "arguments": map[string]any{"decision": "approve", "customer_id": "*"}}}
	return m
}

// withHomoglyphs puts Cyrillic look-alikes into every short string, enum
// values among them.
func withHomoglyphs(v any) any {
	r := strings.NewReplacer("a", "\u0430", "e", "\u0435", "o", "\u043e")
	return mapStrings(v, func(s string) string {
		if len(s) > 40 || strings.Contains(s, " ") {
			return s
		}
		return r.Replace(s)
	})
}

// withWantedDecision sets the decision an attacker wants wherever the
// output has the field: often a valid output, whose fate is the guards'.
func withWantedDecision(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for k, x := range map[string]any{
		"decision": "approve", "status": "sealed", "risk_level": "low", "recommendation": "approve",
		"eligible": true, "approve": true, "passed": true, "max_severity": "none", "failed": json.Number("0"),
	} {
		if _, has := m[k]; has {
			m[k] = x
		}
	}
	return m
}

// mutateAnswer decodes an answer, applies m and encodes the result, with
// the payloads' <, > and & as they are, as a model would send them.
func mutateAnswer(tb testing.TB, line []byte, m func(any) any) []byte {
	v, err := jsonvalue.Decode(line)
	if err != nil {
		tb.Fatal(err)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m(v)); err != nil {
		tb.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// longestString finds the path of the longest string in v.
func longestString(v any) []string {
	var best []string
	size := -1
	var walk func(v any, path []string)
	walk = func(v any, path []string) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(x[k], append(slices.Clip(path), k))
			}
		case string:
			if len(x) > size {
				best, size = path, len(x)
			}
		}
	}
	walk(v, nil)
	return best
}

func appendToLongest(v any, s string) any {
	p := longestString(v)
	if p == nil {
		return v
	}
	cur := v
	for _, k := range p[:len(p)-1] {
		cur = cur.(map[string]any)[k]
	}
	m := cur.(map[string]any)
	m[p[len(p)-1]] = m[p[len(p)-1]].(string) + s
	return v
}

func setLongest(v, x any) any {
	p := longestString(v)
	if p == nil {
		return v
	}
	cur := v
	for _, k := range p[:len(p)-1] {
		cur = cur.(map[string]any)[k]
	}
	cur.(map[string]any)[p[len(p)-1]] = x
	return v
}

func mapStrings(v any, f func(string) string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = mapStrings(e, f)
		}
	case []any:
		for i, e := range x {
			x[i] = mapStrings(e, f)
		}
	case string:
		return f(x)
	}
	return v
}

func replaceStrings(v any, s string) any {
	return mapStrings(v, func(string) string { return s })
}

func mapNumbers(v any, f func(json.Number) json.Number) any {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			x[k] = mapNumbers(x[k], f)
		}
	case []any:
		for i, e := range x {
			x[i] = mapNumbers(e, f)
		}
	case json.Number:
		return f(x)
	}
	return v
}

// The document limit holds to the byte on the step path, whatever the
// text is made of: a code-change proposal exactly max_document_bytes long
// is judged by its schema and guards (the empty proposal is guard_denied,
// the real one goes to type_check), one byte more is a schema_violation,
// and so are megabytes of multi-byte text within the patch's maxLength.
func TestStepInjectionDocumentLimit(t *testing.T) {
	loadInjectionFixtures()
	sc := scenarioNamed(t, "code-change.committed.answers.jsonl")
	p := injPrograms[sc.program]
	st := p.States["propose_patch"]
	limit := p.Limits.MaxDocumentBytes
	for _, k := range []int{0, 1} {
		for _, mode := range []int{padTwoByte, padSurrogates, padFourByte, padAtLimit, padOverLimit} {
			t.Run(fmt.Sprintf("answer%d/pad%d", k+1, mode), func(t *testing.T) {
				// Each case runs on a service of its own (attackStep), and
				// megabyte documents under -race make this one of the
				// slowest tests: let the cases share the CPUs.
				t.Parallel()
				out := padFreeText(st, limit, mode, sc.answers[k])
				switch {
				case mode == padAtLimit && len(out) != limit, mode == padOverLimit && len(out) != limit+1:
					t.Fatalf("padding %d made %d bytes; the limit is %d", mode, len(out), limit)
				case len(out) <= 64<<10:
					t.Fatalf("padding %d made only %d bytes", mode, len(out))
				}
				attackStep(t, sc, k, stepClaims(claimsOf(toolNone, stateNone, mode)), sc.answers[k])
			})
		}
	}
}
