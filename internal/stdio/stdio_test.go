package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonrpc"
)

// rig runs Serve over pipes: the test writes the client's lines and reads
// the server's messages.
type rig struct {
	in   *io.PipeWriter
	msgs chan map[string]any
	done chan error
	eof  chan struct{} // closed when Serve has read the end of input
}

// eofReader closes eof when its reader reports the end of input.
type eofReader struct {
	r    io.Reader
	once sync.Once
	eof  chan struct{}
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, io.EOF) {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

func start(ctx context.Context, s *server.MCPServer, opt Options) *rig {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	r := &rig{in: inW, msgs: make(chan map[string]any, 100), done: make(chan error, 1), eof: make(chan struct{})}
	go func() {
		r.done <- Serve(ctx, s, &eofReader{r: inR, eof: r.eof}, outW, opt)
		outW.Close()
	}()
	go func() {
		defer close(r.msgs)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"not json": sc.Text()}
			}
			r.msgs <- m
		}
	}()
	return r
}

func (r *rig) send(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(r.in, l+"\n"); err != nil {
			t.Fatal(err)
		}
	}
}

// answers reads messages until the answers to n calls have come.
func (r *rig) answers(t *testing.T, n int) map[float64]map[string]any {
	t.Helper()
	got := map[float64]map[string]any{}
	for len(got) < n {
		m, ok := <-r.msgs
		if !ok {
			t.Fatalf("output ended after %d of %d answers", len(got), n)
		}
		if id, ok := m["id"].(float64); ok && m["method"] == nil {
			got[id] = m
		}
	}
	return got
}

func text(t *testing.T, m map[string]any) string {
	t.Helper()
	res, ok := m["result"].(map[string]any)
	if !ok {
		t.Fatalf("not a result: %v", m)
	}
	return res["content"].([]any)[0].(map[string]any)["text"].(string)
}

const initialize = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}`

func call(id int, tool string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{}}}`, id, tool)
}

// newServer has a tool "wait" that answers "released" once release is
// closed, or "cancelled" if its context ends first (started gets a value
// when it begins), and a tool "ask" that asks the client for a form.
func newServer(release <-chan struct{}, started chan<- struct{}) *server.MCPServer {
	s := server.NewMCPServer("t", "1", server.WithElicitation())
	s.AddTool(mcp.NewTool("wait"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		if started != nil {
			started <- struct{}{}
		}
		select {
		case <-release:
			return mcp.NewToolResultText("released"), nil
		case <-ctx.Done():
			return mcp.NewToolResultText("cancelled"), nil
		}
	})
	s.AddTool(mcp.NewTool("ask"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := s.RequestElicitation(ctx, mcp.ElicitationRequest{Params: mcp.ElicitationParams{
			Message: "ok?", RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{}},
		}})
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return mcp.NewToolResultText(string(res.Action)), nil
	})
	return s
}

// At the end of input every call already read runs to its end, with its
// context intact, and is answered before Serve returns.
func TestEndOfInputAnswersEveryCallRead(t *testing.T) {
	release := make(chan struct{})
	r := start(context.Background(), newServer(release, nil), Options{Grace: time.Hour})
	const calls = 20
	r.send(t, initialize, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	for i := 1; i <= calls; i++ {
		r.send(t, call(i, "wait"))
	}
	r.in.Close()
	<-r.eof
	close(release)
	got := r.answers(t, calls+1)
	for i := 1; i <= calls; i++ {
		if s := text(t, got[float64(i)]); s != "released" {
			t.Errorf("call %d: %s", i, s)
		}
	}
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
}

// hookLog signals stopping when Serve logs that it is stopping.
func hookLog(stopping chan<- struct{}) *zap.Logger {
	var once sync.Once
	return zap.NewNop().WithOptions(zap.WrapCore(func(zapcore.Core) zapcore.Core {
		return zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.DebugLevel)
	}), zap.Hooks(func(e zapcore.Entry) error {
		if strings.Contains(e.Message, "stopping") {
			once.Do(func() { close(stopping) })
		}
		return nil
	}))
}

// After a signal (ctx cancelled), with the input still open: the call in
// flight finishes and is answered, a new call is refused without running,
// and Serve returns.
func TestSignalFinishesCallsInFlight(t *testing.T) {
	release, started, stopping := make(chan struct{}), make(chan struct{}, 1), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	r := start(ctx, newServer(release, started), Options{Grace: time.Hour, Log: hookLog(stopping)})
	r.send(t, initialize, call(1, "wait"))
	<-started
	cancel()
	<-stopping
	r.send(t, call(2, "wait"))
	got := r.answers(t, 2) // initialize and the refusal
	if e, _ := got[2]["error"].(map[string]any); e == nil || !strings.Contains(e["message"].(string), "stopping") {
		t.Errorf("a call after the signal: %v", got[2])
	}
	close(release)
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	for m := range r.msgs {
		if m["id"] == float64(1) {
			got[1] = m
		}
	}
	if got[1] == nil || text(t, got[1]) != "released" {
		t.Fatalf("the call in flight: %v", got[1])
	}
	select {
	case <-started:
		t.Fatal("a call after the signal ran")
	default:
	}
}

