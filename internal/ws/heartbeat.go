package ws

import (
	"time"

	"github.com/junctionhq/junction/protocol"
)

// heartbeatTick returns how often the heartbeat goroutine walks the
// connections: a quarter of the shortest interval it enforces, between 5ms
// and 1s.
func (t *Transport) heartbeatTick() time.Duration {
	d := min(t.cfg.PongTimeout, t.cfg.WriteTimeout)
	if t.cfg.PingInterval > 0 {
		d = min(d, t.cfg.PingInterval)
	}
	return min(max(d/4, 5*time.Millisecond), time.Second)
}

// heartbeat is the one goroutine that keeps time for every connection: it
// pings RoleServer connections every PingInterval, closes with 4102 those
// that read nothing within PongTimeout of a ping (counted from when nothing
// was left to write before it), and cuts connections whose
// socket stayed full, or whose close did not complete, for WriteTimeout.
// No connection has a timer of its own.
func (t *Transport) heartbeat() {
	tickC := t.cfg.tick
	if tickC == nil {
		tick := time.NewTicker(t.heartbeatTick())
		defer tick.Stop()
		tickC = tick.C
	}
	var conns []*Conn
	for {
		select {
		case <-t.hbStop:
			return
		case <-tickC:
		}
		conns = t.conns(conns[:0])
		now := t.now()
		for _, c := range conns {
			t.check(c, now)
		}
		clear(conns)
		if cap(conns) > 1<<16 && len(conns) < cap(conns)/4 {
			conns = nil
		}
	}
}

// check enforces the heartbeat and the write timeout on c at time now, and
// releases the queue arrays of a connection with nothing to write.
func (t *Transport) check(c *Conn, now int64) {
	wt := int64(t.cfg.WriteTimeout)
	switch c.state.Load() {
	case stateClosed:
		return
	case stateClosing:
		if now-c.closingAt.Load() >= wt {
			c.finish(protocol.CloseAbnormal, "close timeout", false)
		}
		return
	}
	c.releaseIdleArrays()
	if u := c.unwritable.Load(); u != 0 && now-u >= wt {
		c.finish(protocol.CloseAbnormal, "write timeout", false)
		return
	}
	if t.cfg.PingInterval < 0 || c.role != RoleServer {
		return
	}
	last := c.lastRead.Load()
	if last < c.pingAt { // a ping is outstanding
		if now-c.pingAt >= int64(t.cfg.PongTimeout) {
			if frames, _ := c.QueueLen(); frames > 0 {
				// The ping may still wait behind frames this server has
				// not written yet (its writers fell behind): the peer
				// cannot have answered it, so the wait counts from now.
				// A peer that stopped reading fills its socket and is
				// cut by the write timeout above instead.
				c.pingAt = now
				return
			}
			c.Disconnect(protocol.DisconnectHeartbeatTimeout)
			// The peer is presumed gone: do not wait for its half of the
			// close handshake. The connection finishes as soon as our close
			// frame is written (or after WriteTimeout if it cannot be).
			c.setFlag(flagPeerClosed)
			if c.hasFlag(flagCloseSent) {
				c.finish(protocol.CloseAbnormal, "", false)
			}
		}
		return
	}
	if now-c.pingAt >= int64(t.cfg.PingInterval) {
		c.pingAt = now
		_ = c.Send(pingFrame)
	}
}
