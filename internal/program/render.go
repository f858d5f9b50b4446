package program

import (
	"fmt"
	"strings"
)

// Mermaid renders the state graph as a Mermaid flowchart. Terminal states
// are drawn as stadiums with their outcome, decisions as diamonds, rollback
// edges dotted and timeout edges thick.
func Mermaid(p *Program) string {
	var b strings.Builder
	b.WriteString("flowchart TD\n")
	for _, name := range p.Order {
		st := p.States[name]
		label := fmt.Sprintf("%s<br/><i>%s</i>", name, st.Kind)
		switch st.Kind {
		case KindTerminal:
			fmt.Fprintf(&b, "  %s([\"%s<br/><b>%s</b>\"])\n", name, name, st.Outcome)
		case KindDecision:
			fmt.Fprintf(&b, "  %s{\"%s\"}\n", name, label)
		case KindApproval:
			fmt.Fprintf(&b, "  %s[/\"%s<br/>role: %s\"/]\n", name, label, st.Role)
		default:
			fmt.Fprintf(&b, "  %s[\"%s\"]\n", name, label)
		}
	}
	fmt.Fprintf(&b, "  start(( )) --> %s\n", p.Initial.Name)
	for _, name := range p.Order {
		st := p.States[name]
		for _, t := range st.Transitions {
			label := mermaidText(edgeLabel(t))
			arrow := "-->"
			if t.Rollback {
				arrow = "-.->"
			}
			if label != "" {
				fmt.Fprintf(&b, "  %s %s|\"%s\"| %s\n", name, arrow, label, t.To.Name)
			} else {
				fmt.Fprintf(&b, "  %s %s %s\n", name, arrow, t.To.Name)
			}
		}
		if st.OnTimeout != nil {
			fmt.Fprintf(&b, "  %s ==>|\"timeout %s\"| %s\n", name, st.Timeout, st.OnTimeout.Name)
		}
	}
	return b.String()
}

// DOT renders the state graph in Graphviz DOT.
func DOT(p *Program) string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=TB;\n  node [fontname=\"Helvetica\"];\n", p.Name)
	b.WriteString("  __start [shape=point];\n")
	for _, name := range p.Order {
		st := p.States[name]
		switch st.Kind {
		case KindTerminal:
			fmt.Fprintf(&b, "  %s [shape=doublecircle, label=%q];\n", name, name+"\n"+st.Outcome)
		case KindDecision:
			fmt.Fprintf(&b, "  %s [shape=diamond, label=%q];\n", name, name)
		case KindApproval:
			fmt.Fprintf(&b, "  %s [shape=box, style=\"rounded,bold\", label=%q];\n", name, name+"\n(approval: "+st.Role+")")
		default:
			fmt.Fprintf(&b, "  %s [shape=box, label=%q];\n", name, name+"\n("+string(st.Kind)+")")
		}
	}
	fmt.Fprintf(&b, "  __start -> %s;\n", p.Initial.Name)
	for _, name := range p.Order {
		st := p.States[name]
		for _, t := range st.Transitions {
			attrs := []string{fmt.Sprintf("label=%q", edgeLabel(t))}
			if t.Rollback {
				attrs = append(attrs, "style=dashed", "color=\"#b03030\"")
			}
			fmt.Fprintf(&b, "  %s -> %s [%s];\n", name, t.To.Name, strings.Join(attrs, ", "))
		}
		if st.OnTimeout != nil {
			fmt.Fprintf(&b, "  %s -> %s [label=%q, style=bold];\n", name, st.OnTimeout.Name, "timeout "+st.Timeout.String())
		}
	}
	b.WriteString("}\n")
	return b.String()
}

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
