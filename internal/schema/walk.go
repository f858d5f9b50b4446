package schema

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// The keywords whose values hold subschemas, as the compiler sees them in
// draft 2020-12 (it also honours the older "definitions", "dependencies"
// and "additionalItems", so the checks here do too).
var (
	// singleKeywords hold one subschema.
	singleKeywords = []string{
		"additionalItems", "additionalProperties", "contains", "contentSchema",
		"else", "if", "items", "not", "propertyNames", "then",
		"unevaluatedItems", "unevaluatedProperties",
	}
	// mapKeywords hold an object of subschemas.
	mapKeywords = map[string]bool{
		"$defs": true, "definitions": true, "dependencies": true,
		"dependentSchemas": true, "patternProperties": true, "properties": true,
	}
	// arrayKeywords hold an array of subschemas ("items" only before 2020-12).
	arrayKeywords = map[string]bool{
		"allOf": true, "anyOf": true, "oneOf": true, "prefixItems": true, "items": true,
	}
)

// child is a subschema directly inside a schema object.
type child struct {
	keyword string
	token   string // member name or array index under keyword; "" when none
	schema  any
}

// pointer returns the child's JSON Pointer relative to its parent.
func (c child) pointer() string {
	p := "/" + jsonvalue.EscapePointerToken(c.keyword)
	if c.token != "" {
		p += "/" + jsonvalue.EscapePointerToken(c.token)
	}
	return p
}

// children lists the subschemas (objects and booleans) directly inside obj,
// in a deterministic order.
func children(obj map[string]any) []child {
	var out []child
	for _, kw := range singleKeywords {
		if isSchema(obj[kw]) {
			out = append(out, child{keyword: kw, schema: obj[kw]})
		}
	}
	for _, kw := range sortedKeys(mapKeywords) {
		m, ok := obj[kw].(map[string]any)
		if !ok {
			continue
		}
		for _, name := range sortedKeys(m) {
			if isSchema(m[name]) {
				out = append(out, child{keyword: kw, token: name, schema: m[name]})
			}
		}
	}
	for _, kw := range sortedKeys(arrayKeywords) {
		a, ok := obj[kw].([]any)
		if !ok {
			continue
		}
		for i, s := range a {
			if isSchema(s) {
				out = append(out, child{keyword: kw, token: strconv.Itoa(i), schema: s})
			}
		}
	}
	return out
}

