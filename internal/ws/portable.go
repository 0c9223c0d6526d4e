package ws

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// The Portable transport: each connection has a reader goroutine, which
// reads its net.Conn into the same parser as the epoll loops and calls the
// handler, and a writer goroutine, which sleeps until frames are queued and
// then writes everything queued with one net.Buffers write (writev on a
// TCP connection). The queue, its bounds, the close handshake and the
// heartbeat are the Epoll transport's own (conn.go, heartbeat.go); only the
// goroutines that read and write differ. Blocking writes have a deadline
// (WriteTimeout) instead of waiting for EPOLLOUT.

// portableReadBuf is the size of a portable reader's buffer, held for the
// connection's life: a message that does not fit is reassembled by the
// parser.
const portableReadBuf = 4 << 10

// abortGrace bounds the write of a 4108 close frame (and of the partial frame
// before it) on the portable transport: Epoll writes it only if the socket
// takes it at once, which a blocking net.Conn write can only approximate
// with a short deadline. Then the connection is reset.
const abortGrace = 20 * time.Millisecond

// portable is the Portable transport's registry of connections.
type portable struct {
	mu     sync.Mutex
	conns  map[*Conn]struct{} // guarded by mu
	closed bool               // guarded by mu: stop began; no connection is added
	wg     sync.WaitGroup     // every connection's reader and writer
}

func newPortable() *portable {
	return &portable{conns: make(map[*Conn]struct{})}
}

// add registers c and starts its reader and writer; false, starting
// nothing, once stop began.
func (p *portable) add(c *Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	p.wg.Go(c.readLoop)
	p.wg.Go(c.writeLoop)
	return true
}

func (p *portable) remove(c *Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *portable) appendConns(dst []*Conn) []*Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		dst = append(dst, c)
	}
	return dst
}

// stop refuses further connections and waits for every reader and writer
// to exit. Transport.Close calls it once every connection has finished.
func (p *portable) stop() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
}

// portConn is a connection's Portable side.
type portConn struct {
	wake chan struct{} // capacity 1: frames were queued while the writer was idle (schedule)
	// done is closed by finish; code and reason, written before, are what
	// the reader reports to OnClose once it sees done closed.
	done   chan struct{}
	code   int
	reason string
}

