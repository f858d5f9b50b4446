package program

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// graph is the state graph of a program: transitions, timeout and error
// edges. A state with a timeout or an on_error edge has two nodes: entering
// it, and answering it. Its transitions leave from the answer node and its
// timeout and error edges from the entry node (neither answers it), so that "X answered on every path" (data.X is set) and "X
// entered on every path" are different questions.
type graph struct {
	p     *Program
	index map[*State]int // a state's entry node
	ans   []int          // by entry node: the node its transitions leave from
	nodes []*State       // by node: its state
	succ  [][]edge
	dom   []map[int]bool // dom[v]: nodes on every path from the initial state to v
}

type edge struct {
	to       int
	rollback bool
}

func newGraph(p *Program) *graph {
	g := &graph{p: p, index: map[*State]int{}}
	for _, name := range p.Order {
		g.index[p.States[name]] = len(g.nodes)
		g.nodes = append(g.nodes, p.States[name])
	}
	g.ans = make([]int, len(g.nodes))
	for i, st := range g.nodes[:len(g.ans)] {
		g.ans[i] = i
		if st.OnTimeout != nil || st.OnError != nil {
			g.ans[i] = len(g.nodes)
			g.nodes = append(g.nodes, st)
		}
	}
	g.succ = make([][]edge, len(g.nodes))
	for i := range g.ans {
		st, from := g.nodes[i], g.ans[i]
		if from != i {
			g.succ[i] = append(g.succ[i], edge{to: from})
			for _, to := range []*State{st.OnTimeout, st.OnError} {
				if to != nil {
					g.succ[i] = append(g.succ[i], edge{to: g.index[to]})
				}
			}
		}
		for _, t := range st.Transitions {
			if t.To != nil { // a missing target is reported elsewhere
				g.succ[from] = append(g.succ[from], edge{to: g.index[t.To], rollback: t.Rollback})
			}
		}
	}
	g.computeDominators()
	return g
}

// reachable returns the states reachable from the initial state.
func (g *graph) reachable() []bool {
	seen := make([]bool, len(g.nodes))
	stack := []int{g.index[g.p.Initial]}
	seen[stack[0]] = true
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, e := range g.succ[v] {
			if !seen[e.to] {
				seen[e.to] = true
				stack = append(stack, e.to)
			}
		}
	}
	return seen
}

// computeDominators uses the classic iterative data-flow algorithm; programs
// are small, so its quadratic worst case does not matter.
func (g *graph) computeDominators() {
	n := len(g.nodes)
	reach := g.reachable()
	pred := make([][]int, n)
	for v := range g.succ {
		for _, e := range g.succ[v] {
			pred[e.to] = append(pred[e.to], v)
		}
	}
	all := map[int]bool{}
	for v := 0; v < n; v++ {
		if reach[v] {
			all[v] = true
		}
	}
	start := g.index[g.p.Initial]
	g.dom = make([]map[int]bool, n)
	for v := 0; v < n; v++ {
		if v == start {
			g.dom[v] = map[int]bool{v: true}
		} else {
			g.dom[v] = copySet(all)
		}
	}
	for changed := true; changed; {
		changed = false
		for v := 0; v < n; v++ {
			if v == start || !reach[v] {
				continue
			}
			var next map[int]bool
			for _, u := range pred[v] {
				if !reach[u] {
					continue
				}
				if next == nil {
					next = copySet(g.dom[u])
					continue
				}
				for k := range next {
					if !g.dom[u][k] {
						delete(next, k)
					}
				}
			}
			if next == nil {
				next = map[int]bool{}
			}
			next[v] = true
			if len(next) != len(g.dom[v]) {
				g.dom[v] = next
				changed = true
			}
		}
	}
}

func copySet(s map[int]bool) map[int]bool {
	c := make(map[int]bool, len(s))
	for k := range s {
		c[k] = true
	}
	return c
}

// dominates reports whether every path from the initial state to b enters a.
func (g *graph) dominates(a, b *State) bool {
	return g.dom[g.index[b]][g.index[a]]
}

// answered reports whether every path from the initial state to b answers
// a, that is leaves a by a transition rather than its timeout or error
// edge: only then is
// data.a certainly set when b runs.
func (g *graph) answered(a, b *State) bool {
	return g.dom[g.index[b]][g.ans[g.index[a]]]
}

