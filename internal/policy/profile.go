package policy

import (
	"regexp"
	"strings"
	"sync"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/stdlib"
	"cel.dev/cel-go/common/types"
)

// The restricted profile is enforced twice. vetParsed runs on the parsed
// tree, so it can report forbidden functions by name even when they make
// type checking fail, and give messages that say why. vetChecked runs on the
// checked tree and admits calls by the overloads the checker resolved, which
// is where operand types become known (string + string is a different
// operation from int + int).

// allowedFunctions are the function names an expression may call, as the
// parser spells them. Macros expand to comprehensions and
// @not_strictly_false.
var allowedFunctions = map[string]bool{
	"_&&_": true, "_||_": true, "!_": true, "_?_:_": true, "@not_strictly_false": true,
	"_==_": true, "_!=_": true, "_<_": true, "_<=_": true, "_>_": true, "_>=_": true,
	"@in": true, "_[_]": true, "size": true,
	"contains": true, "startsWith": true, "endsWith": true, "matches": true,
	"_+_": true, "_-_": true, "_*_": true, "-_": true,
	"int": true, "double": true, "string": true,
}

const zeroDivisor = "a zero divisor would make the outcome depend on error handling"

// forbiddenFunctions explain the rejection of functions people reach for.
var forbiddenFunctions = map[string]string{
	"_/_":        "division is not allowed: " + zeroDivisor,
	"_%_":        "the remainder operator % is not allowed: " + zeroDivisor,
	"dyn":        "dyn() is not allowed: it switches off type checking",
	"type":       "type() is not allowed: compare values, not types",
	"bytes":      "bytes() is not allowed: bytes are not JSON values",
	"uint":       "uint() is not allowed: unsigned integers are not JSON values; use int()",
	"bool":       "bool() is not allowed: compare the value instead",
	"_in_":       "_in_ is not allowed: write x in list",
	"in":         "in() is not allowed: write x in list",
	"has":        "has() takes a field selection, e.g. has(output.field)",
	"all":        "all takes a variable and a predicate: list.all(x, p)",
	"exists":     "exists takes a variable and a predicate: list.exists(x, p)",
	"exists_one": "exists_one takes a variable and a predicate: list.exists_one(x, p)",
}

// timeFunctions read a clock or compute with time.
var timeFunctions = map[string]bool{
	"timestamp": true, "duration": true, "now": true,
	"getFullYear": true, "getMonth": true, "getDayOfYear": true, "getDayOfMonth": true,
	"getDate": true, "getDayOfWeek": true, "getHours": true, "getMinutes": true,
	"getSeconds": true, "getMilliseconds": true,
}

// otherMacros are macros of CEL and its extensions that the profile leaves
// out: they build values whose size depends on the input, or bind names.
var otherMacros = map[string]bool{
	"map": true, "filter": true, "existsOne": true, "transformList": true,
	"transformMap": true, "transformMapEntry": true, "bind": true, "block": true,
	"optMap": true, "optFlatMap": true, "sortBy": true,
}

func forbiddenCall(name string) string {
	if msg, ok := forbiddenFunctions[name]; ok {
		return msg
	}
	if timeFunctions[name] {
		return name + " is not allowed: an expression must not read a clock or compute with time"
	}
	if otherMacros[name] {
		return "macro " + name + " is not allowed: the only macros are has, all, exists and exists_one"
	}
	return "function " + name + " is not allowed"
}

// vetParsed checks the parsed tree against the profile by name.
func (c *compiler) vetParsed(e ast.Expr) {
	switch e.Kind() {
	case ast.LiteralKind:
		switch e.AsLiteral().(type) {
		case types.Bytes:
			c.reject(e, "bytes literals are not allowed: bytes are not JSON values")
		case types.Uint:
			c.reject(e, "unsigned integer literals are not allowed: drop the u suffix")
		}
		return
	case ast.IdentKind:
		if e.AsIdent() == varOutput && !c.env.hasOutput && !c.inScope(varOutput) {
			c.reject(e, "output is not available in a decision state")
			c.skip[e.ID()] = true
		}
		return
	case ast.StructKind:
		c.reject(e, "object literals are not allowed")
		c.markSkip(e)
		return
	case ast.MapKind:
		// A guard that looks a value up in a literal table hides the
		// decision in data. Tool arguments may still build objects.
		if c.kind == GuardKind {
			c.reject(e, "map literals are not allowed: compare fields instead")
			c.markSkip(e)
			return
		}
	case ast.CallKind:
		call := e.AsCall()
		name := call.FunctionName()
		if !allowedFunctions[name] {
			c.reject(e, "%s", forbiddenCall(name))
			c.markSkip(e)
		} else if name == "matches" {
			c.vetPattern(e)
		}
	case ast.ComprehensionKind:
		comp := e.AsComprehension()
		c.vetParsed(comp.IterRange())
		c.vetParsed(comp.AccuInit())
		vars := []string{comp.AccuVar(), comp.IterVar()}
		if comp.HasIterVar2() {
			vars = append(vars, comp.IterVar2())
		}
		for _, v := range vars[1:] {
			switch v {
			case varInput, varData, varOutput:
				c.reject(e, "variable %s would hide the %s variable; choose another name", v, v)
			}
		}
		for _, v := range vars {
			c.scope[v]++
		}
		c.vetParsed(comp.LoopCondition())
		c.vetParsed(comp.LoopStep())
		c.vetParsed(comp.Result())
		for _, v := range vars {
			c.scope[v]--
		}
		return
	}
	for _, ch := range children(e) {
		c.vetParsed(ch)
	}
}

