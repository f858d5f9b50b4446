package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/subjectkeys"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Sealing is the shell's half of the trace format: before events are
// appended, every value from a subject's personal-data paths is encrypted
// under that subject's key, each event is chained to the previous one, and
// its leaf joins the run's Merkle tree. The core never sees any of it: it
// produces plaintext events, and the shell reopens sealed ones before
// folding them.

// sealedKey and erasedKey mark the objects that stand in for personal data.
const (
	sealedKey = projection.SealedKey
	erasedKey = projection.ErasedKey
)

// chain is a run's hash chain and tree, as of its last stored event.
type chain struct {
	head     []byte // hash of the last event; nil before the first
	tree     *trace.Tree
	subjects map[string]string // subject name → keyed subject id
	// erased are the keyed ids the run recorded as erased: a value of
	// theirs that still arrives (an answer refused after the erasure) is
	// stored as the erased marker, never under a fresh key.
	erased map[string]bool
}

// erasedIn is prior with the subjects events record as erased (prior
// itself is never modified).
func erasedIn(prior map[string]bool, events []runtime.Event) map[string]bool {
	var out map[string]bool
	for _, e := range events {
		if e.Type != runtime.EventSubjectErased || e.Erasure == nil {
			continue
		}
		if out == nil {
			out = make(map[string]bool, len(prior)+1)
			maps.Copy(out, prior)
		}
		out[e.Erasure.Subject] = true
	}
	if out == nil {
		return prior
	}
	return out
}

// sealer holds what sealing needs from the service.
type sealer struct {
	keys   *subjectkeys.Keys
	secret []byte

	randMu sync.Mutex
	rand   io.Reader
}

func (s *sealer) read(b []byte) error {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	_, err := io.ReadFull(s.rand, b)
	return err
}

// key returns the subject's key. With create, a missing key is made (a
// subject's first sealed value); without, nil means it was destroyed.
func (s *sealer) key(ctx context.Context, subject string, create bool) ([]byte, error) {
	return s.keys.Get(ctx, subject, create)
}

// subjectsOf names the run's data subjects by keyed id: the id value at the
// subject's id path in the run input, or the run itself when it has none.
func (s *sealer) subjectsOf(p *program.Program, runID string, input any) map[string]string {
	out := make(map[string]string, len(p.Subjects))
	for _, sub := range p.Subjects {
		id := "run:" + runID
		if v, ok := valueAt(input, sub.ID[1:]); ok {
			if str, isStr := v.(string); isStr {
				id = "id:" + str
			} else if c, err := jsonvalue.Canonical(v); err == nil {
				id = "id:" + string(c)
			}
		}
		out[sub.Name] = trace.SubjectID(s.secret, sub.Name, id)
	}
	return out
}

func valueAt(v any, path []string) (any, bool) {
	for _, seg := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return v, true
}

// seal turns events into records: personal data sealed, each event
// chained to the last, and each leaf added to c's tree. c moves on only
// when every event has been sealed.
func (s *sealer) seal(ctx context.Context, p *program.Program, c *chain, events []runtime.Event) ([]tracestore.Record, *chain, error) {
	next := &chain{head: c.head, subjects: c.subjects, erased: erasedIn(c.erased, events), tree: c.tree.Clone()}
	recs := make([]tracestore.Record, len(events))
	for i := range events {
		e := events[i]
		if e.Type == runtime.EventRunStarted {
			next.subjects = s.subjectsOf(p, e.RunID, e.Started.Input)
			st := *e.Started
			if len(next.subjects) > 0 {
				st.Subjects = next.subjects
			}
			e.Started = &st
		}
		sg := &sealing{sealer: s, erased: next.erased}
		if err := sg.sealEvent(ctx, p, next.subjects, &e); err != nil {
			return nil, nil, fmt.Errorf("seal event %d: %w", e.Index, err)
		}
		if next.head != nil {
			e.Prev = trace.Hex(next.head)
		}
		body, err := jsonvalue.Canonical(&e)
		if err != nil {
			return nil, nil, fmt.Errorf("encode event %d: %w", e.Index, err)
		}
		hash := trace.LeafHash(body)
		if err := next.tree.Append(hash); err != nil {
			return nil, nil, err
		}
		recs[i] = tracestore.Record{Index: e.Index, Type: string(e.Type), Body: body, Hash: hash}
		next.head = hash
	}
	return recs, next, nil
}

