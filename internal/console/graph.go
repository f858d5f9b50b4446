package console

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/goccy/go-graphviz"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// graphs renders programs' state graphs to SVG with Graphviz (compiled to
// WebAssembly and run by wazero: pure Go, no cgo, nothing fetched), once per
// definition. Every state and edge carries an id and classes, so that a page
// highlights a run's path with CSS alone (pathStyle) and the SVG stays
// cached.
type graphs struct {
	mu    sync.Mutex
	gv    *graphviz.Graphviz
	cache map[string]template.HTML // by definition hash
}

// stateID and edgeID name a state's and a transition's SVG groups.
// Graphviz writes "-" as "&#45;" in attributes, so ids and classes use
// "_" only.
func stateID(name string) string { return "st_" + idSafe(name) }

func edgeID(from, to string) string { return "ed_" + idSafe(from) + "_to_" + idSafe(to) }

// timeoutEdge is the index edgeIDs gives a state's timeout edge, as the
// trace does (runtime.TransitionRecord.Transition).
const timeoutEdge = -1

// errorEdge is the index of a tool state's on_error edge, as the trace
// records it.
const errorEdge = -2

// edgeKey names one edge of the graph: its state and the index of the
// transition in the state's list, or timeoutEdge or errorEdge.
type edgeKey struct {
	from  string
	index int
}

// edgeIDs gives every edge of p's graph its own id: the first edge between
// two states is edgeID(from, to), a later one (another guard, or the
// timeout) adds its index or "timeout", so that a run page marks the very
// edge the run took.
func edgeIDs(p *program.Program) map[edgeKey]string {
	ids := map[edgeKey]string{}
	seen := map[string]bool{}
	add := func(k edgeKey, to string) {
		id := edgeID(k.from, to)
		switch {
		case !seen[id]:
			seen[id] = true
		case k.index == timeoutEdge:
			id += "_timeout"
		case k.index == errorEdge:
			id += "_on_error"
		default:
			id += "_" + strconv.Itoa(k.index)
		}
		ids[k] = id
	}
	for _, name := range p.Order {
		st := p.States[name]
		for i, t := range st.Transitions {
			add(edgeKey{name, i}, t.To.Name)
		}
		if st.OnTimeout != nil {
			add(edgeKey{name, timeoutEdge}, st.OnTimeout.Name)
		}
		if st.OnError != nil {
			add(edgeKey{name, errorEdge}, st.OnError.Name)
		}
	}
	return ids
}

// idSafe keeps state names (which the loader limits to identifiers) safe
// as HTML ids and CSS selectors.
func idSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return '_'
	}, s)
}

// svg returns p's graph as inline SVG.
func (g *graphs) svg(ctx context.Context, p *program.Program) (template.HTML, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s, ok := g.cache[p.Hash]; ok {
		return s, nil
	}
	if g.gv == nil {
		gv, err := graphviz.New(ctx)
		if err != nil {
			return "", fmt.Errorf("graphviz: %w", err)
		}
		g.gv, g.cache = gv, map[string]template.HTML{}
	}
	gr, err := graphviz.ParseBytes([]byte(dot(p)))
	if err != nil {
		return "", fmt.Errorf("graphviz: %w", err)
	}
	defer gr.Close()
	var buf bytes.Buffer
	if err := g.gv.Render(ctx, gr, graphviz.SVG, &buf); err != nil {
		return "", fmt.Errorf("graphviz: %w", err)
	}
	s := template.HTML(inlineSVG(buf.String(), p.Name)) //nolint:gosec // Graphviz's own markup; labels are escaped by it
	g.cache[p.Hash] = s
	return s, nil
}

// dot is the program as Graphviz reads it, with ids and classes for CSS:
// kinds of state, terminal outcomes, and rollback and timeout edges.
func dot(p *program.Program) string { return program.DOTWith(p, consoleDOT{ids: edgeIDs(p)}) }

// consoleDOT is the console's style of program.DOTWith.
type consoleDOT struct{ ids map[edgeKey]string }

func (consoleDOT) Head(*program.Program) string {
	return "  rankdir=TB; bgcolor=\"transparent\"; nodesep=0.35; ranksep=0.45;\n" +
		"  node [fontname=\"Helvetica\", fontsize=11, shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\"];\n" +
		"  edge [fontname=\"Helvetica\", fontsize=9];\n"
}

