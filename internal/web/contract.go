package web

import (
	"encoding/json"
	"maps"
	"net/http"
	"reflect"
	"slices"

	"github.com/junctionhq/junction/protocol"
)

// The wire contract's documents: the AsyncAPI document of the WebSocket
// protocol, served at GET /api/v1/asyncapi.json, and the OpenAPI schemas
// generated from the same protocol types (addWireSchemas).

// wireSchemas are the OpenAPI schemas generated from protocol types, by the
// names the operations use. A body type that moves into protocol plugs in
// here under its schema's name, replacing the hand-written schema; the
// types they refer to are added under their Go names.
var wireSchemas = map[string]reflect.Type{
	"Error":          reflect.TypeFor[protocol.ErrorBody](),
	"Info":           reflect.TypeFor[protocol.ServerInfo](),
	"Lockdown":       reflect.TypeFor[protocol.Lockdown](),
	"PublishRequest": reflect.TypeFor[protocol.ChannelPublishBody](),
	"Position":       reflect.TypeFor[protocol.PublishResult](),
	"Presence":       reflect.TypeFor[protocol.PresenceResult](),
	"History":        reflect.TypeFor[protocol.HistoryResult](),
}

// addWireSchemas adds the schemas of wireSchemas, and of the types they
// refer to, to the OpenAPI schemas s.
func addWireSchemas(s map[string]any) {
	set := protocol.NewSchemaSet("#/components/schemas/")
	for _, name := range slices.Sorted(maps.Keys(wireSchemas)) {
		set.Define(name, wireSchemas[name])
	}
	for name, sch := range set.Defs() {
		if _, dup := s[name]; dup {
			panic("web: openapi: schema " + name + " is both generated and hand-written")
		}
		s[name] = sch
	}
}

// AsyncAPI returns the AsyncAPI 3.0 document of the WebSocket protocol as
// served by this server (every method registered on its hub), and the
// methods it lacks params or result types for.
func (s *Server) AsyncAPI() (doc map[string]any, untyped []string) {
	return protocol.AsyncAPI(protocol.Contract{
		Version: Version,
		Methods: s.deps.Hub.Contract(),
		Schemas: map[string]reflect.Type{
			// The data of channel.message on user:{userId} when a machine
			// goes online or offline.
			"MachinePublication": reflect.TypeFor[protocol.MachinePublication](),
		},
	})
}

func (s *Server) serveAsyncAPI(w http.ResponseWriter, r *http.Request) {
	// The method table is static once the hub started, so one encoding
	// serves every request.
	s.asyncAPIOnce.Do(func() {
		doc, _ := s.AsyncAPI()
		raw, err := json.Marshal(doc)
		if err != nil {
			panic("web: asyncapi: " + err.Error()) // static data: cannot fail
		}
		s.asyncAPIJSON = raw
	})
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeRaw(w, http.StatusOK, s.asyncAPIJSON)
}
