package jsonvalue

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// This file canonicalises JSON text (MarshalJSON output, and encoding/json's
// output on the general path) in one pass, writing scalars straight to the
// output and reordering an object's members only when they are out of
// order. It accepts exactly the inputs that are valid JSON (RFC 8259) and
// that gowebpki/jcs accepts, and writes what jcs writes; FuzzCanonical
// holds it to that.

// maxTextDepth is jcs's (and encoding/json's) nesting limit.
const maxTextDepth = 10000

// member is one member of an object being canonicalised: its decoded name
// in encState.names, and its canonical "name":value text in encState.buf.
type member struct {
	nameStart, nameEnd int
	start, end         int
}

type textError struct {
	off int
	msg string
}

func (e *textError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.off) }

// errReorderBudget stops the one-pass canonicaliser when reordering
// members has copied too much: objects nested deep and each out of order
// make it quadratic. jcs, linear in all cases, then does the work.
var errReorderBudget = errors.New("reorder budget exhausted")

type textCanon struct {
	e      *encState
	data   []byte
	pos    int
	depth  int
	budget int // bytes reordering may still copy
}

// appendText appends the canonical form of the JSON text data to e.buf.
// jcs's nesting limit applies to the whole document: the text starts at
// depth e.depth, which the fast path keeps at or above the JSON nesting of
// the place the text goes (more only sends the value to the general path).
func (e *encState) appendText(data []byte) error {
	start, mbase, nbase := len(e.buf), len(e.members), len(e.names)
	t := textCanon{e: e, data: data, depth: e.depth, budget: 8*len(data) + 4096}
	err := t.document()
	if err == errReorderBudget {
		e.buf, e.members, e.names = e.buf[:start], e.members[:mbase], e.names[:nbase]
		if !json.Valid(data) {
			return errors.New("invalid JSON")
		}
		out, err := jcs.Transform(data)
		if err != nil {
			return err
		}
		e.buf = append(e.buf, out...)
		return nil
	}
	return err
}

func (t *textCanon) document() error {
	t.skipSpace()
	if err := t.value(); err != nil {
		return err
	}
	t.skipSpace()
	if t.pos < len(t.data) {
		return t.errorf("unexpected data after the top-level value")
	}
	return nil
}

func (t *textCanon) errorf(format string, args ...any) error {
	return &textError{off: t.pos, msg: fmt.Sprintf(format, args...)}
}

func (t *textCanon) skipSpace() {
	for t.pos < len(t.data) {
		switch t.data[t.pos] {
		case ' ', '\t', '\n', '\r':
			t.pos++
		default:
			return
		}
	}
}

func (t *textCanon) value() error {
	if t.pos >= len(t.data) {
		return t.errorf("unexpected end of input")
	}
	switch c := t.data[t.pos]; {
	case c == '{':
		return t.object()
	case c == '[':
		return t.array()
	case c == '"':
		return t.stringValue()
	case c == '-' || isDigit(c):
		n := numberLen(t.data[t.pos:])
		if n == 0 {
			return t.errorf("invalid number")
		}
		var err error
		if t.e.buf, err = appendNumberText(t.e.buf, t.data[t.pos:t.pos+n]); err != nil {
			return t.errorf("%v", err)
		}
		t.pos += n
		return nil
	case c == 't':
		return t.literal("true")
	case c == 'f':
		return t.literal("false")
	case c == 'n':
		return t.literal("null")
	}
	return t.errorf("unexpected character %q", t.data[t.pos])
}

func (t *textCanon) literal(lit string) error {
	if len(t.data)-t.pos < len(lit) || string(t.data[t.pos:t.pos+len(lit)]) != lit {
		return t.errorf("invalid literal")
	}
	t.pos += len(lit)
	t.e.buf = append(t.e.buf, lit...)
	return nil
}

func (t *textCanon) enter() error {
	if t.depth++; t.depth > maxTextDepth {
		return t.errorf("nesting deeper than %d", maxTextDepth)
	}
	return nil
}

func (t *textCanon) array() error {
	if err := t.enter(); err != nil {
		return err
	}
	t.pos++ // '['
	t.e.buf = append(t.e.buf, '[')
	t.skipSpace()
	if t.pos < len(t.data) && t.data[t.pos] == ']' {
		t.pos++
		t.e.buf = append(t.e.buf, ']')
		t.depth--
		return nil
	}
	for {
		t.skipSpace()
		if err := t.value(); err != nil {
			return err
		}
		t.skipSpace()
		if t.pos >= len(t.data) {
			return t.errorf("unexpected end of input in an array")
		}
		switch t.data[t.pos] {
		case ',':
			t.pos++
			t.e.buf = append(t.e.buf, ',')
		case ']':
			t.pos++
			t.e.buf = append(t.e.buf, ']')
			t.depth--
			return nil
		default:
			return t.errorf("want ',' or ']' in an array")
		}
	}
}

