// Package schema compiles the JSON Schemas (draft 2020-12) that program
// states declare, validates JSON values against them and derives Node, the
// structural model used to type CEL guards and convert values for them.
//
// Policy choices, all deliberate:
//
//   - Only draft 2020-12. A document without "$schema" is read as 2020-12;
//     any other "$schema", anywhere in the document, is refused.
//   - No external references. Every "$ref" and "$dynamicRef" must start
//     with "#" (a location inside the same document); the compiler's loader
//     refuses everything, so compiling never touches files or the network.
//     A "$ref" that loops back to its own schema without entering a
//     property or item (validation would never end) is refused too.
//   - Format assertion is on: "format" is validated for date, date-time,
//     time, duration, email, hostname, ipv4, ipv6, uri, uri-reference,
//     iri, iri-reference, uri-template, uuid, regex (Go RE2 syntax),
//     json-pointer and relative-json-pointer, plus the library's period and
//     semver. Draft 2020-12 makes format an annotation by default, but a
//     program that writes "format": "date" means it, and agents' outputs
//     are exactly the kind of input that gets formats wrong. Unknown format
//     names are ignored (idn-email and idn-hostname among them).
//   - Content assertions (contentEncoding, contentMediaType) stay off.
//
// Validation is done by github.com/santhosh-tekuri/jsonschema/v6; its
// reports are flattened into Violations with JSON Pointer paths and
// messages free of internal URLs.
//
// Validate sits on the hot path of every run, and the library is slow for
// the common case of a valid value: it reads every number through
// fmt.Sprint and math/big and allocates per keyword. So Compile also
// builds an exact fast checker (package fastpath, whose doc states its
// contract) from the library's compiled schema when every keyword
// reachable from the root is one it implements. A value the fast checker
// accepts is valid; for anything else (a violation, or a value it cannot
// decide cheaply) the library runs as if there were no fast path. The
// library stays the reference: it alone produces violations.
package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/schema/fastpath"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Draft2020 is the only "$schema" URI the package accepts.
const Draft2020 = "https://json-schema.org/draft/2020-12/schema"

// location is the URI the document is compiled under. It never leaves the
// package: messages are cleaned of it.
const location = "mem:///schema.json"

// Schema is a compiled JSON Schema document.
type Schema struct {
	// Root is the structural model of the document. It and the nodes under
	// it are shared and must not be modified.
	Root *Node

	doc      any
	compiled *jsonschema.Schema
	fast     *fastpath.Checker // nil: every value goes to the library
	ints     bool              // Root types some value as integer
}

// Problem is one reason a schema document does not compile.
type Problem struct {
	Pointer string // JSON Pointer of the offending location in the schema document
	Message string
}

// CompileError lists every problem found in a schema document, sorted by
// pointer then message.
type CompileError struct {
	Problems []Problem
}

func (e *CompileError) Error() string {
	var b strings.Builder
	b.WriteString("schema: invalid document")
	for i, p := range e.Problems {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		ptr := p.Pointer
		if ptr == "" {
			ptr = "(root)"
		}
		b.WriteString(ptr)
		b.WriteString(": ")
		b.WriteString(p.Message)
	}
	return b.String()
}

