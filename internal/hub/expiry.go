package hub

import (
	"sync"

	"github.com/junctionhq/junction/protocol"
)

// expiryIndex tracks connections whose credential expires. One loop for the
// whole hub scans them once a second: no timer per connection. A
// connection of a user is found through the registry's users (every one
// is there while registered), so it costs no entry here; only those of a
// principal without a user (an app key bound to none) are kept in others.
type expiryIndex struct {
	mu sync.Mutex
	// others is guarded by mu; whether token.expiring was sent for a
	// connection's current credential is its Conn.expiryWarned (in the
	// Conn's padding: a bool value would double the map's slots).
	others map[*Conn]struct{}
}

func (x *expiryIndex) init() { x.others = make(map[*Conn]struct{}) }

// add starts watching c, just registered.
func (x *expiryIndex) add(c *Conn) {
	p := c.Principal()
	if p.ExpiresAtMicros == 0 || p.UserID != "" {
		return // none to watch, or found through the registry
	}
	x.mu.Lock()
	x.others[c] = struct{}{}
	x.mu.Unlock()
}

// remove stops watching c, unregistered.
func (x *expiryIndex) remove(c *Conn) {
	if c.Principal().UserID != "" {
		return
	}
	x.mu.Lock()
	delete(x.others, c)
	x.mu.Unlock()
}

// renewed resets the warning after an in-band refresh (the user, if any,
// is the same: see Reauthorize and auth.refresh).
func (x *expiryIndex) renewed(c *Conn) {
	p := c.Principal()
	x.mu.Lock()
	c.expiryWarned = false
	if p.UserID == "" {
		if p.ExpiresAtMicros == 0 {
			delete(x.others, c)
		} else {
			x.others[c] = struct{}{}
		}
	}
	x.mu.Unlock()
}

// checkExpiry warns connections whose credential expires within
// Config.TokenExpiryWarning and closes those whose credential has expired
// (4001).
func (h *Hub) checkExpiry() {
	now := h.deps.Now()
	var warn, expire []*Conn
	check := func(c *Conn) {
		exp := c.Principal().ExpiresAt()
		switch {
		case exp.IsZero():
		case !now.Before(exp):
			// Until it is unregistered, an expired connection is found
			// again; Disconnect is idempotent.
			expire = append(expire, c)
		case !c.expiryWarned && exp.Sub(now) <= h.cfg.TokenExpiryWarning:
			c.expiryWarned = true
			warn = append(warn, c)
		}
	}
	h.expiry.mu.Lock()
	h.reg.eachUserConnLocked(check)
	for c := range h.expiry.others {
		check(c)
	}
	h.expiry.mu.Unlock()
	for _, c := range warn {
		data, _ := jsonMarshal(protocol.TokenExpiring{ExpiresAtMs: c.Principal().ExpiresAt().UnixMilli()})
		c.SendEvent(protocol.EventTokenExpiring, "", "", 0, data)
	}
	for _, c := range expire {
		c.Disconnect(protocol.DisconnectTokenExpired)
	}
}
