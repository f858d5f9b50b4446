package jsonvalue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// Canonical returns the RFC 8785 (JCS) form of v: object members sorted by
// UTF-16 code units, no insignificant whitespace, numbers in ECMAScript
// notation, strings minimally escaped. v is typically a Decode result, but
// anything encoding/json can marshal is accepted; like every JCS
// implementation it represents numbers as float64, so integers beyond 2^53
// that did not come from Decode lose precision.
//
// The result is, byte for byte, what gowebpki/jcs makes of encoding/json's
// output, and Canonical fails exactly when that would. It is written in one
// pass where it can be: decoded values, and structs whose encoding/json
// form is plain (json tags, omitempty, pointers, slices, string-keyed
// maps), are encoded directly with their members already in canonical
// order; MarshalJSON output (json.RawMessage and others) is
// canonicalised as text. Anything else, and any failure on the way, takes
// the general path: encoding/json, then the canonicaliser over its output.
func Canonical(v any) ([]byte, error) {
	e := encPool.Get().(*encState)
	if err := e.appendAny(v); err != nil {
		// e may still hold values of v in its stacks: let it go.
		return canonicalGeneral(v)
	}
	out := bytes.Clone(e.buf)
	e.release()
	return out, nil
}

// canonicalGeneral is the path that always agrees with encoding/json,
// errors included: marshal, then canonicalise the text.
func canonicalGeneral(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // jcs would undo it anyway
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("jsonvalue: canonical: %w", err)
	}
	e := encPool.Get().(*encState)
	defer e.release()
	if err := e.appendText(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("jsonvalue: canonical: %w", err)
	}
	return bytes.Clone(e.buf), nil
}

// errGeneral makes Canonical start again on the general path. The fast
// path returns it for anything it does not handle itself or that fails:
// the general path then either agrees or reports encoding/json's error.
var errGeneral = errors.New("jsonvalue: take the general path")

// maxFastDepth bounds the nesting (of containers, structs included,
// pointers and interfaces) the fast path follows. Deeper values, cyclic ones among them, go to the
// general path, where encoding/json detects cycles and the canonicaliser
// enforces jcs's nesting limit.
const maxFastDepth = 1000

// encState is one Canonical call's output and scratch space, pooled.
type encState struct {
	buf   []byte
	depth int
	kvs   []kv  // members of the map[string]any being written, a stack
	rkvs  []rkv // members of other maps being written, a stack
	// canonicalisation of JSON text (canonical_text.go)
	names   []byte   // decoded member names, a stack
	members []member // members of the objects being canonicalised, a stack
	scratch []byte
	str     []byte // a decoded string
}

type kv struct {
	k string
	v any
}

type rkv struct {
	k string
	v reflect.Value
}

var encPool = sync.Pool{New: func() any { return new(encState) }}

// maxPooled is the largest buffer a pooled encState keeps.
const maxPooled = 64 << 10

func (e *encState) release() {
	if cap(e.buf) > maxPooled {
		e.buf = nil
	}
	if cap(e.scratch) > maxPooled {
		e.scratch = nil
	}
	if cap(e.names) > maxPooled || cap(e.str) > maxPooled {
		e.names, e.str = nil, nil
	}
	if cap(e.kvs) > 1024 || cap(e.rkvs) > 1024 || cap(e.members) > 1024 {
		e.kvs, e.rkvs, e.members = nil, nil, nil
	}
	e.buf, e.scratch, e.names, e.str = e.buf[:0], e.scratch[:0], e.names[:0], e.str[:0]
	e.kvs, e.rkvs, e.members = e.kvs[:0], e.rkvs[:0], e.members[:0]
	e.depth = 0
	encPool.Put(e)
}

func (e *encState) enter() error {
	if e.depth++; e.depth > maxFastDepth {
		return errGeneral
	}
	return nil
}

// appendAny writes v. The types Decode produces, and a few other common
// ones, are handled without reflection.
func (e *encState) appendAny(v any) error {
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case string:
		e.buf, _ = appendString(e.buf, x)
	case json.Number:
		return e.appendNumber(x)
	case bool:
		e.buf = strconv.AppendBool(e.buf, x)
	case map[string]any:
		return e.appendMap(x)
	case []any:
		return e.appendSlice(x)
	case float64:
		return e.appendFloat(x)
	case int:
		e.appendInt(int64(x))
	case int64:
		e.appendInt(x)
	case uint64:
		e.appendUint(x)
	case json.RawMessage:
		return e.appendRaw(x)
	case map[string]string:
		return e.appendStringMap(x)
	case []string:
		return e.appendStrings(x)
	default:
		rv := reflect.ValueOf(v)
		return typeEncoder(rv.Type())(e, rv)
	}
	return nil
}

