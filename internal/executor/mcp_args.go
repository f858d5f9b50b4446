package executor

import (
	"fmt"
	"maps"
	"slices"

	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// CheckArguments checks, where the types allow, that the input schema of
// a downstream MCP tool accepts the arguments a program state evaluates
// for it. shape maps each argument the program gives to its JSON type
// ("string", "number", "integer", "boolean", "object", "array", "null"),
// or to nil where the program's types do not say. It returns one message
// per problem, sorted; none for an executor that is not an mcp one, and
// none when the downstream schema cannot be read by internal/schema (it is
// then not checked):
//
//   - a property the schema requires and the program does not give;
//   - a property the schema does not admit (additionalProperties: false);
//   - a property whose known type the schema's type excludes. "integer"
//     fits a "number" property; "number" is not reported against an
//     "integer" one, since the value may well be whole.
//
// It is meant for the program loader: it reads the schema the executor
// listed when it connected.
func CheckArguments(e Executor, shape map[string]any) []string {
	d, ok := e.(Downstream)
	if !ok {
		return nil
	}
	return checkArguments(d.InputSchema(), shape)
}

// checkArguments is CheckArguments over a schema document.
func checkArguments(doc any, shape map[string]any) []string {
	root := inputNode(doc)
	if root == nil || root.Kind != schema.Object {
		return nil
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(root.Required)) {
		if _, ok := shape[name]; !ok {
			out = append(out, fmt.Sprintf("the downstream tool requires argument %q, which the program does not give", name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(shape)) {
		n, ok := root.Lookup([]string{name})
		if !ok {
			out = append(out, fmt.Sprintf("the downstream tool does not accept argument %q", name))
			continue
		}
		if typ, _ := shape[name].(string); typ != "" && !admits(n, typ) {
			out = append(out, fmt.Sprintf("argument %q: the program gives %s, the downstream tool takes %s", name, typ, kindText(n)))
		}
	}
	return out
}

// inputNode compiles a downstream input schema into its structural model.
// Servers often declare an older draft (zod-to-json-schema writes
// draft-07): internal/schema takes 2020-12 only, so a document refused for
// its "$schema" is read again without it, which keeps the properties,
// required and type keywords this check reads.
func inputNode(doc any) *schema.Node {
	if s, err := schema.Compile(doc); err == nil {
		return s.Root
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	if _, ok := obj["$schema"]; !ok {
		return nil
	}
	bare := make(map[string]any, len(obj))
	for k, v := range obj {
		if k != "$schema" {
			bare[k] = v
		}
	}
	s, err := schema.Compile(bare)
	if err != nil {
		return nil
	}
	return s.Root
}

// admits reports whether a node's type admits a value of JSON type typ.
func admits(n *schema.Node, typ string) bool {
	switch {
	case n.Kind == schema.Any:
		return true
	case typ == "null":
		return n.Nullable || n.Kind == schema.Null
	case typ == "integer":
		return n.Kind == schema.Integer || n.Kind == schema.Number
	case typ == "number":
		return n.Kind == schema.Number || n.Kind == schema.Integer
	}
	return n.Kind.String() == typ
}

func kindText(n *schema.Node) string {
	if n.Nullable {
		return n.Kind.String() + " or null"
	}
	return n.Kind.String()
}
