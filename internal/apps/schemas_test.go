package apps

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// TestSchemaValidate: a violation names the JSON pointer of the offending
// value; a schema may not make the gateway load a URL or a file; the cache
// answers the same compiled schema for the same bytes.
func TestSchemaValidate(t *testing.T) {
	var c schemaCache
	raw := json.RawMessage(`{"type":"object","required":["a"],"properties":{"a":{"type":"array","items":{"type":"integer","maximum":3}}}}`)
	sch, err := c.compile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.compile(raw); again != sch {
		t.Fatal("the cache compiled the same schema twice")
	}
	for _, tc := range []struct{ doc, pointer string }{
		{`{"a":[1,2,9]}`, "/a/2"},
		{`{"a":"x"}`, "/a"},
		{`{}`, ""},
	} {
		err := validate(sch, json.RawMessage(tc.doc), "args")
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != protocol.CodeBadRequest || pe.Details["pointer"] != tc.pointer ||
			pe.Details["reason"] != protocol.ReasonInvalidParams || pe.Details["field"] != "args" {
			t.Fatalf("%s: %v (%+v), want invalid_params at %q", tc.doc, err, pe, tc.pointer)
		}
	}
	if err := validate(sch, json.RawMessage(`{"a":[1,3]}`), "args"); err != nil {
		t.Fatalf("valid document: %v", err)
	}
	for _, bad := range []string{
		`{"$ref":"https://example.com/s.json"}`,
		`{"$ref":"file:///etc/passwd"}`,
		`{"type":"nonsense"}`,
	} {
		if err := checkSchema(json.RawMessage(bad)); err == nil {
			t.Errorf("%s compiled", bad)
		}
	}
}

// TestToolLimits: each app has its own bucket.
func TestToolLimits(t *testing.T) {
	var l toolLimits
	now := time.Unix(1000, 0)
	for i := range 2 {
		if _, ok := l.take("a", now, 1, 2); !ok {
			t.Fatalf("call %d refused", i)
		}
	}
	if wait, ok := l.take("a", now, 1, 2); ok || wait <= 0 || wait > time.Second {
		t.Fatalf("third call: %v %v, want refused with a wait up to 1s", wait, ok)
	}
	if _, ok := l.take("b", now, 1, 2); !ok {
		t.Fatal("another app's call refused")
	}
	if _, ok := l.take("a", now.Add(time.Second), 1, 2); !ok {
		t.Fatal("a call after the refill refused")
	}
}
