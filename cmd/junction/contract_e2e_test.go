package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/junctionhq/junction/protocol"
)

// TestContractDocuments checks the served AsyncAPI document: valid JSON
// with asyncapi 3.0.0, every schema compiles under JSON Schema 2020-12,
// every reference resolves, and every method of the real binary's table is
// listed with typed params and result.
func TestContractDocuments(t *testing.T) {
	m := startServer(t, nil)
	status, raw := apiCall(t, m, "", "GET", "/api/v1/asyncapi.json", nil)
	if status != 200 {
		t.Fatalf("GET /api/v1/asyncapi.json: status %d", status)
	}
	var doc struct {
		AsyncAPI   string                     `json:"asyncapi"`
		Info       struct{ Version string }   `json:"info"`
		Channels   map[string]json.RawMessage `json:"channels"`
		Operations map[string]struct {
			Action string `json:"action"`
		} `json:"operations"`
		Components struct {
			Schemas  map[string]json.RawMessage `json:"schemas"`
			Messages map[string]json.RawMessage `json:"messages"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("asyncapi.json is not JSON: %v", err)
	}
	if doc.AsyncAPI != "3.0.0" {
		t.Errorf("asyncapi: got %q, want 3.0.0", doc.AsyncAPI)
	}
	if doc.Info.Version == "" {
		t.Error("info.version is empty")
	}

	// Every schema compiles on its own under 2020-12 (the document's
	// references resolve against the document).
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	whole, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("mem://asyncapi.json", whole); err != nil {
		t.Fatal(err)
	}
	for name := range doc.Components.Schemas {
		if _, err := c.Compile("mem://asyncapi.json#/components/schemas/" + name); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	}
	for id := range doc.Components.Messages {
		if _, err := c.Compile("mem://asyncapi.json#/components/messages/" + id + "/payload/schema"); err != nil {
			t.Errorf("message %s: %v", id, err)
		}
	}
	// Every reference resolves.
	var tree any
	_ = json.Unmarshal(raw, &tree)
	for _, ref := range regexp.MustCompile(`"\$ref":"(#[^"]*)"`).FindAllStringSubmatch(string(raw), -1) {
		if !resolves(tree, ref[1]) {
			t.Errorf("dangling $ref %s", ref[1])
		}
	}

	// Every registered method has its request and result, and types.
	methods := m.Hub.Methods()
	if len(methods) < 15 {
		t.Fatalf("only %d methods registered: the check would be weak", len(methods))
	}
	for _, name := range methods {
		for _, id := range []string{protocol.RequestMessage(name), protocol.ResultMessage(name)} {
			if _, ok := doc.Components.Messages[id]; !ok {
				t.Errorf("method %s: no message %s", name, id)
			}
		}
		if op, ok := doc.Operations[name]; !ok || op.Action != "receive" {
			t.Errorf("method %s: no receive operation", name)
		}
	}
	for _, name := range untypedMethods(m) {
		t.Errorf("method %s has no params or result type in the contract", name)
	}
	// ... and those types are the wire's: package protocol's (or any JSON).
	for _, ms := range m.Hub.Contract() {
		for _, typ := range []reflect.Type{ms.Params, ms.Result} {
			if typ == nil || typ == reflect.TypeFor[json.RawMessage]() {
				continue
			}
			for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
				typ = typ.Elem()
			}
			if pkg := typ.PkgPath(); pkg != "github.com/junctionhq/junction/protocol" {
				t.Errorf("method %s: type %v is not a protocol type", ms.Name, typ)
			}
		}
	}
	for _, e := range protocol.Events() {
		if _, ok := doc.Components.Messages[protocol.EventMessage(e.Name)]; !ok {
			t.Errorf("event %s: no message", e.Name)
		}
	}
	for _, name := range []string{"MachinePublication", "UpdatePublication"} {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("components.schemas lacks %s", name)
		}
	}
}

// resolves reports whether the local reference ref ("#/a/b") names a value
// in tree.
func resolves(tree any, ref string) bool {
	cur := tree
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		obj, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = obj[tok]; !ok {
			return false
		}
	}
	return true
}

