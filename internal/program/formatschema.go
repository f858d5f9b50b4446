package program

import (
	"encoding/json"
	"sync"

	"github.com/invopop/jsonschema"

	"github.com/nano-vm/nano-vm-mcp/internal/jsonvalue"
	"github.com/nano-vm/nano-vm-mcp/internal/schema"
)

// SchemaID is the $id of the program format's JSON Schema.
const SchemaID = "https://github.com/nano-vm/nano-vm-mcp/schemas/program.schema.json"

// FormatSchemaJSON returns the JSON Schema of the program format, generated
// from the Go types in format.go. schemas/program.schema.json is this
// document, committed for editors; a test keeps the two identical.
func FormatSchemaJSON() []byte {
	r := &jsonschema.Reflector{DoNotReference: false, Anonymous: true}
	s := r.Reflect(&Document{})
	s.ID = SchemaID
	s.Title = "nano-vm-mcp program"
	s.Description = "A governed program: a finite-state machine whose transitions are guarded by CEL expressions. See docs/program-format.md."
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic("program: cannot encode the format schema: " + err.Error())
	}
	return append(out, '\n')
}

var formatSchema = sync.OnceValue(func() *schema.Schema {
	doc, err := jsonvalue.Decode(FormatSchemaJSON())
	if err != nil {
		panic("program: format schema is not JSON: " + err.Error())
	}
	s, err := schema.Compile(doc)
	if err != nil {
		panic("program: format schema does not compile: " + err.Error())
	}
	return s
})
