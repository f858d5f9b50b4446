package executor

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
)

// MaxMCPResult caps the JSON text of a downstream tools/call result (the
// JSON-RPC result member, as received). A larger result is a failure of
// class sandbox, the class of every output cap.
const MaxMCPResult = 1 << 20

// maxDetail bounds the downstream text a Failure carries (an isError
// message): the trace records it, and a downstream server decides its size.
const maxDetail = 1 << 10

// decodeCallResult turns the JSON text of a tools/call result into the
// call's result document, or a *Failure:
//
//   - larger than MaxMCPResult: sandbox;
//   - not strict JSON (internal/jsonvalue.Decode), or not an object: schema_violation;
//   - isError true: tool_error, with the text content (bounded) as detail;
//   - resultType "input_required" (the server asks for elicitation or
//     sampling, which a runtime-executed tool cannot answer): tool_error;
//   - structuredContent present and not null: that value;
//   - otherwise the content must be exactly one text block, whose text
//     must be strict JSON: that value; anything else is schema_violation.
//
// With structuredContent present, content is not read: it is the
// backward-compatible copy the spec asks servers to add.
func decodeCallResult(raw []byte) (any, error) {
	if len(raw) > MaxMCPResult {
		return nil, Fail(ClassSandbox, "the downstream result is %d bytes, over the %d-byte cap", len(raw), MaxMCPResult)
	}
	v, err := jsonvalue.Decode(raw)
	if err != nil {
		return nil, Fail(ClassSchemaViolation, "the downstream result is not strict JSON: %v", err)
	}
	res, ok := v.(map[string]any)
	if !ok {
		return nil, Fail(ClassSchemaViolation, "the downstream result is not a JSON object")
	}
	isError, ok := res["isError"].(bool)
	if _, present := res["isError"]; present && !ok {
		return nil, Fail(ClassSchemaViolation, "the downstream result's isError is not a boolean")
	}
	if isError {
		return nil, Fail(ClassToolError, "the downstream tool answered isError: %s", bounded(texts(res["content"])))
	}
	if rt, _ := res["resultType"].(string); rt == "input_required" {
		return nil, Fail(ClassToolError, "the downstream tool asked for input (elicitation or sampling), which a runtime-executed tool cannot give")
	}
	if sc, ok := res["structuredContent"]; ok && sc != nil {
		return sc, nil
	}
	content, ok := res["content"].([]any)
	if !ok {
		return nil, Fail(ClassSchemaViolation, "the downstream result has neither structuredContent nor a content array")
	}
	if len(content) != 1 {
		return nil, Fail(ClassSchemaViolation, "the downstream result has no structuredContent and %d content blocks; one text block holding JSON is needed", len(content))
	}
	block, _ := content[0].(map[string]any)
	text, ok := block["text"].(string)
	if typ, _ := block["type"].(string); typ != "text" || !ok {
		return nil, Fail(ClassSchemaViolation, "the downstream result has no structuredContent and its content is not a text block")
	}
	doc, err := jsonvalue.Decode([]byte(text))
	if err != nil {
		return nil, Fail(ClassSchemaViolation, "the downstream result's text is not strict JSON: %v", err)
	}
	return doc, nil
}

// texts joins the text blocks of a content array, for an isError detail.
func texts(content any) string {
	blocks, _ := content.([]any)
	var parts []string
	for _, b := range blocks {
		m, _ := b.(map[string]any)
		if t, ok := m["text"].(string); ok && m["type"] == "text" {
			parts = append(parts, t)
		}
	}
	if len(parts) == 0 {
		return "(no text)"
	}
	return strings.Join(parts, " ")
}

// bounded cuts s to maxDetail bytes at a rune boundary, saying how much
// was cut.
func bounded(s string) string {
	if len(s) <= maxDetail {
		return s
	}
	cut := maxDetail
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d more bytes)", s[:cut], len(s)-cut)
}
