package hub

import (
	"sync"

	"github.com/junctionhq/junction/protocol"
)

// expiryIndex tracks connections whose credential expires. One loop for the
// whole hub scans it once a second: no timer per connection.
type expiryIndex struct {
	mu sync.Mutex
	// conns is guarded by mu; whether token.expiring was sent for a
	// connection's current credential is its Conn.expiryWarned (in the
	// Conn's padding: a bool value would double the map's slots).
	conns map[*Conn]struct{}
}

func (x *expiryIndex) init() { x.conns = make(map[*Conn]struct{}) }

func (x *expiryIndex) add(c *Conn) {
	if c.Principal().ExpiresAt.IsZero() {
		return
	}
	x.mu.Lock()
	x.conns[c] = struct{}{}
	c.expiryWarned = false
	x.mu.Unlock()
}

func (x *expiryIndex) remove(c *Conn) {
	x.mu.Lock()
	delete(x.conns, c)
	x.mu.Unlock()
}

// renewed resets the warning after an in-band refresh.
func (x *expiryIndex) renewed(c *Conn) {
	x.mu.Lock()
	if c.Principal().ExpiresAt.IsZero() {
		delete(x.conns, c)
	} else {
		x.conns[c] = struct{}{}
		c.expiryWarned = false
	}
	x.mu.Unlock()
}

// checkExpiry warns connections whose credential expires within
// Config.TokenExpiryWarning and closes those whose credential has expired
// (4001).
func (h *Hub) checkExpiry() {
	now := h.deps.Now()
	var warn, expire []*Conn
	h.expiry.mu.Lock()
	for c := range h.expiry.conns {
		exp := c.Principal().ExpiresAt
		switch {
		case !now.Before(exp):
			expire = append(expire, c)
			delete(h.expiry.conns, c)
		case !c.expiryWarned && exp.Sub(now) <= h.cfg.TokenExpiryWarning:
			c.expiryWarned = true
			warn = append(warn, c)
		}
	}
	h.expiry.mu.Unlock()
	for _, c := range warn {
		data, _ := jsonMarshal(protocol.TokenExpiring{ExpiresAtMs: c.Principal().ExpiresAt.UnixMilli()})
		c.SendEvent(protocol.EventTokenExpiring, "", "", 0, data)
	}
	for _, c := range expire {
		c.Disconnect(protocol.DisconnectTokenExpired)
	}
}
