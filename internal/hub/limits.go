package hub

import (
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
	mu    sync.Mutex // a leaf: nothing is locked while it is held
	// Admitted connections per user id, and per app id for keys bound to no
	// user; absent when 0. Two maps keyed by the principal's own strings:
	// one key built per connection ("u/"+id) would be an allocation every
	// connection holds. Guarded by mu; created on first use.
	users map[string]int
	apps  map[string]int
}

// ownerCountLocked returns the map and key MaxConnectionsPerUser counts a
// principal's connections under: its user, or the app of a key bound to no
// user; a nil map for neither. Called with mu held.
func (s *connSlots) ownerCountLocked(p *auth.Principal) (map[string]int, string) {
	switch {
	case p.UserID != "":
		if s.users == nil {
			s.users = make(map[string]int)
		}
		return s.users, p.UserID
	case p.AppID != "":
		if s.apps == nil {
			s.apps = make(map[string]int)
		}
		return s.apps, p.AppID
	}
	return nil, ""
}

// admit reserves a connection for p, or refuses it with a *ConnLimitError.
func (h *Hub) admit(p *auth.Principal) error {
	s := &h.slots
	l := h.limitsOf(h.lim.Load())
	if n := s.total.Add(1); l.MaxConnections > 0 && n > int64(l.MaxConnections) {
		s.total.Add(-1)
		return &ConnLimitError{Limit: LimitConnections, Err: &protocol.Error{Code: protocol.CodeUnavailable,
			Message: "too many connections on this server; retry later", RetryAfterMs: connLimitRetryMs}}
	}
	if p.UserID != "" || p.AppID != "" {
		s.mu.Lock()
		counts, key := s.ownerCountLocked(p)
		if l.MaxConnectionsPerUser > 0 && counts[key] >= l.MaxConnectionsPerUser {
			s.mu.Unlock()
			s.total.Add(-1)
			return &ConnLimitError{Limit: LimitUserConnections, Err: &protocol.Error{Code: protocol.CodeRateLimited,
				Message: "too many connections for this user; close one or retry later", RetryAfterMs: connLimitRetryMs}}
		}
		counts[key]++
		s.mu.Unlock()
	}
	return nil
}

// release gives back the reservation admit made for p.
func (h *Hub) release(p *auth.Principal) {
	s := &h.slots
	s.total.Add(-1)
	if p.UserID != "" || p.AppID != "" {
		s.mu.Lock()
		counts, key := s.ownerCountLocked(p)
		if counts[key] <= 1 {
			delete(counts, key)
		} else {
			counts[key]--
		}
		s.mu.Unlock()
	}
}

// releaseSlot gives back c's reservation, once.
func (c *Conn) releaseSlot() {
	if c.admitted.CompareAndSwap(true, false) {
		c.hub.release(c.admittedAs)
	}
}
