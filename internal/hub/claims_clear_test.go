package hub

import (
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// claimedConn returns a connection of device registered and claimed in h,
// as the welcome leaves it.
func claimedConn(t *testing.T, h *Hub, device string) *Conn {
	t.Helper()
	c := newConn(h, &auth.Principal{UserID: "alice", DeviceID: device, Kind: "machine"})
	if !h.reg.add(c) {
		t.Fatal("registry refused the connection")
	}
	c.setState(connRegistered)
	h.rpc.connected(c)
	if _, node, ok := LeaseExpiry(h.rpc.dir.(*MemoryBroker), device); !ok || node != h.rpc.node {
		t.Fatalf("claim of %s after connected: node %q (claimed %v), want %q", device, node, ok, h.rpc.node)
	}
	return c
}

// TestDeviceClaimClearedInOnClose: with the in-process MemoryBroker a
// connection's device claim is cleared by its OnClose itself (claims.go),
// not later on a worker, so the directory no longer names this node for
// the device once OnClose returns.
func TestDeviceClaimClearedInOnClose(t *testing.T) {
	h := detachHub(t)
	c := claimedConn(t, h, "d1")
	c.OnClose(nil, protocol.CloseNormal, "")
	if _, node, ok := LeaseExpiry(h.rpc.dir.(*MemoryBroker), "d1"); ok {
		t.Fatalf("claim of d1 after OnClose: still names node %q, want cleared", node)
	}
}

// TestDeviceClaimClearWaitsOffTheLoop: OnClose runs on the transport's
// loop, which must not wait for the device's stripe; held by someone else,
// the clear is left to a worker, made once the stripe is free.
func TestDeviceClaimClearWaitsOffTheLoop(t *testing.T) {
	h := detachHub(t)
	b := h.rpc.dir.(*MemoryBroker)
	c := claimedConn(t, h, "d1")
	l := h.rpc.stripe("d1")
	l.Lock()
	c.OnClose(nil, protocol.CloseNormal, "") // returns with the stripe held
	_, _, claimed := LeaseExpiry(b, "d1")
	l.Unlock()
	if !claimed {
		t.Fatal("claim of d1 cleared while its stripe was held")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, _, ok := LeaseExpiry(b, "d1"); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("claim of d1 not cleared after its stripe was released")
		}
	}
}
