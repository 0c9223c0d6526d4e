package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// Mode says where a method's handler runs.
type Mode int

const (
	// Serial handlers run one at a time per connection, in the order the
	// requests arrived, on a goroutine that exists only while the connection
	// has requests to process. Most methods are Serial.
	Serial Mode = iota
	// Inline handlers run on the read loop itself. They must not block or do
	// I/O: answering from memory only (sys.ping). When the connection has
	// Serial requests pending, an Inline request waits behind them so order is
	// kept.
	Inline
	// Async handlers run on their own goroutine so that a long wait (an RPC
	// relayed to a machine) does not hold up the connection's other requests.
	// At most Config.MaxAsyncPerConn run at once per connection.
	Async
)

// ScopeAuthenticated is the scope of methods any authenticated principal may
// call. Every method names its scope explicitly: there is no default.
const ScopeAuthenticated = "authenticated"

// Call is one request being handled.
type Call struct {
	Conn      *Conn
	Principal *auth.Principal
	ID        string
	Method    string
	Params    json.RawMessage
	Idem      string

	afterReply []func() // run once the response is queued
}

// AfterReply registers fn to run on the handler's goroutine right after the
// response to this call was queued, even when the connection has closed, so
// that a handler can order what it sends after its own response (channel
// publications buffered while subscribing).
func (c *Call) AfterReply(fn func()) { c.afterReply = append(c.afterReply, fn) }

// HandlerFunc handles a request. The result is encoded as JSON; returning a
// *protocol.Error sends that error, any other error answers "internal".
type HandlerFunc func(ctx context.Context, call *Call) (any, error)

// Method is one entry of the method table.
type Method struct {
	Name    string
	Scope   string // required scope, or ScopeAuthenticated
	Mode    Mode
	Handler HandlerFunc
	// Idempotent methods honour "idem": a repeated request with the same key
	// from the same principal answers the first result.
	Idempotent bool
	// AppScope is the scope an app principal (an API key, also acting for
	// a user) needs besides Scope; empty for none. Powerful methods name
	// one so that a generic grant (write) does not reach them.
	AppScope string
	// Start, for an Async method, is tried on the read loop before a
	// goroutine is started for the request: id, params and idem are the
	// request's, params valid only until Start returns (it may alias the
	// read buffer: Conn.requestInPlace). Returning true, it takes the
	// request over: it must answer it exactly once, observe
	// methodSeconds, and then release the request's Async slot (Conn.async)
	// and its Hub.inflight count. Returning false it must have sent
	// nothing; the request goes to Handler as usual.
	Start func(c *Conn, id string, params json.RawMessage, idem string) bool
	// Params and Result are the Go types of the method's params and
	// result, for the wire contract (the AsyncAPI document and the tests
	// that check frames against it). Handle fills them from its type
	// arguments when they are unset; a method registered without them is
	// reported as untyped by the contract.
	Params, Result reflect.Type
}

// Validator is implemented by params types that check their own values; the
// error should come from protocol.FieldError so that it names the field.
type Validator interface {
	Validate() error
}

// Register adds a method to the table. It must be called before Start and
// panics on a duplicate or incomplete definition: the table is static.
func (h *Hub) Register(m Method) {
	if m.Name == "" || m.Handler == nil || m.Scope == "" {
		panic(fmt.Sprintf("hub: method %q needs a name, a scope and a handler", m.Name))
	}
	if h.started.Load() {
		panic("hub: Register after Start")
	}
	if _, dup := h.methods[m.Name]; dup {
		panic(fmt.Sprintf("hub: method %q registered twice", m.Name))
	}
	mm := m
	h.methods[m.Name] = &mm
}

// Handle registers a method whose params decode strictly into P: unknown
// members, wrong types and failed validation answer bad_request naming the
// field. P is the method's params type in the contract unless m.Params names
// the protocol type P is defined from; R is its result type unless R is an
// interface (any) or m.Result is set.
func Handle[P, R any](h *Hub, m Method, fn func(ctx context.Context, call *Call, p *P) (R, error)) {
	pt := reflect.TypeFor[P]()
	if m.Params == nil {
		m.Params = pt
	} else if !pt.ConvertibleTo(m.Params) {
		panic(fmt.Sprintf("hub: method %q: params type %v is not a %v", m.Name, pt, m.Params))
	}
	if rt := reflect.TypeFor[R](); m.Result == nil && rt.Kind() != reflect.Interface {
		m.Result = rt
	}
	m.Handler = func(ctx context.Context, call *Call) (any, error) {
		p := new(P)
		if err := decodeParamsInto(call.Params, p); err != nil {
			return nil, err
		}
		res, err := fn(ctx, call, p)
		if err != nil {
			return nil, err
		}
		return res, nil
	}
	h.Register(m)
}

// Contract returns the registered methods with their params and result
// types, sorted by name, for protocol.AsyncAPI.
func (h *Hub) Contract() []protocol.MethodSpec {
	out := make([]protocol.MethodSpec, 0, len(h.methods))
	for _, m := range h.methods {
		out = append(out, protocol.MethodSpec{Name: m.Name, Scope: m.Scope, Params: m.Params, Result: m.Result})
	}
	slices.SortFunc(out, func(a, b protocol.MethodSpec) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Methods returns the names of the registered methods.
func (h *Hub) Methods() []string {
	names := make([]string, 0, len(h.methods))
	for n := range h.methods {
		names = append(names, n)
	}
	return names
}

// DecodeParams decodes raw into v strictly and validates it.
func DecodeParams(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return paramsError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return protocol.Errorf(protocol.CodeBadRequest, "params: trailing data")
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// fastParams is implemented by params types of hot methods that decode
// their common shape without reflection. decodeFast reports false, leaving
// the value as it found it or partly filled, for anything it does not
// handle; DecodeParams then decides.
type fastParams interface {
	decodeFast(raw json.RawMessage) bool
}

// decodeParamsInto is DecodeParams with the fast path of P, when it has one.
func decodeParamsInto[P any](raw json.RawMessage, p *P) error {
	if fp, ok := any(p).(fastParams); ok {
		if fp.decodeFast(raw) {
			if v, ok := any(p).(Validator); ok {
				return v.Validate()
			}
			return nil
		}
		var zero P
		*p = zero
	}
	return DecodeParams(raw, p)
}

func paramsError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "params"
		}
		return protocol.FieldError(field, "wrong type (got %s, want %s)", te.Value, jsonKind(te.Type.Kind().String()))
	case errors.As(err, &se):
		return protocol.Errorf(protocol.CodeBadRequest, "params: invalid JSON at byte %d", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return protocol.FieldError(field, "unknown field")
	}
	return protocol.Errorf(protocol.CodeBadRequest, "params: %s", err.Error())
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "map", "struct", "ptr":
		return "object"
	}
	return "number"
}
