package executor

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

func TestMCPResultDecoding(t *testing.T) {
	cases := []struct {
		name string
		raw  string
		want string // the result's canonical JSON, or "" for a failure
		fail Class
	}{
		{"structuredContent is the result", `{"content":[{"type":"text","text":"ignored"}],"structuredContent":{"b":1,"a":[true,null]}}`, `{"a":[true,null],"b":1}`, ""},
		{"structuredContent may be any JSON value", `{"content":[],"structuredContent":[1,2]}`, `[1,2]`, ""},
		{"null structuredContent falls back to the text", `{"content":[{"type":"text","text":"{\"x\":2}"}],"structuredContent":null}`, `{"x":2}`, ""},
		{"one JSON text block is the result", `{"content":[{"type":"text","text":" {\"x\": 1.50} "}]}`, `{"x":1.5}`, ""},
		{"a JSON string as text is the result", `{"content":[{"type":"text","text":"\"ok\""}]}`, `"ok"`, ""},
		{"non-JSON text", `{"content":[{"type":"text","text":"Echo: hi"}]}`, "", ClassSchemaViolation},
		{"text with a duplicate key", `{"content":[{"type":"text","text":"{\"a\":1,\"a\":2}"}]}`, "", ClassSchemaViolation},
		{"text with an integer beyond 2^53", `{"content":[{"type":"text","text":"9007199254740993"}]}`, "", ClassSchemaViolation},
		{"two text blocks", `{"content":[{"type":"text","text":"1"},{"type":"text","text":"2"}]}`, "", ClassSchemaViolation},
		{"an image block", `{"content":[{"type":"image","data":"AA==","mimeType":"image/png"}]}`, "", ClassSchemaViolation},
		{"no content at all", `{}`, "", ClassSchemaViolation},
		{"a result that is not an object", `[1]`, "", ClassSchemaViolation},
		{"a result that is not JSON", `{"content":`, "", ClassSchemaViolation},
		{"a result with a duplicate member", `{"content":[],"content":[]}`, "", ClassSchemaViolation},
		{"isError", `{"content":[{"type":"text","text":"no such account"}],"isError":true}`, "", ClassToolError},
		{"isError wins over structuredContent", `{"content":[],"structuredContent":{"a":1},"isError":true}`, "", ClassToolError},
		{"isError that is not a boolean", `{"content":[],"isError":"yes"}`, "", ClassSchemaViolation},
		{"a request for input", `{"resultType":"input_required","inputRequests":{"a":{"method":"elicitation/create"}}}`, "", ClassToolError},
		{"over the size cap", `{"content":[{"type":"text","text":"\"` + strings.Repeat("x", MaxMCPResult) + `\""}]}`, "", ClassSandbox},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := decodeCallResult([]byte(tc.raw))
			if tc.fail != "" {
				var f *Failure
				if !errors.As(err, &f) || f.Class != tc.fail {
					t.Fatalf("got %v, %v; want a failure of class %s", v, err, tc.fail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := jsonvalue.Canonical(v)
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s (%v), want %s", got, err, tc.want)
			}
		})
	}
}

func TestMCPIsErrorDetailIsBoundedAtARuneBoundary(t *testing.T) {
	msg := strings.Repeat("é", maxDetail) // two bytes each
	raw, _ := json.Marshal(map[string]any{"isError": true, "content": []any{map[string]any{"type": "text", "text": msg}}})
	_, err := decodeCallResult(raw)
	var f *Failure
	if !errors.As(err, &f) || f.Class != ClassToolError {
		t.Fatalf("%v", err)
	}
	if len(f.Detail) > maxDetail+200 || !strings.Contains(f.Detail, "more bytes") || strings.ContainsRune(f.Detail, '\uFFFD') {
		t.Fatalf("detail of %d bytes: %q…", len(f.Detail), f.Detail[:80])
	}
}

// FuzzMCPResult feeds arbitrary downstream tools/call results through the
// result decoding: it never panics, every failure is a *Failure, and every
// accepted result is strict JSON whose canonical form reads back equal and
// is a fixed point.
func FuzzMCPResult(f *testing.F) {
	for _, seed := range []string{
		`{"content":[{"type":"text","text":"{\"a\":1}"}]}`,
		`{"content":[],"structuredContent":{"amount":12.5,"currency":"EUR"}}`,
		`{"content":[{"type":"text","text":"boom"}],"isError":true}`,
		`{"content":[{"type":"text","text":"Echo: hi"}]}`,
		`{"content":[{"type":"text","text":"[1e400]"}]}`,
		`{"structuredContent":null,"content":[{"type":"text","text":"null"}]}`,
		`{"resultType":"input_required"}`,
		`{"content":[{"type":"text","text":"\"\\ud800\""}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := decodeCallResult(raw)
		if err != nil {
			var fl *Failure
			if !errors.As(err, &fl) {
				t.Fatalf("error %v is not a *Failure", err)
			}
			return
		}
		canon, err := jsonvalue.Canonical(v)
		if err != nil {
			t.Fatalf("accepted result has no canonical form: %v", err)
		}
		back, err := jsonvalue.Decode(canon)
		if err != nil {
			t.Fatalf("canonical form %s does not decode strictly: %v", canon, err)
		}
		// Not jsonvalue.Equal(v, back): Equal compares number literals,
		// and the canonical form rewrites them (0.0 is 0). The document
		// is the same when its canonical form is a fixed point.
		again, err := jsonvalue.Canonical(back)
		if err != nil || !bytes.Equal(again, canon) {
			t.Fatalf("canonical form is not a fixed point: %s then %s", canon, again)
		}
	})
}

func TestMCPStdioLineLimitEndsTheStreamAtTheFirstOverlongLine(t *testing.T) {
	cases := []struct {
		name     string
		in       string
		max      int
		wantOut  string
		wantOver bool
	}{
		{"short lines pass", "ab\ncd\n", 3, "ab\ncd\n", false},
		{"a line of exactly max passes", "abc\n", 3, "abc\n", false},
		{"an overlong line ends the stream", "ab\nabcd\nef\n", 3, "ab\n", true},
		{"an unterminated overlong tail ends the stream", "ab\nabcdef", 3, "ab\n", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var over, eof int
			l := &lineLimit{r: &chunks{s: tc.in}, max: tc.max, over: func() { over++ }, eof: func() { eof++ }}
			var out strings.Builder
			buf := make([]byte, 4)
			for {
				n, err := l.Read(buf)
				out.Write(buf[:n])
				if err != nil {
					break
				}
			}
			// The lines that reach the reader whole; the start of an
			// overlong one may pass, but never its end.
			got := out.String()
			if whole := got[:strings.LastIndexByte(got, '\n')+1]; whole != tc.wantOut {
				t.Fatalf("passed %q, want the whole lines %q", got, tc.wantOut)
			}
			if (over == 1) != tc.wantOver || eof != 1 {
				t.Fatalf("over called %d times, eof %d times", over, eof)
			}
		})
	}
}

// chunks reads s a few bytes at a time, as a pipe would.
type chunks struct{ s string }

func (c *chunks) Read(b []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	n := copy(b, c.s)
	c.s = c.s[n:]
	return n, nil
}
