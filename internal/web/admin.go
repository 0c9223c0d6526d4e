package web

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// The admin API of this node, for the web console and operators' tools
// (docs/api.md, "Admin"): its connections (list, inspect, disconnect with
// 4011), its channels with subscribers, and the machines serving RPC
// methods on it. Every route needs scope admin (403 forbidden otherwise).
// Accounts and devices are the account application's admin operations
// (account/admin.go); lockdown is server.go's.

func (s *Server) adminRoutes() {
	admin := func(fn func(http.ResponseWriter, *http.Request, *auth.Principal)) http.HandlerFunc {
		return s.requireScope(auth.ScopeAdmin, fn)
	}
	s.handle("GET /api/v1/admin/connections", admin(s.serveAdminConnections))
	s.handle("GET /api/v1/admin/connections/{id}", admin(s.serveAdminConnection))
	s.handle("DELETE /api/v1/admin/connections/{id}", admin(s.serveAdminDisconnect))
	s.handle("GET /api/v1/admin/channels", admin(s.serveAdminChannels))
	s.handle("GET /api/v1/admin/channels/{topic}", admin(s.serveAdminChannel))
	s.handle("GET /api/v1/admin/machines", admin(s.serveAdminMachines))
}

// adminKinds are the values of the connections' kind filter.
var adminKinds = append(slices.Clone(auth.Kinds), "app", "other")

// adminPage reads the cursor and limit query parameters of a listing:
// cursor at most 256 bytes, limit 1..hub.AdminMaxPage (absent: the
// default page).
func adminPage(r *http.Request) (cursor string, limit int, err error) {
	q := r.URL.Query()
	cursor = q.Get("cursor")
	if len(cursor) > 256 {
		return "", 0, protocol.FieldError("cursor", "over 256 bytes")
	}
	if v := q.Get("limit"); v != "" || q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > hub.AdminMaxPage {
			return "", 0, protocol.FieldError("limit", "want an integer from 1 to %d", hub.AdminMaxPage)
		}
		limit = n
	}
	return cursor, limit, nil
}

// serveAdminConnections lists this node's connections; query user,
// device, kind, node, cursor, limit.
func (s *Server) serveAdminConnections(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	cursor, limit, err := adminPage(r)
	if err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	f := hub.ConnFilter{UserID: q.Get("user"), DeviceID: q.Get("device"), Kind: q.Get("kind"), NodeID: q.Get("node"), Cursor: cursor, Limit: limit}
	if f.Kind != "" && !slices.Contains(adminKinds, f.Kind) {
		writeError(w, protocol.FieldError("kind", "want one of %v", adminKinds))
		return
	}
	writeJSON(w, http.StatusOK, s.deps.Hub.AdminConnections(f))
}

func (s *Server) serveAdminConnection(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	d, err := s.deps.Hub.AdminConnection(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// serveAdminDisconnect closes a connection with 4011 (disconnected by an
// administrator).
func (s *Server) serveAdminDisconnect(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	id := r.PathValue("id")
	if err := s.deps.Hub.AdminDisconnect(id, protocol.DisconnectAdmin); err != nil {
		writeError(w, err)
		return
	}
	s.log.Warn("connection closed by an admin", "conn", id, "user", p.UserID, "device", p.DeviceID)
	writeJSON(w, http.StatusOK, protocol.AdminDisconnected{ID: id, Code: protocol.CloseAdmin})
}

func (s *Server) serveAdminChannels(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	cursor, limit, err := adminPage(r)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.deps.Hub.AdminChannels(cursor, limit))
}

func (s *Server) serveAdminChannel(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	d, err := s.deps.Hub.AdminChannel(r.Context(), r.PathValue("topic"))
	if err != nil {
		s.channelError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// serveAdminMachines lists the machines serving on this node; query user,
// cursor, limit.
func (s *Server) serveAdminMachines(w http.ResponseWriter, r *http.Request, _ *auth.Principal) {
	cursor, limit, err := adminPage(r)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.deps.Hub.AdminMachines(r.URL.Query().Get("user"), cursor, limit))
}