// The grace period cancels a call that does not end by itself.
func TestGraceEndCancelsTheCallsContext(t *testing.T) {
	started, stopping := make(chan struct{}, 1), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	s := server.NewMCPServer("t", "1")
	cancelled := make(chan struct{})
	s.AddTool(mcp.NewTool("hang"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		started <- struct{}{}
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	})
	r := start(ctx, s, Options{Grace: time.Millisecond, Log: hookLog(stopping)})
	r.send(t, initialize, call(1, "hang"))
	<-started
	cancel()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	<-cancelled
}

// Legacy clients answer elicitation/create through stdin; when stdin ends
// before the answer, the waiting call fails at once and is answered.
func TestElicitationAnswerAndEndOfInput(t *testing.T) {
	r := start(context.Background(), newServer(nil, nil), Options{Grace: time.Hour})
	r.send(t, initialize)
	r.answers(t, 1)
	r.send(t, call(1, "ask"))
	ask := <-r.msgs
	if ask["method"] != "elicitation/create" {
		t.Fatalf("not an elicitation: %v", ask)
	}
	r.send(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":%v,"result":{"action":"decline"}}`, ask["id"]))
	if s := text(t, r.answers(t, 1)[1]); s != "decline" {
		t.Fatalf("answer %q", s)
	}

	r.send(t, call(2, "ask"))
	if ask := <-r.msgs; ask["method"] != "elicitation/create" {
		t.Fatalf("not an elicitation: %v", ask)
	}
	r.in.Close()
	if s := text(t, r.answers(t, 1)[2]); !strings.Contains(s, ErrInputEnded.Error()) {
		t.Fatalf("answer %q", s)
	}
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
}

// A line that is not JSON is answered with a parse error; every answer
// passes through Rewrite with the request it answers.
func TestParseErrorAndRewrite(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	rewrite := func(req, resp []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, string(req))
		return []byte(`{"jsonrpc":"2.0","id":9,"result":{"rewritten":true}}`)
	}
	r := start(context.Background(), server.NewMCPServer("t", "1"), Options{Rewrite: rewrite})
	r.send(t, "this is not json", `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	r.in.Close()
	var msgs []map[string]any
	for m := range r.msgs {
		msgs = append(msgs, m)
	}
	if len(msgs) != 2 {
		t.Fatalf("messages %v", msgs)
	}
	if e, _ := msgs[0]["error"].(map[string]any); e == nil || e["code"] != float64(mcp.PARSE_ERROR) || msgs[0]["id"] != nil {
		t.Errorf("parse error: %v", msgs[0])
	}
	if msgs[1]["id"] != float64(9) || len(seen) != 1 || !strings.Contains(seen[0], `"ping"`) {
		t.Errorf("rewrite: %v %q", msgs[1], seen)
	}
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
}

// serveLines runs Serve over lines to their end and returns the lines it
// wrote.
func serveLines(t *testing.T, opt Options, lines ...string) []string {
	t.Helper()
	var out bytes.Buffer
	in := strings.NewReader(strings.Join(lines, "\n") + "\n")
	if err := Serve(context.Background(), server.NewMCPServer("t", "1"), in, &out, opt); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(out.String()), "\n")
}

// Ids come back exactly as written, and ids JSON-RPC forbids are an
// Invalid Request with a null id.
func TestIDs(t *testing.T) {
	invalid := `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,`
	for _, tc := range []struct{ id, want string }{
		{`9007199254740993`, `{"jsonrpc":"2.0","id":9007199254740993,"result":{}}`},
		{`-9007199254740993`, `{"jsonrpc":"2.0","id":-9007199254740993,"result":{}}`},
		{`1e400`, `{"jsonrpc":"2.0","id":1e400,"result":{}}`},
		{`"x"`, `{"jsonrpc":"2.0","id":"x","result":{}}`},
		{`{"a":1}`, invalid},
		{`[1]`, invalid},
		{`false`, invalid},
	} {
		t.Run(tc.id, func(t *testing.T) {
			got := serveLines(t, Options{}, `{"jsonrpc":"2.0","id":`+tc.id+`,"method":"ping"}`)
			if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
				t.Fatalf("answered %q, want %s", got, tc.want)
			}
		})
	}
}

// A response nobody waits for gets no answer and one debug line without a
// stack, within the rate limit.
func TestUnsolicitedResponses(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	lines := []string{initialize}
	for i := range 3 * jsonrpc.UnsolicitedLines {
		lines = append(lines, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":{}}`, 100+i), `{"jsonrpc":"2.0","id":"s","error":{"code":1,"message":"x"}}`)
	}
	got := serveLines(t, Options{Log: zap.New(core)}, lines...)
	if len(got) != 1 || !strings.Contains(got[0], `"id":0,`) {
		t.Fatalf("answered %q", got)
	}
	all := logs.FilterMessageSnippet("answers no request").AllUntimed()
	if len(all) != jsonrpc.UnsolicitedLines || logs.Len() != len(all) {
		t.Fatalf("%d lines about unsolicited responses of %d, want %d", len(all), logs.Len(), jsonrpc.UnsolicitedLines)
	}
	for _, e := range all {
		if e.Level != zapcore.DebugLevel || e.Stack != "" || e.ContextMap()["transport"] != "stdio" {
			t.Errorf("%v %v %q", e.Level, e.ContextMap(), e.Stack)
		}
	}
}
