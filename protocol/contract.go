package protocol

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// SchemaFormat is the schemaFormat of the message payloads in the AsyncAPI
// document: JSON Schema 2020-12.
const SchemaFormat = "application/schema+json;version=2020-12"

// MethodSpec describes one request method for the contract: its name, the
// scope it requires and the Go types of its params and result (nil when
// unknown; the document then accepts any value and AsyncAPI reports the
// method as untyped).
type MethodSpec struct {
	Name   string
	Scope  string
	Params reflect.Type
	Result reflect.Type
}

// EventSpec describes one event.
type EventSpec struct {
	Name    string
	Summary string
	// Data is the Go type of the event's data; nil when the event carries
	// none.
	Data reflect.Type
	// Topic: the frame names a topic; Position: and carries epoch and offset.
	Topic, Position bool
	// FromServer and FromClient say who sends the event.
	FromServer, FromClient bool
	// Named: the frame may carry a publication's event name ("name").
	Named bool
}

// Events returns the events of protocol v1.
func Events() []EventSpec {
	return []EventSpec{
		{Name: EventWelcome, Summary: "The first frame of every connection", Data: reflect.TypeFor[Welcome](), FromServer: true},
		{Name: EventShutdown, Summary: "The server is draining: reconnect after reconnectAfterMs", Data: reflect.TypeFor[Shutdown](), FromServer: true},
		{Name: EventTokenExpiring, Summary: "The credential expires soon: send auth.refresh", Data: reflect.TypeFor[TokenExpiring](), FromServer: true},
		{Name: EventError, Summary: "A frame that could not be answered with a response", Data: reflect.TypeFor[Error](), FromServer: true},
		{Name: EventChannelMessage, Summary: "One publication of a subscribed channel; data is what was published", Data: rawMessageType, Topic: true, Position: true, FromServer: true, Named: true},
		{Name: EventChannelJoin, Summary: "A client subscribed to a channel with presence", Data: reflect.TypeFor[ClientInfo](), Topic: true, FromServer: true},
		{Name: EventChannelLeave, Summary: "A client left a channel with presence", Data: reflect.TypeFor[ClientInfo](), Topic: true, FromServer: true},
		{Name: EventChannelUnsubscribed, Summary: "The server removed a subscription", Data: reflect.TypeFor[Unsubscribed](), Topic: true, FromServer: true},
		{Name: EventRPCProgress, Summary: "Progress of a relayed call: from the target, and to the caller", Data: reflect.TypeFor[RPCProgress](), FromServer: true, FromClient: true},
		{Name: EventRPCCancel, Summary: "Stop a relayed call (sent to the target)", Data: reflect.TypeFor[RPCCancel](), FromServer: true},
		{Name: EventAppSession, Summary: "One of the device's app sessions changed state (apps.startSession)", Data: reflect.TypeFor[AppSession](), FromServer: true},
		{Name: EventAppStopped, Summary: "The app's session stopped; the socket closes next with 1000 (do not reconnect)", Data: reflect.TypeFor[AppStopped](), FromServer: true},
		{Name: EventStream, Summary: "One discrete event of a device stream the app session subscribes to (streams.set)", Data: reflect.TypeFor[StreamEvent](), FromServer: true},
		{Name: EventStreamGap, Summary: "Events or media frames of a stream were not delivered to the app (count, reason)", Data: reflect.TypeFor[StreamGap](), FromServer: true},
		{Name: EventStreamDemand, Summary: "The device's streams that have subscribers, sent to the device when the set changes", Data: reflect.TypeFor[StreamDemand](), FromServer: true},
		{Name: EventStreamRevoked, Summary: "A subscription was removed: the scope it needs is no longer granted", Data: reflect.TypeFor[StreamRevoked](), FromServer: true},
		{Name: EventOutputShow, Summary: "Show a request's content on one of the device's surfaces, replacing what it shows (output arbiter)", Data: reflect.TypeFor[OutputShow](), FromServer: true},
		{Name: EventOutputClear, Summary: "Show nothing on one of the device's surfaces (output arbiter)", Data: reflect.TypeFor[OutputClear](), FromServer: true},
		{Name: EventSettingsChanged, Summary: "The user's settings of the app changed (apps.setSettings): the new values and version", Data: reflect.TypeFor[AppSettingsChanged](), FromServer: true},
		{Name: EventOutputStatus, Summary: "What happened to one of the app's output requests: queued, its terminal outcome, hidden, restored", Data: reflect.TypeFor[OutputStatus](), FromServer: true},
	}
}