// kick wakes the connection's writer.
func (pc *portConn) kick() {
	select {
	case pc.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// attachPortable registers nc with the Portable transport (AttachWith).
func (t *Transport) attachPortable(nc net.Conn, role Role, h Handler, opts AttachOptions) (*Conn, error) {
	c := &Conn{
		t:    t,
		x:    newConnOwn(&portConn{wake: make(chan struct{}, 1), done: make(chan struct{})}, nc, opts),
		h:    h,
		fd:   -1,
		role: role,
		p:    parser{server: role == RoleServer, max: int32(min(t.cfg.MaxMessageBytes, 1<<30)), maxBinary: binaryLimit(t.cfg, h)},
	}
	c.applyOptions(opts)
	t.open.Add(1)
	if !t.pt.add(c) {
		// Close has swept the connections and waits for the goroutines:
		// no reader will deliver OnClose, so it is delivered here.
		c.finish(protocol.CloseGoingAway, protocol.DisconnectGoingAway.Reason, false)
		c.h.OnClose(c, c.port().code, c.port().reason)
		return nil, fmt.Errorf("ws: attach: %w", ErrClosed)
	}
	if t.shutdown.Load() {
		// Close began while we registered; its sweep may have missed c.
		c.finish(protocol.CloseGoingAway, protocol.DisconnectGoingAway.Reason, false)
		return nil, fmt.Errorf("ws: attach: %w", ErrClosed)
	}
	if opts.Preamble != nil && !opts.Corked {
		c.Uncork()
	}
	return c, nil
}

// readLoop is a portable connection's reader: it parses what it reads and
// calls the handler until the connection finishes, then delivers OnClose.
func (c *Conn) readLoop() {
	if data := c.takeInitial(); len(data) > 0 {
		c.lastRead.Store(c.t.now())
		c.process(data)
	}
	buf := make([]byte, portableReadBuf)
	for c.state.Load() != stateClosed {
		n, err := c.netConn().Read(buf)
		if n > 0 {
			c.lastRead.Store(c.t.now())
			c.process(buf[:n])
		}
		if err != nil {
			reason := "read: " + err.Error()
			if errors.Is(err, io.EOF) {
				reason = "connection lost"
			}
			c.finish(protocol.CloseAbnormal, reason, true)
			break
		}
	}
	<-c.port().done // finish (ours or another goroutine's) has closed nc
	c.h.OnClose(c, c.port().code, c.port().reason)
}

// writeLoop is a portable connection's writer: it writes whatever is
// queued when woken, until the connection finishes.
func (c *Conn) writeLoop() {
	var bufs net.Buffers // scratch for every write
	for {
		select {
		case <-c.port().wake:
		case <-c.port().done:
			return
		}
		c.flushPortable(&bufs)
	}
}

// flushPortable writes what is queued for c, which this writer holds
// (wReady), until the queue is empty. It is Epoll's writer.flush with
// blocking writes: a write that does not complete within WriteTimeout
// finishes the connection, and an aborted close (4108) gets abortGrace.
func (c *Conn) flushPortable(bufs *net.Buffers) {
	var wrote, done int // written since the last accounting under mu
	for {
		c.mu.Lock()
		c.qbytes -= wrote
		c.qframes -= done
		wrote, done = 0, 0
		if c.state.Load() == stateClosed {
			c.pending, c.pendOff = nil, 0
			c.wstate = wIdle
			c.mu.Unlock()
			return
		}
		if c.drop {
			c.dropLocked()
		}
		if len(c.queue) > 0 {
			if len(c.pending) == 0 {
				c.pending, c.queue = c.queue, c.pending
			} else {
				c.pending = append(c.pending, c.queue...)
				c.queue = clearFrames(c.queue)
			}
		}
		if len(c.pending) == 0 {
			// Keep the emptied array, as writer.flush does.
			switch {
			case cap(c.pending) > keepQueueCap:
				c.pending = nil
			case c.queue == nil:
				c.queue, c.pending = c.pending[:0], nil
			default:
				c.pending = c.pending[:0]
			}
			c.pendOff = 0
			c.wstate = wIdle
			closing := c.state.Load() == stateClosing
			c.mu.Unlock()
			if closing {
				c.onCloseWritten(false)
			}
			return
		}
		timeout := c.t.cfg.WriteTimeout
		if c.hasFlag(flagAbort) {
			timeout = abortGrace
		}
		// Under mu: see abortLocked.
		_ = c.netConn().SetWriteDeadline(time.Now().Add(timeout))
		c.mu.Unlock()

		// pending is ours while wReady; the write consumes a copy of its
		// slice headers.
		*bufs = append((*bufs)[:0], c.pending...)
		(*bufs)[0] = (*bufs)[0][c.pendOff:]
		b := *bufs
		n, err := b.WriteTo(c.netConn())
		clear((*bufs)[:cap(*bufs)]) // drop references to frames
		if n > 0 {
			wrote = int(n)
			done = c.advance(int(n))
		}
		if err == nil {
			continue
		}
		c.mu.Lock()
		c.qbytes -= wrote
		c.qframes -= done
		wrote, done = 0, 0
		if c.state.Load() == stateClosed {
			c.pending, c.pendOff = nil, 0
			c.wstate = wIdle
			c.mu.Unlock()
			return
		}
		if c.hasFlag(flagAbort) && len(c.queue) > 0 {
			// The close frame was queued after this write began: try it
			// (once, with abortGrace) before giving up on the socket.
			c.mu.Unlock()
			continue
		}
		abort := c.hasFlag(flagAbort)
		c.mu.Unlock()
		if abort {
			c.cut() // the close frame did not fit: do not wait for the peer
		} else {
			reason := "write: " + err.Error()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				reason = "write timeout"
			}
			c.finish(protocol.CloseAbnormal, reason, false)
		}
		c.mu.Lock()
		c.pending, c.pendOff = nil, 0
		c.wstate = wIdle
		c.mu.Unlock()
		return
	}
}

// finishPortable ends finish for a portable connection: nc is closed (the
// reader's Read returns), and the reader delivers OnClose with code and
// reason once done is closed; the writer exits.
func (c *Conn) finishPortable(code int, reason string) {
	c.t.pt.remove(c)
	c.shutFD()
	c.t.open.Add(-1)
	c.port().code, c.port().reason = code, reason
	close(c.port().done)
	c.t.finishing.Add(-1)
}

// closeWrite ends nc's write side (FIN after what is written), if it can.
func closeWrite(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// resetConn makes closing nc drop what it holds and send RST, if it can.
func resetConn(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}

// fileConn makes a net.Conn of socket descriptor fd and closes fd (the
// net.Conn holds a duplicate), also on error.
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	if f == nil {
		return nil, fmt.Errorf("bad descriptor %d", fd)
	}
	defer f.Close()
	return net.FileConn(f)
}
