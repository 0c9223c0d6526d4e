package apps

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/junctionhq/junction/protocol"
)

// The JSON Schemas apps register (settings, tool params) are compiled
// with github.com/santhosh-tekuri/jsonschema (draft 2020-12 unless the
// schema's $schema says otherwise) with every URL loader refused: a schema
// may only refer to itself, never make the gateway fetch a URL or read a
// file. Compiled schemas are cached by their bytes' hash.

// schemaURL is the location a registered schema is compiled at.
const schemaURL = "urn:junction:app-schema"

// maxCachedSchemas bounds the cache; it is emptied when full.
const maxCachedSchemas = 256

type schemaCache struct {
	mu sync.Mutex                      // leaf
	m  map[[32]byte]*jsonschema.Schema // guarded by mu
}

// compile returns the compiled form of raw.
func (c *schemaCache) compile(raw json.RawMessage) (*jsonschema.Schema, error) {
	key := sha256.Sum256(raw)
	c.mu.Lock()
	sch := c.m[key]
	c.mu.Unlock()
	if sch != nil {
		return sch, nil
	}
	sch, err := compileSchema(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedSchemas {
		c.m = map[[32]byte]*jsonschema.Schema{}
	}
	c.m[key] = sch
	c.mu.Unlock()
	return sch, nil
}

func compileSchema(raw json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(jsonschema.SchemeURLLoader{}) // no file, no network
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	return c.Compile(schemaURL)
}

// checkSchema reports whether raw compiles, for a registration.
func checkSchema(raw json.RawMessage) error {
	_, err := compileSchema(raw)
	return err
}

// validate checks the JSON value raw against sch. A violation is
// bad_request with reason invalid_params, naming field and the JSON
// pointer of the offending value (details.pointer, "" for the whole).
func validate(sch *jsonschema.Schema, raw json.RawMessage, field string) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return protocol.FieldError(field, "not JSON")
	}
	err = sch.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	ptr, msg := "", ve.Error()
	if out := ve.BasicOutput(); out != nil {
		best := -1
		for _, u := range out.Errors {
			if u.Error != nil && len(u.InstanceLocation) > best {
				best, ptr, msg = len(u.InstanceLocation), u.InstanceLocation, u.Error.String()
			}
		}
	}
	return protocol.Errorf(protocol.CodeBadRequest, "%s%s: %s", field, ptr, msg).
		WithDetail("field", field).WithDetail("reason", protocol.ReasonInvalidParams).WithDetail("pointer", ptr)
}

// schemaError is the error of an app whose registered schema does not
// compile (it was registered before registrations were checked).
func schemaError(what string, err error) error {
	return protocol.Errorf(protocol.CodeUnavailable, "the app's %s schema does not compile: %v", what, err)
}
