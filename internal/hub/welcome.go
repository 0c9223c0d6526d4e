package hub

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// welcomeTemplate holds the JSON of the parts of a welcome event that are
// the same for every connection of a hub, so that a connect encodes only
// its connection id and principal.
type welcomeTemplate struct {
	once   sync.Once
	prefix []byte // `{"protocol":1,"connId":`
	middle []byte // `,"nodeId":…,"principal":`
	suffix []byte // `,"heartbeatMs":…}`
}

func (h *Hub) welcomeData(connID string, p *auth.Principal) []byte {
	t := &h.welcome
	t.once.Do(func() {
		// Encode a whole welcome with placeholders and cut it at them, so
		// that the template is what encoding/json writes, member order
		// included.
		full, _ := json.Marshal(h.welcomeValue("\x00c", protocol.Principal{UserID: "\x00p"}))
		connAt := indexOf(full, `"\u0000c"`)
		princAt := indexOf(full, `{"userId":"\u0000p","scopes":null}`)
		t.prefix = full[:connAt]
		t.middle = full[connAt+len(`"\u0000c"`) : princAt]
		t.suffix = full[princAt+len(`{"userId":"\u0000p","scopes":null}`):]
	})
	id, _ := json.Marshal(connID)
	princ, _ := json.Marshal(p.Info())
	b := make([]byte, 0, len(t.prefix)+len(id)+len(t.middle)+len(princ)+len(t.suffix))
	b = append(b, t.prefix...)
	b = append(b, id...)
	b = append(b, t.middle...)
	b = append(b, princ...)
	return append(b, t.suffix...)
}

// welcomeValue is the welcome event of a connection.
func (h *Hub) welcomeValue(connID string, p protocol.Principal) protocol.Welcome {
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
			RequestsPerSecond: max(h.cfg.RequestsPerSecond, 0),
			RequestBurst:      max(h.cfg.RequestBurst, 0),
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
