package program

import (
	"os"
	"strings"
	"testing"
)

// keywordStates is a valid program whose state names are DOT and Mermaid
// keywords, and one of them is start.
const keywordStates = `
name: keywords
version: 1.0
input_schema:
  type: object
  properties:
    k: {type: integer}
  required: [k]
initial: start
states:
  start:
    kind: llm
    output_schema:
      type: object
      properties:
        ok: {type: boolean}
      required: [ok]
    transitions:
      - to: node
        when: output.ok
      - to: edge
  node:
    kind: decision
    transitions:
      - to: graph
        when: input.k == 0
      - to: subgraph
  edge:
    kind: approval
    role: reviewer
    timeout: 1h
    on_timeout: end
    output_schema:
      type: object
      properties:
        approve: {type: boolean}
      required: [approve]
    transitions:
      - to: start
        rollback: true
        when: "!output.approve"
      - to: end
  graph: {kind: terminal, outcome: GRAPH}
  subgraph: {kind: terminal, outcome: SUBGRAPH}
  end: {kind: terminal, outcome: END}
`

// Words that start a statement of their own in DOT or Mermaid.
var (
	dotKeywords     = []string{"node", "edge", "graph", "subgraph", "digraph", "strict"}
	mermaidKeywords = []string{"end", "subgraph", "graph", "flowchart", "style", "class", "classDef", "click", "linkStyle", "default", "direction", "start"}
)

func firstWord(line string) string {
	w, _, _ := strings.Cut(strings.TrimSpace(line), " ")
	return w
}

func TestRenderKeywordStateNames(t *testing.T) {
	p, err := Load("keywords.yaml", []byte(keywordStates))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		format string
		render func(*Program) string
		check  func(t *testing.T, out string)
	}{
		{"dot", DOT, func(t *testing.T, out string) {
			for _, name := range p.Order {
				if !strings.Contains(out, "\n  \""+name+"\" [") {
					t.Errorf("state %s is not declared under a quoted ID", name)
				}
			}
			for _, want := range []string{`"__start" -> "start";`, `"start" -> "node" [`, `"edge" -> "end" [label="timeout 1h0m0s", style=bold];`} {
				if !strings.Contains(out, want) {
					t.Errorf("lacks %s", want)
				}
			}
			for _, line := range strings.Split(out, "\n")[1:] {
				// The one default-attribute statement is the renderer's own.
				if line == `  node [fontname="Helvetica"];` {
					continue
				}
				for _, kw := range dotKeywords {
					if w := firstWord(line); w == kw || strings.HasPrefix(w, kw+"[") {
						t.Errorf("bare keyword statement: %q", line)
					}
				}
			}
		}},
		{"mermaid", Mermaid, func(t *testing.T, out string) {
			for _, want := range []string{"s_start[", "s_end([", "s_node{", "s_edge[/", "s_graph([", "s_subgraph([", "s_edge -.->", "s_edge ==>", "| s_end\n"} {
				if !strings.Contains(out, want) {
					t.Errorf("lacks %s", want)
				}
			}
			if n := strings.Count(out, "(( )) -->"); n != 1 {
				t.Errorf("%d start markers, want 1", n)
			}
			if !strings.Contains(out, "  _start(( )) --> s_start\n") {
				t.Error("the start marker does not point at s_start")
			}
			for _, line := range strings.Split(out, "\n")[1:] {
				for _, kw := range mermaidKeywords {
					if w := firstWord(line); w == kw || strings.HasPrefix(w, kw+"[") || strings.HasPrefix(w, kw+"(") || strings.HasPrefix(w, kw+"{") {
						t.Errorf("line starts with keyword %s: %q", kw, line)
					}
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			out := tt.render(p)
			tt.check(t, out)
			if t.Failed() {
				t.Log("\n" + out)
			}
		})
	}
}

func TestRenderExample(t *testing.T) {
	src, err := os.ReadFile("../../examples/kyc-onboarding.yaml") // not examples.Program: examples imports program
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load("kyc-onboarding.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		format string
		render func(*Program) string
		prefix string
	}{
		{"dot", DOT, "digraph \"kyc-onboarding\" {\n"},
		{"mermaid", Mermaid, "flowchart TD\n"},
	} {
		t.Run(tt.format, func(t *testing.T) {
			out := tt.render(p)
			if !strings.HasPrefix(out, tt.prefix) {
				t.Errorf("does not start with %q", tt.prefix)
			}
			for _, name := range p.Order {
				if !strings.Contains(out, name) {
					t.Errorf("lacks state %s", name)
				}
			}
		})
	}
}

func TestRenderingNamesFourEyesApprovers(t *testing.T) {
	p, probs := load(t, strings.Replace(approvalProgram, "APPROVALS\n", "    approvals: 2\n", 1))
	if len(probs) > 0 {
		t.Fatal(problemsText(probs))
	}
	if m := Mermaid(p); !strings.Contains(m, "role: officer, 2 approvers") {
		t.Errorf("mermaid:\n%s", m)
	}
	if d := DOT(p); !strings.Contains(d, `(approval: officer, 2 approvers)`) {
		t.Errorf("dot:\n%s", d)
	}
}
