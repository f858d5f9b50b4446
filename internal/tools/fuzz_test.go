package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

var (
	fuzzOnce     sync.Once
	fuzzPrograms []*program.Program
	fuzzSources  [][]byte
	fuzzInputs   compiledSchemas
)

// knownCodes are every code an error result may carry.
var knownCodes = map[string]bool{}

func init() {
	for code := range advice {
		knownCodes[code] = true
	}
	for _, c := range []runtime.Code{runtime.CodeRunExists, runtime.CodeInvalidInput} {
		knownCodes[string(c)] = true
	}
}

// FuzzToolCall sends arbitrary arguments to every tool of an operator
// server holding one run: every call must end in a result, never a panic
// or a protocol error; an error result carries a known code; and a call
// that failed left the run exactly as it was.
func FuzzToolCall(f *testing.F) {
	fuzzOnce.Do(func() {
		fuzzInputs = compileInputs()
		for _, name := range examples.Programs() {
			p, src := examples.MustLoad(name)
			fuzzPrograms, fuzzSources = append(fuzzPrograms, p), append(fuzzSources, src)
		}
	})
	seeds := []string{
		`{}`, `{"run_id":"RUN","seq":1,"output":{"eligible":true,"amount_cents":1,"reason":"x"}}`,
		`{"run_id":"RUN","seq":1,"output":{},"state":"check","tool":{"name":"x"},"definition_hash":"sha256:0"}`,
		`{"program":"refund","input":` + fuzzInput + `}`,
		`{"run_id":"RUN","reason":"stop"}`, `{"run_id":"RUN","seq":2,"decision":{"decision":"approve"},"approver_token":"t"}`,
		`{"receipt":{"run_id":"RUN"},"signature":"AAAA","trace":"{}\n"}`, `{"run_id":"RUN","fault":"skip_step","params":{"a":[1,2]}}`,
		`{"cursor":"1:x","status":"running"}`, `[1,2]`, `null`, `{"seq":1e400}`, `{"run_id":"RUN","seq":18446744073709551615,"output":0}`,
	}
	for i := range catalog {
		for _, s := range seeds {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		ctx := context.Background()
		keys, _ := keyring.Ephemeral(rand.New(rand.NewSource(1)))
		st := tracestore.NewMemory()
		svc := service.New(service.Options{Store: st, Secret: keys.Secret, Rand: rand.New(rand.NewSource(2))})
		for i, p := range fuzzPrograms {
			if err := svc.AddProgram(ctx, p, fuzzSources[i]); err != nil {
				t.Fatal(err)
			}
		}
		h := &handlers{Config: Config{Service: svc, Store: st, Keys: keys, Profile: access.ProfileOperator}, inputs: fuzzInputs, stateKey: []byte("k")}
		input, err := jsonvalue.Decode([]byte(fuzzInput))
		if err != nil {
			t.Fatal(err)
		}
		a, err := svc.StartRun(ctx, service.StartOptions{Program: "refund", Input: input, Principal: "local"})
		if err != nil {
			t.Fatal(err)
		}
		raw = bytes.ReplaceAll(raw, []byte("RUN"), []byte(a.RunID)) // seeds name the fuzz run RUN
		before, _, _ := svc.Get(ctx, a.RunID)

		t0 := &catalog[int(which)%len(catalog)]
		req := mcp.CallToolRequest{}
		req.Params.Name = t0.name
		req.Params.RawArguments = raw
		out, err := h.call(ctx, t0, access.Principal{ID: "local", Profile: access.ProfileOperator}, req)
		res := h.render(t0, out, err)
		if res == nil || len(res.Content) == 0 {
			t.Fatal("no result")
		}
		if res.IsError {
			var body ErrorBody
			if jerr := json.Unmarshal([]byte(res.Content[0].(mcp.TextContent).Text), &body); jerr != nil || !knownCodes[body.Code] {
				t.Fatalf("error result %q: code unknown or not JSON (%v)", res.Content[0].(mcp.TextContent).Text, jerr)
			}
			if body.Code == CodeInternal {
				t.Fatalf("internal error for %s %q: %v", t0.name, raw, err)
			}
			after, _, _ := svc.Get(ctx, a.RunID)
			if t0.name != "step" || body.Code != "schema_violation" && body.Code != "guard_denied" && body.Code != "capability_denied" {
				if after.Seq != before.Seq || after.State != before.State || after.Status != before.Status || len(after.Data) != len(before.Data) {
					t.Fatalf("a failed %s moved the run: %+v -> %+v", t0.name, before, after)
				}
			}
		}
	})
}

const fuzzInput = `{"order":{"id":"o","total_cents":5,"currency":"EUR","days_since_delivery":1},"request":{"amount_cents":5,"reason":"r"}}`
