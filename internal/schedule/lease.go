package schedule

import (
	"context"
	"sync"
	"time"
)

// Leases decide which node runs a tick: every node's scheduler computes the
// same ticks (the jobs and their zones are the same everywhere) and asks
// for the tick's lease; the one that gets it runs the job, the others skip
// the tick. This is how a job runs at most once per tick across a cluster.
//
// Acquire claims key for node until ttl has passed. Of all the calls with
// one key while its claim lasts, exactly one reports true: the first; the
// others (from any node, the holder included) report false. After ttl the
// key may be claimed again. An error means the answer is unknown: the
// caller skips the tick (at most once, rather than at least once).
//
// Keys are "schedule:<job>:<tick in Unix seconds>"; ttl outlasts the clock
// skew between nodes (Config.LeaseTTL). MemoryLeases serves one node; a
// cluster's broker (Redis: SET key node NX PX ttl) satisfies the interface
// without importing this package, and runs the contract suite in
// internal/schedule/leasetest.
type Leases interface {
	Acquire(ctx context.Context, key, node string, ttl time.Duration) (bool, error)
}

// MemoryLeases are the leases of a single node. The zero value is ready.
type MemoryLeases struct {
	mu      sync.Mutex
	held    map[string]time.Time // guarded by mu: key → end of its claim
	sweepAt int                  // guarded by mu: len(held) at which expired claims are dropped
}

var _ Leases = (*MemoryLeases)(nil)

// Acquire implements Leases. Memory stays bounded by the claims alive: the
// expired ones are dropped whenever the map has doubled since the last
// sweep.
func (l *MemoryLeases) Acquire(ctx context.Context, key, node string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = map[string]time.Time{}
	}
	if len(l.held) >= l.sweepAt {
		for k, until := range l.held {
			if !now.Before(until) {
				delete(l.held, k)
			}
		}
		l.sweepAt = max(64, 2*len(l.held))
	}
	if until, ok := l.held[key]; ok && now.Before(until) {
		return false, nil
	}
	l.held[key] = now.Add(ttl)
	return true, nil
}