func (e *encState) appendMap(m map[string]any) error {
	if m == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if len(m) == 0 {
		e.buf = append(e.buf, "{}"...)
		return nil
	}
	if err := e.enter(); err != nil {
		return err
	}
	base := len(e.kvs)
	for k, v := range m {
		if !validName(k) {
			clear(e.kvs[base:])
			e.kvs = e.kvs[:base]
			return errGeneral // names that collide once made valid UTF-8
		}
		e.kvs = append(e.kvs, kv{k, v})
	}
	slices.SortFunc(e.kvs[base:], func(a, b kv) int { return compareUTF16(a.k, b.k) })
	n := len(m)
	e.buf = append(e.buf, '{')
	for i := 0; i < n; i++ {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		// e.kvs may be reallocated by nested maps; index it afresh.
		m := e.kvs[base+i]
		e.buf, _ = appendString(e.buf, m.k)
		e.buf = append(e.buf, ':')
		if err := e.appendAny(m.v); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	clear(e.kvs[base:])
	e.kvs = e.kvs[:base]
	e.depth--
	return nil
}

func (e *encState) appendSlice(s []any) error {
	if s == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if err := e.enter(); err != nil {
		return err
	}
	e.buf = append(e.buf, '[')
	for i, v := range s {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.appendAny(v); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, ']')
	e.depth--
	return nil
}

func (e *encState) appendStringMap(m map[string]string) error {
	if m == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	base := len(e.kvs)
	for k, v := range m {
		if !validName(k) {
			clear(e.kvs[base:])
			e.kvs = e.kvs[:base]
			return errGeneral
		}
		e.kvs = append(e.kvs, kv{k, v})
	}
	members := e.kvs[base:]
	slices.SortFunc(members, func(a, b kv) int { return compareUTF16(a.k, b.k) })
	e.buf = append(e.buf, '{')
	for i, m := range members {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf, _ = appendString(e.buf, m.k)
		e.buf = append(e.buf, ':')
		e.buf, _ = appendString(e.buf, m.v.(string))
	}
	e.buf = append(e.buf, '}')
	clear(members)
	e.kvs = e.kvs[:base]
	return nil
}

func (e *encState) appendStrings(s []string) error {
	if s == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	e.buf = append(e.buf, '[')
	for i, v := range s {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf, _ = appendString(e.buf, v)
	}
	e.buf = append(e.buf, ']')
	return nil
}

// appendRaw writes what json.RawMessage.MarshalJSON returns, canonicalised.
func (e *encState) appendRaw(m json.RawMessage) error {
	if m == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	return e.appendText(m)
}

// --- numbers ---------------------------------------------------------------

// appendNumber writes a json.Number the way encoding/json validates it and
// jcs then re-parses and prints it.
func (e *encState) appendNumber(n json.Number) error {
	s := string(n)
	if s == "" {
		s = "0" // encoding/json's rule for the zero Number
	}
	if !validNumber(s) {
		return errGeneral
	}
	var err error
	e.buf, err = appendNumberText(e.buf, s)
	return err
}

// errNumberRange reports a number literal beyond the range of a double.
var errNumberRange = errors.New("number out of range")

// appendNumberText writes the canonical form of s, a valid JSON number
// literal: the double nearest to it, printed as ECMAScript does.
func appendNumberText[T string | []byte](dst []byte, s T) ([]byte, error) {
	// An integer literal of at most 15 digits is an exact double and
	// prints as itself (JSON forbids leading zeros), except "-0".
	digits := s
	if len(s) > 0 && s[0] == '-' {
		digits = s[1:]
	}
	if len(digits) <= 15 && allDigits(digits) {
		if len(digits) == 1 && digits[0] == '0' {
			return append(dst, '0'), nil
		}
		return append(dst, s...), nil
	}
	f, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		return dst, errNumberRange
	}
	return appendES6(dst, f), nil
}