// TestWireCheckCatchesDrift feeds the wire check frames and bodies that
// break the contract, so that the check over the e2e tests is known to be
// able to fail.
func TestWireCheckCatchesDrift(t *testing.T) {
	m := startServer(t, nil)
	w := wireCheckOf(m)
	// This test's own problems are the point: take them out before the
	// cleanup reports them.
	take := func() []string {
		w.mu.Lock()
		defer w.mu.Unlock()
		p := w.problems
		w.problems = nil
		return p
	}
	cc := w.conn(true)
	for _, tt := range []struct {
		name   string
		frames []string // "> " sent by the client, "< " by the server
		want   string   // in the problem; "" for none
	}{
		{"valid ping", []string{`> {"type":"req","id":"1","method":"sys.ping"}`, `< {"type":"res","id":"1","ok":true,"result":{"pong":true,"timeMs":5}}`}, ""},
		{"wrong result type", []string{`> {"type":"req","id":"2","method":"sys.ping"}`, `< {"type":"res","id":"2","ok":true,"result":{"pong":"yes","timeMs":5}}`}, "does not match sys.ping.result"},
		{"extra member", []string{`> {"type":"req","id":"3","method":"channel.publish","params":{"topic":"t:1","data":1}}`, `< {"type":"res","id":"3","ok":true,"result":{"epoch":"e","offset":1,"extra":1}}`}, "does not match channel.publish.result"},
		{"unknown response id", []string{`< {"type":"res","id":"nope","ok":true,"result":{}}`}, "never sent"},
		{"unknown event", []string{`< {"type":"event","event":"made.up","data":{}}`}, "no message made.up.event"},
		{"event without topic", []string{`< {"type":"event","event":"channel.message","epoch":"e","offset":1,"data":1}`}, "does not match channel.message.event"},
		{"accepted what the contract rejects", []string{`> {"type":"req","id":"4","method":"channel.subscribe","params":{"topic":1}}`, `< {"type":"res","id":"4","ok":true,"result":{"epoch":"e","offset":0,"recovered":false}}`}, "accepted a channel.subscribe request"},
		{"refused what the contract rejects", []string{`> {"type":"req","id":"5","method":"channel.subscribe","params":{"topic":1}}`, `< {"type":"res","id":"5","ok":false,"error":{"code":"bad_request","message":"topic","retryable":false}}`}, ""},
		{"bad error code", []string{`< {"type":"res","id":"6","ok":false,"error":{"code":"oops","message":"x","retryable":false}}`}, "does not match response.error"},
		{"undocumented method answered", []string{`> {"type":"req","id":"7","method":"no.such"}`, `< {"type":"res","id":"7","ok":true,"result":{}}`}, "does not list"},
		{"relayed request", []string{`< {"type":"req","id":"r1","method":"files.read","params":{"path":"/"},"meta":{"caller":{"userId":"u"}}}`, `> {"type":"res","id":"r1","ok":true,"result":[1,2]}`}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range tt.frames {
				cc.frame(f[0] == '>', []byte(f[2:]))
			}
			got := take()
			switch {
			case tt.want == "" && len(got) > 0:
				t.Errorf("got problems %q, want none", got)
			case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want)):
				t.Errorf("got problems %q, want one containing %q", got, tt.want)
			}
		})
	}

	for _, tt := range []struct {
		name, method, path string
		status             int
		body               string
		want               string
	}{
		{"info", "GET", "/api/v1/info", 200, `{"name":"junction","version":"v","protocol":1,"nodeId":"n","ws":"/ws","wsIot":"/ws/iot","lockdown":false}`, ""},
		{"info missing member", "GET", "/api/v1/info", 200, `{"name":"junction"}`, "does not match"},
		{"publish error", "POST", "/api/v1/channels/t:1/publish", 403, `{"error":{"code":"forbidden","message":"no","retryable":false}}`, ""},
		{"publish error shape", "POST", "/api/v1/channels/t:1/publish", 403, `{"code":"forbidden"}`, "does not match"},
		{"history", "GET", "/api/v1/channels/t:1/history", 200, `{"epoch":"e","offset":1,"publications":[{"offset":1,"epoch":"e","data":{},"timeMs":1}]}`, ""},
		{"history null publications", "GET", "/api/v1/channels/t:1/history", 200, `{"epoch":"e","offset":1,"publications":null}`, "does not match"},
		{"undocumented success", "GET", "/api/v1/nothing", 200, `{}`, "does not describe"},
	} {
		t.Run("rest "+tt.name, func(t *testing.T) {
			w.rest(tt.method, tt.path, tt.status, []byte(tt.body))
			got := take()
			switch {
			case tt.want == "" && len(got) > 0:
				t.Errorf("got problems %q, want none", got)
			case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want)):
				t.Errorf("got problems %q, want one containing %q", got, tt.want)
			}
		})
	}
}
