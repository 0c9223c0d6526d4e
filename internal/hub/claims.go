package hub

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Device claims: every connection of a device claims the device in the
// Directory (Directory.ClaimDevice: this node, a new generation), so that
// the device's newest connection wins across nodes and RPC calls find the
// node that holds it. On one node the registry closes an older connection
// of the device with 4009 at once; across nodes the claiming node tells the
// node of the claim it replaced (a device.replaced node message), which
// closes its older connection with 4009, and a refresh that finds a newer
// claim (Directory.RefreshDevice reports false) closes it too. Claims are
// refreshed every RPCConfig.LeaseTTL/3 (refreshClaims): a claim the broker
// lost, in a restart without data, is recreated then, and a claim that
// failed (the broker was unreachable) is made again.
//
// A claim is made on a goroutine of the hub after the connection is
// registered (the welcome does not wait for the broker); rpc.register waits
// for its connection's claim. With the in-process MemoryBroker, whose
// claims never wait, the welcome makes it (a worker per connection
// arriving at once kept its stack, idle, for workerIdle after a connect
// burst: 58-136 bytes of RSS per connection in the idle benchmark's
// interleaved pairs, BENCHMARKS.md) and OnClose clears it when the
// device's stripe is free (a worker hand-off and a timeout context per
// close cost more than the clear, a map update). Claims of one device are
// made, refreshed and cleared under the device's lease stripe, so that
// they never reorder on this node.
//
// The node's current claim of a device is the claim of the device's
// connection in the registry (registry.byDevice, then Conn.claim): no
// index of its own, which would cost every connected device another map
// entry.

// deviceClaim is this node's claim for one connection of a device
// (Conn.claim). Every connection with a device holds one, so it is small
// (24 bytes): the channel rpc.register waits on is made only when someone
// waits (claimOf), which few connections (machines) ever do.
type deviceClaim struct {
	conn *Conn
	gen  atomic.Uint64 // the claim's generation; 0 until made (or after a failure)
	// done, guarded by conn.mu, is nil until the first claimOf that has to
	// wait makes it, and claimEnded once the first attempt ended (a
	// channel made by a waiter is closed then).
	done chan struct{}
}

// claimEnded is deviceClaim.done once the claim's first attempt ended.
var claimEnded = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// firstAttemptEnded marks e's first attempt as ended and wakes its waiters.
func (e *deviceClaim) firstAttemptEnded() {
	c := e.conn
	c.mu.Lock()
	done := e.done
	e.done = claimEnded
	c.mu.Unlock()
	if done != nil && done != claimEnded {
		close(done)
	}
}

// nodeReplaced is the kind of the node message telling a node that a newer
// connection of a device claimed it elsewhere:
//
//	{"kind":"device.replaced","call":"-","device":"d1","gen":42}
const nodeReplaced = "device.replaced"

// connected claims the device of a connection just registered.
func (r *rpcRelay) connected(c *Conn) {
	device := c.Principal().DeviceID
	if device == "" || r.h.closed.Load() {
		return
	}
	e := &deviceClaim{conn: c}
	// OnClose clears the claim of a connection that holds one; one that
	// closed already makes none.
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.claim = e
	}
	c.mu.Unlock()
	if closed {
		return
	}
	if r.inlineClaims {
		r.claim(r.h.ctx, device, e)
		return
	}
	r.h.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		r.claim(ctx, device, e)
	})
}

// claim makes e's first attempt under the device's stripe.
func (r *rpcRelay) claim(ctx context.Context, device string, e *deviceClaim) {
	defer e.firstAttemptEnded()
	l := r.stripe(device)
	l.Lock()
	defer l.Unlock()
	r.claimLocked(ctx, device, e)
}

// isMemoryDirectory reports whether dir is the in-process MemoryBroker.
func isMemoryDirectory(dir Directory) bool {
	_, ok := dir.(*MemoryBroker)
	return ok
}

// claimLocked makes e's claim; the device's stripe is held.
func (r *rpcRelay) claimLocked(ctx context.Context, device string, e *deviceClaim) {
	if e.conn.Closed() || !r.isClaim(device, e) {
		return
	}
	gen, prev, err := r.dir.ClaimDevice(ctx, device, r.node, r.cfg.LeaseTTL)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrBrokerClosed) {
			r.h.log.Warn("rpc: claim device", "device", device, "err", err)
		}
		return
	}
	e.gen.Store(gen)
	if prev != "" && prev != r.node {
		// The older connection is on another node: it closes it (4009).
		// Lost, the old node's next refresh finds the newer claim.
		if err := r.sendNode(ctx, prev, &nodeMsg{Kind: nodeReplaced, Call: "-", Device: device, Gen: gen}); err != nil {
			r.h.log.Debug("rpc: tell the replaced node", "node", prev, "device", device, "err", err)
		}
	}
}