func (consoleDOT) Start() []string {
	return []string{"shape=point", fmt.Sprintf("id=%q", stateID(program.DOTStart)), `class="start"`}
}

func (consoleDOT) State(name string, st *program.State) []string {
	label := name + "\n" + string(st.Kind)
	attrs := []string{fmt.Sprintf("id=%q", stateID(name)), fmt.Sprintf("class=%q", "state kind_"+string(st.Kind))}
	switch st.Kind {
	case program.KindTerminal:
		label = name + "\n" + st.Outcome
		attrs = append(attrs, "shape=doublecircle", fmt.Sprintf("class=%q", "state kind_terminal outcome_"+idSafe(st.Outcome)))
	case program.KindDecision:
		attrs = append(attrs, "shape=diamond", "style=filled")
	case program.KindApproval:
		label = name + "\napproval: " + st.Role
	}
	return append(attrs, fmt.Sprintf("label=%q", label))
}

func (consoleDOT) Entry(initial string) []string {
	return []string{fmt.Sprintf("id=%q", edgeID(program.DOTStart, initial)), `class="edge"`}
}

func (d consoleDOT) Transition(from string, i int, t *program.Transition) []string {
	cls := "edge"
	attrs := []string{}
	if t.Rollback {
		cls += " rollback"
		attrs = append(attrs, "style=dashed")
	}
	return append(attrs, edgeAttrs(d.ids[edgeKey{from, i}], edgeID(from, t.To.Name), cls, t.When)...)
}

func (d consoleDOT) Timeout(from string, st *program.State) []string {
	return append([]string{"style=bold"}, edgeAttrs(d.ids[edgeKey{from, timeoutEdge}], edgeID(from, st.OnTimeout.Name), "edge timeout", "timeout "+st.Timeout.String())...)
}

func (d consoleDOT) OnError(from string, st *program.State) []string {
	return append([]string{"style=bold"}, edgeAttrs(d.ids[edgeKey{from, errorEdge}], edgeID(from, st.OnError.Name), "edge on_error", "on_error")...)
}

// edgeAttrs names an edge: its own id, and the pair of states it joins as
// a class, which every edge between the two shares.
func edgeAttrs(id, pair, cls, label string) []string {
	attrs := []string{fmt.Sprintf("id=%q", id), fmt.Sprintf("class=%q", cls+" "+pair), fmt.Sprintf("tooltip=%q", label)}
	if len(label) > 40 {
		label = label[:37] + "…"
	}
	return append(attrs, fmt.Sprintf("label=%q", label))
}

var svgPrologue = regexp.MustCompile(`(?s)^.*?(<svg\b)`)

// inlineSVG strips the XML prologue and doctype, which HTML does not take
// inline, and labels the graph for assistive technology (the page gives
// the path as a table too).
func inlineSVG(s, name string) string {
	s = svgPrologue.ReplaceAllString(s, "$1")
	return strings.Replace(s, "<svg ", fmt.Sprintf(`<svg role="img" aria-label="State graph of %s" class="graph" `, template.HTMLEscapeString(name)), 1)
}

// highlight marks a run's path on a cached graph: the states it visited
// and the edges it took (pathStep.Edge) get the class on-path, the state
// it is in (or ended in) current as well, and the graph itself the class
// has-path, so that the page's CSS draws the edges not taken alike, the
// timeout's among them. Tests read the classes.
func highlight(svg template.HTML, steps []pathStep) template.HTML {
	out := strings.Replace(string(svg), `class="graph" `, `class="graph has-path" `, 1)
	mark := func(id, cls string) {
		out = strings.Replace(out, `<g id="`+id+`" class="`, `<g id="`+id+`" class="`+cls+` `, 1)
	}
	seen := map[string]bool{}
	for _, s := range steps {
		for _, id := range []string{stateID(s.State), s.Edge} {
			if !seen[id] {
				seen[id] = true
				mark(id, "on-path")
			}
		}
	}
	for _, s := range steps {
		if s.Current {
			mark(stateID(s.State), "current")
		}
	}
	return template.HTML(out) //nolint:gosec // the cached SVG with class names added
}
