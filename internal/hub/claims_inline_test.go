package hub_test

import (
	"testing"

	"github.com/junctionhq/junction/internal/hub"
)

// TestDeviceClaimedInWelcome: with the in-process MemoryBroker a device's
// claim is made in its connection's welcome (claims.go), not later on a
// worker, so a client holding its welcome finds its device claimed by its
// node at once; so does the device's next connection, which replaces the
// first.
func TestDeviceClaimedInWelcome(t *testing.T) {
	b := hub.NewMemoryBroker("n1")
	n := startNode(t, hub.Config{NodeID: "n1"}, b.Broker())
	for i := range 2 {
		n.dial(t, "alice", "d1", "machine", nil)
		if _, node, ok := hub.LeaseExpiry(b, "d1"); !ok || node != "n1" {
			t.Fatalf("connection %d: device d1's claim after the welcome: node %q (claimed %v), want n1", i+1, node, ok)
		}
	}
	eventually(t, "the first connection of d1 to be replaced", func() bool {
		return len(n.hub.AdminConnections(hub.ConnFilter{DeviceID: "d1"}).Items) == 1
	})
}