func newCompileError(problems []Problem) *CompileError {
	slices.SortFunc(problems, func(a, b Problem) int {
		if c := strings.Compare(a.Pointer, b.Pointer); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
	return &CompileError{Problems: slices.Compact(problems)}
}

// Violation is one way a value fails its schema.
type Violation struct {
	Path    string // JSON Pointer of the offending location in the value
	Keyword string // the schema keyword that failed ("type", "required", ...), "" if none applies
	Message string
}

func (v Violation) String() string {
	path := v.Path
	if path == "" {
		path = "(root)"
	}
	return path + ": " + v.Message
}

// Compile compiles a schema document decoded by jsonvalue.Decode. Numbers
// may also be float64 or Go integers. Every problem found is reported in a
// *CompileError.
func Compile(doc any) (*Schema, error) {
	doc, problems := normalize(doc, "")
	if len(problems) > 0 {
		return nil, newCompileError(problems)
	}
	switch doc.(type) {
	case map[string]any, bool:
	default:
		return nil, newCompileError([]Problem{{Message: fmt.Sprintf("a schema must be an object or a boolean, got %s", jsonType(doc))}})
	}
	if problems := precheck(doc); len(problems) > 0 {
		return nil, newCompileError(problems)
	}
	compiled, err := compile(doc)
	if err != nil {
		return nil, err
	}
	root := buildNode(doc)
	return &Schema{Root: root, doc: doc, compiled: compiled, fast: fastpath.New(compiled), ints: hasInteger(root, map[*Node]bool{})}, nil
}

func compile(doc any) (compiled *jsonschema.Schema, err error) {
	defer func() {
		// The library is not hardened against every hostile document; a
		// panic must not take the process down.
		if r := recover(); r != nil {
			compiled, err = nil, newCompileError([]Problem{{Message: fmt.Sprintf("schema compiler failed: %v", r)}})
		}
	}()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(refuseLoader{})
	if err := c.AddResource(location, doc); err != nil {
		return nil, newCompileError([]Problem{{Message: clean(err.Error())}})
	}
	compiled, err = c.Compile(location)
	if err != nil {
		return nil, newCompileError(compileProblems(err))
	}
	return compiled, nil
}

// refuseLoader is the compiler's only way to fetch documents. precheck
// already rejects external references; this is the backstop.
type refuseLoader struct{}

func (refuseLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("external $ref not allowed: %s", u)
}

// Doc returns the schema document (numbers as json.Number). It is shared
// and must not be modified.
func (s *Schema) Doc() any { return s.doc }

// Validate reports every way v fails the schema, sorted by path then
// message; nil means v is valid. v is a decoded JSON value (json.Number or
// float64 or Go integer numbers).
func (s *Schema) Validate(v any) []Violation {
	out := s.validate(v)
	if out == nil && s.ints && !integersSafe(s.Root, v) {
		out = unsafeIntegers(s.Root, v, "", nil)
		slices.SortFunc(out, func(a, b Violation) int { return strings.Compare(a.Path, b.Path) })
	}
	return out
}

func (s *Schema) validate(v any) (out []Violation) {
	if s.fastValid(v) {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			out = []Violation{{Message: fmt.Sprintf("validator failed: %v", r)}}
		}
	}()
	err := s.compiled.Validate(v)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return []Violation{{Message: clean(err.Error())}}
	}
	flatten(verr, &out)
	slices.SortStableFunc(out, func(a, b Violation) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		if c := strings.Compare(a.Message, b.Message); c != 0 {
			return c
		}
		return strings.Compare(a.Keyword, b.Keyword)
	})
	return slices.Compact(out)
}

// fastValid reports whether the fast checker accepts v. A panic there is
// a bug in the fast path, never a verdict: the library decides instead.
func (s *Schema) fastValid(v any) (ok bool) {
	if s.fast == nil {
		return false
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return s.fast.Check(v) == fastpath.Valid
}

var printer = message.NewPrinter(language.English)

// flatten turns the library's error tree into leaf violations. Wrappers
// (the whole schema, a $ref, allOf, a group) contribute their causes;
// anyOf/oneOf are reported once, with their alternatives' reasons, since
// no single alternative is "the" error.
func flatten(e *jsonschema.ValidationError, out *[]Violation) {
	switch e.ErrorKind.(type) {
	case *kind.Schema, *kind.Group, *kind.Reference, *kind.AllOf:
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				flatten(c, out)
			}
			return
		}
	}
	*out = append(*out, Violation{
		Path:    pointer(e.InstanceLocation),
		Keyword: keywordOf(e),
		Message: messageOf(e),
	})
}

func keywordOf(e *jsonschema.ValidationError) string {
	if kp := e.ErrorKind.KeywordPath(); len(kp) > 0 {
		return kp[0]
	}
	if _, ok := e.ErrorKind.(*kind.FalseSchema); ok {
		return holdingKeyword(e.SchemaURL)
	}
	return ""
}

