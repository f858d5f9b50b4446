package jsonvalue

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// Line is one value of a JSON Lines document.
type Line struct {
	N     int    // the line's number, from 1
	Raw   []byte // the line, without surrounding white space
	Value any    // as Decode gives it
}

// LineError is a line that Decode refuses.
type LineError struct {
	N   int // the line's number, from 1
	Err error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.N, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// DecodeLines decodes a JSON Lines document, one value a line, with
// Decode; blank lines are skipped. A line Decode refuses is a *LineError;
// a line longer than maxLine bytes is the scanner's bufio.ErrTooLong, and
// a read error is r's, both as they are.
func DecodeLines(r io.Reader, maxLine int) ([]Line, error) {
	var out []Line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine)), maxLine)
	for n := 1; sc.Scan(); n++ {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		v, err := Decode(raw)
		if err != nil {
			return nil, &LineError{N: n, Err: err}
		}
		out = append(out, Line{N: n, Raw: bytes.Clone(raw), Value: v})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
