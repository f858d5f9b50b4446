package program

import (
	"github.com/invopop/jsonschema"
	orderedmap "github.com/pb33f/ordered-map/v2"
)

// The types in this file are the program format: a public contract. Field
// names and JSON tags must not change. schemas/program.schema.json is
// generated from them (go test ./internal/program -run TestProgramSchemaUpToDate -update).

// Document is a program file as written: the parsed form before defaults
// and compilation.
type Document struct {
	Name        string                 `json:"name" jsonschema:"pattern=^[a-z][a-z0-9-]*$,maxLength=64" jsonschema_description:"Program name: lower-case letters, digits and '-'."`
	Version     string                 `json:"version" jsonschema:"minLength=1,maxLength=64" jsonschema_description:"Program version, kept as written (YAML 1.0 stays the string \"1.0\")."`
	Description string                 `json:"description,omitempty" jsonschema_description:"What the program does, for people."`
	InputSchema SchemaDoc              `json:"input_schema,omitempty" jsonschema_description:"JSON Schema (2020-12) of the run input. Default: any object."`
	Subjects    map[string]SubjectSpec `json:"subjects,omitempty" jsonschema_description:"Data subjects whose personal data the run holds, by name."`
	Limits      *Limits                `json:"limits,omitempty" jsonschema_description:"Budgets that bound every run."`
	Initial     string                 `json:"initial" jsonschema:"pattern=^[a-z][a-z0-9_]*$" jsonschema_description:"The state a run starts in."`
	States      map[string]StateSpec   `json:"states" jsonschema:"minProperties=1" jsonschema_description:"The states, by name. State names are CEL identifiers."`
}

// JSONSchemaExtend pins the key patterns of the maps, which reflection
// cannot express.
func (Document) JSONSchemaExtend(s *jsonschema.Schema) {
	keyed := func(prop string, pattern string) {
		p, ok := s.Properties.Get(prop)
		if !ok {
			return
		}
		p.PropertyNames = &jsonschema.Schema{Type: "string", Pattern: pattern}
	}
	keyed("subjects", `^[a-z][a-z0-9_]*$`)
	keyed("states", `^[a-z][a-z0-9_]*$`)
	s.Required = []string{"name", "version", "initial", "states"}
}

// SubjectSpec names whose personal data a run holds.
type SubjectSpec struct {
	ID  string   `json:"id" jsonschema:"pattern=^input(\\.[A-Za-z_][A-Za-z0-9_]*)+$" jsonschema_description:"Path of the subject's id inside the run input (personal data itself)."`
	PII []string `json:"pii,omitempty" jsonschema:"uniqueItems=true" jsonschema_description:"Paths holding the subject's personal data: input[.<field>...] or data.<state>[.<field>...]."`
}

// Limits bound a run. A field left out takes its default; a field
// written takes the value written, so pointers tell an explicit value from
// an absent one. Only max_rollbacks may be 0: see docs/program-format.md
// for what each limit means at its lower bound.
type Limits struct {
	MaxSteps               *int `json:"max_steps,omitempty" jsonschema:"minimum=1,maximum=100000,default=100" jsonschema_description:"Transitions a run may take, decision hops included. Default 100."`
	MaxAttempts            *int `json:"max_attempts,omitempty" jsonschema:"minimum=1,maximum=100,default=3" jsonschema_description:"Rejected submissions allowed for one visit of a state. Default 3."`
	MaxRollbacks           *int `json:"max_rollbacks,omitempty" jsonschema:"minimum=0,maximum=1000,default=3" jsonschema_description:"Rollback transitions a run may take. 0 allows none: the first rollback the run would take ends it FAILED (rollback_budget_exceeded). Default (field absent) 3."`
	MaxDocumentBytes       *int `json:"max_document_bytes,omitempty" jsonschema:"minimum=256,maximum=16777216,default=1048576" jsonschema_description:"Largest run input or step output, in bytes of its canonical JSON (RFC 8785): white space and escapes as received do not count. Default 1048576 (1 MiB)."`
	MaxUncountedRejections *int `json:"max_uncounted_rejections,omitempty" jsonschema:"minimum=1,maximum=10000,default=32" jsonschema_description:"Rejections that use no attempt (stale_seq, wrong_state, definition_mismatch, run_finished, ...) recorded for one task (seq). The next one is recorded once as throttled; later ones are refused with throttled and not recorded, until the run issues its next task. Default 32."`
}