func messageOf(e *jsonschema.ValidationError) string {
	switch k := e.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		// The library lists the names in map order; traces record these
		// messages, so they must not vary between runs.
		names := slices.Clone(k.Properties)
		slices.Sort(names)
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = "'" + strings.ReplaceAll(n, "'", `\'`) + "'"
		}
		return "additional properties " + strings.Join(quoted, ", ") + " not allowed"
	case *kind.FalseSchema:
		name := ""
		if n := len(e.InstanceLocation); n > 0 {
			name = e.InstanceLocation[n-1]
		}
		switch holdingKeyword(e.SchemaURL) {
		case "unevaluatedProperties":
			return fmt.Sprintf("property %q not allowed (unevaluated)", name)
		case "properties", "patternProperties", "additionalProperties":
			return fmt.Sprintf("property %q not allowed", name)
		case "items", "prefixItems", "unevaluatedItems":
			return "array item not allowed"
		}
		return "no value allowed here (false schema)"
	case *kind.AnyOf, *kind.OneOf:
		msg := clean(k.LocalizedString(printer))
		var reasons []string
		for _, c := range e.Causes {
			var leaves []Violation
			flatten(c, &leaves)
			for _, l := range leaves {
				r := l.Message
				if l.Path != pointer(e.InstanceLocation) {
					r = l.Path + ": " + r
				}
				reasons = append(reasons, r)
			}
		}
		if len(reasons) > 0 {
			msg += ": " + strings.Join(reasons, "; ")
		}
		return msg
	}
	return clean(e.ErrorKind.LocalizedString(printer))
}

// holdingKeyword returns the keyword under which the schema at schemaURL
// sits, e.g. "unevaluatedProperties" for ".../unevaluatedProperties" and
// "properties" for ".../properties/a".
func holdingKeyword(schemaURL string) string {
	_, frag, ok := strings.Cut(schemaURL, "#")
	if !ok || !strings.HasPrefix(frag, "/") {
		return ""
	}
	if f, err := url.PathUnescape(frag); err == nil {
		frag = f
	}
	toks := strings.Split(frag[1:], "/")
	last := ""
	for i := 0; i < len(toks); {
		last = strings.NewReplacer("~1", "/", "~0", "~").Replace(toks[i])
		if mapKeywords[last] || arrayKeywords[last] && i+1 < len(toks) && isIndex(toks[i+1]) {
			i += 2
		} else {
			i++
		}
	}
	return last
}

func isIndex(tok string) bool {
	_, err := strconv.Atoi(tok)
	return err == nil
}

// pointer renders instance-location tokens as a JSON Pointer.
func pointer(toks []string) string {
	if len(toks) == 0 {
		return ""
	}
	var b strings.Builder
	for _, t := range toks {
		b.WriteByte('/')
		b.WriteString(jsonvalue.EscapePointerToken(t))
	}
	return b.String()
}

// clean strips the internal document location from a library message.
func clean(msg string) string {
	msg = strings.ReplaceAll(msg, location+"#", "#")
	return strings.ReplaceAll(msg, location, "#")
}

