package web

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/junctionhq/junction/internal/account"
)

// The OpenAPI 3.1 description of the REST API, served at
// GET /api/v1/openapi.json. The edge's own routes are listed here by hand;
// the account routes come from the account op table (account.Route), with
// the schemas below. A test checks that it lists exactly the /api/v1 routes
// registered.

// apiOp documents one route.
type apiOp struct {
	method, path string // path as registered: "/api/v1/sessions/{id}"
	id, summary  string
	tag          string
	scope        string // "" for a public route, else the scope required ("authenticated" for any principal)
	body         string // request body schema, "" for none
	query        []apiParam
	status       int    // success status
	result       string // success body schema
	idem         bool   // honours Idempotency-Key
}

type apiParam struct {
	name, typ, desc string
	required        bool
}

func apiOps(acct []account.Op) []apiOp {
	ops := []apiOp{
		{method: "GET", path: "/api/v1/info", id: "info", summary: "Server name, version, protocol and node", tag: "Server", status: 200, result: "Info"},
		{method: "GET", path: "/api/v1/openapi.json", id: "openapi", summary: "This document", tag: "Server", status: 200, result: "Any"},
		{method: "GET", path: "/api/v1/admin/lockdown", id: "getLockdown", summary: "Whether lockdown (the kill switch) is on", tag: "Admin", scope: "admin", status: 200, result: "Lockdown"},
		{method: "POST", path: "/api/v1/admin/lockdown", id: "setLockdown", summary: "Turn lockdown on or off", tag: "Admin", scope: "admin", body: "Lockdown", status: 200, result: "Lockdown"},

		{method: "POST", path: "/api/v1/channels/{topic}/publish", id: "publish", summary: "Publish to a channel (the namespace's publish rules apply)", tag: "Channels", scope: "authenticated", body: "PublishRequest", status: 200, result: "Position", idem: true},
		{method: "GET", path: "/api/v1/channels/{topic}/presence", id: "presence", summary: "Who is subscribed to a channel with presence", tag: "Channels", scope: "authenticated", status: 200, result: "Presence"},
		{method: "GET", path: "/api/v1/channels/{topic}/history", id: "history", summary: "A channel's retained publications", tag: "Channels", scope: "authenticated", status: 200, result: "History",
			query: []apiParam{{"since_epoch", "string", "with since_offset: publications after this position", false}, {"since_offset", "integer", "with since_epoch", false}, {"limit", "integer", "at most this many", false}}},
	}
	for _, o := range acct {
		for _, rt := range o.Routes {
			op := apiOp{method: rt.Method, path: rt.Path, id: rt.OperationID, summary: rt.Summary, tag: rt.Tag,
				scope: o.Scope, body: rt.Body, status: rt.Status, result: rt.Result, idem: o.Mutating}
			for _, q := range rt.Query {
				op.query = append(op.query, apiParam{q.Name, q.Type, q.Desc, q.Required})
			}
			ops = append(ops, op)
		}
	}
	return ops
}

