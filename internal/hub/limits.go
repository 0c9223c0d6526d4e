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
// until they close) in all and per owner, so that Config.MaxConnections and
// Config.MaxConnectionsPerUser hold exactly even when handshakes race. A
// user's count is in its slot of the registry (userSlot, beside its first
// connection: one map slot per connected user); the apps' are here.
//
// The counts are keyed by the principal's own user (or app) id string, so
// that a connected user costs a map slot and no key of its own; the owner
// key the cluster's shared counts use ("u/"+id) is built only for them.
type connSlots struct {
	total atomic.Int64
	mu    sync.Mutex     // a leaf: nothing is locked while it is held
	apps  map[string]int // guarded by mu: admitted connections per app id of keys bound to no user, absent when 0
}

// owner is what MaxConnectionsPerUser counts a principal's connections
// under: its user, or the app of a key bound to no user; id is "" for
// neither.
type owner struct {
	app bool
	id  string
}

func ownerOf(p *auth.Principal) owner {
	switch {
	case p.UserID != "":
		return owner{id: p.UserID}
	case p.AppID != "":
		return owner{app: true, id: p.AppID}
	}
	return owner{}
}

// key returns the owner's key in the cluster's shared counts.
func (o owner) key() string {
	if o.app {
		return "a/" + o.id
	}
	return "u/" + o.id
}

// ownerCounts returns every count by owner key.
func (h *Hub) ownerCounts() map[string]int {
	s := &h.slots
	s.mu.Lock()
	counts := make(map[string]int, len(s.apps))
	for id, n := range s.apps {
		counts[owner{app: true, id: id}.key()] = n
	}
	s.mu.Unlock()
	h.reg.addAdmitted(counts)
	return counts
}

// admitLocal counts a connection of o on this node, unless o has limit
// connections already (limit ≤ 0: no limit).
func (h *Hub) admitLocal(o owner, limit int) bool {
	if !o.app {
		return h.reg.admitUser(o.id, limit)
	}
	s := &h.slots
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && s.apps[o.id] >= limit {
		return false
	}
	if s.apps == nil {
		s.apps = make(map[string]int)
	}
	s.apps[o.id]++
	return true
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
	if o := ownerOf(p); o.id != "" {
		if !h.admitLocal(o, l.MaxConnectionsPerUser) {
			s.total.Add(-1)
			return &ConnLimitError{Limit: LimitUserConnections, Err: &protocol.Error{Code: protocol.CodeRateLimited,
				Message: "too many connections for this user; close one or retry later", RetryAfterMs: connLimitRetryMs}}
		}
		if !h.acquireShared(ctx, o, l.MaxConnectionsPerUser) {
			h.releaseLocal(o)
			return &ConnLimitError{Limit: LimitUserConnections, Err: &protocol.Error{Code: protocol.CodeRateLimited,
				Message: "too many connections for this user; close one or retry later", RetryAfterMs: connLimitRetryMs}}
		}
	}
	return nil
}

// release gives back the reservation admit made for p.
func (h *Hub) release(p *auth.Principal) {
	if o := ownerOf(p); o.id != "" {
		h.releaseLocal(o)
		h.releaseShared(o)
	} else {
		h.slots.total.Add(-1)
	}
}

// releaseLocal gives back a connection of o on this node.
func (h *Hub) releaseLocal(o owner) {
	s := &h.slots
	s.total.Add(-1)
	if !o.app {
		h.reg.releaseUser(o.id)
		return
	}
	s.mu.Lock()
	if s.apps[o.id] <= 1 {
		delete(s.apps, o.id)
	} else {
		s.apps[o.id]--
	}
	s.mu.Unlock()
}

// releaseSlot gives back c's reservation, once. The slot was reserved for
// the principal c began with; a replaced principal (auth.refresh,
// Reauthorize) keeps its user and app, which are all ownerOf reads.
func (c *Conn) releaseSlot() {
	if c.unmarkState(connAdmitted) {
		c.hub.release(c.Principal())
	}
}
