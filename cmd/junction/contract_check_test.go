package main

// The wire contract check: every frame the e2e tests' WebSocket clients send
// or receive and every /api/v1 response body they read is validated against
// the documents the server serves (the AsyncAPI document for frames, the
// OpenAPI document for REST bodies) with an independent JSON Schema 2020-12
// validator. A frame or body that does not match its schema, or that cannot
// be mapped to one, fails the test that saw it.
//
// startServer registers a wireCheck per server; the SDK clients of the
// helpers report frames through client.Options.OnFrame (checkedOptions), the
// raw connections through their send and read paths, and REST bodies
// through a checking http.DefaultTransport.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

// contractDocs are the compiled schemas of one pair of documents.
type contractDocs struct {
	messages map[string]*jsonschema.Schema // AsyncAPI message id → frame schema
	rest     []restOp
	errBody  *jsonschema.Schema
}

// restOp is one documented REST operation.
type restOp struct {
	method  string
	path    *regexp.Regexp
	pattern string
	byCode  map[string]*jsonschema.Schema // status ("200", "default") → body schema
}

var (
	docsMu    sync.Mutex
	docsCache = map[[32]byte]*contractDocs{} // by the documents' hash: tests share compiled schemas
)

// compileContract compiles the AsyncAPI and OpenAPI documents (JSON).
func compileContract(asyncRaw, openRaw []byte) (*contractDocs, error) {
	key := sha256.Sum256(append(append([]byte(nil), asyncRaw...), openRaw...))
	docsMu.Lock()
	defer docsMu.Unlock()
	if d := docsCache[key]; d != nil {
		return d, nil
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	asyncDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(asyncRaw))
	if err != nil {
		return nil, fmt.Errorf("asyncapi: %w", err)
	}
	openDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(openRaw))
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	if err := c.AddResource("mem://asyncapi.json", asyncDoc); err != nil {
		return nil, err
	}
	if err := c.AddResource("mem://openapi.json", openDoc); err != nil {
		return nil, err
	}
	d := &contractDocs{messages: map[string]*jsonschema.Schema{}}

	var async struct {
		Components struct {
			Messages map[string]struct {
				Payload struct {
					SchemaFormat string `json:"schemaFormat"`
				} `json:"payload"`
			} `json:"messages"`
		} `json:"components"`
	}
	if err := json.Unmarshal(asyncRaw, &async); err != nil {
		return nil, err
	}
	for id, m := range async.Components.Messages {
		if m.Payload.SchemaFormat != protocol.SchemaFormat {
			return nil, fmt.Errorf("asyncapi message %s: schemaFormat %q, want %q", id, m.Payload.SchemaFormat, protocol.SchemaFormat)
		}
		sch, err := c.Compile("mem://asyncapi.json#/components/messages/" + id + "/payload/schema")
		if err != nil {
			return nil, fmt.Errorf("asyncapi message %s: %w", id, err)
		}
		d.messages[id] = sch
	}

	var open struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Content map[string]struct {
					Schema struct {
						Ref string `json:"$ref"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openRaw, &open); err != nil {
		return nil, err
	}
	compileRef := func(ref string) (*jsonschema.Schema, error) {
		if !strings.HasPrefix(ref, "#/components/schemas/") {
			return nil, fmt.Errorf("response schema %q is not a component reference", ref)
		}
		return c.Compile("mem://openapi.json" + ref)
	}
	if d.errBody, err = compileRef("#/components/schemas/Error"); err != nil {
		return nil, err
	}
	for path, ops := range open.Paths {
		re := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[a-zA-Z]+\\\}`).ReplaceAllString(regexp.QuoteMeta(path), `[^/]+`) + "$")
		for method, op := range ops {
			ro := restOp{method: strings.ToUpper(method), path: re, pattern: path, byCode: map[string]*jsonschema.Schema{}}
			for code, resp := range op.Responses {
				ct, ok := resp.Content["application/json"]
				if !ok {
					return nil, fmt.Errorf("%s %s %s: no application/json content", method, path, code)
				}
				sch, err := compileRef(ct.Schema.Ref)
				if err != nil {
					return nil, fmt.Errorf("%s %s %s: %w", method, path, code, err)
				}
				ro.byCode[code] = sch
			}
			d.rest = append(d.rest, ro)
		}
	}
	// Literal paths before templates: /devices/pairing is not /devices/{id}.
	slices.SortFunc(d.rest, func(a, b restOp) int {
		return strings.Count(a.pattern, "{") - strings.Count(b.pattern, "{")
	})
	docsCache[key] = d
	return d, nil
}

