package policy

import (
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// Schema nodes built by hand: the tests do not depend on schema.Compile.

func node(k schema.Kind) *schema.Node {
	return &schema.Node{Kind: k, MaxLength: schema.Unbounded, MaxItems: schema.Unbounded, MaxProperties: schema.Unbounded}
}

func strN(maxLength int64) *schema.Node {
	n := node(schema.String)
	n.MaxLength = maxLength
	return n
}

func intN() *schema.Node  { return node(schema.Integer) }
func numN() *schema.Node  { return node(schema.Number) }
func boolN() *schema.Node { return node(schema.Boolean) }
func anyN() *schema.Node  { return node(schema.Any) }

func arrN(items *schema.Node, maxItems int64) *schema.Node {
	n := node(schema.Array)
	n.Items = items
	n.MaxItems = maxItems
	return n
}

// objN declares properties; undeclared properties are forbidden.
func objN(props map[string]*schema.Node, required ...string) *schema.Node {
	n := node(schema.Object)
	n.Properties = props
	n.Required = map[string]bool{}
	for _, r := range required {
		n.Required[r] = true
	}
	for name := range props {
		n.Order = append(n.Order, name)
	}
	return n
}

// mapN declares an object with only additional properties.
func mapN(values *schema.Node) *schema.Node {
	n := node(schema.Object)
	n.Additional = values
	return n
}

func nullableN(n *schema.Node) *schema.Node {
	n.Nullable = true
	return n
}

const unbounded = schema.Unbounded

// fixtureDecls is the program most tests compile against.
func fixtureDecls() Decls {
	return Decls{
		Input: objN(map[string]*schema.Node{
			"k":           intN(),
			"order_total": intN(),
			"name":        strN(64),
			"country":     strN(2),
			"tags":        arrN(strN(32), 10),
			"customer":    objN(map[string]*schema.Node{"name": strN(100), "id": strN(36), "age": intN()}, "name", "id"),
			"customers":   arrN(objN(map[string]*schema.Node{"name": strN(100), "id": strN(36)}), 50),
			"profile":     mapN(strN(100)),
			"meta":        anyN(),
			"items":       arrN(strN(unbounded), unbounded),
			"score":       numN(),
			"nick":        nullableN(strN(20)),
		}, "k"),
		Data: map[string]*schema.Node{
			"collect": objN(map[string]*schema.Node{"full_name": strN(100), "verified": boolN(), "docs": arrN(strN(20), 5)}),
			"review":  objN(map[string]*schema.Node{"approved": boolN(), "notes": strN(500)}),
		},
		Output: objN(map[string]*schema.Node{
			"approved": boolN(),
			"amount":   numN(),
			"risk":     strN(10),
			"reasons":  arrN(strN(50), 5),
		}),
		PII: [][]string{
			{"input", "customer", "name"},
			{"input", "customers", "name"},
			{"input", "profile", "name"},
			{"data", "collect", "full_name"},
		},
	}
}

// fixtureVars are values matching fixtureDecls. review has not run;
// input.customer.age is absent.
func fixtureVars() Vars {
	return Vars{
		Input: map[string]any{
			"k":           int64(0),
			"order_total": int64(100),
			"name":        "ann",
			"country":     "FR",
			"tags":        []any{"a", "vip"},
			"customer":    map[string]any{"name": "Bob", "id": "c1"},
			"customers":   []any{map[string]any{"name": "x", "id": "1"}},
			"profile":     map[string]any{"name": "n", "city": "Paris"},
			"meta":        map[string]any{"flag": true, "n": int64(3)},
			"items":       []any{"p"},
			"score":       0.5,
			"nick":        nil,
		},
		Data: map[string]any{
			"collect": map[string]any{"full_name": "Bob B", "verified": true, "docs": []any{"passport"}},
		},
		Output: map[string]any{
			"approved": true,
			"amount":   50.0,
			"risk":     "low",
			"reasons":  []any{"ok"},
		},
	}
}

func mustEnv(t testing.TB, d Decls, opts Options) *Env {
	t.Helper()
	e, err := NewEnv(d, opts)
	if err != nil {
		t.Fatalf("NewEnv: %v", err)
	}
	return e
}

func mustCompile(t testing.TB, e *Env, src string, k Kind) *Expr {
	t.Helper()
	x, probs := e.Compile(src, k)
	if len(probs) > 0 {
		t.Fatalf("Compile(%q): %v", src, probs)
	}
	return x
}
