package policy

import (
	"sort"
	"strings"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// typeNamePrefix keeps schema object type names out of the identifier
// namespace. The checker tries a select chain such as input.customer as a
// qualified type name before it tries field selection, so an object type
// named "input.customer" would turn the expression into a type literal.
const typeNamePrefix = "object:"

// schemaProvider is a types.Provider for the object types derived from the
// declared schemas, falling back to the environment's own provider for
// everything else. It follows the model of Kubernetes' DeclTypeProvider:
//
//	object with declared properties  → struct type named after its path
//	object with only additionalProperties → map(string, T)
//	array → list(T); string, integer, number, boolean, null → the CEL scalar
//	any, or a nullable type → dyn
//
// Fields carry no GetFrom/IsSet accessors, so the interpreter selects them
// with its ordinary string qualifier, which reads map[string]any values:
// values stay plain converted JSON, typed only at check time.
type schemaProvider struct {
	base    types.Provider
	structs map[string]*structDecl
	// visiting holds the nodes being declared: a recursive schema types
	// its recursion as dyn.
	visiting map[*schema.Node]bool
}

// maxStructTypes caps the object types one environment declares; a schema
// that shares subschemas widely could otherwise multiply them by path.
const maxStructTypes = 10_000

type structDecl struct {
	typ    *types.Type
	fields map[string]*types.FieldType
	names  []string
}

func newSchemaProvider(base types.Provider) *schemaProvider {
	return &schemaProvider{base: base, structs: map[string]*structDecl{}, visiting: map[*schema.Node]bool{}}
}

// declare returns the CEL type of values of n found at path (a dotted
// expression path, for naming), registering the object types it needs.
func (p *schemaProvider) declare(n *schema.Node, path string) *types.Type {
	if n == nil {
		return types.DynType
	}
	if n.Nullable && n.Kind != schema.Null {
		return types.DynType
	}
	if n.Kind == schema.Array || n.Kind == schema.Object {
		if p.visiting[n] || len(p.structs) >= maxStructTypes {
			return types.DynType
		}
		p.visiting[n] = true
		defer delete(p.visiting, n)
	}
	switch n.Kind {
	case schema.Null:
		return types.NullType
	case schema.Boolean:
		return types.BoolType
	case schema.Integer:
		return types.IntType
	case schema.Number:
		return types.DoubleType
	case schema.String:
		return types.StringType
	case schema.Array:
		return types.NewListType(p.declare(n.Items, path+"[]"))
	case schema.Object:
		return p.declareObject(n, path)
	}
	return types.DynType
}

func (p *schemaProvider) declareObject(n *schema.Node, path string) *types.Type {
	names := propertyNames(n)
	if len(names) == 0 {
		if n.Additional != nil {
			return types.NewMapType(types.StringType, p.declare(n.Additional, path+".*"))
		}
		// No property is allowed: an empty struct, so that every selection
		// is a compile error.
		return p.register(path, nil, nil)
	}
	for _, name := range names {
		if !isSelectable(name) {
			// A property that cannot be written as .name is reachable only
			// by index, which CEL allows on maps and not on structs.
			return types.NewMapType(types.StringType, types.DynType)
		}
	}
	fields := make([]*types.Type, len(names))
	for i, name := range names {
		fields[i] = p.declare(n.Properties[name], path+"."+name)
	}
	return p.register(path, names, fields)
}

// declareData declares the data variable: a struct with one field per state.
func (p *schemaProvider) declareData(data map[string]*schema.Node, states []string) *types.Type {
	fields := make([]*types.Type, len(states))
	for i, s := range states {
		fields[i] = p.declare(data[s], varData+"."+s)
	}
	return p.register(varData, states, fields)
}

func (p *schemaProvider) register(path string, names []string, fieldTypes []*types.Type) *types.Type {
	name := typeNamePrefix + path
	d := &structDecl{
		typ:    types.NewObjectType(name),
		fields: make(map[string]*types.FieldType, len(names)),
		names:  names,
	}
	for i, f := range names {
		d.fields[f] = &types.FieldType{Type: fieldTypes[i]}
	}
	p.structs[name] = d
	return d.typ
}

// propertyNames returns n's declared property names, sorted.
func propertyNames(n *schema.Node) []string {
	names := make([]string, 0, len(n.Properties))
	for name := range n.Properties {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// isSelectable reports whether name can follow a dot in CEL: an identifier
// that the lexer does not take for a keyword. (Reserved words such as
// "package" are valid field names.)
func isSelectable(name string) bool {
	if name == "" {
		return false
	}
	switch name {
	case "in", "true", "false", "null":
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case i > 0 && '0' <= r && r <= '9':
		default:
			return false
		}
	}
	return true
}

// EnumValue implements types.Provider.
func (p *schemaProvider) EnumValue(enumName string) ref.Val {
	return p.base.EnumValue(enumName)
}

// FindIdent implements types.Provider.
func (p *schemaProvider) FindIdent(identName string) (ref.Val, bool) {
	return p.base.FindIdent(identName)
}

// FindStructType implements types.Provider.
func (p *schemaProvider) FindStructType(structType string) (*types.Type, bool) {
	if d, ok := p.structs[structType]; ok {
		return types.NewTypeTypeWithParam(d.typ), true
	}
	return p.base.FindStructType(structType)
}

// FindStructFieldNames implements types.Provider.
func (p *schemaProvider) FindStructFieldNames(structType string) ([]string, bool) {
	if d, ok := p.structs[structType]; ok {
		return append([]string(nil), d.names...), true
	}
	return p.base.FindStructFieldNames(structType)
}

// FindStructFieldType implements types.Provider.
func (p *schemaProvider) FindStructFieldType(structType, fieldName string) (*types.FieldType, bool) {
	if d, ok := p.structs[structType]; ok {
		ft, ok := d.fields[fieldName]
		return ft, ok
	}
	return p.base.FindStructFieldType(structType, fieldName)
}

// NewValue implements types.Provider. Schema objects cannot be constructed
// in an expression (the profile rejects object literals); they only arrive
// as input.
func (p *schemaProvider) NewValue(structType string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.structs[structType]; ok {
		return types.NewErr("%s values cannot be constructed", strings.TrimPrefix(structType, typeNamePrefix))
	}
	return p.base.NewValue(structType, fields)
}
