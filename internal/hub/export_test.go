package hub

import "time"

// Test seams into the memory broker, for tests in package hub_test.

// SetMemoryBrokerClock makes b read the time from now (before Start).
func SetMemoryBrokerClock(b *MemoryBroker, now func() time.Time) { b.now = now }

// PresenceExpiry returns when b's presence entry of clientID in topic
// expires, and whether there is one.
func PresenceExpiry(b *MemoryBroker, topic, clientID string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.presence[topic][clientID]
	return e.expires, ok
}

// LeaseExpiry returns when b's lease of deviceID expires and the node it
// names, and whether there is one.
func LeaseExpiry(b *MemoryBroker, deviceID string) (time.Time, string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.devices[deviceID]
	return time.Unix(0, l.expires), b.leaseNodes[l.node()], ok && l.node() != 0
}

// SetDeliverHook makes every HandlePublication of h call f first, so that a
// test can hold a fan-out in progress. Call it before Start.
func SetDeliverHook(h *Hub, f func(topic string, pub Publication)) { h.deliverHook = f }

// MaxQueuedDeliveries is the memory broker's bound on a topic's
// publications waiting for delivery.
const MaxQueuedDeliveries = maxQueued

// QueuedDeliveries reports, for topic in the memory broker s, how many
// publications wait for delivery and how many publishers wait for room.
func QueuedDeliveries(s Streams, topic string) (queued, waiting int) {
	b := s.(*MemoryBroker)
	sh := b.shard(topic)
	sh.mu.Lock()
	t := sh.topics[topic]
	sh.mu.Unlock()
	if t == nil {
		return 0, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue), t.waiters
}

// Workers reports h's pooled workers (workers.go): running, and of those
// waiting for a task.
func Workers(h *Hub) (live, idle int) {
	return int(h.pool.live.Load()), int(h.pool.idle.Load())
}

// SeenPending returns how many last-seen times wait for Deps.DeviceSeen.
func SeenPending(h *Hub) int {
	h.reg.seen.mu.Lock()
	defer h.reg.seen.mu.Unlock()
	return len(h.reg.seen.pending)
}