// Contract is what the AsyncAPI document describes.
type Contract struct {
	// Version is the server's version (info.version).
	Version string
	// Methods are the registered methods.
	Methods []MethodSpec
	// Events are the events; nil means Events().
	Events []EventSpec
	// Schemas are further named types to list, such as the data published
	// on the server's own channels (MachinePublication).
	Schemas map[string]reflect.Type
	// Proxied are the methods the backend proxy forwards to backends
	// (docs/proxy.md), by name or prefix. Their params and results are the
	// backends' own: the document describes them as any object and any
	// JSON value, under MessageProxiedRequest and MessageProxiedResult.
	Proxied []ProxiedSpec
}

// ProxiedSpec is one method route of the backend proxy.
type ProxiedSpec struct {
	// Method is a method name ("billing.refund") or a prefix ending in
	// ".*" ("chat.*": every method starting with "chat.").
	Method string
	Scope  string
}

// ProxiedPattern returns the JSON Schema (ECMA-262) pattern of the method
// names routes cover, "" for none.
func ProxiedPattern(routes []ProxiedSpec) string {
	if len(routes) == 0 {
		return ""
	}
	alts := make([]string, 0, len(routes))
	for _, r := range routes {
		if prefix, ok := strings.CutSuffix(r.Method, "*"); ok {
			alts = append(alts, regexp.QuoteMeta(prefix)+".+")
		} else {
			alts = append(alts, regexp.QuoteMeta(r.Method))
		}
	}
	slices.Sort(alts)
	return "^(?:" + strings.Join(alts, "|") + ")$"
}

// Message ids of the frames that are not tied to one method.
const (
	// MessageError is the failed response of any request.
	MessageError = "response.error"
	// MessageRelayedRequest and MessageRelayedResult are a request the
	// gateway relays to a device serving RPC methods (rpc.call) and its
	// successful response.
	MessageRelayedRequest = "relayed.request"
	MessageRelayedResult  = "relayed.result"
	// MessageProxiedRequest and MessageProxiedResult are a request of a
	// method the backend proxy forwards (Contract.Proxied) and its
	// successful response.
	MessageProxiedRequest = "proxied.request"
	MessageProxiedResult  = "proxied.result"
)

// RequestMessage, ResultMessage and EventMessage name the AsyncAPI messages
// of a method's request, its successful response and an event.
func RequestMessage(method string) string { return method + ".request" }

// ResultMessage names the message of a method's successful response.
func ResultMessage(method string) string { return method + ".result" }

// EventMessage names the message of an event.
func EventMessage(event string) string { return event + ".event" }

