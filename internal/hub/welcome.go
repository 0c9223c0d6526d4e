package hub

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync/atomic"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// welcomeTemplate holds the JSON of the parts of a welcome event that are
// the same for every connection of a hub, so that a connect encodes only
// its connection id and principal. It is built on first use and again
// after SetLimits changed the limits it shows.
type welcomeTemplate struct {
	parts atomic.Pointer[welcomeParts]
}

// welcomeEnvelope is how many bytes the welcome event adds around its data.
var welcomeEnvelope = len(protocol.AppendEvent(nil, protocol.EventWelcome, "", "", 0, json.RawMessage("0"))) - 1

type welcomeParts struct {
	lim    *Limits // the hub's reloaded limits these parts show (nil: Config's)
	prefix []byte  // `{"protocol":1,"connId":`
	middle []byte  // `,"nodeId":…,"principal":`
	suffix []byte  // `,"heartbeatMs":…}`
}

func (h *Hub) welcomeData(connID string, p *auth.Principal) []byte {
	lim := h.lim.Load()
	t := h.welcome.parts.Load()
	if t == nil || t.lim != lim {
		// Encode a whole welcome with placeholders and cut it at them, so
		// that the template is what encoding/json writes, member order
		// included. Two connects may both build it: the same bytes.
		t = &welcomeParts{lim: lim}
		full, _ := json.Marshal(h.welcomeValueWith("\x00c", protocol.Principal{UserID: "\x00p"}, lim))
		connAt := indexOf(full, `"\u0000c"`)
		princAt := indexOf(full, `{"userId":"\u0000p","scopes":null}`)
		t.prefix = full[:connAt]
		t.middle = full[connAt+len(`"\u0000c"`) : princAt]
		t.suffix = full[princAt+len(`{"userId":"\u0000p","scopes":null}`):]
		h.welcome.parts.Store(t)
	}
	b := make([]byte, 0, len(t.prefix)+len(t.middle)+len(t.suffix)+len(connID)+128)
	b = append(b, t.prefix...)
	b = appendJSONString(b, connID)
	b = append(b, t.middle...)
	b = appendPrincipal(b, p)
	return append(b, t.suffix...)
}

// appendPrincipal appends the JSON of p.Info(), byte for byte what
// encoding/json writes for it (FuzzWelcomePrincipal), without reflection.
func appendPrincipal(b []byte, p *auth.Principal) []byte {
	b = append(b, '{')
	comma := false
	for _, m := range [...]struct{ key, v string }{
		{`"userId":`, p.UserID}, {`"deviceId":`, p.DeviceID}, {`"kind":`, p.Kind}, {`"appId":`, p.AppID},
	} {
		if m.v == "" {
			continue // omitempty
		}
		if comma {
			b = append(b, ',')
		}
		b = append(b, m.key...)
		b = appendJSONString(b, m.v)
		comma = true
	}
	if comma {
		b = append(b, ',')
	}
	b = append(b, `"scopes":[`...)
	for i, sc := range p.Scopes {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, sc)
	}
	b = append(b, ']')
	if p.ExpiresAtMicros != 0 {
		if ms := p.ExpiresAt().UnixMilli(); ms != 0 {
			b = append(b, `,"expiresAtMs":`...)
			b = strconv.AppendInt(b, ms, 10)
		}
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string the way encoding/json writes
// it: as is when it is printable ASCII without the characters encoding/json
// escapes, through encoding/json otherwise.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// welcomeValue is the welcome event of a connection.
func (h *Hub) welcomeValue(connID string, p protocol.Principal) protocol.Welcome {
	return h.welcomeValueWith(connID, p, h.lim.Load())
}

// welcomeValueWith is welcomeValue showing the limits lim (nil: Config's).
func (h *Hub) welcomeValueWith(connID string, p protocol.Principal, lim *Limits) protocol.Welcome {
	l := h.limitsOf(lim)
	maxBinary := 0
	if h.binary != nil && h.cfg.MaxBinaryBytes > 0 {
		maxBinary = h.cfg.MaxBinaryBytes
	}
	return protocol.Welcome{
		Protocol:           protocol.Version,
		ConnID:             connID,
		NodeID:             h.cfg.NodeID,
		Principal:          p,
		HeartbeatMs:        h.cfg.HeartbeatInterval.Milliseconds(),
		HeartbeatTimeoutMs: h.cfg.HeartbeatTimeout.Milliseconds(),
		Limits: protocol.Limits{
			MaxFrameBytes:     h.cfg.MaxFrameBytes,
			MaxQueueBytes:     h.cfg.MaxQueueBytes,
			MaxQueueFrames:    h.cfg.MaxQueueFrames,
			MaxSubscriptions:  h.cfg.MaxSubscriptions,
			RequestsPerSecond: max(l.RequestsPerSecond, 0),
			RequestBurst:      max(l.RequestBurst, 0),
			MaxBinaryBytes:    maxBinary,
		},
		Features: h.features(),
	}
}

func indexOf(b []byte, s string) int {
	i := bytes.Index(b, []byte(s))
	if i < 0 {
		panic("hub: welcome template: placeholder " + s + " not found")
	}
	return i
}
