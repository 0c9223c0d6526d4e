package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/internal/hub"
)

// Route cache. A call to a device on another node needs the device's claim
// and the claim node's lease; read from Redis each time, they are two
// round trips before the request leaves (DeviceNode). DeviceRoute answers
// from a per-node cache instead: the claims and leases DeviceNode and
// NodeAlive read last, each kept for Config.RouteCacheTTL at most, at most
// Config.RouteCacheSize devices.
//
// A cached route may be stale: the device reconnected elsewhere, or its
// node died. Such a route is detected, not trusted: the node it names
// answers that the device is not there (it holds no live connection of
// it), or the request cannot be delivered (no node listens on the node's
// channel any more); the RPC relay then forgets the route (ForgetRoute)
// and asks DeviceNode, which reads Redis. A node that does not answer at
// all (cut from Redis) is caught as before, by the uncached NodeAlive
// checks of a call in flight. The one case a cache can prolong is a
// device with two live connections, the newer on another node, whose old
// node has not closed the older one yet (device.replaced lost): for at
// most RouteCacheTTL more, calls from this node may still reach the older
// connection, as they could while the old node had not seen the claim.
//
// Only positive answers are cached (a live claim, a live lease): a device
// without a route, or a dead node, is always looked up again.

var _ hub.RouteHints = (*Broker)(nil)

const (
	defaultRouteCacheTTL  = time.Second
	defaultRouteCacheSize = 100_000
)

// routeSeqStripes is the number of invalidation counters; keys that share
// one only cost each other a cached answer, never correctness.
const routeSeqStripes = 64

// routeCache is the cache of device claims and node leases.
type routeCache struct {
	ttl time.Duration // set once; <= 0: nothing is cached
	max int           // set once: bound of each map

	// seqs count invalidations, in stripes by key (claimSeq, leaseSeq). A
	// lookup stores its answer only if no invalidation of its stripe
	// happened since it read Redis, so that an answer read before a claim
	// changed never outlives the change. One counter for all keys would
	// make every connect on this node (a claim invalidates the device)
	// void the lookups of every other device in flight: under steady
	// connects the cache would rarely fill.
	seqs [routeSeqStripes]atomic.Uint64

	mu      sync.RWMutex
	devices map[string]cachedClaim // guarded by mu
	leases  map[string]cachedLease // guarded by mu
}

type cachedClaim struct {
	claim DeviceClaim
	at    time.Time // when its read from Redis began
}

type cachedLease struct {
	boot string
	at   time.Time
}

func (e cachedClaim) stamp() time.Time { return e.at }
func (e cachedLease) stamp() time.Time { return e.at }

// stripe is key's invalidation counter; claims and leases hash apart
// (salt) so that a node's id never shares a device's stripe by design.
func (c *routeCache) stripe(key string, salt uint32) *atomic.Uint64 {
	h := uint32(2166136261) ^ salt // FNV-1a
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return &c.seqs[h%routeSeqStripes]
}

// claimSeq is read before a device's claim is read from Redis, and given
// to storeClaim with the answer.
func (c *routeCache) claimSeq(device string) uint64 { return c.stripe(device, 0).Load() }

// leaseSeq is claimSeq for a node's lease.
func (c *routeCache) leaseSeq(node string) uint64 { return c.stripe(node, 0x9e3779b9).Load() }

func newRouteCache(ttl time.Duration, size int) *routeCache {
	return &routeCache{ttl: ttl, max: size, devices: make(map[string]cachedClaim), leases: make(map[string]cachedLease)}
}

// claim returns device's cached claim younger than ttl.
func (c *routeCache) claim(device string, now time.Time) (DeviceClaim, bool) {
	if c.ttl <= 0 {
		return DeviceClaim{}, false
	}
	c.mu.RLock()
	e, ok := c.devices[device]
	c.mu.RUnlock()
	if !ok || now.Sub(e.at) >= c.ttl {
		return DeviceClaim{}, false
	}
	return e.claim, true
}

// lease returns node's cached boot id younger than ttl.
func (c *routeCache) lease(node string, now time.Time) (string, bool) {
	if c.ttl <= 0 {
		return "", false
	}
	c.mu.RLock()
	e, ok := c.leases[node]
	c.mu.RUnlock()
	if !ok || now.Sub(e.at) >= c.ttl {
		return "", false
	}
	return e.boot, true
}

