package console

import (
	"regexp"
	"slices"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/examples"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// The console's graph is program.DOTWith in its own style: the same
// states and edges, in the same order, as `graph --format dot` prints,
// each with the console's ids and classes.
func TestConsoleGraphIsTheProgramGraphStyled(t *testing.T) {
	element := regexp.MustCompile(`(?m)^  ("[^"]*"(?: -> "[^"]*")?)(?: \[(.*)\])?;$`)
	elements := func(dot string) (names, attrs []string) {
		for _, m := range element.FindAllStringSubmatch(dot, -1) {
			names, attrs = append(names, m[1]), append(attrs, m[2])
		}
		return names, attrs
	}
	for _, name := range examples.Programs() {
		p, _ := exampleProgram(t, name)
		plain, _ := elements(program.DOT(p))
		styled, attrs := elements(dot(p))
		if len(plain) < len(p.Order)+2 || !slices.Equal(plain, styled) {
			t.Errorf("%s: the console draws\n%q\n`graph` draws\n%q", name, styled, plain)
		}
		for i, a := range attrs {
			if !regexp.MustCompile(`\bid="(st|ed)_`).MatchString(a) {
				t.Errorf("%s: %s has no id: [%s]", name, styled[i], a)
			}
		}
	}
}

// A tool state's on_error edge is drawn with its own id and class, so that
// the run page can mark it when a trace records the hop (transition -2).
func TestConsoleGraphDrawsTheOnErrorEdge(t *testing.T) {
	p, err := program.LoadFile("../runtime/testdata/toolcalls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^  "refund" -> "manual" \[style=bold, id="ed_refund_to_manual", class="edge on_error ed_refund_to_manual", tooltip="on_error", label="on_error"\];$`)
	if out := dot(p); !want.MatchString(out) {
		t.Fatalf("no on_error edge in:\n%s", out)
	}
	if id := edgeIDs(p)[edgeKey{"refund", errorEdge}]; id != "ed_refund_to_manual" {
		t.Fatalf("the on_error edge's id is %q", id)
	}
}
