// Package jsonvalue decodes untrusted JSON strictly and gives decoded values
// a canonical form.
//
// Decode accepts the I-JSON subset of JSON (RFC 7493) and nothing it would
// have to guess about: duplicate object keys, invalid UTF-8, unpaired
// surrogate escapes, integer literals beyond ±2^53, numbers that overflow
// or underflow a double, and nesting deeper than MaxDepth are errors, never
// silently "fixed". Numbers stay json.Number so that the literal survives
// untouched.
//
// Canonical produces RFC 8785 (JCS) bytes, the form used for hashing and
// comparison. Every value Decode returns has a canonical form that Decode
// accepts again and that is a fixed point of Canonical.
package jsonvalue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxSafeInteger is the largest integer magnitude Decode accepts in an
// integer literal: beyond it float64 (and so JavaScript, CEL doubles, JCS)
// cannot represent every integer exactly.
const MaxSafeInteger = 1 << 53

// MaxDepth is the deepest nesting of arrays and objects Decode accepts.
const MaxDepth = 128

// maxSafeIntegerText is MaxSafeInteger as a literal, compared textually so
// that huge literals are never parsed.
const maxSafeIntegerText = "9007199254740992"

// Error reports why Decode rejected its input.
type Error struct {
	Pointer string // JSON Pointer (RFC 6901) of the offending value or object
	Offset  int64  // byte offset in the input where the problem was found
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("jsonvalue: %s (at offset %d, pointer %q)", e.Message, e.Offset, e.Pointer)
}

// Decode parses data, which must hold exactly one JSON value surrounded by
// optional whitespace. Objects become map[string]any, arrays []any, numbers
// json.Number, and strings, booleans and null their Go counterparts.
//
// Besides the rules in the package comment, a number with a fraction or
// exponent whose magnitude lies strictly between 2^53 and 1e21 (1e20,
// 12345678901234567.0) is rejected: RFC 8785 prints such a double as a
// plain integer, which Decode would refuse when reading the canonical form
// back. From 1e21 up, canonical numbers carry an exponent and are accepted.
// Errors are *Error.
func Decode(data []byte) (any, error) {
	return DecodeDepth(data, MaxDepth)
}

// EnvelopeDepth is the nesting an event adds around the documents it holds
// (event, payload, task, view, sealed object, ...). Traces are read with
// MaxDepth+EnvelopeDepth, so that every document the runtime accepted can
// be read back inside its event.
const EnvelopeDepth = 16

// DecodeDepth is Decode with another bound on nesting.
func DecodeDepth(data []byte, maxDepth int) (any, error) {
	d := &decoder{data: data, maxDepth: maxDepth}
	d.skipSpace()
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos < len(d.data) {
		return nil, d.errorf("unexpected %s after top-level value", d.describe())
	}
	return v, nil
}

// decoder is a recursive-descent parser; recursion is bounded by MaxDepth.
type decoder struct {
	data     []byte
	pos      int
	depth    int
	maxDepth int
	path     []step // location of the value being parsed, for error pointers
}

// step is one JSON Pointer token: an object key or an array index.
type step struct {
	key   string
	index int
	isKey bool
}

func (d *decoder) pointer() string {
	var b strings.Builder
	for _, s := range d.path {
		b.WriteByte('/')
		if s.isKey {
			b.WriteString(EscapePointerToken(s.key))
		} else {
			b.WriteString(strconv.Itoa(s.index))
		}
	}
	return b.String()
}

func (d *decoder) errorf(format string, args ...any) *Error {
	return d.errorAt(d.pos, format, args...)
}

func (d *decoder) errorAt(off int, format string, args ...any) *Error {
	return &Error{Pointer: d.pointer(), Offset: int64(off), Message: fmt.Sprintf(format, args...)}
}

