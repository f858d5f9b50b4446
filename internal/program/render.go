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
	}
	return b.String()
}

// mermaidStart is the start marker's ID; state IDs all begin with s_.
const mermaidStart = "_start"

func mermaidID(state string) string { return "s_" + state }

// DOT renders the state graph in Graphviz DOT. Every ID is quoted: legal
// state names such as node, edge or graph are DOT keywords. The start point
// is "__start", which no state name (it starts with a letter) can be.
func DOT(p *Program) string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=TB;\n  node [fontname=\"Helvetica\"];\n", p.Name)
	fmt.Fprintf(&b, "  %q [shape=point];\n", dotStart)
	for _, name := range p.Order {
		st := p.States[name]
		switch st.Kind {
		case KindTerminal:
			fmt.Fprintf(&b, "  %q [shape=doublecircle, label=%q];\n", name, name+"\n"+st.Outcome)
		case KindDecision:
			fmt.Fprintf(&b, "  %q [shape=diamond, label=%q];\n", name, name)
		case KindApproval:
			fmt.Fprintf(&b, "  %q [shape=box, style=\"rounded,bold\", label=%q];\n", name, name+"\n(approval: "+st.Role+approvers(st)+")")
		default:
			fmt.Fprintf(&b, "  %q [shape=box, label=%q];\n", name, name+"\n("+string(st.Kind)+")")
		}
	}
	fmt.Fprintf(&b, "  %q -> %q;\n", dotStart, p.Initial.Name)
	for _, name := range p.Order {
		st := p.States[name]
		for _, t := range st.Transitions {
			attrs := []string{fmt.Sprintf("label=%q", edgeLabel(t))}
			if t.Rollback {
				attrs = append(attrs, "style=dashed", "color=\"#b03030\"")
			}
			fmt.Fprintf(&b, "  %q -> %q [%s];\n", name, t.To.Name, strings.Join(attrs, ", "))
		}
		if st.OnTimeout != nil {
			fmt.Fprintf(&b, "  %q -> %q [label=%q, style=bold];\n", name, st.OnTimeout.Name, "timeout "+st.Timeout.String())
		}
	}
	b.WriteString("}\n")
	return b.String()
}

const dotStart = "__start"

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
