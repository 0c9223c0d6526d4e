package cluster

import "github.com/junctionhq/junction/internal/hub"

var _ hub.RouteCache = (*Broker)(nil)

// CachedRoute implements hub.RouteCache: DeviceRoute from the route cache
// alone, without a round trip to Redis. It answers only when the cache
// holds the device's claim, to another node, and that node's lease with
// the claim's boot id; anything else is the caller's to look up
// (DeviceRoute).
func (b *Broker) CachedRoute(deviceID string) (string, bool) {
	if b.checkOpen() != nil {
		return "", false
	}
	now := b.now()
	c, ok := b.routes.claim(deviceID, now)
	if !ok || c.Node == b.cfg.NodeID {
		return "", false
	}
	boot, ok := b.routes.lease(c.Node, now)
	if !ok || (c.BootID != "" && boot != c.BootID) {
		return "", false
	}
	return c.Node, true
}
