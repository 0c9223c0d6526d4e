package web

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/junctionhq/junction/internal/account"
)

// The OpenAPI 3.1 description of the REST API, served at
// GET /api/v1/openapi.json. The edge's own routes are listed here by hand;
// the account routes come from the account op table (account.Route). The
// schemas are generated from the protocol types (contract.go). A test
// checks that it lists exactly the /api/v1 routes registered.

// apiOp documents one route.
type apiOp struct {
	method, path string // path as registered: "/api/v1/sessions/{id}"
	id, summary  string
	tag          string
	scope        string // "" for a public route, else the scope required ("authenticated" for any principal)
	body         string // request body schema, "" for none
	bodyOptional bool   // a request may come without a body
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
		{method: "GET", path: "/api/v1/asyncapi.json", id: "asyncapi", summary: "The AsyncAPI 3.0 document of the WebSocket protocol", tag: "Server", status: 200, result: "Any"},
		{method: "GET", path: "/api/v1/admin/lockdown", id: "getLockdown", summary: "Whether lockdown (the kill switch) is on", tag: "Admin", scope: "admin", status: 200, result: "Lockdown"},
		{method: "POST", path: "/api/v1/admin/lockdown", id: "setLockdown", summary: "Turn lockdown on or off", tag: "Admin", scope: "admin", body: "Lockdown", status: 200, result: "Lockdown"},
		{method: "GET", path: "/api/v1/admin/connections", id: "adminListConnections", summary: "This node's open connections, by id, one page at a time", tag: "Admin", scope: "admin", status: 200, result: "AdminConnectionList",
			query: []apiParam{{"user", "string", "only this user's connections", false}, {"device", "string", "only this device's connection", false},
				{"kind", "string", "only this kind: phone, tablet, tv, glasses, browser, machine, iot, app or other", false}, {"node", "string", "only this node's (another node's: none)", false},
				adminCursor, adminLimit}},
		{method: "GET", path: "/api/v1/admin/connections/{id}", id: "adminGetConnection", summary: "One connection: principal, address, subscriptions, served methods, outbound queue", tag: "Admin", scope: "admin", status: 200, result: "AdminConnectionDetail"},
		{method: "DELETE", path: "/api/v1/admin/connections/{id}", id: "adminDisconnect", summary: "Close a connection with 4011 (disconnected by an administrator)", tag: "Admin", scope: "admin", status: 200, result: "AdminDisconnected"},
		{method: "GET", path: "/api/v1/admin/channels", id: "adminListChannels", summary: "The channels with subscribers on this node, by topic, one page at a time", tag: "Admin", scope: "admin", status: 200, result: "AdminChannelList",
			query: []apiParam{adminCursor, adminLimit}},
		{method: "GET", path: "/api/v1/admin/channels/{topic}", id: "adminGetChannel", summary: "One channel: this node's subscribers, presence, stream position", tag: "Admin", scope: "admin", status: 200, result: "AdminChannelDetail"},
		{method: "GET", path: "/api/v1/admin/machines", id: "adminListMachines", summary: "The machines serving RPC methods on this node, with their methods", tag: "Admin", scope: "admin", status: 200, result: "AdminMachineList",
			query: []apiParam{{"user", "string", "only this user's machines", false}, adminCursor, adminLimit}},

		{method: "POST", path: "/api/v1/channels/{topic}/publish", id: "publish", summary: "Publish to a channel (the namespace's publish rules apply)", tag: "Channels", scope: "authenticated", body: "PublishRequest", status: 200, result: "Position", idem: true},
		{method: "GET", path: "/api/v1/channels/{topic}/presence", id: "presence", summary: "Who is subscribed to a channel with presence", tag: "Channels", scope: "authenticated", status: 200, result: "Presence"},
		{method: "GET", path: "/api/v1/channels/{topic}/history", id: "history", summary: "A channel's retained publications", tag: "Channels", scope: "authenticated", status: 200, result: "History",
			query: []apiParam{{"since_epoch", "string", "with since_offset: publications after this position", false}, {"since_offset", "integer", "with since_epoch", false}, {"limit", "integer", "at most this many", false}}},
	}
	ops = append(ops, scheduleOps()...)
	for _, o := range acct {
		for _, rt := range o.Routes {
			op := apiOp{method: rt.Method, path: rt.Path, id: rt.OperationID, summary: rt.Summary, tag: rt.Tag,
				scope: o.Scope, body: rt.Body, bodyOptional: rt.BodyOptional, status: rt.Status, result: rt.Result, idem: o.Mutating}
			for _, q := range rt.Query {
				op.query = append(op.query, apiParam{q.Name, q.Type, q.Desc, q.Required})
			}
			ops = append(ops, op)
		}
	}
	return ops
}

// The page parameters of the admin listings (web/admin.go).
var (
	adminCursor = apiParam{"cursor", "string", "nextCursor of the previous page", false}
	adminLimit  = apiParam{"limit", "integer", "page size, 1..1000 (default 100)", false}
)

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

var pathParam = regexp.MustCompile(`\{([a-zA-Z]+)\}`)

// OpenAPI returns the OpenAPI 3.1 document of the REST API: the edge's own
// routes and those of the account operations acct.
func OpenAPI(acct []account.Op) map[string]any {
	paths := map[string]any{}
	errResp := map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}}
	// Every route is rate-limited (docs/SECURITY.md): per client address,
	// the auth endpoints more strictly, and per user once authenticated.
	limitedResp := map[string]any{"description": "rate_limited: over a rate limit (web.rest_rate, web.auth_rate, web.principal_rate)",
		"headers": map[string]any{"Retry-After": map[string]any{"description": "seconds to wait before retrying", "schema": map[string]any{"type": "integer", "minimum": 1}}},
		"content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}}
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
			op["requestBody"] = map[string]any{"required": !o.bodyOptional, "content": map[string]any{"application/json": map[string]any{"schema": ref(o.body)}}}
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
			"429":                 limitedResp,
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
		"components": map[string]any{"schemas": apiSchemas(acct), "securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key"}}},
	}
}

// OpenAPIDoc returns the OpenAPI document this server serves: its own
// routes and those of every operation it mounts (account and apps).
func (s *Server) OpenAPIDoc() map[string]any { return OpenAPI(s.ops()) }

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	s.openAPIOnce.Do(func() {
		raw, err := json.Marshal(s.OpenAPIDoc())
		if err != nil {
			panic("web: openapi: " + err.Error()) // static data: cannot fail
		}
		s.openAPIJSON = raw
	})
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeRaw(w, http.StatusOK, s.openAPIJSON)
}

// Routes returns the registered REST routes ("METHOD /path"), sorted.
func (s *Server) Routes() []string {
	out := slices.Clone(s.patterns)
	slices.Sort(out)
	return out
}
