package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/projection"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

// Erased is gdpr_erase's expected outcome: the subject's key is destroyed,
// every view shows the erased marker where the subject's data stood, and
// the trace, its receipts and replay still hold.
const Erased = service.ErasureErased

// needSubject: erasure needs a data subject named by an id in the input.
func needSubject(p *program.Program) string {
	for _, sub := range p.Subjects {
		if len(sub.ID) > 1 && sub.ID[0] == "input" {
			return ""
		}
	}
	return "the program declares no data subject named by an input field"
}

// needSubjectID: the run's input names its subject with a string id.
func needSubjectID(v *view) string {
	if _, ok := subjectID(v.p, v.run.Input); !ok {
		return "the run input holds no string id at the subject's id path"
	}
	return ""
}

// subjectID is the first subject's id in input.
func subjectID(p *program.Program, input any) (string, bool) {
	for _, sub := range p.Subjects {
		if len(sub.ID) > 1 && sub.ID[0] == "input" {
			if s, ok := valueAt(input, sub.ID[1:]).(string); ok && s != "" {
				return s, true
			}
		}
	}
	return "", false
}

func valueAt(v any, path []string) any {
	for _, seg := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[seg]
	}
	return v
}

// labSubject gives a script's input a subject id of its own, so that the
// matrix's erasure destroys the key of this run's subject only, never that
// of real runs of the example's customer in the same store. The id keeps
// the original as a prefix when the schema allows it.
func labSubject(p *program.Program, input any) (any, error) {
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, err
	}
	tag := "LAB-" + strings.ToUpper(hex.EncodeToString(suffix[:]))
	for _, sub := range p.Subjects {
		if len(sub.ID) < 2 || sub.ID[0] != "input" {
			continue
		}
		old, _ := valueAt(input, sub.ID[1:]).(string)
		for _, id := range []string{old + "-" + tag, tag} {
			out, ok := withValue(input, sub.ID[1:], id)
			if ok && (p.Input == nil || len(p.Input.Validate(out)) == 0) {
				return out, nil
			}
		}
		return nil, fmt.Errorf("no lab-only id at %s fits the input schema", sub.ID)
	}
	return input, nil
}

// withValue is a copy of v with the value at path replaced.
func withValue(v any, path []string, val any) (any, bool) {
	if len(path) == 0 {
		return val, true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	child, ok := withValue(m[path[0]], path[1:], val)
	if !ok {
		return nil, false
	}
	out := make(map[string]any, len(m))
	for k, c := range m {
		out[k] = c
	}
	out[path[0]] = child
	return out, true
}

// eraseSubject erases the run's data subject through the service, as the
// erase_subject tool does, and checks what an erasure promises: every
// personal value the run held reads as the erased marker in every view,
// a second erasure is already_erased, and replay still re-derives every
// transition. (attack verifies the trace and receipts afterwards.)
func eraseSubject(ctx context.Context, env Env, v *view) (outcome, error) {
	o := outcome{expected: Erased}
	id, _ := subjectID(v.p, v.run.Input)
	secrets, err := personalValues(ctx, env, v)
	if err != nil {
		return o, err
	}
	res, err := env.Service.EraseSubject(ctx, service.EraseOptions{SubjectID: id, Reason: "failure laboratory: gdpr_erase", Principal: env.Principal})
	if err != nil {
		o.observed, o.detail = code(err), err.Error()
		return o, nil
	}
	var problems []string
	if res.Status != service.ErasureErased || !contains(res.Runs, v.run.ID) {
		problems = append(problems, fmt.Sprintf("the erasure answered %s for runs %v", res.Status, res.Runs))
	}
	// Every view: the trace as opened, the run as the operator reads it,
	// the auditor's projection, and every task the model was given (in
	// the trace's task_issued events).
	events, err := env.Service.Events(ctx, v.run.ID)
	if err != nil {
		return o, err
	}
	after, p, err := env.Service.Get(ctx, v.run.ID)
	if err != nil {
		return o, err
	}
	views := map[string]string{
		"trace":    canonical(events),
		"operator": canonical(map[string]any{"input": after.Input, "data": after.Data, "task": after.Task}),
		"auditor":  canonical(projection.ForAuditor(p, projection.State{Input: after.Input, Data: after.Data})),
	}
	for name, text := range views {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				problems = append(problems, fmt.Sprintf("the %s view still reads %s", name, s))
			}
		}
	}
	if !strings.Contains(views["trace"], `"$erased"`) || !strings.Contains(views["operator"], `"$erased"`) {
		problems = append(problems, "no erased marker where the subject's data stood")
	}
	if rep, err := runtime.ReplayReport(p, events); err != nil || rep.Divergence != nil {
		problems = append(problems, fmt.Sprintf("replay after the erasure: %v %+v", err, rep.Divergence))
	}
	again, err := env.Service.EraseSubject(ctx, service.EraseOptions{SubjectID: id, Reason: "failure laboratory: gdpr_erase, again", Principal: env.Principal})
	if err != nil || again.Status != service.ErasureAlreadyErased {
		problems = append(problems, fmt.Sprintf("erasing again answered %s, %v", again.Status, err))
	}
	o.observed = Erased
	o.detail = fmt.Sprintf("subject key destroyed, %d run(s) recorded the erasure; %d personal values read as erased in the trace, operator, auditor and model views; replay re-derives every transition; erasing again is already_erased", len(res.Recorded), len(secrets))
	if len(problems) > 0 {
		o.observed, o.detail = "not_erased", strings.Join(problems, "; ")
	}
	return o, nil
}

// personalValues are the run's personal string values (at its subjects'
// id and personal-data paths) that the store holds only sealed: a value
// that also stands in clear somewhere else in the trace (a word of the
// program's instructions, say) is not the subject's data there, and is
// left out.
func personalValues(ctx context.Context, env Env, v *view) ([]string, error) {
	recs, err := env.Store.Load(ctx, v.run.ID)
	if err != nil {
		return nil, err
	}
	var raw bytes.Buffer
	for _, r := range recs {
		raw.Write(r.Body)
	}
	root := map[string]any{"input": v.run.Input, "data": v.run.Data}
	seen := map[string]bool{}
	var out []string
	for _, q := range v.p.PII {
		collectStrings(valueAt(root, q), func(s string) {
			quoted := canonical(s)
			if len(s) >= 4 && !seen[quoted] && !bytes.Contains(raw.Bytes(), []byte(quoted)) {
				seen[quoted] = true
				out = append(out, quoted)
			}
		})
	}
	return out, nil
}

func collectStrings(v any, f func(string)) {
	switch x := v.(type) {
	case string:
		f(x)
	case map[string]any:
		for _, c := range x {
			collectStrings(c, f)
		}
	case []any:
		for _, c := range x {
			collectStrings(c, f)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
