package hub

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// Connection-count defaults (Config.MaxConnections, MaxConnectionsPerUser).
const (
	DefaultMaxConnections        = 1_000_000
	DefaultMaxConnectionsPerUser = 1000
	// connLimitRetryMs is the Retry-After of a handshake refused by a count:
	// connections come and go, so asking again in a few seconds may succeed.
	connLimitRetryMs = 5000
)

// Limits that refuse a handshake (ConnLimitError.Limit).
const (
	LimitConnections     = "connections"
	LimitUserConnections = "user_connections"
)

// ConnLimitError is what Upgrade returns when a connection count refuses a
// handshake; it unwraps to the *protocol.Error the client gets.
type ConnLimitError struct {
	Limit string // LimitConnections or LimitUserConnections
	Err   *protocol.Error
}

func (e *ConnLimitError) Error() string { return e.Err.Error() }
func (e *ConnLimitError) Unwrap() error { return e.Err }

// connSlots counts the connections admitted (from before their upgrade
// until they close) in all and per user, so that Config.MaxConnections and
// Config.MaxConnectionsPerUser hold exactly even when handshakes race.
type connSlots struct {
	total atomic.Int64
	mu    sync.Mutex     // a leaf: nothing is locked while it is held
	users map[string]int // guarded by mu: admitted connections per owner key, absent when 0
}

// ownerKey is what MaxConnectionsPerUser counts a principal's connections
// under: its user, or the app of a key bound to no user; "" for neither.
func ownerKey(p *auth.Principal) string {
	switch {
	case p.UserID != "":
		return "u/" + p.UserID
	case p.AppID != "":
		return "a/" + p.AppID
	}
	return ""
}

// admit reserves a connection for p, or refuses it with a *ConnLimitError.
// With shared counts (Deps.UserConns) the user's limit holds across nodes.
func (h *Hub) admit(ctx context.Context, p *auth.Principal) error {
	s := &h.slots
	l := h.limitsOf(h.lim.Load())
	if n := s.total.Add(1); l.MaxConnections > 0 && n > int64(l.MaxConnections) {
		s.total.Add(-1)
		return &ConnLimitError{Limit: LimitConnections, Err: &protocol.Error{Code: protocol.CodeUnavailable,
			Message: "too many connections on this server; retry later", RetryAfterMs: connLimitRetryMs}}
	}
	if key := ownerKey(p); key != "" {
		s.mu.Lock()
		if l.MaxConnectionsPerUser > 0 && s.users[key] >= l.MaxConnectionsPerUser {
			s.mu.Unlock()
			s.total.Add(-1)
			return &ConnLimitError{Limit: LimitUserConnections, Err: &protocol.Error{Code: protocol.CodeRateLimited,
				Message: "too many connections for this user; close one or retry later", RetryAfterMs: connLimitRetryMs}}
		}
		s.users[key]++
		s.mu.Unlock()
		if !h.acquireShared(ctx, key, l.MaxConnectionsPerUser) {
			h.releaseLocal(key)
			return &ConnLimitError{Limit: LimitUserConnections, Err: &protocol.Error{Code: protocol.CodeRateLimited,
				Message: "too many connections for this user; close one or retry later", RetryAfterMs: connLimitRetryMs}}
		}
	}
	return nil
}

// release gives back the reservation admit made for p.
func (h *Hub) release(p *auth.Principal) {
	if key := ownerKey(p); key != "" {
		h.releaseLocal(key)
		h.releaseShared(key)
	} else {
		h.slots.total.Add(-1)
	}
}

// releaseLocal gives back a connection of owner key on this node.
func (h *Hub) releaseLocal(key string) {
	s := &h.slots
	s.total.Add(-1)
	s.mu.Lock()
	if s.users[key] <= 1 {
		delete(s.users, key)
	} else {
		s.users[key]--
	}
	s.mu.Unlock()
}

// releaseSlot gives back c's reservation, once.
func (c *Conn) releaseSlot() {
	if c.admitted.CompareAndSwap(true, false) {
		c.hub.release(c.admittedAs)
	}
}
