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
	return l.expires, l.node, ok
}
