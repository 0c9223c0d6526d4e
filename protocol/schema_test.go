package protocol

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"
)

type schemaColor string

func (schemaColor) JSONSchemaEnum() []any { return []any{"red", "blue"} }

type schemaInner struct {
	N int `json:"n"`
}

type schemaBase struct {
	Base string `json:"base"`
}

type schemaSample struct {
	schemaBase
	Name     string                 `json:"name"`
	Opt      string                 `json:"opt,omitempty"`
	Ptr      *schemaInner           `json:"ptr"`
	OptPtr   *schemaInner           `json:"optPtr,omitempty"`
	List     []string               `json:"list"`
	Sure     []string               `json:"sure" schema:"nonnull"`
	Map      map[string]schemaInner `json:"map,omitempty"`
	Raw      json.RawMessage        `json:"raw"`
	Obj      json.RawMessage        `json:"obj,omitempty" schema:"object"`
	Bytes    []byte                 `json:"bytes"`
	At       time.Time              `json:"at"`
	Count    uint64                 `json:"count"`
	Color    schemaColor            `json:"color"`
	State    string                 `json:"state" schema:"enum=on|off"`
	Limit    int                    `json:"limit,omitempty" schema:"min=0"`
	Self     *schemaSample          `json:"self,omitempty"`
	Skipped  string                 `json:"-"`
	internal int
}

func TestSchemaOfStruct(t *testing.T) {
	set := NewSchemaSet("#/defs/")
	if got, want := set.Of(reflect.TypeFor[*schemaSample]()), map[string]any{"$ref": "#/defs/schemaSample"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Of: got %v, want %v", got, want)
	}
	def := set.Defs()["schemaSample"].(map[string]any)
	props := def["properties"].(map[string]any)
	inner := map[string]any{"$ref": "#/defs/schemaInner"}
	for name, want := range map[string]any{
		"base":   map[string]any{"type": "string"},
		"name":   map[string]any{"type": "string"},
		"opt":    map[string]any{"type": "string"},
		"ptr":    map[string]any{"anyOf": []any{inner, map[string]any{"type": "null"}}},
		"optPtr": inner,
		"list":   map[string]any{"type": []any{"array", "null"}, "items": map[string]any{"type": "string"}},
		"sure":   map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		"map":    map[string]any{"type": "object", "additionalProperties": inner},
		"raw":    map[string]any{},
		"obj":    map[string]any{"type": "object"},
		"bytes":  map[string]any{"type": []any{"string", "null"}, "contentEncoding": "base64"},
		"at":     map[string]any{"type": "string", "format": "date-time"},
		"count":  map[string]any{"type": "integer", "minimum": 0},
		"color":  map[string]any{"type": "string", "enum": []any{"red", "blue"}},
		"state":  map[string]any{"type": "string", "enum": []any{"on", "off"}},
		"limit":  map[string]any{"type": "integer", "minimum": 0},
		"self":   map[string]any{"$ref": "#/defs/schemaSample"},
	} {
		if got := props[name]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"Skipped", "internal", "schemaBase"} {
		if _, ok := props[name]; ok {
			t.Errorf("%s: listed, want left out", name)
		}
	}
	if got := len(props); got != 17 {
		t.Errorf("got %d properties, want 17", got)
	}
	wantReq := []string{"base", "name", "ptr", "list", "sure", "raw", "bytes", "at", "count", "color", "state"}
	if got := def["required"]; !reflect.DeepEqual(got, wantReq) {
		t.Errorf("required: got %v, want %v", got, wantReq)
	}
	if def["additionalProperties"] != false {
		t.Error("additionalProperties: want false")
	}
	if _, ok := set.Defs()["schemaInner"]; !ok {
		t.Error("schemaInner is not defined")
	}
}

func TestSchemaDefineNamesAndCollisions(t *testing.T) {
	set := NewSchemaSet("#/c/")
	set.Define("Position", reflect.TypeFor[PublishResult]())
	// A second name for the same type refers to the first.
	set.Define("Pos2", reflect.TypeFor[PublishResult]())
	if got, want := set.Defs()["Pos2"], map[string]any{"$ref": "#/c/Position"}; !reflect.DeepEqual(got, want) {
		t.Errorf("alias: got %v, want %v", got, want)
	}
	// Another type with a taken Go name gets its package's name.
	type Position struct {
		X int `json:"x"`
	}
	if got, want := set.Of(reflect.TypeFor[Position]()), map[string]any{"$ref": "#/c/protocolPosition"}; !reflect.DeepEqual(got, want) {
		t.Errorf("collision: got %v, want %v", got, want)
	}
	defer func() {
		if recover() == nil {
			t.Error("defining a name twice with different types did not panic")
		}
	}()
	set.Define("Position", reflect.TypeFor[HistoryResult]())
}

func TestAsyncAPIDocument(t *testing.T) {
	doc, untyped := AsyncAPI(Contract{
		Version: "test",
		Methods: []MethodSpec{
			{Name: "sys.ping", Scope: "authenticated", Params: reflect.TypeFor[Empty](), Result: reflect.TypeFor[PingResult]()},
			{Name: "x.untyped", Scope: "read", Params: reflect.TypeFor[TopicParams]()},
		},
	})
	if !slices.Equal(untyped, []string{"x.untyped"}) {
		t.Errorf("untyped: got %v, want [x.untyped]", untyped)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		AsyncAPI   string                    `json:"asyncapi"`
		Operations map[string]map[string]any `json:"operations"`
		Components struct {
			Messages map[string]struct {
				Payload struct {
					SchemaFormat string         `json:"schemaFormat"`
					Schema       map[string]any `json:"schema"`
				} `json:"payload"`
			} `json:"messages"`
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d.AsyncAPI != "3.0.0" {
		t.Errorf("asyncapi: got %q", d.AsyncAPI)
	}
	want := []string{"sys.ping.request", "sys.ping.result", "x.untyped.request", "x.untyped.result", MessageError, MessageRelayedRequest, MessageRelayedResult}
	for _, e := range Events() {
		want = append(want, EventMessage(e.Name))
	}
	for _, id := range want {
		m, ok := d.Components.Messages[id]
		if !ok {
			t.Errorf("message %s missing", id)
			continue
		}
		if m.Payload.SchemaFormat != SchemaFormat || m.Payload.Schema["type"] != "object" {
			t.Errorf("message %s: payload %v", id, m.Payload)
		}
	}
	if got := len(d.Components.Messages); got != len(want) {
		t.Errorf("got %d messages, want %d", got, len(want))
	}
	if op := d.Operations["sys.ping"]; op["action"] != "receive" || op["x-junction-scope"] != "authenticated" {
		t.Errorf("sys.ping operation: %v", op)
	}
	if op := d.Operations["event.welcome"]; op["action"] != "send" {
		t.Errorf("welcome operation: %v", op)
	}
	if op := d.Operations["client-event.rpc.progress"]; op["action"] != "receive" {
		t.Errorf("client rpc.progress operation: %v", op)
	}
	for _, name := range []string{"PingResult", "Welcome", "Principal", "Error", "Meta", "TopicParams"} {
		if _, ok := d.Components.Schemas[name]; !ok {
			t.Errorf("schema %s missing", name)
		}
	}
}
