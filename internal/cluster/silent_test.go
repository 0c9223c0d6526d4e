package cluster_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/redistest"
)

// freezeProxy forwards TCP to a target. freeze makes the connections open
// at that moment silent in both directions without closing them, as a
// network that drops packets would (half-open connections); connections
// made later forward normally.
type freezeProxy struct {
	ln     net.Listener
	target string
	done   chan struct{}

	mu     sync.Mutex
	frozen map[net.Conn]bool // guarded by mu: accepted before the last freeze
	conns  []net.Conn        // guarded by mu
	wg     sync.WaitGroup
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, target: target, done: make(chan struct{}), frozen: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *freezeProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c, u, c) })
		p.wg.Go(func() { p.pipe(u, c, c) })
	}
}

// pipe copies src to dst until either closes; once key is frozen it stops
// forwarding (holding the data) until the proxy closes.
func (p *freezeProxy) pipe(src, dst, key net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			frozen := p.frozen[key]
			p.mu.Unlock()
			if frozen {
				<-p.done
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; i < len(p.conns); i += 2 {
		p.frozen[p.conns[i]] = true
	}
}

// TestSilentPubSubConnectionIsReplaced: the network between a node and
// Redis silently drops its connections (no reset, no error). The node's
// pub/sub connection is pinged, found silent, replaced; its subscriptions
// are checked and what it missed is filled, exactly once and in order.
func TestSilentPubSubConnectionIsReplaced(t *testing.T) {
	ctx := context.Background()
	srv := redistest.New(t, redistest.Options{})
	proxy := newFreezeProxy(t, srv.Addr())
	r := newRecorder()
	prefix := "silent:"
	a := newBroker(t, []string{"redis://" + proxy.ln.Addr().String() + "?read_timeout=300ms&write_timeout=300ms"}, func(c *cluster.Config) {
		c.Prefix, c.NodeID = prefix, "a"
		c.PubSubPing = 100 * time.Millisecond
		c.CheckInterval = 100 * time.Millisecond
		c.PubSubConns = 1
	})
	if err := a.Deliver(ctx, r); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, []string{srv.URL()}, func(c *cluster.Config) { c.Prefix, c.NodeID = prefix, "b" })
	if err := a.Subscribe(ctx, "t:s"); err != nil {
		t.Fatal(err)
	}
	pos := publish(t, b, "t:s", 1, 5, hist)
	waitFor(t, "5 publications", func() bool { return len(r.get("t:s")) == 5 })

	proxy.freeze()
	publish(t, b, "t:s", 6, 30, hist)
	waitFor(t, "30 publications", func() bool {
		p, ok := r.last("t:s")
		return ok && p.Offset == 30
	})
	// The gap may be filled by the periodic check before the replacement
	// resubscribed: either way the replacement comes, and carries on.
	waitFor(t, "the silent connection replaced and resubscribed", func() bool {
		st := a.Stats()
		return st.ReceiveErrors > 0 && st.Resubscribed > 0
	})
	publish(t, b, "t:s", 31, 35, hist)
	waitFor(t, "35 publications", func() bool {
		p, ok := r.last("t:s")
		return ok && p.Offset == 35
	})
	checkSequence(t, r.get("t:s"), pos.Epoch, 35)
}
