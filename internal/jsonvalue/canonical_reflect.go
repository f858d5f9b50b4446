package jsonvalue

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// This file encodes Go values other than the decoded types, by reflection,
// with one encoder per type built once and cached, as encoding/json does.
// It follows encoding/json's rules only where they are simple; every type
// that relies on another rule (embedded fields, the ",string" and
// ",omitzero" options, TextMarshaler, a MarshalJSON method on the pointer
// only, non-string map keys, unusual tag names, ...) gets an encoder that
// sends the whole value to the general path.

// encoderFunc writes v.
type encoderFunc func(e *encState, v reflect.Value) error

var encoderCache sync.Map // reflect.Type -> encoderFunc

// typeEncoder returns t's encoder, building it on first use. A recursive
// type sees a forwarding encoder for itself while it is being built.
func typeEncoder(t reflect.Type) encoderFunc {
	if f, ok := encoderCache.Load(t); ok {
		return f.(encoderFunc)
	}
	var (
		wg sync.WaitGroup
		f  encoderFunc
	)
	wg.Add(1)
	fi, loaded := encoderCache.LoadOrStore(t, encoderFunc(func(e *encState, v reflect.Value) error {
		wg.Wait()
		return f(e, v)
	}))
	if loaded {
		return fi.(encoderFunc)
	}
	f = newTypeEncoder(t)
	wg.Done()
	encoderCache.Store(t, f)
	return f
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	numberType        = reflect.TypeFor[json.Number]()
	anyMapType        = reflect.TypeFor[map[string]any]()
	anySliceType      = reflect.TypeFor[[]any]()
	stringSliceType   = reflect.TypeFor[[]string]()
	stringMapType     = reflect.TypeFor[map[string]string]()
)

func general(*encState, reflect.Value) error { return errGeneral }

func newTypeEncoder(t reflect.Type) encoderFunc {
	switch t {
	case rawMessageType:
		return func(e *encState, v reflect.Value) error { return e.appendRaw(v.Bytes()) }
	case numberType:
		return func(e *encState, v reflect.Value) error { return e.appendNumber(json.Number(v.String())) }
	case anyMapType:
		return func(e *encState, v reflect.Value) error { return e.appendMap(v.Interface().(map[string]any)) }
	case anySliceType:
		return func(e *encState, v reflect.Value) error { return e.appendSlice(v.Interface().([]any)) }
	case stringSliceType:
		return func(e *encState, v reflect.Value) error { return e.appendStrings(v.Interface().([]string)) }
	case stringMapType:
		return func(e *encState, v reflect.Value) error { return e.appendStringMap(v.Interface().(map[string]string)) }
	}
	if t.Implements(marshalerType) {
		if t.Kind() == reflect.Interface {
			return general
		}
		return marshalerEncoder
	}
	if t.Implements(textMarshalerType) {
		return general
	}
	if t.Kind() != reflect.Pointer {
		if p := reflect.PointerTo(t); p.Implements(marshalerType) || p.Implements(textMarshalerType) {
			// encoding/json calls these only on addressable values.
			return general
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		return func(e *encState, v reflect.Value) error {
			if v.Bool() {
				e.buf = append(e.buf, "true"...)
			} else {
				e.buf = append(e.buf, "false"...)
			}
			return nil
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(e *encState, v reflect.Value) error { e.appendInt(v.Int()); return nil }
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return func(e *encState, v reflect.Value) error { e.appendUint(v.Uint()); return nil }
	case reflect.Float32:
		return func(e *encState, v reflect.Value) error { return e.appendFloat32(float32(v.Float())) }
	case reflect.Float64:
		return func(e *encState, v reflect.Value) error { return e.appendFloat(v.Float()) }
	case reflect.String:
		return func(e *encState, v reflect.Value) error {
			e.buf, _ = appendString(e.buf, v.String())
			return nil
		}
	case reflect.Interface:
		return interfaceEncoder
	case reflect.Pointer:
		return newPointerEncoder(t)
	case reflect.Struct:
		return newStructEncoder(t)
	case reflect.Map:
		return newMapEncoder(t)
	case reflect.Slice:
		return newSliceEncoder(t)
	case reflect.Array:
		return newArrayEncoder(t)
	}
	return general // complex numbers, channels, functions, unsafe pointers
}

func marshalerEncoder(e *encState, v reflect.Value) error {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	m, ok := reflect.TypeAssert[json.Marshaler](v)
	if !ok {
		return errGeneral
	}
	b, err := m.MarshalJSON()
	if err != nil {
		return errGeneral
	}
	return e.appendText(b)
}

func interfaceEncoder(e *encState, v reflect.Value) error {
	if v.IsNil() {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if err := e.enter(); err != nil {
		return err
	}
	if err := e.appendAny(v.Interface()); err != nil {
		return err
	}
	e.depth--
	return nil
}

func newPointerEncoder(t reflect.Type) encoderFunc {
	elem := typeEncoder(t.Elem())
	return func(e *encState, v reflect.Value) error {
		if v.IsNil() {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		if err := e.enter(); err != nil {
			return err
		}
		if err := elem(e, v.Elem()); err != nil {
			return err
		}
		e.depth--
		return nil
	}
}

// structField is one member a struct type writes.
type structField struct {
	name      string // the member name, as written
	prefix    string // its canonical "name": text
	index     int
	omitEmpty bool
	enc       encoderFunc
}

// newStructEncoder writes the members in canonical order, fixed once per
// type. It takes the general path for any rule of encoding/json's
// typeFields beyond: exported fields, a json tag with a plain name (or
// none), "-", and omitempty.
func newStructEncoder(t reflect.Type) encoderFunc {
	var fields []structField
	seen := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous {
			return general // embedded fields: promotion and dominance rules
		}
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = sf.Name
		} else if !plainName(name) {
			return general
		}
		f := structField{name: name, index: i}
		for opts != "" {
			var opt string
			opt, opts, _ = strings.Cut(opts, ",")
			switch opt {
			case "omitempty":
				f.omitEmpty = true
			case "string", "omitzero":
				return general
			}
		}
		if seen[name] {
			return general // duplicate names: dominance rules
		}
		seen[name] = true
		f.prefix = string(append(mustAppendString(nil, name), ':'))
		f.enc = typeEncoder(sf.Type)
		fields = append(fields, f)
	}
	slices.SortFunc(fields, func(a, b structField) int { return compareUTF16(a.name, b.name) })
	return func(e *encState, v reflect.Value) error {
		if err := e.enter(); err != nil {
			return err
		}
		e.buf = append(e.buf, '{')
		first := true
		for i := range fields {
			f := &fields[i]
			fv := v.Field(f.index)
			if f.omitEmpty && isEmptyValue(fv) {
				continue
			}
			if !first {
				e.buf = append(e.buf, ',')
			}
			first = false
			e.buf = append(e.buf, f.prefix...)
			if err := f.enc(e, fv); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, '}')
		e.depth--
		return nil
	}
}

func mustAppendString(dst []byte, s string) []byte {
	dst, _ = appendString(dst, s)
	return dst
}

// plainName reports whether a tag name is one encoding/json surely takes
// as it is: ASCII letters, digits, '_', '-', '.', '$' and '@'. It accepts
// more, and what it rejects it replaces with the field name; such names
// take the general path rather than repeat that rule here.
func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == '$' || c == '@') {
			return false
		}
	}
	return s != ""
}