// sealEvent replaces, in a copy of e's payload, every personal-data value
// with its sealed form. e itself shares values with the run and is never
// modified in place.
func (s *sealing) sealEvent(ctx context.Context, p *program.Program, subjects map[string]string, e *runtime.Event) error {
	if len(p.Subjects) == 0 {
		return nil
	}
	aad := []byte(e.RunID)
	var err error
	switch e.Type {
	case runtime.EventRunStarted:
		st := *e.Started
		st.Input, err = s.sealPaths(ctx, p, subjects, st.Input, "input", nil, aad)
		e.Started = &st
	case runtime.EventTaskIssued:
		t := *e.Task
		t.View, err = s.sealView(ctx, p, subjects, t.View, aad)
		if err == nil && t.Tool != nil {
			tool := &projection.ToolCall{Name: t.Tool.Name}
			tool.Arguments, err = s.sealArguments(ctx, p, subjects, e.State, t.Tool.Arguments, aad)
			t.Tool = tool
		}
		e.Task = &t
	case runtime.EventToolCallStarted, runtime.EventToolCallCompleted, runtime.EventToolCallFailed, runtime.EventToolCallUnknown, runtime.EventToolCallResolved:
		var call *runtime.ToolCallRecord
		call, err = s.sealCall(ctx, p, subjects, e.State, e.Call, aad)
		e.Call = call
	case runtime.EventSubmissionAccepted:
		sub := *e.Submission
		sub.Output, err = s.sealPaths(ctx, p, subjects, sub.Output, "data", []string{e.State}, aad)
		e.Submission = &sub
	case runtime.EventApprovalRecorded:
		// A pending decision passed the state's checks, like an accepted
		// one: the state's own paths apply.
		rec := *e.Approval
		rec.Output, err = s.sealPaths(ctx, p, subjects, rec.Output, "data", []string{e.State}, aad)
		e.Approval = &rec
	case runtime.EventSubmissionRejected:
		rej := *e.Rejection
		rej.Output, err = s.sealPaths(ctx, p, subjects, rej.Output, "data", []string{"*"}, aad)
		if err == nil && len(rej.Details) > 0 {
			// Validation messages may quote the rejected values.
			if owners := subjectsUnder(p, subjects, []string{"data", "*"}); len(owners) > 0 {
				rej.Details, err = s.sealDetails(ctx, owners, rej.Details, aad)
			}
		}
		if d := rej.Digest; err == nil && d != nil && d.Personal {
			// The prefix may show personal data, and a bare hash of it could
			// be matched by guessing: both go the way of the values.
			if owners := subjectsUnder(p, subjects, []string{"data", "*"}); len(owners) > 0 {
				var sealed []string
				if sealed, err = s.sealDetails(ctx, owners, []string{d.SHA256, d.Prefix}, aad); err == nil {
					rej.Digest = &runtime.OutputDigest{SHA256: sealed[0], Bytes: d.Bytes, Prefix: sealed[1], Personal: true}
				}
			}
		}
		e.Rejection = &rej
	}
	return err
}

