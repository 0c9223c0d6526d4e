package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// clusterNodes starts n nodes on the redis-server rs sharing one signing
// secret (a token of one node is valid on every node), each configured by
// configure too.
func clusterNodes(t *testing.T, rs *redistest.Server, n int, configure func(*Config)) []*Main {
	t.Helper()
	return clusterNodesEach(t, rs, n, func(_ int, c *Config) {
		if configure != nil {
			configure(c)
		}
	})
}

// clusterNodesEach is clusterNodes with configure told each node's index.
func clusterNodesEach(t *testing.T, rs *redistest.Server, n int, configure func(int, *Config)) []*Main {
	t.Helper()
	var nodes []*Main
	var secret []byte
	for i := range n {
		dir := t.TempDir()
		if secret != nil {
			if err := os.WriteFile(filepath.Join(dir, "secret.key"), secret, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		m := startServer(t, func(c *Config) {
			c.Data = dir
			c.Broker = rs.URL()
			c.Hub.RequestsPerSecond = -1
			configure(i, c)
		})
		if secret == nil {
			var err error
			if secret, err = os.ReadFile(filepath.Join(dir, "secret.key")); err != nil {
				t.Fatal(err)
			}
		}
		nodes = append(nodes, m)
	}
	return nodes
}

// claimOf returns the device's claim as the node m's Redis broker sees it.
func claimOf(t *testing.T, m *Main, device string) (cluster.DeviceClaim, bool) {
	t.Helper()
	rb, ok := m.Broker.Directory.(*cluster.Broker)
	if !ok {
		t.Fatalf("directory %T, want the Redis broker", m.Broker.Directory)
	}
	c, found, err := rb.DeviceClaim(context.Background(), device)
	if err != nil {
		return cluster.DeviceClaim{}, false
	}
	return c, found
}

// TestRedisDeviceReplacedAcrossNodes: a device connected to node A connects
// again through node B; the newest connection wins cluster-wide: A closes
// its connection with 4009 and the claim names B with a newer generation.
// Redis then restarts without its data: B claims the device again (within
// a third of the claim's ttl), with its generation.
func TestRedisDeviceReplacedAcrossNodes(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	nodes := clusterNodes(t, rs, 2, func(c *Config) { c.Hub.RPC.LeaseTTL = 600 * time.Millisecond })
	a, b := nodes[0], nodes[1]

	first := dialClient(t, a, "alice", "d1", "phone")
	eventually(t, "d1's claim naming node A", func() bool {
		c, ok := claimOf(t, a, "d1")
		return ok && c.Node == a.Hub.NodeID()
	})
	c1, _ := claimOf(t, a, "d1")
	second := dialClient(t, b, "alice", "d1", "phone")
	eventually(t, "the connection on node A closed with 4009", func() bool {
		return first.State() == client.StateClosed && first.CloseCode() == protocol.CloseReplaced
	})
	c2, ok := claimOf(t, b, "d1")
	if !ok || c2.Node != b.Hub.NodeID() || c2.Generation <= c1.Generation {
		t.Fatalf("claim %+v after the second connection, want node B over generation %d", c2, c1.Generation)
	}
	// Several refresh periods later: A's claim did not come back, B's
	// connection lives.
	eventually(t, "node A without connections", func() bool {
		return a.Hub.Len() == 0
	})
	if second.State() != client.StateConnected {
		t.Fatalf("the newest connection is %v, want connected", second.State())
	}

	if err := rs.Restart(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "d1 claimed again by node B after Redis lost its data", func() bool {
		c, ok := claimOf(t, b, "d1")
		return ok && c.Node == b.Hub.NodeID() && c.Generation == c2.Generation
	})
	if c, _ := claimOf(t, a, "d1"); c.Node != b.Hub.NodeID() {
		t.Fatalf("claim %+v, want node B's", c)
	}
}
