package web

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/protocol"
)

// The wire contract's documents: the AsyncAPI document of the WebSocket
// protocol, served at GET /api/v1/asyncapi.json, and the OpenAPI schemas
// generated from the same protocol types (apiSchemas).

// wireSchemas are the schemas of the edge's own routes (apiOps), by the
// names the operations use; the account operations bring their own
// (apiSchemas).
var wireSchemas = map[string]reflect.Type{
	"Error":          reflect.TypeFor[protocol.ErrorBody](),
	"Info":           reflect.TypeFor[protocol.ServerInfo](),
	"Lockdown":       reflect.TypeFor[protocol.Lockdown](),
	"PublishRequest": reflect.TypeFor[protocol.ChannelPublishBody](),
	"Position":       reflect.TypeFor[protocol.PublishResult](),
	"Presence":       reflect.TypeFor[protocol.PresenceResult](),
	"History":        reflect.TypeFor[protocol.HistoryResult](),

	"ScheduleSpec":    reflect.TypeFor[protocol.ScheduleSpec](),
	"Schedule":        reflect.TypeFor[protocol.Schedule](),
	"ScheduleList":    reflect.TypeFor[protocol.ScheduleList](),
	"ScheduleRun":     reflect.TypeFor[protocol.ScheduleRun](),
	"ScheduleRunList": reflect.TypeFor[protocol.ScheduleRunList](),

	"AdminConnectionList":   reflect.TypeFor[protocol.AdminConnectionList](),
	"AdminConnectionDetail": reflect.TypeFor[protocol.AdminConnectionDetail](),
	"AdminDisconnected":     reflect.TypeFor[protocol.AdminDisconnected](),
	"AdminChannelList":      reflect.TypeFor[protocol.AdminChannelList](),
	"AdminChannelDetail":    reflect.TypeFor[protocol.AdminChannelDetail](),
	"AdminMachineList":      reflect.TypeFor[protocol.AdminMachineList](),
}

// apiSchemas returns the OpenAPI schemas, by name: those of wireSchemas,
// the account operations' bodies and results (their routes name them;
// their types are the ops' Params and Result), and the types they refer
// to under their Go names. A REST body is its operation's params type
// without requiring the members the route fills from the path, the query
// or Fixed (a body may repeat them, not contradict them).
func apiSchemas(acct []account.Op) map[string]any {
	set := protocol.NewSchemaSet("#/components/schemas/")
	// The error object inside the Error body (whose Go name is Error too).
	set.Define("ErrorObject", reflect.TypeFor[protocol.Error]())
	for _, name := range slices.Sorted(maps.Keys(wireSchemas)) {
		set.Define(name, wireSchemas[name])
	}
	bodies := map[string]map[string]any{}
	for _, o := range acct {
		for _, rt := range o.Routes {
			if rt.Result != "" && o.Result != nil {
				set.Define(rt.Result, reflect.TypeOf(o.Result))
			}
			if rt.Body == "" || o.Params == nil {
				continue
			}
			filled := map[string]bool{}
			for _, m := range rt.PathParams {
				filled[m] = true
			}
			for m := range rt.Fixed {
				filled[m] = true
			}
			for _, q := range rt.Query {
				filled[q.Member] = true
			}
			body := set.Inline(reflect.TypeOf(o.Params))
			if req, ok := body["required"].([]string); ok {
				req = slices.DeleteFunc(slices.Clone(req), func(m string) bool { return filled[m] })
				if len(req) == 0 {
					delete(body, "required")
				} else {
					body["required"] = req
				}
			}
			if prev, dup := bodies[rt.Body]; dup && !reflect.DeepEqual(prev, body) {
				panic("web: openapi: body " + rt.Body + " has two different schemas")
			}
			bodies[rt.Body] = body
		}
	}
	s := map[string]any{"Any": map[string]any{}}
	for name, sch := range set.Defs() {
		s[name] = sch
	}
	for name, sch := range bodies {
		if prev, dup := s[name]; dup && !reflect.DeepEqual(prev, sch) {
			panic("web: openapi: schema " + name + " is both a body and a type")
		}
		s[name] = sch
	}
	return s
}

// AsyncAPI returns the AsyncAPI 3.0 document of the WebSocket protocol as
// served by this server (every method registered on its hub), and the
// methods it lacks params or result types for.
func (s *Server) AsyncAPI() (doc map[string]any, untyped []string) {
	return s.asyncAPI(s.proxied())
}

func (s *Server) proxied() []protocol.ProxiedSpec {
	if s.deps.Proxied == nil {
		return nil
	}
	return s.deps.Proxied()
}

func (s *Server) asyncAPI(proxied []protocol.ProxiedSpec) (doc map[string]any, untyped []string) {
	return protocol.AsyncAPI(protocol.Contract{
		Version: Version,
		Proxied: proxied,
		Methods: s.deps.Hub.Contract(),
		Schemas: map[string]reflect.Type{
			// The data of channel.message on user:{userId} when a machine
			// goes online or offline.
			"MachinePublication": reflect.TypeFor[protocol.MachinePublication](),
			// The data of channel.message on user:{userId} for a change of
			// the account's data.
			"UpdatePublication": reflect.TypeFor[protocol.UpdatePublication](),
			// The data of channel.message on admin:stats, once a second
			// while it has subscribers.
			"AdminStats": reflect.TypeFor[protocol.AdminStats](),
		},
	})
}

func (s *Server) serveAsyncAPI(w http.ResponseWriter, r *http.Request) {
	// The method table is static once the hub started; only the proxy's
	// routes change (on a configuration reload), so one encoding serves
	// every request until they do.
	proxied := s.proxied()
	key := fmt.Sprint(proxied)
	s.asyncAPIMu.Lock()
	if s.asyncAPIJSON == nil || s.asyncAPIKey != key {
		doc, _ := s.asyncAPI(proxied)
		raw, err := json.Marshal(doc)
		if err != nil {
			s.asyncAPIMu.Unlock()
			panic("web: asyncapi: " + err.Error()) // static data: cannot fail
		}
		s.asyncAPIJSON, s.asyncAPIKey = raw, key
	}
	raw := s.asyncAPIJSON
	s.asyncAPIMu.Unlock()
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeRaw(w, http.StatusOK, raw)
}