// isClaim reports whether e is the node's current claim of device: its
// connection is the device's connection in the registry (Conn.claim is set
// once, so e is that connection's claim).
func (r *rpcRelay) isClaim(device string, e *deviceClaim) bool {
	return r.h.reg.byDevice(device) == e.conn
}

// currentClaim returns the claim of the device's connection on this node,
// or nil.
func (r *rpcRelay) currentClaim(device string) *deviceClaim {
	c := r.h.reg.byDevice(device)
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.claim
}

// claimOf waits for c's claim to be made and returns its generation (0:
// the claim failed, or c closed).
func (r *rpcRelay) claimOf(ctx context.Context, c *Conn) uint64 {
	c.mu.Lock()
	e := c.claim
	if e == nil {
		c.mu.Unlock()
		return 0
	}
	if e.done != claimEnded {
		if e.done == nil {
			e.done = make(chan struct{})
		}
		done := e.done
		c.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return 0
		}
	} else {
		c.mu.Unlock()
	}
	return e.gen.Load()
}

// claimClosed clears e, the claim of the closed connection c, unless a newer
// connection of the device is registered on this node (it claims the device
// too, or has: the broker clears a claim only while its generation is the
// device's, so a stale clear would change nothing either).
func (r *rpcRelay) claimClosed(c *Conn, e *deviceClaim) {
	device := c.Principal().DeviceID
	l := r.stripe(device)
	dropLocked := func(ctx context.Context) {
		cur := r.h.reg.byDevice(device) // c was removed before OnClose called here
		mine := cur == nil || cur == c
		if gen := e.gen.Load(); mine && gen != 0 {
			if err := r.dir.ClearDevice(ctx, device, r.node, gen); err != nil && !errors.Is(err, ErrBrokerClosed) {
				r.h.log.Warn("rpc: clear device claim", "device", device, "err", err)
			}
		}
	}
	// With the in-process MemoryBroker the clear is a map update, made here
	// when the stripe is free. OnClose runs on the transport's loop, which
	// must not wait: a stripe held meanwhile (a registration announcing its
	// machine, a refresh) sends the clear to a worker.
	if r.inlineClaims && l.TryLock() {
		dropLocked(context.Background())
		l.Unlock()
		return
	}
	drop := func(ctx context.Context) {
		l.Lock()
		defer l.Unlock()
		dropLocked(ctx)
	}
	if r.h.closed.Load() {
		drop(context.Background())
		return
	}
	r.h.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		drop(ctx)
	})
}

// deviceClaimOf is a device and its claim, as refreshClaims collects them.
type deviceClaimOf struct {
	device string
	claim  *deviceClaim
}

// refreshClaims refreshes the claim of every device connected to this node
// (every LeaseTTL/3, see Hub.Start): a claim that failed is made again, one
// that a newer connection took over closes its connection (4009).
func (r *rpcRelay) refreshClaims(ctx context.Context) {
	var claims []deviceClaimOf
	r.h.reg.eachDevice(func(d string, c *Conn) {
		c.mu.Lock()
		e := c.claim
		c.mu.Unlock()
		if e != nil {
			claims = append(claims, deviceClaimOf{d, e})
		}
	})
	for _, dc := range claims {
		d, e := dc.device, dc.claim
		l := r.stripe(d)
		l.Lock()
		if !r.isClaim(d, e) || e.conn.Closed() {
			l.Unlock()
			continue
		}
		gen := e.gen.Load()
		if gen == 0 {
			r.claimLocked(ctx, d, e)
			l.Unlock()
			continue
		}
		ok, err := r.dir.RefreshDevice(ctx, d, r.node, gen, r.cfg.LeaseTTL)
		l.Unlock()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				r.h.log.Warn("rpc: refresh device claim", "device", d, "err", err)
			}
		case !ok:
			r.h.log.Debug("rpc: a newer connection claimed the device", "device", d)
			e.conn.Disconnect(protocol.DisconnectReplaced)
		}
	}
}

// deviceReplaced closes this node's connection of a device that a newer
// connection claimed on another node.
func (r *rpcRelay) deviceReplaced(m *nodeMsg) {
	e := r.currentClaim(m.Device)
	if e == nil {
		return
	}
	if gen := e.gen.Load(); gen != 0 && gen < m.Gen {
		e.conn.Disconnect(protocol.DisconnectReplaced)
	}
}