// isEmptyValue is encoding/json's omitempty test.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64,
		reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

func newMapEncoder(t reflect.Type) encoderFunc {
	if t.Key().Kind() != reflect.String {
		return general // encoding/json writes integer and TextMarshaler keys
	}
	elem := typeEncoder(t.Elem())
	return func(e *encState, v reflect.Value) error {
		if v.IsNil() {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		if err := e.enter(); err != nil {
			return err
		}
		base := len(e.rkvs)
		for it := v.MapRange(); it.Next(); {
			k := it.Key().String()
			if !validName(k) {
				clear(e.rkvs[base:])
				e.rkvs = e.rkvs[:base]
				return errGeneral
			}
			e.rkvs = append(e.rkvs, rkv{k, it.Value()})
		}
		n := len(e.rkvs) - base
		slices.SortFunc(e.rkvs[base:], func(a, b rkv) int { return compareUTF16(a.k, b.k) })
		e.buf = append(e.buf, '{')
		for i := 0; i < n; i++ {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			m := e.rkvs[base+i]
			e.buf, _ = appendString(e.buf, m.k)
			e.buf = append(e.buf, ':')
			if err := elem(e, m.v); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, '}')
		clear(e.rkvs[base:])
		e.rkvs = e.rkvs[:base]
		e.depth--
		return nil
	}
}

func newSliceEncoder(t reflect.Type) encoderFunc {
	if t.Elem().Kind() == reflect.Uint8 {
		p := reflect.PointerTo(t.Elem())
		if !p.Implements(marshalerType) && !p.Implements(textMarshalerType) {
			return byteSliceEncoder
		}
	}
	arr := newArrayEncoder(t)
	return func(e *encState, v reflect.Value) error {
		if v.IsNil() {
			e.buf = append(e.buf, "null"...)
			return nil
		}
		return arr(e, v)
	}
}

// byteSliceEncoder writes a []byte as encoding/json does: a base64 string.
func byteSliceEncoder(e *encState, v reflect.Value) error {
	if v.IsNil() {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	e.buf = append(e.buf, '"')
	e.buf = base64.StdEncoding.AppendEncode(e.buf, v.Bytes())
	e.buf = append(e.buf, '"')
	return nil
}

func newArrayEncoder(t reflect.Type) encoderFunc {
	elem := typeEncoder(t.Elem())
	return func(e *encState, v reflect.Value) error {
		if err := e.enter(); err != nil {
			return err
		}
		e.buf = append(e.buf, '[')
		for i, n := 0, v.Len(); i < n; i++ {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			if err := elem(e, v.Index(i)); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, ']')
		e.depth--
		return nil
	}
}