// compileProblems converts a library compile error into problems.
func compileProblems(err error) []Problem {
	var sve *jsonschema.SchemaValidationError
	if errors.As(err, &sve) {
		var verr *jsonschema.ValidationError
		if errors.As(sve.Err, &verr) {
			var vs []Violation
			flatten(verr, &vs)
			problems := make([]Problem, 0, len(vs))
			base := fragmentOf(sve.URL)
			for _, v := range vs {
				problems = append(problems, Problem{Pointer: base + v.Path, Message: v.Message})
			}
			return problems
		}
	}
	var (
		anchor *jsonschema.AnchorNotFoundError
		ptr    *jsonschema.JSONPointerNotFoundError
		dupID  *jsonschema.DuplicateIDError
		dupAnc *jsonschema.DuplicateAnchorError
		regex  *jsonschema.InvalidRegexError
		load   *jsonschema.LoadURLError
	)
	switch {
	case errors.As(err, &anchor):
		return []Problem{{Message: fmt.Sprintf("$ref anchor %q not found", clean(anchor.Reference))}}
	case errors.As(err, &ptr):
		return []Problem{{Message: fmt.Sprintf("$ref target %q not found", clean(ptr.URL))}}
	case errors.As(err, &dupID):
		return []Problem{{Pointer: dupID.Ptr2, Message: fmt.Sprintf("duplicate $id %q (also at %q)", dupID.ID, dupID.Ptr1)}}
	case errors.As(err, &dupAnc):
		return []Problem{{Pointer: dupAnc.Ptr2, Message: fmt.Sprintf("duplicate anchor %q (also at %q)", dupAnc.Anchor, dupAnc.Ptr1)}}
	case errors.As(err, &regex):
		return []Problem{{Pointer: fragmentOf(regex.URL), Message: fmt.Sprintf("invalid regular expression %q: %v", regex.Regex, regex.Err)}}
	case errors.As(err, &load):
		return []Problem{{Message: fmt.Sprintf("external $ref not allowed: %s", clean(load.URL))}}
	}
	return []Problem{{Message: clean(err.Error())}}
}

// fragmentOf returns the JSON Pointer fragment of a location inside the
// document, "" when there is none.
func fragmentOf(u string) string {
	rest, ok := strings.CutPrefix(u, location+"#")
	if !ok {
		return ""
	}
	if f, err := url.PathUnescape(rest); err == nil {
		return f
	}
	return rest
}

// normalize deep-copies doc with every number as json.Number, so that the
// rest of the package deals with one representation.
func normalize(v any, ptr string) (any, []Problem) {
	switch x := v.(type) {
	case nil, bool, string:
		return x, nil
	case json.Number:
		if !numberLiteral.MatchString(string(x)) {
			return nil, []Problem{{Pointer: ptr, Message: fmt.Sprintf("invalid number %q", string(x))}}
		}
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, []Problem{{Pointer: ptr, Message: fmt.Sprintf("number %v is not JSON", x)}}
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), nil
	case float32:
		return normalize(float64(x), ptr)
	case int:
		return json.Number(strconv.FormatInt(int64(x), 10)), nil
	case int8:
		return json.Number(strconv.FormatInt(int64(x), 10)), nil
	case int16:
		return json.Number(strconv.FormatInt(int64(x), 10)), nil
	case int32:
		return json.Number(strconv.FormatInt(int64(x), 10)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case uint:
		return json.Number(strconv.FormatUint(uint64(x), 10)), nil
	case uint8:
		return json.Number(strconv.FormatUint(uint64(x), 10)), nil
	case uint16:
		return json.Number(strconv.FormatUint(uint64(x), 10)), nil
	case uint32:
		return json.Number(strconv.FormatUint(uint64(x), 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case map[string]any:
		m := make(map[string]any, len(x))
		var problems []Problem
		for k, e := range x {
			ne, p := normalize(e, ptr+"/"+jsonvalue.EscapePointerToken(k))
			problems = append(problems, p...)
			m[k] = ne
		}
		return m, problems
	case []any:
		s := make([]any, len(x))
		var problems []Problem
		for i, e := range x {
			ne, p := normalize(e, ptr+"/"+strconv.Itoa(i))
			problems = append(problems, p...)
			s[i] = ne
		}
		return s, problems
	}
	return nil, []Problem{{Pointer: ptr, Message: fmt.Sprintf("value of Go type %T is not JSON", v)}}
}

// numberLiteral is the RFC 8259 number grammar.
var numberLiteral = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if isIntegerLiteral(string(x)) {
			return "integer"
		}
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// isIntegerLiteral reports whether a number literal has no fraction or
// exponent.
func isIntegerLiteral(lit string) bool {
	return !strings.ContainsAny(lit, ".eE")
}
