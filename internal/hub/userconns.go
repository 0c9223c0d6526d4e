package hub

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// UserConns counts each owner's connections (owner.key: a user, or an app
// key bound to no user) across the nodes of a cluster, so that
// Config.MaxConnectionsPerUser holds cluster-wide. A holder is one run of
// one node; its count of an owner is a lease with a ttl that the holder
// refreshes (RefreshUserConns), so the counts of a node that died vanish
// within the ttl. Without UserConns (Deps.UserConns nil: one node) the hub
// counts alone, exactly.
type UserConns interface {
	// AcquireUserConn counts one more connection of owner for holder,
	// unless the live counts of all holders together reach limit: ok
	// false, nothing counted. ttl extends holder's lease of the count.
	AcquireUserConn(ctx context.Context, owner, holder string, limit int, ttl time.Duration) (ok bool, err error)
	// ReleaseUserConns counts n fewer connections of owner for holder.
	ReleaseUserConns(ctx context.Context, owner, holder string, n int) error
	// RefreshUserConns sets holder's counts of the owners in counts and
	// extends their leases by ttl.
	RefreshUserConns(ctx context.Context, holder string, counts map[string]int, ttl time.Duration) error
}

// userConnShare keeps this node's per-owner counts in Deps.UserConns:
// acquired at admit (one call, before the upgrade), released and refreshed
// by one loop (run), so that a closing connection never waits for Redis.
type userConnShare struct {
	store  UserConns          // set once in init; nil: this node counts alone
	holder string             // set once in init: node id and a random run id
	ttl    time.Duration      // set once in init: Config.PresenceTTL
	errors prometheus.Counter // set once in init: calls of store that failed

	mu       sync.Mutex     // a leaf
	released map[string]int // guarded by mu: releases not yet sent, by owner
	wake     chan struct{}  // capacity 1: releases are waiting
}

func (u *userConnShare) init(h *Hub) {
	u.store = h.deps.UserConns
	u.holder = h.cfg.NodeID + "/" + randomID(5)
	u.ttl = h.cfg.PresenceTTL
	u.released = map[string]int{}
	u.wake = make(chan struct{}, 1)
	u.errors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "junction_user_conns_errors_total",
		Help: "Failed calls to the cluster's per-user connection counts (a handshake then admitted on this node's count, or a release or refresh left to the next refresh).",
	})
	if h.deps.Registerer != nil && u.store != nil {
		h.deps.Registerer.MustRegister(u.errors)
	}
}

// userConnTimeout bounds the shared count's call in a handshake.
const userConnTimeout = 2 * time.Second

// acquireShared counts a connection of owner cluster-wide. A shared store that
// cannot be reached admits the connection (this node's own count still
// applies) and logs it: a Redis outage does not refuse every handshake.
func (h *Hub) acquireShared(ctx context.Context, o owner, limit int) bool {
	u := &h.uconns
	if u.store == nil || limit <= 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, userConnTimeout)
	defer cancel()
	ok, err := u.store.AcquireUserConn(ctx, o.key(), u.holder, limit, u.ttl)
	if err != nil {
		u.errors.Inc()
		h.log.Warn("per-user connection count not shared: admitted on this node's count", "err", err)
		// Counted at the next refresh.
		return true
	}
	return ok
}

// releaseShared queues a release of o's connection for the loop.
func (h *Hub) releaseShared(o owner) {
	u := &h.uconns
	if u.store == nil {
		return
	}
	u.mu.Lock()
	u.released[o.key()]++
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// runUserConns sends releases as they come and refreshes this node's
// counts every third of the ttl, until ctx ends.
func (h *Hub) runUserConns(ctx context.Context) {
	u := &h.uconns
	t := time.NewTicker(u.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.dropUserConns()
			return
		case <-u.wake:
			h.sendReleases(ctx)
		case <-t.C:
			h.sendReleases(ctx)
			counts := h.ownerCounts()
			rctx, cancel := context.WithTimeout(ctx, u.ttl/3)
			if err := u.store.RefreshUserConns(rctx, u.holder, counts, u.ttl); err != nil {
				u.errors.Inc()
				h.log.Warn("per-user connection counts not refreshed", "err", err)
			}
			cancel()
		}
	}
}

// dropUserConns ends this node run's counts as the hub closes: its
// connections are closing, so the other nodes need not wait for the
// counts' ttl to admit their users.
func (h *Hub) dropUserConns() {
	u := &h.uconns
	zero := h.ownerCounts()
	for owner := range zero {
		zero[owner] = 0
	}
	u.mu.Lock()
	for owner := range u.released {
		zero[owner] = 0
	}
	u.mu.Unlock()
	if len(zero) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), userConnTimeout)
	defer cancel()
	// A count of 0 expiring at once: dropped by the next acquire.
	if err := u.store.RefreshUserConns(ctx, u.holder, zero, time.Millisecond); err != nil {
		u.errors.Inc()
		h.log.Warn("per-user connection counts not dropped at close: they expire with their ttl", "err", err)
	}
}

// sendReleases sends the queued releases; those that fail are corrected
// by the next refresh (it sets the counts).
func (h *Hub) sendReleases(ctx context.Context) {
	u := &h.uconns
	u.mu.Lock()
	batch := u.released
	if len(batch) == 0 {
		u.mu.Unlock()
		return
	}
	u.released = map[string]int{}
	u.mu.Unlock()
	for owner, n := range batch {
		rctx, cancel := context.WithTimeout(ctx, userConnTimeout)
		err := u.store.ReleaseUserConns(rctx, owner, u.holder, n)
		cancel()
		if err != nil {
			u.errors.Inc()
			h.log.Warn("per-user connection release not shared", "err", err)
			return
		}
	}
}
