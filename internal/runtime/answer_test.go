package runtime

import (
	"reflect"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/projection"
)

func TestInputForBuildsTheInputTheTaskKindTakes(t *testing.T) {
	o := AnswerOptions{Principal: "op", DefinitionHash: "sha256:abc", AllowSelf: true, At: t0}
	answer := map[string]any{"ok": true}
	tests := []struct {
		name string
		task *projection.Task
		want Input
	}{
		{
			name: "approval: a decision by the task's role",
			task: &projection.Task{Seq: 3, State: "review", Kind: "approval", Role: "editor"},
			want: Decide{Seq: 3, State: "review", DefinitionHash: "sha256:abc", Role: "editor", Principal: "op", Decision: answer, AllowSelf: true, At: t0},
		},
		{
			name: "tool: the tool runner, claiming the task's tool",
			task: &projection.Task{Seq: 2, State: "check", Kind: "tool", Tool: &projection.ToolCall{Name: "linter"}},
			want: Submit{Seq: 2, State: "check", Tool: "linter", DefinitionHash: "sha256:abc", Actor: ActorTool, Principal: "op", Output: answer, At: t0},
		},
		{
			name: "tool without a tool call: the tool runner, claiming nothing",
			task: &projection.Task{Seq: 2, State: "check", Kind: "tool"},
			want: Submit{Seq: 2, State: "check", DefinitionHash: "sha256:abc", Actor: ActorTool, Principal: "op", Output: answer, At: t0},
		},
		{
			name: "llm: the model",
			task: &projection.Task{Seq: 1, State: "draft", Kind: "llm"},
			want: Submit{Seq: 1, State: "draft", DefinitionHash: "sha256:abc", Actor: ActorModel, Principal: "op", Output: answer, At: t0},
		},
		{
			name: "no open task: no input",
			task: nil,
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := InputFor(tc.task, answer, o); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("InputFor = %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// A driver that answers whatever task is open with InputFor walks a run to
// its end, each answer recorded with the actor its task's kind calls for.
func TestInputForAnswersEveryTaskOfARun(t *testing.T) {
	d := newDriver(t, loadTestProgram(t, "testdata/review.yaml"), `{"limit": 5}`)
	answers := []string{`{"score": 9, "text": "a"}`, `{"ok": true}`, `{"approved": true}`}
	for _, a := range answers {
		if _, err := d.apply(InputFor(d.run.Task, js(t, a), AnswerOptions{Principal: "op", AllowSelf: true, At: t0})); err != nil {
			t.Fatalf("answer %s: %v", a, err)
		}
	}
	if d.run.Status != StatusCompleted {
		t.Fatalf("run is %s at %s, want completed", d.run.Status, d.run.State)
	}
	var got []string
	for _, e := range d.events {
		if e.Type == EventSubmissionAccepted {
			got = append(got, string(e.Submission.Actor)+" "+e.Submission.Tool+" "+e.Submission.Role)
		}
	}
	want := []string{"model  ", "tool linter ", "human  editor"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("accepted submissions (actor tool role) = %q, want %q", got, want)
	}
}