// describe names the byte at the current position for error messages.
func (d *decoder) describe() string {
	if d.pos >= len(d.data) {
		return "end of input"
	}
	r, size := utf8.DecodeRune(d.data[d.pos:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("invalid UTF-8 byte 0x%02x", d.data[d.pos])
	}
	return fmt.Sprintf("character %q", r)
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value() (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.errorf("unexpected end of input, want a value")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.str()
	case c == '-' || ('0' <= c && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, d.errorf("unexpected %s, want a value", d.describe())
}

func (d *decoder) literal(lit string) error {
	if !bytes.HasPrefix(d.data[d.pos:], []byte(lit)) {
		return d.errorf("invalid literal, want %s", lit)
	}
	d.pos += len(lit)
	return nil
}

func (d *decoder) enter() error {
	if d.depth >= d.maxDepth {
		return d.errorf("nesting deeper than %d", d.maxDepth)
	}
	d.depth++
	return nil
}

func (d *decoder) object() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer func() { d.depth-- }()
	d.pos++ // '{'
	obj := map[string]any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return obj, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("unexpected %s, want an object key", d.describe())
		}
		keyOff := d.pos
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		key := k.(string)
		if _, dup := obj[key]; dup {
			return nil, d.errorAt(keyOff, "duplicate object key %q", key)
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("unexpected %s, want ':' after object key", d.describe())
		}
		d.pos++
		d.skipSpace()
		d.path = append(d.path, step{key: key, isKey: true})
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.path = d.path[:len(d.path)-1]
		obj[key] = v
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input, want ',' or '}'")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return obj, nil
		default:
			return nil, d.errorf("unexpected %s, want ',' or '}'", d.describe())
		}
	}
}

func (d *decoder) array() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer func() { d.depth-- }()
	d.pos++ // '['
	arr := []any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return arr, nil
	}
	for {
		d.skipSpace()
		d.path = append(d.path, step{index: len(arr)})
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.path = d.path[:len(d.path)-1]
		arr = append(arr, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input, want ',' or ']'")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return arr, nil
		default:
			return nil, d.errorf("unexpected %s, want ',' or ']'", d.describe())
		}
	}
}

// str parses a string literal starting at the opening quote.
func (d *decoder) str() (any, error) {
	start := d.pos
	d.pos++ // '"'
	// Fast path: no escapes, the literal is the value.
	i := d.pos
	for i < len(d.data) {
		c := d.data[i]
		if c == '"' {
			s := string(d.data[d.pos:i])
			d.pos = i + 1
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, d.errorAt(i, "control character %q in string", rune(c))
		}
		if c < utf8.RuneSelf {
			i++
			continue
		}
		size, err := d.validRune(i)
		if err != nil {
			return nil, err
		}
		i += size
	}
	var b strings.Builder
	b.Write(d.data[d.pos:i])
	d.pos = i
	for {
		if d.pos >= len(d.data) {
			return nil, d.errorAt(start, "unterminated string")
		}
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return b.String(), nil
		case c < 0x20:
			return nil, d.errorf("control character %q in string", rune(c))
		case c >= utf8.RuneSelf:
			size, err := d.validRune(d.pos)
			if err != nil {
				return nil, err
			}
			b.Write(d.data[d.pos : d.pos+size])
			d.pos += size
			continue
		case c != '\\':
			b.WriteByte(c)
			d.pos++
			continue
		}
		// Escape sequence.
		if d.pos+1 >= len(d.data) {
			return nil, d.errorAt(start, "unterminated string")
		}
		esc := d.data[d.pos+1]
		switch esc {
		case '"', '\\', '/':
			b.WriteByte(esc)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, err := d.unicodeEscape()
			if err != nil {
				return nil, err
			}
			b.WriteRune(r)
			continue // unicodeEscape advanced pos
		default:
			return nil, d.errorf("invalid escape %q in string", "\\"+string(rune(esc)))
		}
		d.pos += 2
	}
}

// validRune checks the multi-byte UTF-8 sequence at i and returns its
// length. Strings are the only place non-ASCII bytes may appear, so this is
// where invalid UTF-8 is caught, with a pointer to the offending value.
func (d *decoder) validRune(i int) (int, error) {
	r, size := utf8.DecodeRune(d.data[i:])
	if r == utf8.RuneError && size <= 1 {
		return 0, d.errorAt(i, "invalid UTF-8 byte 0x%02x in string", d.data[i])
	}
	return size, nil
}