// wireCheck collects the contract problems seen on one server's wire.
type wireCheck struct {
	// docs are the documents as served; refreshed by refreshWire after a
	// configuration reload changed the proxy's routes.
	docs atomic.Pointer[contractDocs]

	mu       sync.Mutex
	problems []string       // guarded by mu
	checked  map[string]int // guarded by mu: frames and bodies validated, by schema
}

var wireChecks sync.Map // host:port → *wireCheck

// checkWire starts checking the wire of m for test t: at the end of the
// test (after the server closed) every problem seen fails it.
func checkWire(t *testing.T, m *Main) *wireCheck {
	t.Helper()
	// The documents as served (before the check is registered, so that
	// these two requests are not checked against themselves).
	asyncRaw, openRaw := fetchDoc(t, m, "/api/v1/asyncapi.json"), fetchDoc(t, m, "/api/v1/openapi.json")
	docs, err := compileContract(asyncRaw, openRaw)
	if err != nil {
		t.Fatalf("compile the contract: %v", err)
	}
	w := &wireCheck{checked: map[string]int{}}
	w.docs.Store(docs)
	host := strings.TrimPrefix(m.URL(), "http://")
	wireChecks.Store(host, w)
	t.Cleanup(func() {
		wireChecks.Delete(host)
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, c := range w.checked {
			n += c
		}
		t.Logf("wire contract: %d frames and bodies matched %d schemas", n, len(w.checked))
		for i, p := range w.problems {
			if i == 20 {
				t.Errorf("wire contract: and %d more", len(w.problems)-i)
				break
			}
			t.Errorf("wire contract: %s", p)
		}
	})
	return w
}

// refreshWire compiles m's documents again, as served now, for the rest
// of the test (after a reload changed the proxy's routes).
func refreshWire(t *testing.T, m *Main) {
	t.Helper()
	w := wireCheckOf(m)
	if w == nil {
		return
	}
	docs, err := compileContract(fetchDoc(t, m, "/api/v1/asyncapi.json"), fetchDoc(t, m, "/api/v1/openapi.json"))
	if err != nil {
		t.Fatalf("compile the contract: %v", err)
	}
	w.docs.Store(docs)
}