func isSchema(v any) bool {
	switch v.(type) {
	case map[string]any, bool:
		return true
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var typeNames = map[string]bool{
	"array": true, "boolean": true, "integer": true, "null": true,
	"number": true, "object": true, "string": true,
}

// precheck enforces the package's policies before the document reaches the
// compiler: only draft 2020-12, only references into the document, and
// clear messages for the commonest mistake, a misspelt type.
func precheck(doc any) []Problem {
	var problems []Problem
	var walk func(v any, ptr string, nested bool)
	walk = func(v any, ptr string, nested bool) {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		if s, ok := obj["$schema"].(string); ok && strings.TrimSuffix(s, "#") != Draft2020 {
			problems = append(problems, Problem{Pointer: ptr + "/$schema",
				Message: fmt.Sprintf("unsupported $schema %q: only %q is accepted", s, Draft2020)})
		}
		if _, ok := obj["$id"].(string); ok && ptr != "" {
			// "#..." now resolves against this embedded resource; leave the
			// target check to the compiler.
			nested = true
		}
		for _, kw := range []string{"$ref", "$dynamicRef"} {
			ref, ok := obj[kw].(string)
			if !ok {
				continue
			}
			if !strings.HasPrefix(ref, "#") {
				problems = append(problems, Problem{Pointer: ptr + "/" + jsonvalue.EscapePointerToken(kw),
					Message: fmt.Sprintf("external $ref not allowed: %q (only references into this document, \"#...\")", ref)})
				continue
			}
			if kw == "$ref" && !nested {
				if _, found, isPtr := resolveLocal(doc, ref); isPtr && !found {
					problems = append(problems, Problem{Pointer: ptr + "/$ref",
						Message: fmt.Sprintf("$ref target %q not found in the document", ref)})
				}
			}
		}
		switch t := obj["type"].(type) {
		case string:
			if !typeNames[t] {
				problems = append(problems, Problem{Pointer: ptr + "/type", Message: unknownType(t)})
			}
		case []any:
			for i, e := range t {
				if s, ok := e.(string); ok && !typeNames[s] {
					problems = append(problems, Problem{Pointer: ptr + "/type/" + strconv.Itoa(i), Message: unknownType(s)})
				}
			}
		}
		for _, c := range children(obj) {
			walk(c.schema, ptr+c.pointer(), nested)
		}
	}
	walk(doc, "", false)
	return append(problems, refCycles(doc)...)
}

// inPlaceChildren apply their subschemas to the same value as their parent.
var inPlaceChildren = map[string]bool{
	"allOf": true, "anyOf": true, "oneOf": true, "not": true, "if": true,
	"then": true, "else": true, "dependentSchemas": true,
}

// refCycles finds schemas that reach themselves through $ref and in-place
// applicators without stepping into a property or item: validating any
// value against them never ends (the compiler accepts them, and every
// validation then fails with a "reference cycle" error).
func refCycles(doc any) []Problem {
	var problems []Problem
	state := map[string]int{} // schema pointer -> 1 on the DFS stack, 2 done
	var visit func(ptr string, v any, nested bool)
	edge := func(site, to string, target any, nested bool, msg string) {
		if state[to] == 1 {
			problems = append(problems, Problem{Pointer: site, Message: msg})
			return
		}
		visit(to, target, nested)
	}
	visit = func(ptr string, v any, nested bool) {
		obj, ok := v.(map[string]any)
		if !ok || state[ptr] != 0 {
			return
		}
		state[ptr] = 1
		if _, ok := obj["$id"].(string); ok && ptr != "" {
			nested = true
		}
		if ref, ok := obj["$ref"].(string); ok && !nested {
			if target, found, isPtr := resolveLocal(doc, ref); found && isPtr {
				frag, _ := url.PathUnescape(strings.TrimPrefix(ref, "#"))
				edge(ptr+"/$ref", frag, target, embedded(doc, ref), fmt.Sprintf("$ref %q leads back here without entering a property or item: reference cycle", ref))
			}
		}
		for _, c := range children(obj) {
			if inPlaceChildren[c.keyword] {
				edge(ptr+c.pointer(), ptr+c.pointer(), c.schema, nested, "reference cycle through "+c.keyword)
			}
		}
		state[ptr] = 2
	}
	// Start everywhere, so that cycles among unused $defs are reported too.
	var all func(ptr string, v any, nested bool)
	all = func(ptr string, v any, nested bool) {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		if _, ok := obj["$id"].(string); ok && ptr != "" {
			nested = true
		}
		visit(ptr, v, nested)
		for _, c := range children(obj) {
			all(ptr+c.pointer(), c.schema, nested)
		}
	}
	all("", doc, false)
	return problems
}

func unknownType(t string) string {
	return fmt.Sprintf("unknown type %q (want one of array, boolean, integer, null, number, object, string)", t)
}

// resolveLocal resolves a "#/json/pointer" reference against doc. isPtr is
// false for other fragments (anchors such as "#node"), which it leaves to
// the compiler.
func resolveLocal(doc any, ref string) (target any, found, isPtr bool) {
	frag, err := url.PathUnescape(strings.TrimPrefix(ref, "#"))
	if err != nil {
		return nil, false, true
	}
	if frag == "" {
		return doc, true, true
	}
	if !strings.HasPrefix(frag, "/") {
		return nil, false, false
	}
	cur := doc
	for _, tok := range strings.Split(frag[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false, true
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) || strconv.Itoa(i) != tok {
				return nil, false, true
			}
			cur = c[i]
		default:
			return nil, false, true
		}
	}
	return cur, true, true
}
