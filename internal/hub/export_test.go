package hub

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
