package tools

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// reflector builds the tool schemas. MCP clients want the root to be an
// object schema with its properties inline: no root $ref, no $defs.
var reflector = &jsonschema.Reflector{ExpandedStruct: true, DoNotReference: true}

// schemaOf returns the JSON Schema of v's type, indented, as committed under
// schemas/tools/. The $schema member is dropped: 2020-12 is MCP's default
// dialect, and some validators (Ajv in draft-07 mode) refuse the URI.
func schemaOf(v any) []byte {
	s := reflector.ReflectFromType(reflect.TypeOf(v))
	s.Version = ""
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("tools: schema of %T: %v", v, err))
	}
	return append(out, '\n')
}

// ToolSchemaFiles returns every committed schema file by name
// (<tool>.input.json, <tool>.output.json), generated from the contract.
func ToolSchemaFiles() map[string][]byte {
	files := map[string][]byte{}
	for _, t := range catalog {
		files[t.name+".input.json"] = schemaOf(t.args)
		if t.result != nil {
			files[t.name+".output.json"] = schemaOf(t.result)
		}
	}
	files["error.json"] = schemaOf(ErrorBody{})
	return files
}

// compiledSchemas holds each tool's input schema compiled for validation
// of arguments.
type compiledSchemas map[string]*schema.Schema

func compileInputs() compiledSchemas {
	out := compiledSchemas{}
	for _, t := range catalog {
		doc, err := jsonvalue.Decode(schemaOf(t.args))
		if err != nil {
			panic(fmt.Sprintf("tools: %s input schema: %v", t.name, err))
		}
		s, err := schema.Compile(doc)
		if err != nil {
			panic(fmt.Sprintf("tools: %s input schema: %v", t.name, err))
		}
		out[t.name] = s
	}
	return out
}

// compact strips the indentation of a committed schema for the wire.
func compact(b []byte) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