func fetchDoc(t *testing.T, m *Main, path string) []byte {
	t.Helper()
	resp, err := http.Get(m.URL() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return raw
}

// untypedMethods returns the methods of m's table without a params or a
// result type.
func untypedMethods(m *Main) []string {
	var out []string
	for _, ms := range m.Hub.Contract() {
		if ms.Params == nil || ms.Result == nil {
			out = append(out, ms.Name)
		}
	}
	return out
}

// wireCheckOf returns the check of m's server, nil when it has none.
func wireCheckOf(m *Main) *wireCheck {
	if v, ok := wireChecks.Load(strings.TrimPrefix(m.URL(), "http://")); ok {
		return v.(*wireCheck)
	}
	return nil
}

func (w *wireCheck) problem(format string, args ...any) {
	w.mu.Lock()
	w.problems = append(w.problems, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

// validate checks v against the schema named id; it returns the validation
// error, nil when v matches.
func (w *wireCheck) validate(id string, sch *jsonschema.Schema, v any) error {
	err := sch.Validate(v)
	if err == nil {
		w.mu.Lock()
		w.checked[id]++
		w.mu.Unlock()
	}
	return err
}

// connCheck follows one WebSocket connection (or one reconnecting SDK
// client): it remembers the method of each request so that it can pick the
// schema of the response.
type connCheck struct {
	w *wireCheck
	// strict: the client's own frames are validated too (the SDK); raw test
	// connections send malformed frames on purpose, so only the server's
	// answers to them are.
	strict bool

	mu       sync.Mutex
	methods  map[string]string // guarded by mu: request id → method, of the client's requests
	proxied  map[string]bool   // guarded by mu: ids of the client's requests of methods the proxy serves
	rejected map[string]string // guarded by mu: request id → why the contract rejects its params
	relayed  map[string]bool   // guarded by mu: ids of the requests the server sent
}

func (w *wireCheck) conn(strict bool) *connCheck {
	if w == nil {
		return nil
	}
	return &connCheck{w: w, strict: strict, methods: map[string]string{}, proxied: map[string]bool{}, rejected: map[string]string{}, relayed: map[string]bool{}}
}

// message checks every frame of a WebSocket text message.
func (cc *connCheck) message(sent bool, msg []byte) {
	if cc == nil {
		return
	}
	protocol.Split(msg, func(b []byte) { cc.frame(sent, b) })
}

// frame checks one frame, sent by the client (sent) or by the server.
func (cc *connCheck) frame(sent bool, b []byte) {
	if cc == nil {
		return
	}
	from := "server"
	if sent {
		from = "client"
	}
	var head struct {
		Type   string          `json:"type"`
		ID     string          `json:"id"`
		Method string          `json:"method"`
		Event  string          `json:"event"`
		OK     bool            `json:"ok"`
		Error  *protocol.Error `json:"error"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		if sent && !cc.strict {
			return // a malformed frame sent on purpose
		}
		cc.w.problem("%s frame is not JSON: %v: %s", from, err, clip(b))
		return
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		cc.w.problem("%s frame: %v: %s", from, err, clip(b))
		return
	}
	docs := cc.w.docs.Load()
	check := func(id string) error {
		sch := docs.messages[id]
		if sch == nil {
			return fmt.Errorf("no message %s in the AsyncAPI document", id)
		}
		return cc.w.validate(id, sch, inst)
	}
	report := func(id string, err error) {
		if err != nil && (!sent || cc.strict) {
			cc.w.problem("%s frame does not match %s: %v\n\tframe: %s", from, id, err, clip(b))
		}
	}
	switch {
	case head.Type == protocol.TypeRequest && sent:
		cc.mu.Lock()
		cc.methods[head.ID] = head.Method
		cc.mu.Unlock()
		id := protocol.RequestMessage(head.Method)
		if docs.messages[id] == nil {
			// A method the proxy forwards (a route of the document's
			// proxied request) may succeed; any other undocumented
			// method's response must be an error (below).
			if sch := docs.messages[protocol.MessageProxiedRequest]; sch != nil && sch.Validate(inst) == nil {
				cc.mu.Lock()
				cc.proxied[head.ID] = true
				cc.mu.Unlock()
			}
			return
		}
		if err := check(id); err != nil {
			// Sent on purpose to test the server's checks: then the
			// server must refuse it too (below).
			cc.mu.Lock()
			cc.rejected[head.ID] = err.Error()
			cc.mu.Unlock()
		}
	case head.Type == protocol.TypeRequest:
		cc.mu.Lock()
		cc.relayed[head.ID] = true
		cc.mu.Unlock()
		report(protocol.MessageRelayedRequest, check(protocol.MessageRelayedRequest))
	case head.Type == protocol.TypeResponse && !head.OK:
		report(protocol.MessageError, check(protocol.MessageError))
	case head.Type == protocol.TypeResponse && sent:
		cc.mu.Lock()
		ok := cc.relayed[head.ID]
		cc.mu.Unlock()
		if !ok && cc.strict {
			cc.w.problem("client response to a request the server never sent: %s", clip(b))
			return
		}
		report(protocol.MessageRelayedResult, check(protocol.MessageRelayedResult))
	case head.Type == protocol.TypeResponse:
		cc.mu.Lock()
		method, known := cc.methods[head.ID]
		why, rejected := cc.rejected[head.ID]
		proxied := cc.proxied[head.ID]
		cc.mu.Unlock()
		switch {
		case !known:
			cc.w.problem("server response to a request the client never sent (id %q): %s", head.ID, clip(b))
		case proxied:
			report(protocol.MessageProxiedResult, check(protocol.MessageProxiedResult))
		case docs.messages[protocol.RequestMessage(method)] == nil:
			cc.w.problem("successful response to %s, a method the AsyncAPI document does not list: %s", method, clip(b))
		case rejected:
			cc.w.problem("the server accepted a %s request whose params the contract rejects (%s): %s", method, why, clip(b))
		default:
			report(protocol.ResultMessage(method), check(protocol.ResultMessage(method)))
		}
	case head.Type == protocol.TypeEvent:
		report(protocol.EventMessage(head.Event), check(protocol.EventMessage(head.Event)))
	default:
		if !sent || cc.strict {
			cc.w.problem("%s frame of unknown type %q: %s", from, head.Type, clip(b))
		}
	}
}

// rest checks the body of a response to method path.
func (w *wireCheck) rest(method, path string, status int, body []byte) {
	var op *restOp
	docs := w.docs.Load()
	for i := range docs.rest {
		if o := &docs.rest[i]; o.method == method && o.path.MatchString(path) {
			op = o
			break
		}
	}
	var v any
	if len(body) > 0 {
		var err error
		if v, err = jsonschema.UnmarshalJSON(bytes.NewReader(body)); err != nil {
			w.problem("%s %s: %d body is not JSON: %v: %s", method, path, status, err, clip(body))
			return
		}
	}
	sch, id := docs.errBody, "Error"
	switch {
	case op != nil && op.byCode[strconv.Itoa(status)] != nil:
		sch, id = op.byCode[strconv.Itoa(status)], method+" "+op.pattern+" "+strconv.Itoa(status)
	case op != nil && status >= 400 && op.byCode["default"] != nil:
		sch = op.byCode["default"]
	case status >= 400: // an undocumented route answers not_found or method not allowed
	default:
		w.problem("%s %s: a %d response the OpenAPI document does not describe: %s", method, path, status, clip(body))
		return
	}
	if len(body) == 0 {
		w.problem("%s %s: %d without a body, want %s", method, path, status, id)
		return
	}
	if err := w.validate(id, sch, v); err != nil {
		w.problem("%s %s: %d body does not match %s: %v\n\tbody: %s", method, path, status, id, err, clip(body))
	}
}

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "..."
	}
	return string(b)
}

// checkedOptions makes an SDK client's frames go through m's wire check.
func checkedOptions(m *Main, o client.Options) client.Options {
	if cc := wireCheckOf(m).conn(true); cc != nil {
		o.OnFrame = cc.frame
	}
	return o
}

// restCheckTransport validates the /api/v1 response bodies of the servers
// with a wire check; the tests' HTTP requests go through it as
// http.DefaultTransport.
type restCheckTransport struct{ base http.RoundTripper }

func (rt restCheckTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/api/v1/") {
		return resp, err
	}
	v, ok := wireChecks.Load(req.URL.Host)
	if !ok {
		return resp, nil
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr == nil {
		v.(*wireCheck).rest(req.Method, req.URL.Path, resp.StatusCode, body)
	}
	return resp, nil
}

func init() {
	http.DefaultTransport = restCheckTransport{base: http.DefaultTransport}
}