func allDigits[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validNumber reports whether s is a JSON number literal (RFC 8259 §6).
func validNumber[T string | []byte](s T) bool {
	return numberLen(s) == len(s) && len(s) > 0
}

// numberLen returns the length of the longest prefix of s that is a JSON
// number literal, or 0 if none is.
func numberLen[T string | []byte](s T) int {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		for i++; i < len(s) && isDigit(s[i]); i++ {
		}
	default:
		return 0
	}
	if i < len(s) && s[i] == '.' {
		if i+1 >= len(s) || !isDigit(s[i+1]) {
			return i
		}
		for i += 2; i < len(s) && isDigit(s[i]); i++ {
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j >= len(s) || !isDigit(s[j]) {
			return i
		}
		for j++; j < len(s) && isDigit(s[j]); j++ {
		}
		i = j
	}
	return i
}

// appendES6 prints a finite double as ECMAScript's Number.prototype.toString
// does, which is what RFC 8785 requires; it is jcs.NumberToJSON without the
// string allocations.
func appendES6(dst []byte, f float64) []byte {
	if f == 0 { // -0 too
		return append(dst, '0')
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	format := byte('e')
	if f < 1e21 && f >= 1e-6 {
		format = 'f'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Go writes "1e+09"; ECMAScript writes "1e+9".
		if i := bytes.IndexByte(dst[start:], 'e'); i > 0 && dst[start+i+2] == '0' {
			i += start + 2
			dst = append(dst[:i], dst[i+1:]...)
		}
	}
	return dst
}

func (e *encState) appendFloat(f float64) error {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return errGeneral
	}
	e.buf = appendES6(e.buf, f)
	return nil
}

// appendFloat32 writes f as encoding/json prints a float32 (the shortest
// decimal that is f) and jcs then reads that decimal as a double.
func (e *encState) appendFloat32(f float32) error {
	if math.IsInf(float64(f), 0) || math.IsNaN(float64(f)) {
		return errGeneral
	}
	var tmp [32]byte
	d, _ := strconv.ParseFloat(string(strconv.AppendFloat(tmp[:0], float64(f), 'g', -1, 32)), 64)
	e.buf = appendES6(e.buf, d)
	return nil
}

// appendInt writes i as jcs prints the double nearest to it. Within ±2^53
// every integer is a double and prints as itself.
func (e *encState) appendInt(i int64) {
	if -1<<53 <= i && i <= 1<<53 {
		e.buf = strconv.AppendInt(e.buf, i, 10)
		return
	}
	e.buf = appendES6(e.buf, float64(i))
}

func (e *encState) appendUint(u uint64) {
	if u <= 1<<53 {
		e.buf = strconv.AppendUint(e.buf, u, 10)
		return
	}
	e.buf = appendES6(e.buf, float64(u))
}

// --- strings ---------------------------------------------------------------

// safe[c] is true for the ASCII bytes a canonical string holds as they are.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString writes s as a canonical JSON string: '"' and '\\' escaped,
// control characters as \b \f \n \r \t or \u00xx (lower-case hex),
// everything else (U+2028, U+2029, DEL, '<' included) as it is. Invalid
// UTF-8 becomes U+FFFD, byte by byte, as encoding/json makes it; ok
// reports whether there was none.
func appendString[T string | []byte](dst []byte, s T) (_ []byte, ok bool) {
	ok = true
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		// At most 4 bytes: converting them does not allocate.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			ok = false
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), ok
}

// validName reports whether a map key is valid UTF-8. encoding/json would
// turn invalid bytes into U+FFFD, which can make two keys one; such maps
// take the general path, which reports the duplicate as jcs does.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return utf8.ValidString(s[i:])
		}
	}
	return true
}

// CompareNames orders two member names (valid UTF-8) as RFC 8785 sorts
// them: by their UTF-16 code units.
func CompareNames(a, b string) int { return compareUTF16(a, b) }

// compareUTF16 orders two valid UTF-8 strings by their UTF-16 code units,
// as RFC 8785 sorts member names. That is their byte order except where
// U+E000..U+FFFF (lead byte 0xEE or 0xEF) meets a supplementary character
// (lead byte 0xF0..0xF4): the latter's high surrogate (0xD800..0xDBFF)
// sorts first.
func compareUTF16[T string | []byte](a, b T) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	if i == n {
		return len(a) - len(b)
	}
	ca, cb := a[i], b[i]
	if ca >= 0xEE && cb >= 0xEE && (ca >= 0xF0) != (cb >= 0xF0) {
		return int(cb) - int(ca)
	}
	return int(ca) - int(cb)
}
