package tools

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/keyring"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// kycCustomer is the customer id of the KYC example input, at the
// customer subject's id path (input.customer.id).
const kycCustomer = "CUS-88213"

func TestEraseSubjectIsForOperatorsOnly(t *testing.T) {
	ctx := context.Background()
	args := map[string]any{"subject_id": kycCustomer, "reason": "test"}
	agent := newHarness(t, nil)
	if _, ok := toolNames(t, agent.c, ctx)["erase_subject"]; ok {
		t.Fatal("the agent server lists erase_subject")
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "erase_subject"
	req.Params.Arguments = args
	if res, err := agent.c.CallTool(ctx, req); err == nil && !res.IsError {
		t.Fatal("an agent called erase_subject")
	}
	// On an operator server, neither an agent caller nor an approver
	// (HTTP) sees or reaches it.
	op := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator; c.Approvers = testApprovers(t) })
	for _, caller := range []context.Context{
		as("agent", access.ProfileAgent),
		access.WithPrincipal(ctx, access.Principal{ID: "alice", Profile: access.ProfileApprover, ApproverRole: "compliance_officer"}),
	} {
		if _, ok := toolNames(t, op.c, caller)["erase_subject"]; ok {
			t.Fatal("a non-operator caller sees erase_subject")
		}
		if res, err := op.c.CallTool(caller, req); err == nil && !res.IsError {
			t.Fatal("a non-operator caller called erase_subject")
		}
	}
	a := toolNames(t, op.c, ctx)["erase_subject"].Annotations
	if a.ReadOnlyHint == nil || *a.ReadOnlyHint || !*a.DestructiveHint || !*a.IdempotentHint || *a.OpenWorldHint {
		t.Fatalf("erase_subject annotations %+v", a)
	}
	// The handler checks the profile too, whatever the server lists.
	h := &handlers{Config: op.cfg}
	if _, err := h.eraseSubject(ctx, access.Principal{ID: "agent", Profile: access.ProfileAgent}, request{raw: []byte(`{"subject_id":"x","reason":"y"}`)}); err == nil {
		t.Fatal("the handler erased for an agent")
	}
}

// hasName reports whether v, as JSON, holds the KYC customer's name in any
// spelling the example uses.
func hasName(t *testing.T, v any) bool {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(strings.ToLower(string(b)), "lindqvist")
}

// An operator erases the KYC customer: the key is destroyed, both of the
// customer's runs record it (the running one is cancelled), no tool shows
// the name any more, and the receipts still verify. Erasing again, or
// someone unknown, is a result.
func TestEraseSubjectErasesAKYCCustomer(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator; c.Approvers = testApprovers(t) })

	// One run completed, one waiting for the compliance officer.
	// (The officer first asks for more information: two decisions.)
	done, seq, rest := kycAtApproval(t, h, ctx)
	var res map[string]any
	for len(rest) > 0 {
		res = h.mustCall(ctx, "approve", map[string]any{"run_id": done, "seq": seq, "decision": json.RawMessage(rest[0]), "approver_token": aliceToken})
		var used int
		res, used = h.drive(ctx, done, res, rest[1:])
		rest = rest[1+used:]
		if res["status"] != "waiting_approval" {
			break
		}
		seq = seqOf(t, task(t, res))
	}
	if res["outcome"] != "APPROVED" {
		t.Fatalf("run %s ended %v", done, res)
	}
	waiting, _, _ := kycAtApproval(t, h, ctx)
	if got := h.mustCall(ctx, "get_run", map[string]any{"run_id": waiting}); !hasName(t, got) {
		t.Fatalf("before the erasure the approval task shows no name: %v", got)
	}
	receipt := h.mustCall(ctx, "get_receipt", map[string]any{"run_id": done})

	erased := h.mustCall(ctx, "erase_subject", map[string]any{"subject_id": kycCustomer, "reason": "GDPR Art. 17 request 2026-118"})
	runs := []string{done, waiting}
	sort.Strings(runs)
	if erased["status"] != service.ErasureErased || len(toStrings(erased["subjects"])) != 1 ||
		!slices.Equal(toStrings(erased["runs"]), runs) || !slices.Equal(toStrings(erased["recorded"]), runs) {
		t.Fatalf("erase: %v", erased)
	}
	subject := toStrings(erased["subjects"])[0]

	for _, id := range runs {
		got := h.mustCall(ctx, "get_run", map[string]any{"run_id": id})
		if hasName(t, got) {
			t.Errorf("get_run %s shows the name after the erasure: %v", id, got)
		}
	}
	if got := h.mustCall(ctx, "get_run", map[string]any{"run_id": waiting}); got["status"] != "cancelled" || got["task"] != nil {
		t.Errorf("the waiting run was not cancelled: %v", got)
	}
	// get_run shows no task of an ended run; the trace as the service
	// opens it holds the marker where the approval task showed the name.
	events, err := h.cfg.Service.Events(ctx, waiting)
	if err != nil {
		t.Fatal(err)
	}
	if hasName(t, events) {
		t.Error("the opened trace still shows the name")
	}
	var view map[string]any
	var record *runtime.ErasureRecord
	for _, e := range events {
		if e.Type == runtime.EventTaskIssued && e.State == "human_approval" {
			view = e.Task.View
		}
		if e.Type == runtime.EventSubjectErased {
			record = e.Erasure
		}
	}
	fullName := view["data"].(map[string]any)["collect_customer_data"].(map[string]any)["full_name"]
	if !projection.IsErased(fullName) || fullName.(map[string]any)[projection.ErasedKey] != subject {
		t.Errorf("full_name in the approval task's view is %v, want the erased marker of %s", fullName, subject)
	}
	if record == nil || record.Subject != subject || record.Principal != access.IDLocal || record.Reason != "GDPR Art. 17 request 2026-118" {
		t.Errorf("subject_erased records %+v", record)
	}

	// The receipt signed before the erasure still verifies: the erasure
	// is one more event that continues the chain. So does a new one.
	v := h.mustCall(ctx, "verify_receipt", map[string]any{"receipt": receipt["receipt"], "signature": receipt["signature"]})
	if v["valid"] != true || v["later"] != 1.0 {
		t.Fatalf("the receipt from before the erasure: %v", v)
	}
	receipt = h.mustCall(ctx, "get_receipt", map[string]any{"run_id": done})
	if v := h.mustCall(ctx, "verify_receipt", map[string]any{"receipt": receipt["receipt"], "signature": receipt["signature"]}); v["valid"] != true {
		t.Fatalf("the receipt after the erasure: %v", v)
	}

	again := h.mustCall(ctx, "erase_subject", map[string]any{"subject_id": kycCustomer, "reason": "repeated", "subject": "customer"})
	if again["status"] != service.ErasureAlreadyErased || len(toStrings(again["subjects"])) != 0 ||
		!slices.Equal(toStrings(again["runs"]), runs) || len(toStrings(again["recorded"])) != 0 {
		t.Fatalf("erase again: %v", again)
	}
	unknown := h.mustCall(ctx, "erase_subject", map[string]any{"subject_id": "CUS-00000", "reason": "test"})
	if unknown["status"] != service.ErasureUnknownSubject || len(toStrings(unknown["runs"])) != 0 || len(toStrings(unknown["subjects"])) != 0 {
		t.Fatalf("erase someone unknown: %v", unknown)
	}
}

