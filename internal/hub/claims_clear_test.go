package hub

import (
	"testing"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// TestDeviceClaimClearedInOnClose: with the in-process MemoryBroker a
// connection's device claim is cleared by its OnClose itself (claims.go),
// not later on a worker, so the directory no longer names this node for
// the device once OnClose returns.
func TestDeviceClaimClearedInOnClose(t *testing.T) {
	h := detachHub(t)
	b := h.rpc.dir.(*MemoryBroker)
	c := newConn(h, &auth.Principal{UserID: "alice", DeviceID: "d1", Kind: "machine"})
	// What the welcome does for a connection with a device.
	if !h.reg.add(c) {
		t.Fatal("registry refused the connection")
	}
	c.setState(connRegistered)
	h.rpc.connected(c)
	if _, node, ok := LeaseExpiry(b, "d1"); !ok || node != h.rpc.node {
		t.Fatalf("claim of d1 after connected: node %q (claimed %v), want %q", node, ok, h.rpc.node)
	}
	c.OnClose(nil, protocol.CloseNormal, "")
	if _, node, ok := LeaseExpiry(b, "d1"); ok {
		t.Fatalf("claim of d1 after OnClose: still names node %q, want cleared", node)
	}
}
