package schema

import "testing"

// The fast checker itself is package fastpath, tested there against the
// library alone. These tests hold Validate, which puts it in front of the
// library, to the library's verdict and to its cost.

// TestValidateAgreesWithoutTheFastPath: Compile attaches a fast checker to
// common schemas, and Validate says valid exactly when the library alone
// does.
func TestValidateAgreesWithoutTheFastPath(t *testing.T) {
	tests := []struct{ schema, value string }{
		{smallSchemaSrc, smallValueSrc},
		{smallSchemaSrc, `{"name":"Ada","age":-1}`},
		{smallSchemaSrc, `{"name":"Ada","age":36,"x":1}`},
		{nestedSchemaSrc, nestedValueSrc},
		{nestedSchemaSrc, `{"order":{"id":"ORD-1","total_cents":1,"currency":"eur","days_since_delivery":1},"request":{"amount_cents":1,"reason":""}}`},
		{`{"type":"integer","minimum":0}`, `5.0`},
		{`{"type":"integer","minimum":0}`, `-1e2`},
	}
	for _, tt := range tests {
		s := mustCompile(t, tt.schema)
		if s.fast == nil {
			t.Fatalf("%s: no fast checker", tt.schema)
		}
		v := decode(t, tt.value)
		lib := *s
		lib.fast = nil
		if got, want := s.Validate(v), lib.Validate(v); (got == nil) != (want == nil) {
			t.Errorf("%s on %s: Validate = %q, library alone = %q", tt.value, tt.schema, got, want)
		}
	}
}

func TestFastPathAllocations(t *testing.T) {
	for _, tc := range []struct{ schema, value string }{
		{smallSchemaSrc, smallValueSrc},
		{nestedSchemaSrc, nestedValueSrc},
	} {
		s := mustCompile(t, tc.schema)
		v := decode(t, tc.value)
		if allocs := testing.AllocsPerRun(100, func() {
			if s.Validate(v) != nil {
				t.Fatal("invalid")
			}
		}); allocs != 0 {
			t.Errorf("Validate allocates %v times per run", allocs)
		}
	}
}

// benchValidate measures Validate on a valid value, with the fast path
// and with the library alone.
func benchValidate(b *testing.B, schemaSrc, valueSrc string) {
	s := mustCompile(b, schemaSrc)
	if s.fast == nil {
		b.Fatal("no fast checker")
	}
	v := decode(b, valueSrc)
	lib := *s
	lib.fast = nil
	for _, c := range []struct {
		name string
		s    *Schema
	}{{"fast", s}, {"library", &lib}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if vs := c.s.Validate(v); vs != nil {
					b.Fatal(vs)
				}
			}
		})
	}
}

func BenchmarkValidateNestedObject(b *testing.B) {
	benchValidate(b, nestedSchemaSrc, nestedValueSrc)
}

const (
	smallSchemaSrc = `{
		"type": "object",
		"properties": {
			"name": {"type": "string", "maxLength": 64},
			"age": {"type": "integer", "minimum": 0},
			"admin": {"type": "boolean"}
		},
		"required": ["name", "age"],
		"additionalProperties": false
	}`
	smallValueSrc = `{"name":"Ada","age":36,"admin":true}`

	nestedSchemaSrc = `{
		"type": "object",
		"properties": {
			"order": {
				"type": "object",
				"properties": {
					"id": {"type": "string", "maxLength": 64},
					"total_cents": {"type": "integer", "minimum": 0},
					"currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
					"days_since_delivery": {"type": "integer", "minimum": 0}
				},
				"required": ["id", "total_cents", "currency", "days_since_delivery"],
				"additionalProperties": false
			},
			"request": {
				"type": "object",
				"properties": {
					"amount_cents": {"type": "integer", "minimum": 0},
					"reason": {"type": "string", "maxLength": 500}
				},
				"required": ["amount_cents", "reason"],
				"additionalProperties": false
			}
		},
		"required": ["order", "request"],
		"additionalProperties": false
	}`
	nestedValueSrc = `{"order": {"id": "ORD-1", "total_cents": 12990, "currency": "EUR", "days_since_delivery": 12},
		"request": {"amount_cents": 4990, "reason": "Item arrived damaged; customer asked for a partial refund."}}`
)