func (l *loader) checkGraph(p *Program, g *graph) {
	reach := g.reachable()
	for v, st := range g.nodes {
		if !reach[v] {
			l.problem(statePtr(st.Name, "kind"), "state %s is unreachable from the initial state %s", st.Name, p.Initial.Name)
		}
	}
	// States that can reach a terminal: reverse search from the terminals.
	pred := make([][]int, len(g.nodes))
	var stack []int
	canEnd := make([]bool, len(g.nodes))
	for v := range g.succ {
		for _, e := range g.succ[v] {
			pred[e.to] = append(pred[e.to], v)
		}
		if g.nodes[v].Kind == KindTerminal {
			canEnd[v] = true
			stack = append(stack, v)
		}
	}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, u := range pred[v] {
			if !canEnd[u] {
				canEnd[u] = true
				stack = append(stack, u)
			}
		}
	}
	for v, st := range g.nodes {
		if reach[v] && !canEnd[v] {
			l.problem(statePtr(st.Name, "transitions"), "state %s cannot reach a terminal state", st.Name)
		}
	}
	// A rollback must return to a state the run has certainly visited.
	for _, name := range p.Order {
		st := p.States[name]
		for _, t := range st.Transitions {
			if !t.Rollback || t.To == nil {
				continue
			}
			ptr := statePtr(st.Name, "transitions/"+strconv.Itoa(t.Index)+"/rollback")
			if t.To.Kind == KindTerminal || !g.dominates(t.To, st) {
				l.problem(ptr, "rollback target %s is not visited on every path to %s; a rollback must return to a state the run has passed", t.To.Name, st.Name)
			}
		}
	}
	l.checkLoops(g)
}

// checkLoops rejects loops that only the global step budget would stop:
// every cycle must take a rollback edge (bounded by max_rollbacks) or pass a
// state with max_visits. A cycle of decision states is rejected outright:
// with no input between hops it would repeat until a budget runs out.
func (l *loader) checkLoops(g *graph) {
	bounded := func(v int) bool { return g.nodes[v].MaxVisits > 0 }
	for _, comp := range g.cycles(func(from int, e edge) bool {
		return !e.rollback && !bounded(from) && !bounded(e.to)
	}) {
		l.problem(statePtr(g.nodes[comp[0]].Name, "transitions"), "loop through %s is bounded by no limit: mark the edge back rollback: true or give a state in it max_visits", g.names(comp))
	}
	for _, comp := range g.cycles(func(from int, e edge) bool {
		return g.nodes[from].Kind == KindDecision && g.nodes[e.to].Kind == KindDecision
	}) {
		l.problem(statePtr(g.nodes[comp[0]].Name, "transitions"), "loop through decision states %s takes no input and would repeat until the run fails", g.names(comp))
	}
}

func (g *graph) names(comp []int) string {
	names := make([]string, len(comp))
	for i, v := range comp {
		names[i] = g.nodes[v].Name
	}
	sort.Strings(names)
	return strings.Join(slices.Compact(names), ", ")
}

// cycles returns the strongly connected components that contain a cycle in
// the subgraph of edges keep accepts (Tarjan's algorithm), each sorted by
// declaration order.
func (g *graph) cycles(keep func(from int, e edge) bool) [][]int {
	n := len(g.nodes)
	index := make([]int, n)
	low := make([]int, n)
	on := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var out [][]int
	next := 0
	var visit func(v int)
	visit = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		on[v] = true
		self := false
		for _, e := range g.succ[v] {
			if !keep(v, e) {
				continue
			}
			if e.to == v {
				self = true
			}
			if index[e.to] < 0 {
				visit(e.to)
				low[v] = min(low[v], low[e.to])
			} else if on[e.to] {
				low[v] = min(low[v], index[e.to])
			}
		}
		if low[v] != index[v] {
			return
		}
		var comp []int
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			on[w] = false
			comp = append(comp, w)
			if w == v {
				break
			}
		}
		if len(comp) > 1 || self {
			sort.Ints(comp)
			out = append(out, comp)
		}
	}
	for v := 0; v < n; v++ {
		if index[v] < 0 {
			visit(v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}
