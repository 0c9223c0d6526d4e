package protocol

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The wire contract is generated from the Go types of this package by
// reflection, as JSON Schema 2020-12 (restricted to keywords that mean the
// same in draft-07 and in AsyncAPI's and OpenAPI 3.1's schema objects):
//
//   - a struct is an object with additionalProperties false; its members
//     are named by their json tags; a member without omitempty (or
//     omitzero) is required;
//   - a pointer, slice or map member without omitempty may be null (it is
//     when nil), unless its tag says `schema:"nonnull"` because the server
//     never leaves it nil;
//   - json.RawMessage and interfaces are any JSON value (`schema:"object"`
//     narrows a RawMessage to an object), []byte a base64 string,
//     time.Time an RFC 3339 date-time;
//   - a map is an object whose values follow the element's schema;
//   - a type with a JSONSchemaEnum method lists its values; a member's tag
//     can too (`schema:"enum=a|b"`), and set a minimum (`schema:"min=0"`);
//     a `doc:"..."` tag becomes the member's description.
//
// Named struct types become definitions referenced by name ("$ref" to the
// set's prefix + name), so the documents name the types of this package.

// SchemaEnum is implemented by types whose values are a closed set.
type SchemaEnum interface {
	JSONSchemaEnum() []any
}

// SchemaSet generates the JSON Schemas of Go types and collects the
// definitions of the named struct types they use. The zero value is not
// usable: call NewSchemaSet.
type SchemaSet struct {
	prefix string                  // set once: what "$ref" puts before a name
	defs   map[string]any          // name → schema
	names  map[reflect.Type]string // type → its definition's name
}

// NewSchemaSet returns an empty set whose references are refPrefix + name,
// for example "#/components/schemas/".
func NewSchemaSet(refPrefix string) *SchemaSet {
	return &SchemaSet{prefix: refPrefix, defs: map[string]any{}, names: map[reflect.Type]string{}}
}

// Defs returns the definitions collected so far, by name.
func (s *SchemaSet) Defs() map[string]any { return s.defs }

// Define makes t a definition named name (instead of its Go name) and
// returns a reference to it. Defining one name twice with different types
// panics: names are the contract's vocabulary.
func (s *SchemaSet) Define(name string, t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if old, ok := s.names[t]; ok {
		if old != name {
			// A second name for the same type: an alias definition.
			s.defs[name] = s.ref(old)
		}
		return s.ref(name)
	}
	if _, taken := s.defs[name]; taken {
		panic("protocol: schema name " + name + " defined twice")
	}
	s.names[t] = name
	s.defs[name] = map[string]any{} // placeholder: t may refer to itself
	s.defs[name] = s.body(t)
	return s.ref(name)
}

// Of returns the schema of a value of type t: a reference for a named
// struct type (defined on first use), an inline schema otherwise.
func (s *SchemaSet) Of(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && t.Name() != "" && !special(t) {
		if name, ok := s.names[t]; ok {
			return s.ref(name)
		}
		return s.Define(s.freeName(t), t)
	}
	return s.body(t)
}

// Inline returns the schema of t itself, never a reference to it (the
// types it refers to still are), for a caller that adapts it (a REST body
// whose path members are not required).
func (s *SchemaSet) Inline(t reflect.Type) map[string]any { return s.body(t) }

func (s *SchemaSet) ref(name string) map[string]any {
	return map[string]any{"$ref": s.prefix + name}
}

// freeName is t's Go name, prefixed by its package's name when another
// type already holds it.
func (s *SchemaSet) freeName(t reflect.Type) string {
	name := sanitize(goName(t.Name()))
	if _, taken := s.defs[name]; !taken {
		return name
	}
	pkg := t.PkgPath()
	pkg = pkg[strings.LastIndexByte(pkg, '/')+1:]
	name = sanitize(pkg) + name
	for i := 2; ; i++ {
		if _, taken := s.defs[name]; !taken {
			return name
		}
		name = strings.TrimRight(name, "0123456789") + strconv.Itoa(i)
	}
}