func (t *textCanon) object() error {
	if err := t.enter(); err != nil {
		return err
	}
	e := t.e
	t.pos++ // '{'
	e.buf = append(e.buf, '{')
	body := len(e.buf)
	mbase, nbase := len(e.members), len(e.names)
	t.skipSpace()
	if t.pos < len(t.data) && t.data[t.pos] == '}' {
		t.pos++
		e.buf = append(e.buf, '}')
		t.depth--
		return nil
	}
	for {
		t.skipSpace()
		if t.pos >= len(t.data) || t.data[t.pos] != '"' {
			return t.errorf("want a member name")
		}
		if len(e.members) > mbase {
			e.buf = append(e.buf, ',')
		}
		m := member{nameStart: len(e.names), start: len(e.buf)}
		if err := t.name(); err != nil {
			return err
		}
		m.nameEnd = len(e.names)
		t.skipSpace()
		if t.pos >= len(t.data) || t.data[t.pos] != ':' {
			return t.errorf("want ':' after a member name")
		}
		t.pos++
		e.buf = append(e.buf, ':')
		t.skipSpace()
		if err := t.value(); err != nil {
			return err
		}
		m.end = len(e.buf)
		e.members = append(e.members, m)
		t.skipSpace()
		if t.pos >= len(t.data) {
			return t.errorf("unexpected end of input in an object")
		}
		if c := t.data[t.pos]; c == ',' {
			t.pos++
			continue
		} else if c != '}' {
			return t.errorf("want ',' or '}' in an object")
		}
		t.pos++
		break
	}
	ms := e.members[mbase:]
	name := func(m member) []byte { return e.names[m.nameStart:m.nameEnd] }
	sorted := true
	for i := 1; i < len(ms); i++ {
		c := compareUTF16(name(ms[i-1]), name(ms[i]))
		if c == 0 {
			return t.errorf("duplicate member name %q", name(ms[i]))
		}
		if c > 0 {
			sorted = false
		}
	}
	if !sorted {
		slices.SortFunc(ms, func(a, b member) int { return compareUTF16(name(a), name(b)) })
		for i := 1; i < len(ms); i++ {
			if compareUTF16(name(ms[i-1]), name(ms[i])) == 0 {
				return t.errorf("duplicate member name %q", name(ms[i]))
			}
		}
		if t.budget -= len(e.buf) - body; t.budget < 0 {
			return errReorderBudget
		}
		e.scratch = append(e.scratch[:0], e.buf[body:]...)
		e.buf = e.buf[:body]
		for i, m := range ms {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.buf = append(e.buf, e.scratch[m.start-body:m.end-body]...)
		}
	}
	e.buf = append(e.buf, '}')
	e.members = e.members[:mbase]
	e.names = e.names[:nbase]
	t.depth--
	return nil
}

// stringValue writes the string at pos canonically.
func (t *textCanon) stringValue() error {
	raw, escaped, err := t.scanString()
	if err != nil {
		return err
	}
	if !escaped {
		// Nothing to escape either: the literal is canonical.
		t.e.buf = append(t.e.buf, '"')
		t.e.buf = append(t.e.buf, raw...)
		t.e.buf = append(t.e.buf, '"')
		return nil
	}
	s, err := t.unescape(t.e.str[:0], raw)
	if err != nil {
		return err
	}
	t.e.str = s
	t.e.buf, _ = appendString(t.e.buf, s)
	return nil
}

// name writes the member name at pos canonically and appends its decoded
// form to e.names.
func (t *textCanon) name() error {
	raw, escaped, err := t.scanString()
	if err != nil {
		return err
	}
	e := t.e
	if !escaped {
		e.names = append(e.names, raw...)
		e.buf = append(e.buf, '"')
		e.buf = append(e.buf, raw...)
		e.buf = append(e.buf, '"')
		return nil
	}
	start := len(e.names)
	if e.names, err = t.unescape(e.names, raw); err != nil {
		return err
	}
	e.buf, _ = appendString(e.buf, e.names[start:])
	return nil
}

// scanString moves pos past the string literal at pos and returns its
// contents, checking that they are valid UTF-8 with no control characters;
// escaped reports a backslash among them.
func (t *textCanon) scanString() (raw []byte, escaped bool, err error) {
	start := t.pos + 1
	for i := start; i < len(t.data); {
		c := t.data[i]
		switch {
		case c == '"':
			t.pos = i + 1
			return t.data[start:i], escaped, nil
		case c == '\\':
			escaped = true
			i += 2 // the escaped byte is checked by unescape
		case c < 0x20:
			t.pos = i
			return nil, false, t.errorf("control character in a string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(t.data[i:])
			if r == utf8.RuneError && size <= 1 {
				t.pos = i
				return nil, false, t.errorf("invalid UTF-8 in a string")
			}
			i += size
		}
	}
	t.pos = len(t.data)
	return nil, false, t.errorf("unterminated string")
}

// unescape appends the decoded form of raw, a string literal's contents
// that scanString accepted, to dst. An unpaired surrogate is an error, as
// in jcs.
func (t *textCanon) unescape(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			return dst, t.errorf("invalid escape in a string")
		}
		switch esc := raw[i+1]; esc {
		case '"', '\\', '/':
			dst = append(dst, esc)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw, i+2)
			if !ok {
				return dst, t.errorf("invalid \\u escape in a string")
			}
			if utf16.IsSurrogate(r) {
				var r2 rune
				if r < 0xDC00 && i+7 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
					r2, ok = hex4(raw, i+8)
				} else {
					ok = false
				}
				if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
					return dst, t.errorf("unpaired surrogate in a string")
				}
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
			i += 6
			continue
		default:
			return dst, t.errorf("invalid escape in a string")
		}
		i += 2
	}
	return dst, nil
}
