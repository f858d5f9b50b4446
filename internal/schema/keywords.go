package schema

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// valueKeywords are the 2020-12 keywords whose values are not subschemas
// (the subschema keywords are listed in walk.go).
var valueKeywords = map[string]bool{
	// Core.
	"$schema": true, "$id": true, "$ref": true, "$anchor": true, "$dynamicRef": true,
	"$dynamicAnchor": true, "$vocabulary": true, "$comment": true,
	// Validation.
	"type": true, "const": true, "enum": true, "multipleOf": true, "maximum": true,
	"exclusiveMaximum": true, "minimum": true, "exclusiveMinimum": true, "maxLength": true,
	"minLength": true, "pattern": true, "maxItems": true, "minItems": true, "uniqueItems": true,
	"maxContains": true, "minContains": true, "maxProperties": true, "minProperties": true,
	"required": true, "dependentRequired": true,
	// Meta-data, format and content.
	"title": true, "description": true, "default": true, "deprecated": true, "readOnly": true,
	"writeOnly": true, "examples": true, "format": true, "contentEncoding": true, "contentMediaType": true,
}

func knownKeyword(k string) bool {
	return valueKeywords[k] || mapKeywords[k] || arrayKeywords[k] || slices.Contains(singleKeywords, k)
}

// UnknownKeywords lists, by JSON Pointer, every keyword of doc and of its
// subschemas that no JSON Schema vocabulary defines. The standard ignores
// such keywords; programs treat them as mistakes, since a misspelt keyword
// (maxlength, requried) silently drops a constraint. Keywords starting with
// "x-" are extensions and allowed.
func UnknownKeywords(doc any) []Problem {
	var out []Problem
	var walk func(v any, ptr string)
	walk = func(v any, ptr string) {
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k := range obj {
			if !knownKeyword(k) && !strings.HasPrefix(k, "x-") {
				out = append(out, Problem{Pointer: ptr + "/" + jsonvalue.EscapePointerToken(k), Message: "unknown keyword " + strconv.Quote(k)})
			}
		}
		for _, c := range children(obj) {
			walk(c.schema, ptr+c.pointer())
		}
	}
	walk(doc, "")
	sort.Slice(out, func(i, j int) bool { return out[i].Pointer < out[j].Pointer })
	return out
}