// sealPaths seals, in v (the value at root.prefix...), every personal-data
// path below it. A prefix element "*" matches any state: a refused answer
// is sealed as if it were meant for any state, since it may not fit the
// state it met.
func (s *sealing) sealPaths(ctx context.Context, p *program.Program, subjects map[string]string, v any, root string, prefix []string, aad []byte) (any, error) {
	if v == nil {
		return nil, nil
	}
	// One target per path, with every subject that claims it.
	type target struct {
		rest   []string
		owners map[string]bool
	}
	byPath := map[string]*target{}
	for _, sub := range p.Subjects {
		for _, q := range append([]program.Path{sub.ID}, sub.PII...) {
			if rest, ok := q.Below(append([]string{root}, prefix...)); ok {
				key := strings.Join(rest, ".")
				if byPath[key] == nil {
					byPath[key] = &target{rest: rest, owners: map[string]bool{}}
				}
				byPath[key].owners[subjects[sub.Name]] = true
			}
		}
	}
	targets := make([]*target, 0, len(byPath))
	for _, t := range byPath {
		targets = append(targets, t)
	}
	// Deepest paths first: when one subject's path lies inside another's,
	// the inner value is sealed under its own subject's key before the
	// outer one wraps it, so erasing either subject erases its data.
	sort.Slice(targets, func(i, j int) bool {
		if len(targets[i].rest) != len(targets[j].rest) {
			return len(targets[i].rest) > len(targets[j].rest)
		}
		return slices.Compare(targets[i].rest, targets[j].rest) < 0
	})
	for _, t := range targets {
		var err error
		if v, err = s.sealAt(ctx, v, t.rest, sortedSet(t.owners), aad); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// sealView seals the personal data a task view holds ({"input": ...,
// "data": {...}}): personal-data paths apply to it as they are.
func (s *sealing) sealView(ctx context.Context, p *program.Program, subjects map[string]string, view map[string]any, aad []byte) (map[string]any, error) {
	var v any = view
	var err error
	if v, err = s.sealPaths(ctx, p, subjects, v, "", nil, aad); err != nil {
		return nil, err
	}
	out, _ := v.(map[string]any)
	return out, nil
}

// sealCall seals, in a copy of a runtime tool call's record, what reads
// personal data: the arguments as a task's tool arguments, the result as
// a submission's output, and any detail (a failure's, an unknown
// outcome's, a resolution's) under all the run's subjects, as a
// rejection's details are: it is text the tool or the operator wrote,
// which may echo an argument or quote the result, and whose subject no
// path can tell.
func (s *sealing) sealCall(ctx context.Context, p *program.Program, subjects map[string]string, state string, call *runtime.ToolCallRecord, aad []byte) (*runtime.ToolCallRecord, error) {
	if call == nil {
		return nil, nil
	}
	c := *call
	var err error
	if c.Arguments != nil {
		if c.Arguments, err = s.sealArguments(ctx, p, subjects, state, c.Arguments, aad); err != nil {
			return nil, err
		}
	}
	if c.Result, err = s.sealPaths(ctx, p, subjects, c.Result, "data", []string{state}, aad); err != nil {
		return nil, err
	}
	if c.Detail != "" && len(subjects) > 0 {
		owners := make(map[string]bool, len(subjects))
		for _, id := range subjects {
			owners[id] = true
		}
		var sealed []string
		if sealed, err = s.sealDetails(ctx, sortedSet(owners), []string{c.Detail}, aad); err != nil {
			return nil, err
		}
		c.Detail = sealed[0]
	}
	return &c, nil
}

// sealArguments seals every tool argument that reads personal data, under
// the keys of every subject it reads.
func (s *sealing) sealArguments(ctx context.Context, p *program.Program, subjects map[string]string, state string, args map[string]any, aad []byte) (map[string]any, error) {
	st := p.States[state]
	out := make(map[string]any, len(args))
	for k, v := range args {
		out[k] = v
	}
	if st == nil {
		return out, nil
	}
	for _, a := range st.Args {
		owners := map[string]bool{}
		for _, read := range a.Expr.PII {
			for _, sub := range p.Subjects {
				if pathIn(read, sub) {
					owners[subjects[sub.Name]] = true
				}
			}
		}
		v, ok := out[a.Name]
		if len(owners) == 0 || !ok {
			continue
		}
		sealed, err := s.sealValue(ctx, v, sortedSet(owners), aad)
		if err != nil {
			return nil, err
		}
		out[a.Name] = sealed
	}
	return out, nil
}

func (s *sealing) sealDetails(ctx context.Context, owners []string, details []string, aad []byte) ([]string, error) {
	out := make([]string, len(details))
	for i, d := range details {
		sealed, err := s.sealValue(ctx, d, owners, aad)
		if err != nil {
			return nil, err
		}
		c, err := jsonvalue.Canonical(sealed)
		if err != nil {
			return nil, err
		}
		out[i] = string(c)
	}
	return out, nil
}

// sealAt returns v with the value at path sealed, rebuilding the objects on
// the way (v is shared and never modified). Arrays on the way apply the
// rest of the path to each element.
func (s *sealing) sealAt(ctx context.Context, v any, path []string, owners []string, aad []byte) (any, error) {
	if len(path) == 0 {
		if projection.IsSealed(v) {
			return v, nil // already sealed under an enclosing path
		}
		return s.sealValue(ctx, v, owners, aad)
	}
	switch x := v.(type) {
	case map[string]any:
		child, ok := x[path[0]]
		if !ok {
			return v, nil
		}
		sealed, err := s.sealAt(ctx, child, path[1:], owners, aad)
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(x))
		for k, c := range x {
			out[k] = c
		}
		out[path[0]] = sealed
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = s.sealAt(ctx, e, path, owners, aad); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

// sealing is one event's sealing: the sealer, and the subjects the run
// has recorded as erased.
type sealing struct {
	*sealer
	erased map[string]bool
}

// sealValue encrypts v under each owner's key in turn: a value that holds
// several subjects' data opens only while all their keys exist. A value of
// a subject the run recorded as erased is not kept: it is stored as the
// erased marker, as it would read anyway.
func (s *sealing) sealValue(ctx context.Context, v any, owners []string, aad []byte) (any, error) {
	for _, owner := range owners {
		if s.erased[owner] {
			return map[string]any{erasedKey: owner}, nil
		}
	}
	for _, owner := range owners {
		plain, err := jsonvalue.Canonical(v)
		if err != nil {
			return nil, err
		}
		key, err := s.key(ctx, owner, true)
		if err != nil {
			return nil, err
		}
		s.randMu.Lock()
		sealed, err := trace.Seal(key, owner, plain, aad, s.rand)
		s.randMu.Unlock()
		if err != nil {
			return nil, err
		}
		v = map[string]any{sealedKey: map[string]any{"subject": sealed.Subject, "nonce": sealed.Nonce, "ciphertext": sealed.Ciphertext}}
	}
	return v, nil
}

func pathIn(read []string, sub *program.Subject) bool {
	if program.Path(read).Covers(sub.ID) || sub.ID.Covers(read) {
		return true
	}
	for _, q := range sub.PII {
		if q.Covers(read) || program.Path(read).Covers(q) {
			return true
		}
	}
	return false
}

// subjectsUnder lists the subjects with personal data at or below prefix.
func subjectsUnder(p *program.Program, subjects map[string]string, prefix []string) []string {
	owners := map[string]bool{}
	for _, sub := range p.Subjects {
		for _, q := range append([]program.Path{sub.ID}, sub.PII...) {
			if _, ok := q.Below(prefix); ok {
				owners[subjects[sub.Name]] = true
			}
		}
	}
	return sortedSet(owners)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// open reverses sealing on decoded events: every sealed value whose key
// exists is decrypted; one whose key was destroyed becomes the erased
// marker {"$erased": subject}.
func (s *sealer) open(ctx context.Context, events []runtime.Event) error {
	for i := range events {
		e := &events[i]
		aad := []byte(e.RunID)
		var err error
		switch {
		case e.Started != nil:
			e.Started.Input, err = s.openValue(ctx, e.Started.Input, aad)
		case e.Task != nil:
			var v any
			if v, err = s.openValue(ctx, e.Task.View, aad); err == nil {
				e.Task.View, _ = v.(map[string]any)
			}
			if err == nil && e.Task.Tool != nil {
				if v, err = s.openValue(ctx, e.Task.Tool.Arguments, aad); err == nil {
					e.Task.Tool.Arguments, _ = v.(map[string]any)
				}
			}
		case e.Call != nil:
			var v any
			if v, err = s.openValue(ctx, e.Call.Arguments, aad); err == nil {
				e.Call.Arguments, _ = v.(map[string]any)
			}
			if err == nil {
				e.Call.Result, err = s.openValue(ctx, e.Call.Result, aad)
			}
			if err == nil && e.Call.Detail != "" {
				details := []string{e.Call.Detail}
				if err = s.openDetails(ctx, details, aad); err == nil {
					e.Call.Detail = details[0]
				}
			}
		case e.Submission != nil:
			e.Submission.Output, err = s.openValue(ctx, e.Submission.Output, aad)
		case e.Approval != nil:
			e.Approval.Output, err = s.openValue(ctx, e.Approval.Output, aad)
		case e.Rejection != nil:
			if e.Rejection.Output, err = s.openValue(ctx, e.Rejection.Output, aad); err == nil {
				err = s.openDetails(ctx, e.Rejection.Details, aad)
			}
			if d := e.Rejection.Digest; err == nil && d != nil && d.Personal {
				strs := []string{d.SHA256, d.Prefix}
				if err = s.openDetails(ctx, strs, aad); err == nil {
					d.SHA256, d.Prefix = strs[0], strs[1]
				}
			}
		}
		if err != nil {
			return fmt.Errorf("open event %d: %w", e.Index, err)
		}
	}
	return nil
}

func (s *sealer) openDetails(ctx context.Context, details []string, aad []byte) error {
	for i, d := range details {
		if !json.Valid([]byte(d)) || !bytes.HasPrefix([]byte(d), []byte(`{"`+sealedKey)) {
			continue
		}
		v, err := jsonvalue.Decode([]byte(d))
		if err != nil {
			continue
		}
		if v, err = s.openValue(ctx, v, aad); err != nil {
			return err
		}
		if str, ok := v.(string); ok {
			details[i] = str
		} else if c, err := jsonvalue.Canonical(v); err == nil {
			details[i] = string(c)
		}
	}
	return nil
}

// openValue returns v with every sealed value inside it opened (or marked
// erased).
func (s *sealer) openValue(ctx context.Context, v any, aad []byte) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		if inner, ok := x[sealedKey].(map[string]any); ok && len(x) == 1 {
			sealed := &trace.Sealed{}
			sealed.Subject, _ = inner["subject"].(string)
			sealed.Nonce, _ = inner["nonce"].(string)
			sealed.Ciphertext, _ = inner["ciphertext"].(string)
			key, err := s.key(ctx, sealed.Subject, false)
			if err != nil {
				return nil, err
			}
			if key == nil {
				return map[string]any{erasedKey: sealed.Subject}, nil
			}
			plain, err := trace.Open(key, sealed, aad)
			if err != nil {
				return nil, err
			}
			inner2, err := jsonvalue.Decode(plain)
			if err != nil {
				return nil, err
			}
			return s.openValue(ctx, inner2, aad) // layered: one key per subject
		}
		for k, c := range x {
			o, err := s.openValue(ctx, c, aad)
			if err != nil {
				return nil, err
			}
			x[k] = o
		}
	case []any:
		for i, c := range x {
			o, err := s.openValue(ctx, c, aad)
			if err != nil {
				return nil, err
			}
			x[i] = o
		}
	}
	return v, nil
}
