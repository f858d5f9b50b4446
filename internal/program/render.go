package program

import (
	"fmt"
	"strings"
)

// Mermaid renders the state graph as a Mermaid flowchart. Terminal states
// are drawn as stadiums with their outcome, decisions as diamonds, rollback
// edges dotted and timeout edges thick.
//
// Node IDs are mermaidID(name), never the bare name: legal state names such
// as end, graph or style are Mermaid keywords, and start would meet the
// start marker.
func Mermaid(p *Program) string {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	for _, name := range p.Order {
		st := p.States[name]
		id := mermaidID(name)
		label := fmt.Sprintf("%s<br/><i>%s</i>", name, st.Kind)
		switch st.Kind {
		case KindTerminal:
			fmt.Fprintf(&b, "  %s([\"%s<br/><b>%s</b>\"])\n", id, name, st.Outcome)
		case KindDecision:
			fmt.Fprintf(&b, "  %s{\"%s\"}\n", id, label)
		case KindApproval:
			fmt.Fprintf(&b, "  %s[/\"%s<br/>role: %s%s\"/]\n", id, label, st.Role, approvers(st))
		default:
			fmt.Fprintf(&b, "  %s[\"%s\"]\n", id, label)
		}
	}
	fmt.Fprintf(&b, "  %s(( )) --> %s\n", mermaidStart, mermaidID(p.Initial.Name))
	for _, name := range p.Order {
		st := p.States[name]
		id := mermaidID(name)
		for _, t := range st.Transitions {
			label := mermaidText(edgeLabel(t))
			arrow := "-->"
			if t.Rollback {
				arrow = "-.->"
			}
			if label != "" {
				fmt.Fprintf(&b, "  %s %s|\"%s\"| %s\n", id, arrow, label, mermaidID(t.To.Name))
			} else {
				fmt.Fprintf(&b, "  %s %s %s\n", id, arrow, mermaidID(t.To.Name))
			}
		}
		if st.OnTimeout != nil {
			fmt.Fprintf(&b, "  %s ==>|\"timeout %s\"| %s\n", id, st.Timeout, mermaidID(st.OnTimeout.Name))
		}
		if st.OnError != nil {
			fmt.Fprintf(&b, "  %s ==>|\"on_error\"| %s\n", id, mermaidID(st.OnError.Name))
		}
	}
	return b.String()
}

// mermaidStart is the start marker's ID; state IDs all begin with s_.
const mermaidStart = "_start"

func mermaidID(state string) string { return "s_" + state }

// DOT renders the state graph in Graphviz DOT, plain, as `graph --format
// dot` prints it. Every ID is quoted: legal state names such as node, edge
// or graph are DOT keywords. The start point is "__start", which no state
// name (it starts with a letter) can be.
func DOT(p *Program) string { return DOTWith(p, plainDOT{}) }

// DOTStyle is how DOTWith draws each part of the graph: the lines that
// open it, and each element's attributes (none: no attribute list). The
// plain style is DOT's; the console's adds ids and classes for its CSS.
type DOTStyle interface {
	Head(p *Program) string // the lines after "digraph NAME {"
	Start() []string        // the start point, "__start"
	State(name string, st *State) []string
	Entry(initial string) []string // the edge from the start point
	Transition(from string, i int, t *Transition) []string
	Timeout(from string, st *State) []string
	OnError(from string, st *State) []string // the on_error edge of a tool state
}

// DOTWith renders the state graph in Graphviz DOT in style s: the one
// walk of the graph, states in program order, then the start edge, then
// each state's transitions and its timeout.
func DOTWith(p *Program, s DOTStyle) string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n%s", p.Name, s.Head(p))
	fmt.Fprintf(&b, "  %q%s;\n", DOTStart, dotAttrs(s.Start()))
	for _, name := range p.Order {
		fmt.Fprintf(&b, "  %q%s;\n", name, dotAttrs(s.State(name, p.States[name])))
	}
	fmt.Fprintf(&b, "  %q -> %q%s;\n", DOTStart, p.Initial.Name, dotAttrs(s.Entry(p.Initial.Name)))
	for _, name := range p.Order {
		st := p.States[name]
		for i, t := range st.Transitions {
			fmt.Fprintf(&b, "  %q -> %q%s;\n", name, t.To.Name, dotAttrs(s.Transition(name, i, t)))
		}
		if st.OnTimeout != nil {
			fmt.Fprintf(&b, "  %q -> %q%s;\n", name, st.OnTimeout.Name, dotAttrs(s.Timeout(name, st)))
		}
		if st.OnError != nil {
			fmt.Fprintf(&b, "  %q -> %q%s;\n", name, st.OnError.Name, dotAttrs(s.OnError(name, st)))
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func dotAttrs(attrs []string) string {
	if len(attrs) == 0 {
		return ""
	}
	return " [" + strings.Join(attrs, ", ") + "]"
}

// plainDOT is DOT's style.
type plainDOT struct{}

func (plainDOT) Head(*Program) string  { return "  rankdir=TB;\n  node [fontname=\"Helvetica\"];\n" }
func (plainDOT) Start() []string       { return []string{"shape=point"} }
func (plainDOT) Entry(string) []string { return nil }

func (plainDOT) State(name string, st *State) []string {
	switch st.Kind {
	case KindTerminal:
		return []string{"shape=doublecircle", fmt.Sprintf("label=%q", name+"\n"+st.Outcome)}
	case KindDecision:
		return []string{"shape=diamond", fmt.Sprintf("label=%q", name)}
	case KindApproval:
		return []string{"shape=box", `style="rounded,bold"`, fmt.Sprintf("label=%q", name+"\n(approval: "+st.Role+approvers(st)+")")}
	}
	return []string{"shape=box", fmt.Sprintf("label=%q", name+"\n("+string(st.Kind)+")")}
}

func (plainDOT) Transition(_ string, _ int, t *Transition) []string {
	attrs := []string{fmt.Sprintf("label=%q", edgeLabel(t))}
	if t.Rollback {
		attrs = append(attrs, "style=dashed", "color=\"#b03030\"")
	}
	return attrs
}

func (plainDOT) Timeout(_ string, st *State) []string {
	return []string{fmt.Sprintf("label=%q", "timeout "+st.Timeout.String()), "style=bold"}
}

func (plainDOT) OnError(string, *State) []string {
	return []string{`label="on_error"`, "style=bold"}
}

// DOTStart is the start point's ID.
const DOTStart = "__start"

func edgeLabel(t *Transition) string {
	label := t.When
	if t.Rollback {
		if label == "" {
			label = "rollback"
		} else {
			label = "rollback: " + label
		}
	}
	return label
}

// mermaidText escapes what Mermaid's quoted labels cannot hold.
func mermaidText(s string) string {
	r := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "|", "#124;")
	return r.Replace(s)
}

// approvers notes a four-eyes approval's number of approvers.
func approvers(st *State) string {
	if st.Approvals < 2 {
		return ""
	}
	return fmt.Sprintf(", %d approvers", st.Approvals)
}