// unicodeEscape decodes \uXXXX (and its low-surrogate partner) at pos.
// Unpaired surrogates are rejected rather than replaced with U+FFFD: the
// input would otherwise be changed silently.
func (d *decoder) unicodeEscape() (rune, error) {
	r1, ok := hex4(d.data, d.pos+2)
	if !ok {
		return 0, d.errorf("invalid \\u escape in string")
	}
	if !utf16.IsSurrogate(r1) {
		d.pos += 6
		return r1, nil
	}
	if r1 < 0xDC00 && d.pos+7 < len(d.data) && d.data[d.pos+6] == '\\' && d.data[d.pos+7] == 'u' {
		if r2, ok := hex4(d.data, d.pos+8); ok {
			if r := utf16.DecodeRune(r1, r2); r != utf8.RuneError {
				d.pos += 12
				return r, nil
			}
		}
	}
	return 0, d.errorf("unpaired surrogate \\u%04X in string", r1)
}

// hex4 reads the four hex digits of a \u escape at s[at:].
func hex4(s []byte, at int) (rune, bool) {
	if at+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[at : at+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// number parses an RFC 8259 number and applies the I-JSON range rules.
func (d *decoder) number() (any, error) {
	start := d.pos
	p := d.pos
	if d.data[p] == '-' {
		p++
	}
	digitsStart := p
	switch {
	case p < len(d.data) && d.data[p] == '0':
		p++
	case p < len(d.data) && '1' <= d.data[p] && d.data[p] <= '9':
		for p < len(d.data) && isDigit(d.data[p]) {
			p++
		}
	default:
		return nil, d.errorAt(p, "invalid number")
	}
	intEnd := p
	isInt := true
	if p < len(d.data) && d.data[p] == '.' {
		isInt = false
		p++
		if p >= len(d.data) || !isDigit(d.data[p]) {
			return nil, d.errorAt(p, "invalid number: want digits after '.'")
		}
		for p < len(d.data) && isDigit(d.data[p]) {
			p++
		}
	}
	if p < len(d.data) && (d.data[p] == 'e' || d.data[p] == 'E') {
		isInt = false
		p++
		if p < len(d.data) && (d.data[p] == '+' || d.data[p] == '-') {
			p++
		}
		if p >= len(d.data) || !isDigit(d.data[p]) {
			return nil, d.errorAt(p, "invalid number: want digits in exponent")
		}
		for p < len(d.data) && isDigit(d.data[p]) {
			p++
		}
	}
	lit := string(d.data[start:p])
	if isInt {
		// No leading zeros, so the digit count orders magnitudes.
		digits := d.data[digitsStart:intEnd]
		if len(digits) > len(maxSafeIntegerText) ||
			(len(digits) == len(maxSafeIntegerText) && string(digits) > maxSafeIntegerText) {
			return nil, d.errorAt(start, "integer %s is beyond ±2^53 (%d)", abbreviate(lit), MaxSafeInteger)
		}
		d.pos = p
		return json.Number(lit), nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, d.errorAt(start, "number %s overflows a 64-bit float", abbreviate(lit))
	}
	if f == 0 && !zeroMantissa(lit) {
		// Underflow: the literal would silently become 0. Huge negative
		// exponents also make arbitrary-precision consumers (big.Rat in
		// schema validation) crawl or fail.
		return nil, d.errorAt(start, "number %s underflows a 64-bit float", abbreviate(lit))
	}
	if a := math.Abs(f); a > MaxSafeInteger && a < 1e21 {
		// RFC 8785 prints such a double as a plain integer, which this
		// decoder would then refuse: keep Decode(Canonical(v)) total.
		return nil, d.errorAt(start, "number %s is beyond ±2^53 and would canonicalize to an unsafe integer", abbreviate(lit))
	}
	d.pos = p
	return json.Number(lit), nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// zeroMantissa reports whether every digit before the exponent is 0.
func zeroMantissa(lit string) bool {
	for i := 0; i < len(lit); i++ {
		switch c := lit[i]; {
		case c == 'e' || c == 'E':
			return true
		case '1' <= c && c <= '9':
			return false
		}
	}
	return true
}

// abbreviate keeps error messages short whatever the input.
func abbreviate(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// EscapePointerToken escapes one JSON Pointer reference token (RFC 6901).
func EscapePointerToken(tok string) string {
	if !strings.ContainsAny(tok, "~/") {
		return tok
	}
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}
