package hub

import (
	"context"
)

// RouteHints is implemented by a Directory that can answer DeviceNode from
// a cache (the cluster broker's route cache), saving the lookups in the
// directory on a forwarded call's way out. A hint may be stale; the RPC
// relay detects that and corrects it:
//
//   - A call goes to the node DeviceRoute names. When that node answers
//     that the device is not there, or the call cannot be delivered to it
//     (no such node listens), the relay calls ForgetRoute and looks again
//     with DeviceNode at once, before it waits for an offline target or
//     fails with unavailable: a stale hint costs one extra round trip,
//     never a different answer. Later looks of that call use DeviceNode.
//   - A node that takes the call and dies is found by the NodeAlive checks
//     of the call in flight, which read the directory itself.
type RouteHints interface {
	// DeviceRoute is DeviceNode, possibly answered from a cache.
	DeviceRoute(ctx context.Context, deviceID string) (nodeID string, ok bool, err error)
	// ForgetRoute drops what the cache knows of deviceID's node, and of
	// nodeID's lease when nodeGone (the node could not be reached).
	ForgetRoute(deviceID, nodeID string, nodeGone bool)
}

// NodeReceiver is implemented by a Directory whose delivery to this node
// can break for a while (the cluster broker: this node's channel lives on
// a pub/sub connection that reconnects). Receiving reports whether
// messages sent to this node arrive now, and a generation that changes
// each time delivery is re-established: messages sent to this node in
// between were lost. A forwarded call therefore never leaves while its
// answer could not arrive, and one whose answer may have been lost fails
// with unavailable at its next node check instead of at its timeout.
type NodeReceiver interface {
	Receiving() (gen uint64, ok bool)
}

// route returns the node holding device: from the directory's route hints
// unless fresh (a hint proved stale already), otherwise from the
// directory.
func (r *rpcRelay) route(ctx context.Context, device string, fresh bool) (string, bool, error) {
	if h, ok := r.dir.(RouteHints); ok && !fresh {
		return h.DeviceRoute(ctx, device)
	}
	return r.dir.DeviceNode(ctx, device)
}

// staleRoute reports a route to device through node that proved stale
// (nodeGone: the node could not be reached) and whether looking again can
// give another answer (the directory has route hints).
func (r *rpcRelay) staleRoute(device, node string, nodeGone bool) bool {
	h, ok := r.dir.(RouteHints)
	if !ok {
		return false
	}
	h.ForgetRoute(device, node, nodeGone)
	reason := "offline"
	if nodeGone {
		reason = "unreachable"
	}
	r.metrics.stale.WithLabelValues(reason).Inc()
	return true
}

// routeMiss says why a forwarded call did not reach its target.
type routeMiss uint8

const (
	reached         routeMiss = iota // the call reached the target's node (its answer, or an error of the call)
	missOffline                      // the node answered that the device is not there
	missUnreachable                  // the call could not be delivered to the node
)
