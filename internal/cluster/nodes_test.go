package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/redistest"
)

// TestNodeLeasesAndClaims: two nodes on one Redis. A device claimed by n2
// is found from n1 while n2's node lease lives; once n2 stops (its lease
// deleted) or is killed (its lease expires), its claims route nothing and
// NodeAlive reports it gone. A node restarted under the same id with a new
// boot id does not inherit the old claims.
func TestNodeLeasesAndClaims(t *testing.T) {
	urls, _ := servers(t, 1, redistest.Options{})
	prefix := fmt.Sprintf("t%d:", prefixSeq.Add(1))
	ctx := context.Background()
	n1 := newBroker(t, urls, func(c *cluster.Config) { c.Prefix = prefix })
	start2 := func(boot string) *cluster.Broker {
		return newBroker(t, urls, func(c *cluster.Config) {
			c.NodeID, c.BootID, c.Prefix, c.NodeLeaseTTL = "n2", boot, prefix, time.Second
		})
	}
	n2 := start2("boot-a")
	if alive, err := n1.NodeAlive(ctx, "n2"); err != nil || !alive {
		t.Fatalf("NodeAlive(n2) = %v, %v; want true", alive, err)
	}
	if _, _, err := n2.ClaimDevice(ctx, "d1", "n2", time.Minute); err != nil {
		t.Fatal(err)
	}
	if node, ok, err := n1.DeviceNode(ctx, "d1"); err != nil || !ok || node != "n2" {
		t.Fatalf("DeviceNode(d1) from n1 = %q, %v, %v; want n2", node, ok, err)
	}
	// Over two lease periods the lease is refreshed: n2 stays alive. (The
	// ticker paces the observation; it orders nothing.)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); <-tick.C {
		if alive, err := n1.NodeAlive(ctx, "n2"); err != nil || !alive {
			t.Fatalf("NodeAlive(n2) = %v, %v while n2 runs; want true", alive, err)
		}
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	if alive, err := n1.NodeAlive(ctx, "n2"); err != nil || alive {
		t.Fatalf("NodeAlive(n2) = %v, %v after n2 closed; want false", alive, err)
	}
	if node, ok, err := n1.DeviceNode(ctx, "d1"); err != nil || ok {
		t.Fatalf("DeviceNode(d1) = %q, %v, %v after its node closed; want none", node, ok, err)
	}
	// The same node id, restarted: a new boot id, the old claim stays stale.
	n2b := start2("boot-b")
	if node, ok, err := n1.DeviceNode(ctx, "d1"); err != nil || ok {
		t.Fatalf("DeviceNode(d1) = %q, %v, %v after its node restarted; want none", node, ok, err)
	}
	if c, ok, err := n1.DeviceClaim(ctx, "d1"); err != nil || !ok || c.BootID != "boot-a" {
		t.Fatalf("claim %+v %v %v, want n2's old claim (boot-a)", c, ok, err)
	}
	_ = n2b
}

// TestClaimsAfterRedisLoss: Redis restarts without its data; a refresh
// recreates the claim with its generation, and the generation counter is
// raised so that a later claim is newer still.
func TestClaimsAfterRedisLoss(t *testing.T) {
	urls, srvs := servers(t, 1, redistest.Options{})
	b := newBroker(t, urls, nil)
	ctx := context.Background()
	g1, _, err := b.ClaimDevice(ctx, "d1", "n1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := srvs[0].Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.DeviceClaim(ctx, "d1"); err != nil || ok {
		t.Fatalf("claim after the data loss: %v %v, want none", ok, err)
	}
	if ok, err := b.RefreshDevice(ctx, "d1", "n1", g1, time.Minute); err != nil || !ok {
		t.Fatalf("refresh after the data loss: %v %v, want the claim recreated", ok, err)
	}
	if c, ok, err := b.DeviceClaim(ctx, "d1"); err != nil || !ok || c.Node != "n1" || c.Generation != int64(g1) || c.BootID != b.BootID() {
		t.Fatalf("claim %+v %v %v, want n1's generation %d", c, ok, err, g1)
	}
	if g2, prev, err := b.ClaimDevice(ctx, "d1", "n1", time.Minute); err != nil || g2 <= g1 || prev != "n1" {
		t.Fatalf("claim after the refresh: %d %q %v, want over %d", g2, prev, err, g1)
	}
}
