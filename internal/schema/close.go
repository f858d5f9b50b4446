package schema

import (
	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// CloseObjects returns a deep copy of a schema document in which every
// object schema that does not say what to do with undeclared properties
// forbids them. Programs use it so that a step's output carries exactly the
// declared fields unless the author opts in with "additionalProperties" or
// "unevaluatedProperties".
//
// An object schema is one whose "type" includes "object", or that has no
// "type" but declares "properties" or gets either from a $ref, allOf, anyOf,
// oneOf, then or else. It is closed with "additionalProperties": false,
// or, when it has such in-place applicators, with
// "unevaluatedProperties": false: additionalProperties cannot see the
// properties a $ref or an allOf branch declares and would reject them.
// For the same reason the branches of allOf/anyOf/oneOf/then/else/
// dependentSchemas and the entries of $defs are not closed themselves (the
// schema using them is); the schemas of their properties and items are.
// "not", "if" and "propertyNames" are left alone: closing them would change
// what they test.
func CloseObjects(doc any) any {
	doc = jsonvalue.Clone(doc)
	c := closer{root: doc, seen: map[string]bool{}, memo: map[string]bool{}}
	c.walk(doc, true)
	return doc
}

type closer struct {
	root any
	seen map[string]bool // $refs on the current objectish path
	memo map[string]bool // objectish of $ref targets, when final
	cut  bool            // an objectish answer relied on an unfinished $ref
}

// ownerKeywords hold schemas that describe a value of their own (a
// property, an item...), as opposed to fragments of their parent.
var ownerKeywords = map[string]bool{
	"properties": true, "patternProperties": true, "additionalProperties": true,
	"unevaluatedProperties": true, "items": true, "prefixItems": true,
	"additionalItems": true, "unevaluatedItems": true, "contains": true,
}

// fragmentKeywords hold schemas that constrain their parent's value.
var fragmentKeywords = map[string]bool{
	"allOf": true, "anyOf": true, "oneOf": true, "then": true, "else": true,
	"dependentSchemas": true, "dependencies": true, "$defs": true, "definitions": true,
}

// inPlaceKeywords are applicators that make additionalProperties blind to
// properties they evaluate.
var inPlaceKeywords = []string{"$ref", "$dynamicRef", "allOf", "anyOf", "oneOf", "if", "then", "else", "dependentSchemas", "dependencies"}

func (c *closer) walk(v any, owner bool) {
	obj, ok := v.(map[string]any)
	if !ok {
		return
	}
	_, hasAP := obj["additionalProperties"]
	_, hasUP := obj["unevaluatedProperties"]
	if owner && !hasAP && !hasUP && c.objectish(obj) {
		kw := "additionalProperties"
		for _, k := range inPlaceKeywords {
			if _, ok := obj[k]; ok {
				kw = "unevaluatedProperties"
				break
			}
		}
		obj[kw] = false
	}
	for _, ch := range children(obj) {
		switch {
		case ownerKeywords[ch.keyword]:
			c.walk(ch.schema, true)
		case fragmentKeywords[ch.keyword]:
			c.walk(ch.schema, false)
		}
	}
}

// objectish reports whether obj describes objects, directly or through its
// in-place applicators.
func (c *closer) objectish(obj map[string]any) bool {
	switch t := obj["type"].(type) {
	case string:
		return t == "object"
	case []any:
		for _, e := range t {
			if e == "object" {
				return true
			}
		}
		return false
	}
	if _, ok := obj["properties"]; ok {
		return true
	}
	if ref, ok := obj["$ref"].(string); ok && c.refObjectish(ref) {
		return true
	}
	for _, kw := range []string{"allOf", "anyOf", "oneOf"} {
		branches, _ := obj[kw].([]any)
		for _, br := range branches {
			if m, ok := br.(map[string]any); ok && c.objectish(m) {
				return true
			}
		}
	}
	for _, kw := range []string{"then", "else"} {
		if m, ok := obj[kw].(map[string]any); ok && c.objectish(m) {
			return true
		}
	}
	return false
}

// refObjectish is objectish for a $ref target, memoized so that a document
// whose $refs form a DAG is not explored exponentially. A $ref already being
// explored counts as false for now (its other branches are explored by the
// caller that started it); answers that relied on that are not memoized.
func (c *closer) refObjectish(ref string) bool {
	if is, ok := c.memo[ref]; ok {
		return is
	}
	if c.seen[ref] {
		c.cut = true
		return false
	}
	target, found, _ := resolveLocal(c.root, ref)
	t, ok := target.(map[string]any)
	if !found || !ok {
		return false
	}
	outerCut := c.cut
	c.cut = false
	c.seen[ref] = true
	is := c.objectish(t)
	delete(c.seen, ref)
	if !c.cut || is {
		c.memo[ref] = is
	}
	c.cut = c.cut || outerCut
	return is
}
