package cluster_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
)

var _ hub.NodeReceiver = (*cluster.Broker)(nil)

// nodeInbox records the node messages delivered to a broker.
type nodeInbox struct {
	mu   sync.Mutex
	msgs []string
}

func (n *nodeInbox) HandleNodeMessage(m json.RawMessage) {
	n.mu.Lock()
	n.msgs = append(n.msgs, string(m))
	n.mu.Unlock()
}

func (n *nodeInbox) has(m string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range n.msgs {
		if x == m {
			return true
		}
	}
	return false
}

// TestNodeChannelReceiving: a node cut from Redis reports its channel down
// (Receiving false, /readyz's "node channel" dependency failing) from the
// moment its pub/sub connection broke until Redis confirmed the channel
// again; then it reports it up under a new generation (node messages sent
// meanwhile were lost: the RPC relay fails calls that waited across it)
// and messages reach it again.
func TestNodeChannelReceiving(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t, redistest.Options{})
	proxy := redistest.StartCutProxy(t, srv.Addr())
	prefix := "rx:"
	a := newBroker(t, []string{"redis://" + proxy.Addr()}, func(c *cluster.Config) {
		c.Prefix, c.NodeID = prefix, "a"
	})
	b := newBroker(t, []string{srv.URL()}, func(c *cluster.Config) { c.Prefix, c.NodeID = prefix, "b" })
	nodeChannel := func() cluster.Dependency {
		for _, d := range a.Dependencies() {
			if d.Name == "node channel" {
				return d
			}
		}
		t.Fatal("no node channel dependency")
		return cluster.Dependency{}
	}()
	if _, ok := a.Receiving(); ok {
		t.Fatal("Receiving before Receive: want not receiving")
	}
	if err := nodeChannel.Check(ctx); err != nil {
		t.Fatalf("node channel before Receive: %v, want ok (nothing to receive)", err)
	}
	in := &nodeInbox{}
	if err := a.Receive(ctx, in); err != nil {
		t.Fatal(err)
	}
	gen1, ok := a.Receiving()
	if !ok || gen1 == 0 {
		t.Fatalf("after Receive: gen %d ok %v, want receiving", gen1, ok)
	}
	if err := nodeChannel.Check(ctx); err != nil {
		t.Fatalf("node channel: %v", err)
	}
	if err := b.SendToNode(ctx, "a", json.RawMessage(`"m1"`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "m1 at a", func() bool { return in.has(`"m1"`) })

	proxy.SetCut(true)
	waitFor(t, "a's channel down", func() bool {
		_, ok := a.Receiving()
		return !ok
	})
	if err := nodeChannel.Check(ctx); err == nil || !strings.Contains(err.Error(), "not subscribed") {
		t.Fatalf("node channel while cut: %v, want not subscribed", err)
	}
	if err := b.SendToNode(ctx, "a", json.RawMessage(`"lost"`)); err == nil {
		t.Fatal("SendToNode to a cut node: want not reachable")
	}

	proxy.SetCut(false)
	waitFor(t, "a's channel up again", func() bool {
		_, ok := a.Receiving()
		return ok
	})
	gen2, _ := a.Receiving()
	if gen2 == gen1 {
		t.Fatalf("generation %d after the resubscription, want a new one", gen2)
	}
	if err := nodeChannel.Check(ctx); err != nil {
		t.Fatalf("node channel after the cut: %v", err)
	}
	if err := b.SendToNode(ctx, "a", json.RawMessage(`"m2"`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "m2 at a", func() bool { return in.has(`"m2"`) })
}