// Schema helpers.
func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }
func str(desc string) map[string]any {
	return map[string]any{"type": "string", "description": desc}
}
func b64s(desc string) map[string]any {
	return map[string]any{"type": "string", "contentEncoding": "base64", "description": desc}
}
func integer(desc string) map[string]any {
	return map[string]any{"type": "integer", "format": "int64", "description": desc}
}
func boolean(desc string) map[string]any {
	return map[string]any{"type": "boolean", "description": desc}
}
func timeStr(desc string) map[string]any {
	return map[string]any{"type": "string", "format": "date-time", "description": desc}
}
func arrayOf(item map[string]any) map[string]any {
	return map[string]any{"type": "array", "items": item}
}
func object(props map[string]any, required ...string) map[string]any {
	o := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func apiSchemas() map[string]any {
	versioned := ref("Versioned")
	kinds := map[string]any{"type": "string", "enum": []string{"phone", "tablet", "tv", "glasses", "browser", "machine", "iot"}}
	s := map[string]any{
		"Any": map[string]any{},
		"Error": object(map[string]any{"error": object(map[string]any{
			"code":         map[string]any{"type": "string", "enum": []string{"invalid_frame", "bad_request", "unauthorized", "forbidden", "not_found", "conflict", "unknown_method", "rate_limited", "too_large", "timeout", "unavailable", "internal"}},
			"message":      str("human-readable; never internal detail"),
			"retryable":    boolean("whether retrying the same request may succeed"),
			"retryAfterMs": integer("wait this long before retrying"),
			"details":      map[string]any{"type": "object", "description": "field (bad_request), currentVersion and value (conflict)"},
		}, "code", "message")}, "error"),
		"Info":             object(map[string]any{"name": str(""), "version": str(""), "protocol": integer(""), "nodeId": str(""), "ws": str("WebSocket path"), "lockdown": boolean("")}),
		"Lockdown":         object(map[string]any{"enabled": boolean("")}, "enabled"),
		"ChallengeRequest": object(map[string]any{"publicKey": b64s("the account's ed25519 public key (32 bytes)")}, "publicKey"),
		"Challenge":        object(map[string]any{"nonce": b64s("32 random bytes to sign"), "expiresAt": timeStr("")}),
		"DeviceInfo": object(map[string]any{
			"id":        str("login only: resume this unrevoked device of the account"),
			"name":      str("label (default: the kind)"),
			"kind":      kinds,
			"publicKey": b64s("pairing only: the device's own ed25519 key"),
		}),
		"LoginRequest": object(map[string]any{
			"publicKey": b64s("the account key"), "nonce": b64s("from /auth/challenge"),
			"signature": b64s("ed25519 detached signature of the nonce's bytes (nacl.sign.detached)"),
			"device":    ref("DeviceInfo"),
		}, "publicKey", "nonce", "signature"),
		"RefreshRequest": object(map[string]any{"refreshToken": str("")}, "refreshToken"),
		"Tokens": object(map[string]any{
			"accessToken": str("JWT for Authorization: Bearer and /ws"), "refreshToken": str("single use, rotates"),
			"expiresAt": timeStr("of the access token"), "accountId": str(""), "deviceId": str(""),
			"created": boolean("this login created the account"),
		}),
		"LoggedOut": object(map[string]any{"loggedOut": boolean("")}),
		"Me": object(map[string]any{
			"accountId": str(""), "publicKey": b64s(""), "deviceId": str(""), "kind": kinds, "sessionId": str("login session"),
			"scopes": arrayOf(str("")), "updateSeq": integer("the account's last update seq"), "device": ref("Device"),
		}),
		"PairingCode": object(map[string]any{"code": str("ABCDE-FGHJK; case, spaces and dashes are ignored"), "uri": str("junction://pair?code=...&server=..."), "expiresAt": timeStr("")}),
		"PairRequest": object(map[string]any{
			"code": str(""), "device": ref("DeviceInfo"),
			"signature": b64s("with device.publicKey: its signature of \"junction-pair:\" + the code without dashes, upper case"),
		}, "code"),
		"Device": object(map[string]any{
			"id": str(""), "accountId": str(""), "kind": kinds, "name": str(""), "publicKey": b64s(""), "version": integer(""),
			"createdAt": timeStr(""), "lastSeenAt": timeStr("when its last connection closed"), "revokedAt": timeStr(""),
		}),
		"DeviceList":   object(map[string]any{"items": arrayOf(ref("Device"))}),
		"DeviceUpdate": object(map[string]any{"name": str(""), "pushToken": str("")}),
		"Versioned":    object(map[string]any{"value": b64s("ciphertext"), "version": integer("starts at 1, +1 per accepted update")}),
		"FieldUpdate": object(map[string]any{
			"value": b64s("the new ciphertext"), "expectedVersion": integer("the version the client last saw"),
			"field": str("optional; must name this route's field"), "id": str("optional; must match the path"),
		}, "value", "expectedVersion"),
		"Session": object(map[string]any{"id": str(""), "accountId": str(""), "metadata": versioned, "agentState": versioned,
			"lastSeq": integer("seq of the last message"), "createdAt": timeStr(""), "updatedAt": timeStr("")}),
		"SessionCreate": object(map[string]any{"metadata": b64s(""), "agentState": b64s("")}),
		"Machine": object(map[string]any{"id": str(""), "accountId": str(""), "metadata": versioned, "daemonState": versioned,
			"createdAt": timeStr(""), "updatedAt": timeStr("")}),
		"MachineCreate": object(map[string]any{"metadata": b64s(""), "daemonState": b64s("")}),
		"Artifact": object(map[string]any{"id": str(""), "accountId": str(""), "header": versioned, "body": versioned,
			"createdAt": timeStr(""), "updatedAt": timeStr("")}),
		"ArtifactCreate": object(map[string]any{"header": b64s(""), "body": b64s("")}),
		"Deleted":        object(map[string]any{"id": str(""), "deleted": boolean("")}),
		"Message": object(map[string]any{"id": str(""), "sessionId": str(""), "seq": integer("1, 2, 3... per session"),
			"localId": str("the client's id, for dedupe"), "body": b64s("ciphertext"), "createdAt": timeStr("")}),
		"MessageAppend": object(map[string]any{
			"sessionId": str("optional; must match the path"),
			"messages":  map[string]any{"type": "array", "minItems": 1, "maxItems": 100, "items": object(map[string]any{"localId": str(""), "body": b64s("")}, "body")},
		}, "messages"),
		"MessageList": object(map[string]any{"items": arrayOf(ref("Message"))}),
		"Update": object(map[string]any{"seq": integer("per account, gap-free"), "kind": str("session.created, message.created, device.revoked, ..."),
			"id": str("the object"), "version": integer(""), "body": map[string]any{"description": "JSON describing the change"}, "createdAt": timeStr("")}),
		"Updates": object(map[string]any{
			"updates": arrayOf(ref("Update")), "reset": boolean("the log no longer holds everything after since: fetch fresh state, continue from seq"),
			"seq": integer("with reset: the account's last seq"), "hasMore": boolean("the page is full: ask again from the last seq"),
		}),
		"PublishRequest": object(map[string]any{"data": map[string]any{"description": "any JSON value"}}, "data"),
		"Position":       object(map[string]any{"epoch": str(""), "offset": integer("")}),
		"Presence":       object(map[string]any{"clients": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "object"}}}),
		"History":        object(map[string]any{"epoch": str(""), "offset": integer(""), "publications": arrayOf(map[string]any{"type": "object"})}),
	}
	for _, k := range []string{"Session", "Machine", "Artifact"} {
		s[k+"List"] = object(map[string]any{"items": arrayOf(ref(k)), "nextCursor": str("empty after the last page")})
	}
	return s
}

