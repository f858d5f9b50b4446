package program

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// pos is a place in a program file.
type pos struct{ Line, Column int }

// parsed is a program file turned into a JSON value, with the file position
// of every value by JSON Pointer so that later checks can point at the source.
type parsed struct {
	tree  any
	where map[string]pos
	order []string // state names in declaration order
}

var documentType = reflect.TypeOf(Document{})

// parse reads YAML or JSON (JSON is YAML's flow style, so one parser serves
// both). Typing is pinned by the program format rather than by YAML's
// implicit resolution: a plain scalar in a field the format declares as a
// string keeps its exact source text, so `version: 1.0` is "1.0" and
// `when: true` is the expression "true". Elsewhere (inside JSON Schemas)
// scalars follow the YAML 1.2 core schema. Duplicate keys, aliases, merge
// keys, non-finite numbers and integers beyond ±2^53 are rejected.
func parse(data []byte) (*parsed, []Problem) {
	var doc yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&doc); err != nil {
		return nil, []Problem{{Message: "cannot parse: " + cleanYAMLError(err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, []Problem{{Line: extra.Line, Column: extra.Column, Message: "more than one document in the file"}}
	}
	p := &parsed{where: map[string]pos{}}
	c := converter{p: p}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	p.tree = c.value(root, documentType, "")
	if m, ok := p.tree.(map[string]any); ok {
		if _, ok := m["states"].(map[string]any); ok {
			p.order = c.stateOrder
		}
	}
	return p, c.problems
}

type converter struct {
	p          *parsed
	problems   []Problem
	stateOrder []string
}

func (c *converter) fail(n *yaml.Node, format string, args ...any) {
	c.problems = append(c.problems, Problem{Line: n.Line, Column: n.Column, Message: fmt.Sprintf(format, args...)})
}

// value converts n, typed by t (nil: untyped, the YAML core schema applies).
func (c *converter) value(n *yaml.Node, t reflect.Type, ptr string) any {
	c.p.where[ptr] = pos{n.Line, n.Column}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && t.Kind() == reflect.Interface {
		t = nil
	}
	switch n.Kind {
	case yaml.AliasNode:
		c.fail(n, "YAML aliases are not allowed in programs")
		return nil
	case yaml.DocumentNode:
		c.fail(n, "nested YAML document")
		return nil
	case yaml.MappingNode:
		return c.mapping(n, t, ptr)
	case yaml.SequenceNode:
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		out := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			out = append(out, c.value(item, elem, ptr+"/"+strconv.Itoa(i)))
		}
		return out
	case yaml.ScalarNode:
		return c.scalar(n, t)
	}
	c.fail(n, "unsupported YAML node")
	return nil
}

func (c *converter) mapping(n *yaml.Node, t reflect.Type, ptr string) any {
	out := make(map[string]any, len(n.Content)/2)
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.fail(k, "mapping keys must be strings")
			continue
		}
		if k.ShortTag() == "!!merge" {
			c.fail(k, "YAML merge keys (<<) are not allowed in programs")
			continue
		}
		key := k.Value
		if first, dup := seen[key]; dup {
			c.fail(k, "duplicate key %q (first at line %d)", key, first.Line)
			continue
		}
		seen[key] = k
		var ft reflect.Type
		if t != nil {
			switch t.Kind() {
			case reflect.Struct:
				ft = fieldType(t, key)
			case reflect.Map:
				ft = t.Elem()
			}
		}
		if ptr == "/states" {
			c.stateOrder = append(c.stateOrder, key)
		}
		out[key] = c.value(v, ft, ptr+"/"+escapePointer(key))
	}
	return out
}

// fieldType is the type of the struct field with JSON name key, or nil.
func fieldType(t reflect.Type, key string) reflect.Type {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == key {
			return f.Type
		}
	}
	return nil
}

func (c *converter) scalar(n *yaml.Node, t reflect.Type) any {
	tag := n.ShortTag()
	switch tag {
	case "!!binary":
		c.fail(n, "binary values are not allowed")
		return nil
	case "!!merge":
		c.fail(n, "YAML merge keys (<<) are not allowed in programs")
		return nil
	}
	if n.Tag != "" && n.Tag[0] == '!' && !strings.HasPrefix(n.Tag, "!!") {
		c.fail(n, "custom YAML tag %s is not allowed", n.Tag)
		return nil
	}
	if t != nil && t.Kind() == reflect.String && tag != "!!null" {
		return n.Value
	}
	switch tag {
	case "!!null":
		return nil
	case "!!bool":
		return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
	case "!!int", "!!float":
		return c.number(n)
	}
	return n.Value
}

// YAML 1.2 core-schema numbers. The parser resolves some YAML 1.1 forms
// too (010 as octal, 1_000, 0b101); under 1.2 those are decimal or plain
// strings, and so they are here.
var (
	yamlInt   = regexp.MustCompile(`^[-+]?[0-9]+$`)
	yamlOct   = regexp.MustCompile(`^0o[0-7]+$`)
	yamlHex   = regexp.MustCompile(`^0x[0-9a-fA-F]+$`)
	yamlFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)
	yamlInf   = regexp.MustCompile(`^([-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$`)
)

func (c *converter) number(n *yaml.Node) any {
	v := n.Value
	var i int64
	var err error
	switch {
	case yamlInt.MatchString(v):
		i, err = strconv.ParseInt(strings.TrimPrefix(v, "+"), 10, 64)
	case yamlOct.MatchString(v):
		i, err = strconv.ParseInt(v[2:], 8, 64)
	case yamlHex.MatchString(v):
		i, err = strconv.ParseInt(v[2:], 16, 64)
	case yamlFloat.MatchString(v):
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsInf(f, 0) {
			c.fail(n, "number %s is not a finite JSON number", v)
			return nil
		}
		if f == math.Trunc(f) && math.Abs(f) > jsonvalue.MaxSafeInteger {
			c.fail(n, "number %s is an integer beyond ±2^53 and cannot be represented exactly", v)
			return nil
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
	case yamlInf.MatchString(v):
		c.fail(n, "number %s is not a finite JSON number", v)
		return nil
	default:
		return v // not a number under YAML 1.2
	}
	if err != nil || i > jsonvalue.MaxSafeInteger || i < -jsonvalue.MaxSafeInteger {
		c.fail(n, "integer %s is beyond ±2^53 and cannot be represented exactly", v)
		return nil
	}
	return json.Number(strconv.FormatInt(i, 10))
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func unescapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}

func cleanYAMLError(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}