// vetPattern requires the pattern of matches to be a literal: it is then
// validated here, compiled once, and cannot come from the input. Go's
// regexp (RE2) matches in linear time.
func (c *compiler) vetPattern(e ast.Expr) {
	call := e.AsCall()
	args := call.Args()
	if len(args) == 0 {
		return
	}
	pat := args[len(args)-1]
	lit, ok := pat.AsLiteral().(types.String)
	if pat.Kind() != ast.LiteralKind || !ok {
		c.reject(pat, "the pattern of matches must be a string literal")
		return
	}
	if _, err := regexp.Compile(string(lit)); err != nil {
		c.reject(pat, "invalid regular expression: %v", err)
		c.skip[e.ID()] = true
	}
}

// vetChecked admits calls by resolved overload and identifiers by what
// they refer to. underSelect is true when e is the operand of a selection.
func (c *compiler) vetChecked(e ast.Expr, underSelect bool) {
	if c.skip[e.ID()] {
		return
	}
	switch e.Kind() {
	case ast.IdentKind:
		name := e.AsIdent()
		switch {
		case c.inScope(name):
		case name == varData:
			if !underSelect {
				c.reject(e, "data must be followed by a state name: data.<state>")
			}
		case name == varInput, name == varOutput:
		default:
			c.reject(e, "%s is not a value here: expressions read input, data, output and comprehension variables", name)
		}
		return
	case ast.SelectKind:
		c.vetChecked(e.AsSelect().Operand(), true)
		return
	case ast.CallKind:
		c.vetOverloads(e)
	case ast.ComprehensionKind:
		comp := e.AsComprehension()
		c.vetChecked(comp.IterRange(), false)
		c.vetChecked(comp.AccuInit(), false)
		vars := []string{comp.AccuVar(), comp.IterVar()}
		if comp.HasIterVar2() {
			vars = append(vars, comp.IterVar2())
		}
		for _, v := range vars {
			c.scope[v]++
		}
		c.vetChecked(comp.LoopCondition(), false)
		c.vetChecked(comp.LoopStep(), false)
		c.vetChecked(comp.Result(), false)
		for _, v := range vars {
			c.scope[v]--
		}
		return
	}
	for _, ch := range children(e) {
		c.vetChecked(ch, false)
	}
}

// vetOverloads admits a call when every overload the checker left as a
// candidate is allowed or cannot occur at runtime, and at least one is
// allowed. Several candidates remain when an operand is dyn; the runtime
// then dispatches on the actual values, so each must be acceptable.
func (c *compiler) vetOverloads(e ast.Expr) {
	ids := c.checked.GetOverloadIDs(e.ID())
	name := e.AsCall().FunctionName()
	usable := false
	for _, id := range ids {
		if allowedOverloads[id] {
			usable = true
			continue
		}
		if impossibleOverloads()[id] {
			continue
		}
		c.reject(e, "%s", overloadMessage(name, id))
		return
	}
	if !usable {
		c.reject(e, "operation %s is not allowed on these operand types", displayName(name))
	}
}

func overloadMessage(name, id string) string {
	switch id {
	case "add_string", "add_list", "add_bytes":
		return "concatenation with + is not allowed: it allocates in proportion to the input; + applies to int and double only"
	}
	return "operation " + displayName(name) + " (" + id + ") is not allowed"
}

// displayName turns the parser's operator names (_+_) into their symbols.
func displayName(name string) string {
	if strings.HasPrefix(name, "_") && strings.HasSuffix(name, "_") && len(name) > 2 {
		return strings.Trim(name, "_")
	}
	return name
}

// allowedOverloads are the standard-library overloads of the profile.
var allowedOverloads = func() map[string]bool {
	m := map[string]bool{}
	for _, id := range []string{
		"conditional", "logical_and", "logical_or", "logical_not", "not_strictly_false",
		"equals", "not_equals",
		"index_list", "index_map", "in_list", "in_map",
		"size_string", "string_size", "size_list", "list_size", "size_map", "map_size",
		"contains_string", "starts_with_string", "ends_with_string", "matches", "matches_string",
		"add_int64", "add_double", "subtract_int64", "subtract_double",
		"multiply_int64", "multiply_double", "negate_int64", "negate_double",
		"int64_to_int64", "double_to_int64", "string_to_int64",
		"double_to_double", "int64_to_double", "string_to_double",
		"string_to_string", "bool_to_string", "double_to_string", "int64_to_string",
	} {
		m[id] = true
	}
	for _, op := range []string{"less", "less_equals", "greater", "greater_equals"} {
		for _, t := range []string{"bool", "int64", "double", "string", "int64_double", "double_int64"} {
			m[op+"_"+t] = true
		}
	}
	return m
}()

// impossibleOverloads are standard-library overloads taking a type that no
// value of an expression can have: declared variables hold JSON values, and
// the profile rejects every producer of bytes, uint, timestamp and
// duration. They show up as candidates when an operand is dyn.
var impossibleOverloads = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, fn := range stdlib.Functions() {
		for _, o := range fn.OverloadDecls() {
			for _, t := range o.ArgTypes() {
				if nonJSONType(t) {
					m[o.ID()] = true
					break
				}
			}
		}
	}
	return m
})

func nonJSONType(t *types.Type) bool {
	switch t.Kind() {
	case types.BytesKind, types.UintKind, types.TimestampKind, types.DurationKind:
		return true
	}
	for _, p := range t.Parameters() {
		if nonJSONType(p) {
			return true
		}
	}
	return false
}