var pathParam = regexp.MustCompile(`\{([a-zA-Z]+)\}`)

// OpenAPI returns the OpenAPI 3.1 document of the REST API: the edge's own
// routes and those of the account operations acct.
func OpenAPI(acct []account.Op) map[string]any {
	paths := map[string]any{}
	errResp := map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}}
	for _, o := range apiOps(acct) {
		op := map[string]any{"operationId": o.id, "summary": o.summary, "tags": []string{o.tag}}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(o.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range o.query {
			params = append(params, map[string]any{"name": q.name, "in": "query", "required": q.required, "description": q.desc, "schema": map[string]any{"type": q.typ}})
		}
		if o.idem {
			params = append(params, map[string]any{"name": IdempotencyHeader, "in": "header", "required": false,
				"description": "repeat-safe key (1..200 bytes): a repeat by the same device returns the first result, also after a restart",
				"schema":      map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if o.body != "" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": ref(o.body)}}}
		}
		if o.scope != "" {
			op["security"] = []any{map[string]any{"bearer": []string{}}}
			if o.scope != "authenticated" {
				op["x-junction-scope"] = o.scope
			}
		} else {
			op["security"] = []any{}
		}
		op["responses"] = map[string]any{
			itoa(int64(o.status)): map[string]any{"description": "success", "content": map[string]any{"application/json": map[string]any{"schema": ref(o.result)}}},
			"default":             errResp,
		}
		item, _ := paths[o.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[o.path] = item
		}
		item[strings.ToLower(o.method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title": "Junction REST API", "version": Version,
			"description": "Accounts with ed25519 key login, devices and pairing, end-to-end encrypted data with versions, update sync and channels. " +
				"Binary values are standard base64; the server stores ciphertext only. The same data operations exist as WebSocket methods (see docs/api.md).",
		},
		"servers":    []any{map[string]any{"url": "/"}},
		"paths":      paths,
		"components": map[string]any{"schemas": apiSchemas(), "securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key"}}},
	}
}

var (
	openAPIOnce sync.Once
	openAPIJSON []byte
)

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	openAPIOnce.Do(func() {
		raw, err := json.Marshal(OpenAPI(s.deps.Account.Ops()))
		if err != nil {
			panic("web: openapi: " + err.Error()) // static data: cannot fail
		}
		openAPIJSON = raw
	})
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeRaw(w, http.StatusOK, openAPIJSON)
}

// Routes returns the registered REST routes ("METHOD /path"), sorted.
func (s *Server) Routes() []string {
	out := slices.Clone(s.patterns)
	slices.Sort(out)
	return out
}