// StateSpec is one state of the machine. Which fields apply depends on Kind.
type StateSpec struct {
	Kind         string            `json:"kind" jsonschema:"enum=llm,enum=tool,enum=decision,enum=approval,enum=terminal" jsonschema_description:"llm: computed by the calling agent's model. tool: the caller runs the named tool. decision: pure routing by guards. approval: a human decision. terminal: the run ends."`
	Description  string            `json:"description,omitempty" jsonschema_description:"What the state is for, for people. Never shown to the model."`
	Instructions string            `json:"instructions,omitempty" jsonschema_description:"What the model, tool runner or approver is asked to do (llm, tool, approval)."`
	View         []string          `json:"view,omitempty" jsonschema:"uniqueItems=true" jsonschema_description:"The only paths (input[.<field>...], data.<state>[.<field>...]) the task shows (llm, approval)."`
	OutputSchema SchemaDoc         `json:"output_schema,omitempty" jsonschema_description:"JSON Schema (2020-12) of the submission (llm, tool, approval). Objects forbid undeclared fields unless they declare additionalProperties."`
	Tool         string            `json:"tool,omitempty" jsonschema:"pattern=^[A-Za-z][A-Za-z0-9_.-]*$" jsonschema_description:"The tool the caller must run (tool)."`
	Arguments    map[string]string `json:"arguments,omitempty" jsonschema_description:"Tool arguments: argument name to CEL expression (tool)."`
	Role         string            `json:"role,omitempty" jsonschema:"pattern=^[a-z][a-z0-9_]*$" jsonschema_description:"Who may decide (approval)."`
	Elicitation  bool              `json:"elicitation,omitempty" jsonschema_description:"Also let the human at the MCP client decide, through the client's elicitation form (await_approval), besides configured approvers (approval). Off by default: whoever sits at the client answers it."`
	Approvals    int               `json:"approvals,omitempty" jsonschema:"minimum=1,maximum=9" jsonschema_description:"How many distinct approvers must submit the identical decision before it takes effect (approval; four-eyes). Default 1."`
	Outcome      string            `json:"outcome,omitempty" jsonschema:"pattern=^[A-Z][A-Z0-9_]*$" jsonschema_description:"The run's outcome (terminal). FAILED and CANCELLED are reserved for the runtime."`
	Transitions  []TransitionSpec  `json:"transitions,omitempty" jsonschema_description:"Outgoing transitions, tried in order; the first whose guard holds wins."`
	OnNoMatch    string            `json:"on_no_match,omitempty" jsonschema:"enum=reject" jsonschema_description:"reject: a submission that satisfies no guard is rejected with guard_denied (llm, tool, approval)."`
	MaxAttempts  int               `json:"max_attempts,omitempty" jsonschema:"minimum=1,maximum=100" jsonschema_description:"Overrides limits.max_attempts for this state."`
	MaxVisits    int               `json:"max_visits,omitempty" jsonschema:"minimum=1,maximum=10000" jsonschema_description:"How often a run may enter this state; entering it once more fails the run (visit_budget_exceeded). Bounds loops."`
	Timeout      string            `json:"timeout,omitempty" jsonschema:"pattern=^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$" jsonschema_description:"How long the task may stay open (Go duration such as 30m or 72h; llm, tool, approval)."`
	OnTimeout    string            `json:"on_timeout,omitempty" jsonschema:"pattern=^[a-z][a-z0-9_]*$" jsonschema_description:"The state to go to when the timeout passes. Without it, the run fails (timeout)."`
	Execution    string            `json:"execution,omitempty" jsonschema:"enum=runtime,enum=caller" jsonschema_description:"Who runs the tool (tool). runtime: the server runs it through its tool registry, and refuses to load the program when the registry lacks it. caller: the caller runs it and reports the result. Absent: the runtime when the server's registry has the tool, else the caller."`
	OnError      string            `json:"on_error,omitempty" jsonschema:"pattern=^[a-z][a-z0-9_]*$" jsonschema_description:"The state to go to when a runtime-executed tool fails and its attempts are exhausted (tool). Without it, the run fails (tool_failed)."`
}

// JSONSchemaExtend states which fields each kind requires.
func (StateSpec) JSONSchemaExtend(s *jsonschema.Schema) {
	need := func(kind string, fields ...string) *jsonschema.Schema {
		return &jsonschema.Schema{
			If:   &jsonschema.Schema{Properties: props("kind", &jsonschema.Schema{Const: kind}), Required: []string{"kind"}},
			Then: &jsonschema.Schema{Required: fields},
		}
	}
	s.AllOf = []*jsonschema.Schema{
		need("llm", "output_schema", "transitions"),
		need("tool", "tool", "output_schema", "transitions"),
		need("decision", "transitions"),
		need("approval", "role", "output_schema", "transitions"),
		need("terminal", "outcome"),
	}
}

func props(name string, s *jsonschema.Schema) *orderedmap.OrderedMap[string, *jsonschema.Schema] {
	p := jsonschema.NewProperties()
	p.Set(name, s)
	return p
}

// TransitionSpec is one outgoing edge of a state.
type TransitionSpec struct {
	To          string `json:"to" jsonschema:"pattern=^[a-z][a-z0-9_]*$" jsonschema_description:"Target state."`
	When        string `json:"when,omitempty" jsonschema:"maxLength=4096" jsonschema_description:"CEL guard (bool). Without it the transition is the default, allowed only last."`
	Rollback    bool   `json:"rollback,omitempty" jsonschema_description:"A transition back to a visited state that clears the data of every state visited after the target."`
	Description string `json:"description,omitempty" jsonschema_description:"What the transition means, for people."`
}

// SchemaDoc is an embedded JSON Schema document, kept as decoded JSON.
type SchemaDoc map[string]any

// JSONSchema describes an embedded schema for editors.
func (SchemaDoc) JSONSchema() *jsonschema.Schema {
	// No $ref to the metaschema: the loader checks embedded schemas itself,
	// with better messages than a second metaschema pass would give.
	return &jsonschema.Schema{Type: "object", Description: "A JSON Schema (draft 2020-12) document."}
}