// storeClaim keeps a claim read at, when no invalidation of its stripe
// happened since seq (claimSeq) was read before the read. A full map loses one arbitrary entry
// (expired ones are the usual victims: nothing else makes room).
func (c *routeCache) storeClaim(seq uint64, device string, claim DeviceClaim, at time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claimSeq(device) != seq {
		return
	}
	if old, ok := c.devices[device]; ok && old.claim.Generation > claim.Generation {
		return // a newer claim was read meanwhile
	}
	if _, ok := c.devices[device]; !ok && len(c.devices) >= c.max {
		evictOne(c.devices, at, c.ttl)
	}
	c.devices[device] = cachedClaim{claim: claim, at: at}
}

func (c *routeCache) storeLease(seq uint64, node, boot string, at time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leaseSeq(node) != seq {
		return
	}
	if _, ok := c.leases[node]; !ok && len(c.leases) >= c.max {
		evictOne(c.leases, at, c.ttl)
	}
	c.leases[node] = cachedLease{boot: boot, at: at}
}

// evictOne removes an expired entry if one of the first few visited is,
// otherwise an arbitrary one (map order is random).
func evictOne[V interface{ stamp() time.Time }](m map[string]V, now time.Time, ttl time.Duration) {
	victim, n := "", 0
	for k, v := range m {
		victim = k
		if now.Sub(v.stamp()) >= ttl || n >= 8 {
			break
		}
		n++
	}
	delete(m, victim)
}

// forgetDevice drops device's claim.
func (c *routeCache) forgetDevice(device string) {
	c.mu.Lock()
	c.stripe(device, 0).Add(1)
	delete(c.devices, device)
	c.mu.Unlock()
}

// forgetNode drops node's lease.
func (c *routeCache) forgetNode(node string) {
	c.mu.Lock()
	c.stripe(node, 0x9e3779b9).Add(1)
	delete(c.leases, node)
	c.mu.Unlock()
}

// lookupClaim reads deviceID's claim from Redis and caches a live one.
func (b *Broker) lookupClaim(ctx context.Context, deviceID string) (DeviceClaim, bool, error) {
	seq, at := b.routes.claimSeq(deviceID), b.now()
	c, ok, err := b.DeviceClaim(ctx, deviceID)
	if err == nil && ok {
		b.routes.storeClaim(seq, deviceID, c, at)
	}
	return c, ok, err
}

// lookupLease reads node's lease from Redis and caches a live one; a dead
// one is forgotten.
func (b *Broker) lookupLease(ctx context.Context, node string) (string, bool, error) {
	seq, at := b.routes.leaseSeq(node), b.now()
	boot, alive, err := b.readLease(ctx, node)
	switch {
	case err != nil:
	case alive:
		b.routes.storeLease(seq, node, boot, at)
	default:
		b.routes.forgetNode(node)
	}
	return boot, alive, err
}

// DeviceRoute implements hub.RouteHints: DeviceNode answered from the route
// cache when it holds the device's claim naming another node and that
// node's live lease naming the claim's boot id, both younger than
// Config.RouteCacheTTL. Any other answer (no claim, a claim of this node,
// a dead or restarted node) is DeviceNode's, read from Redis.
func (b *Broker) DeviceRoute(ctx context.Context, deviceID string) (string, bool, error) {
	if err := b.checkOpen(); err != nil {
		return "", false, err
	}
	now := b.now()
	c, ok := b.routes.claim(deviceID, now)
	if !ok || c.Node == b.cfg.NodeID {
		return b.DeviceNode(ctx, deviceID)
	}
	boot, ok := b.routes.lease(c.Node, now)
	if !ok {
		var alive bool
		var err error
		if boot, alive, err = b.lookupLease(ctx, c.Node); err != nil {
			return "", false, err
		}
		ok = alive
	}
	if !ok || (c.BootID != "" && boot != c.BootID) {
		b.routes.forgetDevice(deviceID)
		return b.DeviceNode(ctx, deviceID)
	}
	return c.Node, true, nil
}

// ForgetRoute implements hub.RouteHints: the route to deviceID through
// nodeID proved stale; nodeGone says nodeID could not be reached.
func (b *Broker) ForgetRoute(deviceID, nodeID string, nodeGone bool) {
	b.routes.forgetDevice(deviceID)
	if nodeGone {
		b.routes.forgetNode(nodeID)
	}
}
