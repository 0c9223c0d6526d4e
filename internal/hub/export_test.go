package hub

// SetDeliverHook makes every HandlePublication of h call f first, so that a
// test can hold a fan-out in progress. Call it before Start.
func SetDeliverHook(h *Hub, f func(topic string, pub Publication)) { h.deliverHook = f }
