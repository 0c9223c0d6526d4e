package web

import (
	"bytes"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/jsonscan"
	"github.com/junctionhq/junction/protocol"
)

// channelRoutes registers the REST API of channels, for backends. Each
// endpoint authenticates the bearer credential and applies the topic's
// namespace rules, as the WebSocket methods do.
func (s *Server) channelRoutes() {
	s.handle("POST /api/v1/channels/{topic}/publish", s.requireScope(hub.ScopeAuthenticated, s.serveChannelPublish))
	s.handle("GET /api/v1/channels/{topic}/presence", s.requireScope(hub.ScopeAuthenticated, s.serveChannelPresence))
	s.handle("GET /api/v1/channels/{topic}/history", s.requireScope(hub.ScopeAuthenticated, s.serveChannelHistory))
}

// maxPublishIdemKey bounds the publish's Idempotency-Key, as for the data
// operations.
const maxPublishIdemKey = 200

// publishBody is the REST publish body, validated here.
type publishBody protocol.ChannelPublishBody

func (b *publishBody) Validate() error {
	if len(b.Data) == 0 || string(b.Data) == "null" {
		return protocol.FieldError("data", "required")
	}
	return nil
}

// publishDataFast reads the body every backend sends, {"data": V} with
// "data" spelled exactly, once, and V valid JSON other than null, without
// reflection: it returns V compacted (V itself, copied, when it holds no
// whitespace and so is already compact). ok is false for anything else: the
// strict decoder then gives the same result or the proper error.
func publishDataFast(raw []byte) (data []byte, ok bool) {
	i := jsonscan.Space(raw, 0)
	if i >= len(raw) || raw[i] != '{' || !utf8.Valid(raw) { // encoding/json replaces invalid UTF-8
		return nil, false
	}
	end, ok := jsonscan.Object(raw, i, func(key []byte, v int) (int, bool) {
		if string(key) != "data" || data != nil || v >= len(raw) || raw[v] == 'n' {
			return 0, false
		}
		end, ok := jsonscan.Value(raw, v)
		if !ok {
			return 0, false
		}
		data = raw[v:end:end]
		return end, true
	})
	if !ok || data == nil || jsonscan.Space(raw, end) != len(raw) {
		return nil, false
	}
	if bytes.ContainsAny(data, " \t\n\r") {
		c, err := protocol.Compact(data)
		return c, err == nil
	}
	// A copy: history keeps the data, which should not pin the body's
	// larger buffer.
	return bytes.Clone(data), true
}

// publishData reads the publish body and returns its data, compacted, and
// its event name ("" for the default).
func publishData(r *http.Request) (data []byte, event string, err error) {
	raw, err := readBody(r)
	if err != nil {
		return nil, "", err
	}
	if data, ok := publishDataFast(raw); ok {
		return data, "", nil
	}
	var body publishBody
	if err := hub.DecodeParams(raw, &body); err != nil {
		return nil, "", err
	}
	data, err = protocol.Compact(body.Data)
	if err != nil {
		return nil, "", protocol.FieldError("data", "invalid JSON")
	}
	return data, body.Event, nil
}

// serveChannelPublish publishes {"data": ..., "event"?: ...} and answers {epoch, offset};
// with an Idempotency-Key header, at most once per principal and key.
func (s *Server) serveChannelPublish(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	data, event, err := publishData(r)
	if err != nil {
		writeError(w, err)
		return
	}
	info := &hub.ClientInfo{UserID: p.UserID, DeviceID: p.DeviceID, Kind: p.Kind}
	if key := r.Header.Get(IdempotencyHeader); key != "" {
		// The WebSocket's records and key space: a repeat answers the first
		// {epoch, offset} and publishes nothing.
		if len(key) > maxPublishIdemKey {
			writeError(w, protocol.FieldError("idempotencyKey", "over %d bytes", maxPublishIdemKey))
			return
		}
		res, err := s.deps.Hub.PublishIdempotentEvent(r.Context(), p, key, r.PathValue("topic"), event, data, info)
		if err != nil {
			s.channelError(w, err)
			return
		}
		writeRaw(w, http.StatusOK, res)
		return
	}
	pos, err := s.deps.Hub.PublishEventAs(r.Context(), p, r.PathValue("topic"), event, data, info)
	if err != nil {
		s.channelError(w, err)
		return
	}
	writeRaw(w, http.StatusOK, appendPublishResult(make([]byte, 0, 48+len(pos.Epoch)), pos))
}

// appendPublishResult appends the JSON of protocol.PublishResult for pos,
// encoded by hand: no encoder per request on the path backends use most.
func appendPublishResult(dst []byte, pos hub.StreamPosition) []byte {
	dst = append(dst, `{"epoch":`...)
	dst = protocol.AppendString(dst, pos.Epoch)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	return append(dst, '}')
}

// serveChannelPresence answers {clients: {connId: info}}.
func (s *Server) serveChannelPresence(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	clients, err := s.deps.Hub.PresenceAs(r.Context(), p, r.PathValue("topic"))
	if err != nil {
		s.channelError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.PresenceResult{Clients: clients})
}

// serveChannelHistory answers {epoch, offset, publications}; query
// parameters since_epoch and since_offset (together) and limit.
func (s *Server) serveChannelHistory(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	q := r.URL.Query()
	var since *hub.StreamPosition
	if q.Has("since_epoch") || q.Has("since_offset") {
		off, err := strconv.ParseUint(q.Get("since_offset"), 10, 64)
		if err != nil {
			writeError(w, protocol.FieldError("since_offset", "want a non-negative integer"))
			return
		}
		if q.Get("since_epoch") == "" {
			writeError(w, protocol.FieldError("since_epoch", "required with since_offset"))
			return
		}
		since = &hub.StreamPosition{Epoch: q.Get("since_epoch"), Offset: off}
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, protocol.FieldError("limit", "want a non-negative integer"))
			return
		}
		limit = n
	}
	res, err := s.deps.Hub.HistoryAs(r.Context(), p, r.PathValue("topic"), since, limit)
	if err != nil {
		s.channelError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) channelError(w http.ResponseWriter, err error) {
	if pe := protocol.AsError(err); pe.Code == protocol.CodeInternal {
		s.log.Error("channel request failed", "err", err)
	}
	writeError(w, err)
}