// AsyncAPI returns the AsyncAPI 3.0 document of the WebSocket protocol
// described by c, and the names of the methods whose params or result type
// is unknown (sorted; the document accepts any value for those).
func AsyncAPI(c Contract) (doc map[string]any, untyped []string) {
	events := c.Events
	if events == nil {
		events = Events()
	}
	set := NewSchemaSet("#/components/schemas/")
	set.Define("Error", reflect.TypeFor[Error]())
	set.Define("Meta", reflect.TypeFor[Meta]())
	names := make([]string, 0, len(c.Schemas))
	for n := range c.Schemas {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		set.Define(n, c.Schemas[n])
	}

	messages := map[string]any{}
	chanMsgs := map[string]any{}
	operations := map[string]any{}
	addMsg := func(id, name, summary string, frame map[string]any) map[string]any {
		messages[id] = map[string]any{
			"name": name, "summary": summary, "contentType": "application/json",
			"payload": map[string]any{"schemaFormat": SchemaFormat, "schema": frame},
		}
		chanMsgs[id] = map[string]any{"$ref": "#/components/messages/" + id}
		return map[string]any{"$ref": "#/channels/ws/messages/" + id}
	}
	wsChan := map[string]any{"$ref": "#/channels/ws"}
	errMsg := addMsg(MessageError, "error response", "The failed response of any request", errorFrame(set))

	methods := slices.Clone(c.Methods)
	slices.SortFunc(methods, func(a, b MethodSpec) int { return strings.Compare(a.Name, b.Name) })
	for _, m := range methods {
		if m.Params == nil || m.Result == nil {
			untyped = append(untyped, m.Name)
		}
		req := addMsg(RequestMessage(m.Name), m.Name, "Request of "+m.Name, requestFrame(set, map[string]any{"const": m.Name}, m.Params))
		res := addMsg(ResultMessage(m.Name), m.Name, "Successful response to "+m.Name, resultFrame(set, m.Result))
		op := map[string]any{
			"action": "receive", "channel": wsChan, "title": m.Name,
			"messages": []any{req},
			"reply":    map[string]any{"channel": wsChan, "messages": []any{res, errMsg}},
		}
		if m.Scope != "" {
			op["x-junction-scope"] = m.Scope
		}
		operations[m.Name] = op
	}
	// The gateway relays rpc.call to the target as a request of the
	// target's own method, with the caller in meta.
	relayed := addMsg(MessageRelayedRequest, "relayed request", "A call relayed to a device serving the method (rpc.call)",
		requestFrame(set, map[string]any{"type": "string", "minLength": 1, "maxLength": MaxMethodLength}, nil))
	relayedRes := addMsg(MessageRelayedResult, "relayed result", "The serving device's successful response", resultFrame(set, nil))
	operations["rpc.serve"] = map[string]any{
		"action": "send", "channel": wsChan, "title": "relayed RPC request",
		"summary":  "The gateway sends a device the calls of the methods it registered; it answers with a response",
		"messages": []any{relayed},
		"reply":    map[string]any{"channel": wsChan, "messages": []any{relayedRes, errMsg}},
	}
	if pat := ProxiedPattern(c.Proxied); pat != "" {
		// Methods served by backends through the proxy: the method name
		// matches one of the configured routes; params are any object and
		// the result any value, as the backend answers.
		preq := addMsg(MessageProxiedRequest, "proxied request", "A request of a method the backend proxy forwards to a backend (docs/proxy.md)",
			requestFrame(set, map[string]any{"type": "string", "pattern": pat, "maxLength": MaxMethodLength}, nil))
		pres := addMsg(MessageProxiedResult, "proxied result", "The backend's successful answer", resultFrame(set, nil))
		routes := make([]any, 0, len(c.Proxied))
		for _, r := range c.Proxied {
			routes = append(routes, map[string]any{"method": r.Method, "scope": r.Scope})
		}
		operations["proxy"] = map[string]any{
			"action": "receive", "channel": wsChan, "title": "proxied methods",
			"summary":           "Methods the gateway forwards to configured backends; the routes at the time the document was served are in x-junction-routes",
			"messages":          []any{preq},
			"reply":             map[string]any{"channel": wsChan, "messages": []any{pres, errMsg}},
			"x-junction-routes": routes,
		}
	}
	for _, e := range events {
		msg := addMsg(EventMessage(e.Name), e.Name, e.Summary, eventFrame(set, e))
		if e.FromServer {
			operations["event."+e.Name] = map[string]any{"action": "send", "channel": wsChan, "title": e.Name, "summary": e.Summary, "messages": []any{msg}}
		}
		if e.FromClient {
			operations["client-event."+e.Name] = map[string]any{"action": "receive", "channel": wsChan, "title": e.Name, "summary": e.Summary, "messages": []any{msg}}
		}
	}
	doc = map[string]any{
		"asyncapi": "3.0.0",
		"info": map[string]any{
			"title":   "Junction WebSocket protocol",
			"version": c.Version,
			"description": "Protocol v1 (docs/PROTOCOL.md): one JSON frame per line of a text message. " +
				"Message payloads are JSON Schema 2020-12 of whole frames; the types they name are in components.schemas, generated from the Go types of package protocol.",
		},
		"defaultContentType": "application/json",
		"servers": map[string]any{"junction": map[string]any{
			"host": "localhost:7700", "pathname": "/ws", "protocol": "ws",
			"description": "a junction server (wss behind TLS); the credential goes in Authorization: Bearer, the junction.bearer.<token> subprotocol or ?token=",
			"security":    []any{map[string]any{"$ref": "#/components/securitySchemes/bearer"}},
		}},
		"channels": map[string]any{"ws": map[string]any{
			"address": "/ws", "title": "protocol v1 connection",
			"servers":  []any{map[string]any{"$ref": "#/servers/junction"}},
			"messages": chanMsgs,
		}},
		"operations": operations,
		"components": map[string]any{
			"schemas":         set.Defs(),
			"messages":        messages,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key"}},
		},
	}
	return doc, untyped
}