func TestEraseSubjectArguments(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, func(c *Config) { c.Profile = access.ProfileOperator })
	for _, args := range []map[string]any{
		{"reason": "test"},
		{"subject_id": "", "reason": "test"},
		{"subject_id": kycCustomer},
		{"subject_id": kycCustomer, "reason": ""},
		{"subject_id": kycCustomer, "reason": "test", "extra": 1},
		// No program declares such a subject name.
		{"subject_id": kycCustomer, "reason": "test", "subject": "patient"},
	} {
		h.mustFail(ctx, "erase_subject", args, CodeInvalidArguments)
	}
}

// appendFails is a store whose appends fail while fail is set.
type appendFails struct {
	tracestore.Store
	fail atomic.Bool
}

func (s *appendFails) Append(ctx context.Context, runID string, recs []tracestore.Record, info tracestore.RunInfo) error {
	if s.fail.Load() {
		return errors.New("disk full")
	}
	return s.Store.Append(ctx, runID, recs, info)
}

// An erasure cut short after the key is gone says so, and repeating it
// finishes the job.
func TestEraseSubjectIncompleteThenFinished(t *testing.T) {
	ctx := context.Background()
	st := &appendFails{Store: tracestore.NewMemory()}
	keys, err := keyring.Ephemeral(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(service.Options{Store: st, Secret: keys.Secret})
	p, src := examples.MustLoad("kyc-onboarding")
	if err := svc.AddProgram(ctx, p, src); err != nil {
		t.Fatal(err)
	}
	input, err := jsonvalue.Decode(exampleInput(t, "kyc-onboarding.input.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := svc.Start(ctx, "kyc-onboarding", input, "agent")
	if err != nil {
		t.Fatal(err)
	}
	h := &handlers{Config: Config{Service: svc, Store: st, Keys: keys, Log: zap.NewNop()}, inputs: compileInputs()}
	op := access.Principal{ID: "operator", Profile: access.ProfileOperator}
	erase := func() *mcp.CallToolResult {
		req := mcp.CallToolRequest{}
		req.Params.RawArguments = json.RawMessage(`{"subject_id":"` + kycCustomer + `","reason":"test"}`)
		t0 := specByName("erase_subject")
		out, err := h.call(ctx, t0, op, req)
		return h.render(t0, out, err)
	}

	st.fail.Store(true)
	res := erase()
	var body ErrorBody
	if !res.IsError || json.Unmarshal([]byte(res.Content[0].(mcp.TextContent).Text), &body) != nil || body.Code != CodeErasureIncomplete ||
		!strings.Contains(body.Message, a.RunID) || strings.Contains(body.Message, "disk full") {
		t.Fatalf("erase with failing appends: %+v", res)
	}
	r, _, err := svc.Get(ctx, a.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if name := r.Input.(map[string]any)["customer"].(map[string]any)["name"]; !projection.IsErased(name) {
		t.Fatalf("the key should be gone already: %v", name)
	}

	st.fail.Store(false)
	res = erase()
	var again EraseSubjectResult
	if res.IsError || json.Unmarshal([]byte(res.Content[0].(mcp.TextContent).Text), &again) != nil ||
		again.Status != service.ErasureAlreadyErased || !slices.Equal(again.Recorded, []string{a.RunID}) {
		t.Fatalf("erase again: %+v", res)
	}
}