// goName is a type's name with the package paths of its type arguments
// left out and its brackets dropped: "ObjectList[a/b/protocol.Session]"
// is "ObjectListSession".
func goName(name string) string {
	i := strings.IndexByte(name, '[')
	if i < 0 {
		return name
	}
	out := name[:i]
	for _, arg := range strings.Split(strings.TrimSuffix(name[i+1:], "]"), ",") {
		out += arg[strings.LastIndexByte(arg, '.')+1:]
	}
	return out
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '.' || r == '-') {
			return r
		}
		return '_'
	}, name)
}

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	timeType       = reflect.TypeFor[time.Time]()
	enumType       = reflect.TypeFor[SchemaEnum]()
)

// special reports the types with a fixed schema.
func special(t reflect.Type) bool { return t == rawMessageType || t == timeType }

func (s *SchemaSet) body(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == rawMessageType:
		return map[string]any{}
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	}
	var sch map[string]any
	switch t.Kind() {
	case reflect.Bool:
		sch = map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		sch = map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		sch = map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		sch = map[string]any{"type": "number"}
	case reflect.String:
		sch = map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			sch = map[string]any{"type": "string", "contentEncoding": "base64"}
			break
		}
		sch = map[string]any{"type": "array", "items": s.Of(t.Elem())}
	case reflect.Map:
		sch = map[string]any{"type": "object", "additionalProperties": s.Of(t.Elem())}
	case reflect.Struct:
		sch = s.object(t)
	default: // interfaces: any JSON value
		sch = map[string]any{}
	}
	if t.Implements(enumType) {
		sch["enum"] = reflect.Zero(t).Interface().(SchemaEnum).JSONSchemaEnum()
	}
	return sch
}

// object is the schema of a struct: its members as encoding/json sees them.
func (s *SchemaSet) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	required := []string{}
	s.members(t, props, &required)
	o := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func (s *SchemaSet) members(t reflect.Type, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, hasTag := f.Tag.Lookup("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			et := ft
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				s.members(et, props, required) // promoted members
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" || !hasTag {
			name = f.Name
		}
		optional := false
		for _, o := range strings.Split(opts, ",") {
			optional = optional || o == "omitempty" || o == "omitzero"
		}
		fs := s.Of(ft)
		nonnull, object := false, false
		for _, o := range strings.Split(f.Tag.Get("schema"), ",") {
			switch {
			case o == "nonnull":
				nonnull = true
			case o == "object":
				object = true
			case strings.HasPrefix(o, "enum="):
				var vals []any
				for _, v := range strings.Split(o[len("enum="):], "|") {
					vals = append(vals, v)
				}
				fs = withKey(fs, "enum", vals)
			case strings.HasPrefix(o, "min="):
				n, err := strconv.Atoi(o[len("min="):])
				if err != nil {
					panic("protocol: schema tag of " + t.Name() + "." + f.Name + ": " + err.Error())
				}
				fs = withKey(fs, "minimum", n)
			}
		}
		if object {
			fs = map[string]any{"type": "object"}
		}
		if d := f.Tag.Get("doc"); d != "" {
			fs = withKey(fs, "description", d)
		}
		switch ft.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			if !optional && !nonnull && ft != rawMessageType {
				fs = nullable(fs)
			}
		}
		props[name] = fs
		if !optional {
			*required = append(*required, name)
		}
	}
}

// withKey returns sch with key set, copying it (a reference gets wrapped).
func withKey(sch map[string]any, key string, v any) map[string]any {
	if _, isRef := sch["$ref"]; isRef {
		return map[string]any{"allOf": []any{sch}, key: v}
	}
	out := make(map[string]any, len(sch)+1)
	for k, x := range sch {
		out[k] = x
	}
	out[key] = v
	return out
}

// nullable returns sch widened to also accept null.
func nullable(sch map[string]any) map[string]any {
	typ, ok := sch["type"].(string)
	if !ok {
		if len(sch) == 0 {
			return sch // any value already
		}
		return map[string]any{"anyOf": []any{sch, map[string]any{"type": "null"}}}
	}
	out := withKey(sch, "type", []any{typ, "null"})
	return out
}