func constant(v any) map[string]any { return map[string]any{"const": v} }

var idSchema = map[string]any{"type": "string", "minLength": 1, "maxLength": MaxIDLength}

func frame(props map[string]any, required ...string) map[string]any {
	return map[string]any{"type": "object", "properties": props, "required": required, "additionalProperties": false}
}

// requestFrame is a request whose method matches method and whose params
// follow params (any object when nil). Absent or null params mean {}.
func requestFrame(set *SchemaSet, method map[string]any, params reflect.Type) map[string]any {
	ps := map[string]any{"type": "object"}
	if params != nil {
		ps = set.Of(params)
	}
	return frame(map[string]any{
		"type": constant(TypeRequest), "id": idSchema, "method": method,
		"params": map[string]any{"anyOf": []any{ps, map[string]any{"type": "null"}}},
		"idem":   map[string]any{"type": "string", "minLength": 1, "maxLength": MaxIdemLength},
		"meta":   set.Of(reflect.TypeFor[Meta]()),
	}, "type", "id", "method")
}

func resultFrame(set *SchemaSet, result reflect.Type) map[string]any {
	rs := map[string]any{}
	if result != nil {
		rs = set.Of(result)
	}
	return frame(map[string]any{"type": constant(TypeResponse), "id": idSchema, "ok": constant(true), "result": rs},
		"type", "id", "ok", "result")
}

func errorFrame(set *SchemaSet) map[string]any {
	return frame(map[string]any{"type": constant(TypeResponse), "id": idSchema, "ok": constant(false), "error": set.Of(reflect.TypeFor[Error]())},
		"type", "id", "error")
}

func eventFrame(set *SchemaSet, e EventSpec) map[string]any {
	props := map[string]any{"type": constant(TypeEvent), "event": constant(e.Name)}
	required := []string{"type", "event"}
	if e.Topic {
		props["topic"] = map[string]any{"type": "string", "minLength": 1, "maxLength": MaxTopicLength}
		required = append(required, "topic")
	}
	if e.Position {
		props["epoch"] = map[string]any{"type": "string", "minLength": 1}
		props["offset"] = map[string]any{"type": "integer", "minimum": 1}
		required = append(required, "epoch", "offset")
	}
	if e.Named {
		props["name"] = map[string]any{"type": "string", "minLength": 1, "maxLength": MaxPublicationEventLength,
			"description": "the publication's event name; absent for the default, message"}
	}
	if e.Data != nil {
		props["data"] = set.Of(e.Data)
		required = append(required, "data")
	}
	return frame(props, required...)
}
