package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
)

// TestDocumentLimitMeasuresCanonicalJSON: max_document_bytes (256 here)
// measures a run input or an output as canonical JSON (RFC 8785), not as
// the bytes that arrived. A document that is larger only by escapes or
// white space fits; one whose canonical form is larger does not. The
// arguments are handed to the handler as raw bytes, as a transport reads
// them: a client library would re-encode them.
func TestDocumentLimitMeasuresCanonicalJSON(t *testing.T) {
	h := newHarness(t, nil)
	h.addProgram("testdata/small-docs.yaml")
	hd := &handlers{Config: h.cfg, inputs: compileInputs(), stateKey: []byte("k")}
	c := access.Principal{ID: access.IDLocal, Profile: access.ProfileAgent}
	call := func(tool, args string) (map[string]any, *ErrorBody) {
		t.Helper()
		req := mcp.CallToolRequest{}
		req.Params.RawArguments = json.RawMessage(args)
		out, err := hd.call(context.Background(), specByName(tool), c, req)
		res := hd.render(specByName(tool), out, err)
		text := res.Content[0].(mcp.TextContent).Text
		if res.IsError {
			var e ErrorBody
			if err := json.Unmarshal([]byte(text), &e); err != nil {
				t.Fatal(err)
			}
			return nil, &e
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(text), &m); err != nil {
			t.Fatal(err)
		}
		return m, nil
	}
	// {"note":"…"} and {"text":"…"} are 11 bytes besides the string.
	fits, over := strings.Repeat("A", 245), strings.Repeat("A", 246)
	escaped := strings.Repeat(`\u0041`, 245) // 1470 bytes, canonically 245
	spaced := "{ \"%s\" :\n\t\"" + fits + "\"" + strings.Repeat(" ", 300) + "}"
	cases := []struct {
		name, doc string
		fits      bool
	}{
		{"at the limit", `{"%s":"` + fits + `"}`, true},
		{"escaped beyond the limit as received", `{"%s":"` + escaped + `"}`, true},
		{"spaced beyond the limit as received", spaced, true},
		{"an escape canonical JSON keeps", `{"%s":"` + strings.Repeat("A", 243) + `\n"}`, true},
		{"one byte over the limit", `{"%s":"` + over + `"}`, false},
		{"one byte over, escaped", `{"%s":"` + strings.Repeat(`\u0041`, 246) + `"}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			input := strings.ReplaceAll(tc.doc, "%s", "note")
			started, e := call("start_run", `{"program":"test-small-docs","input":`+input+`}`)
			switch {
			case tc.fits && e != nil:
				t.Fatalf("start_run refused an input that fits: %s: %s", e.Code, e.Message)
			case !tc.fits && (e == nil || e.Code != "invalid_input"):
				t.Fatalf("start_run: %v %+v, want invalid_input", started, e)
			case !tc.fits:
				// An input that fits, for a run to submit the output to.
				if started, e = call("start_run", `{"program":"test-small-docs","input":{}}`); e != nil {
					t.Fatal(e.Message)
				}
			}
			output := strings.ReplaceAll(tc.doc, "%s", "text")
			runID := started["run_id"].(string)
			got, e := call("step", `{"run_id":"`+runID+`","seq":1,"output":`+output+`}`)
			switch {
			case tc.fits && e != nil:
				t.Fatalf("step refused an output that fits: %s: %s", e.Code, e.Message)
			case tc.fits && got["outcome"] != "DONE":
				t.Fatalf("step: %v", got)
			case !tc.fits && (e == nil || e.Code != "schema_violation" || !strings.Contains(e.Message, "257 bytes")):
				t.Fatalf("step: %v %+v, want schema_violation for 257 bytes", got, e)
			}
		})
	}
}
