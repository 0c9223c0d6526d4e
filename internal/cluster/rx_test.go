package cluster_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
)

var _ hub.NodeReceiver = (*cluster.Broker)(nil)

// cutProxy forwards TCP to a target until cut: then it closes every
// connection and every new one at once (Redis unreachable), until restored.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool                  // guarded by mu
	conns map[net.Conn]struct{} // guarded by mu
	wg    sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.pipe(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *cutProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *cutProxy) pipe(c net.Conn) {
	if !p.track(c) {
		return
	}
	defer p.forget(c)
	u, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(u) {
		return
	}
	defer p.forget(u)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

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
	proxy := newCutProxy(t, srv.Addr())
	prefix := "rx:"
	a := newBroker(t, []string{"redis://" + proxy.ln.Addr().String()}, func(c *cluster.Config) {
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

	proxy.setCut(true)
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

	proxy.setCut(false)
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
