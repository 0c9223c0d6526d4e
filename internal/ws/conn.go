package ws

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// ErrClosed is returned by Send and SendText on a connection that is closing
// or closed, and by Attach and Upgrade on a closed Transport.
var ErrClosed = errors.New("ws: connection closed")

// ErrQueueFull is returned by Send when queueing the frame would exceed the
// connection's queue bounds; the connection is then closed with 4108.
var ErrQueueFull = errors.New("ws: outbound queue full")

// Role says which side of the WebSocket protocol a connection plays.
type Role uint8

const (
	// RoleServer reads masked frames from clients (an unmasked client frame
	// closes the connection with 1002) and writes unmasked frames.
	RoleServer Role = iota
	// RoleClient reads unmasked frames and writes masked frames.
	//
	// Only the load generator (junction bench) uses it, and it stays for
	// that: the load client shares the machine with the server it
	// measures, so it must be as cheap per connection as the server (no
	// goroutine or buffer per idle connection, one writev per batch, the
	// same parser); a goroutine-per-connection client would spend the
	// cores the server is being measured on. It costs the server nothing
	// but a role check on rare paths (close, pong, SendText).
	RoleClient
)

// Handler receives a connection's inbound events. Both methods run on the
// goroutine that reads the connection (its epoll loop, or its own reader
// with Portable), serially per connection; no OnMessage follows OnClose.
type Handler interface {
	// OnMessage is called with each complete text message, in order. payload
	// is valid only during the call (it may point into a shared read
	// buffer). It must not block.
	OnMessage(c *Conn, payload []byte)
	// OnClose is called exactly once per connection after it is closed, with
	// the close code (the one we sent, the one the peer sent, 1005 when the
	// peer's close frame had no code, or 1006 for an abrupt end) and a
	// reason. It is never called from inside Close. It must not block.
	OnClose(c *Conn, code int, reason string)
}

// Connection states. Transitions happen under Conn.mu; the state is also
// read without the lock.
const (
	stateOpen    = iota // Send accepted
	stateClosing        // close frame queued; Send refused
	stateClosed         // socket closed; OnClose pending or done
)

// Writer states of a connection, guarded by Conn.mu.
const (
	wIdle    = iota // nothing queued, not on the ready list
	wReady          // on the ready list or being written by a writer
	wWaitOut        // socket full; waiting for EPOLLOUT in the loop
)

// Conn is one WebSocket connection registered with a Transport. Its methods
// are safe for concurrent use.
type Conn struct {
	// The send path (Send, SendBatch, the writers) touches only the fields
	// up to pendOff, kept together so that queueing a frame to one of many
	// subscribers costs one or two cache lines.
	t         *Transport   // set once at construction
	state     atomic.Int32 // stateOpen, stateClosing, stateClosed; written under mu, read without it
	closeCode int32        // guarded by mu: set when the close begins

	mu     sync.Mutex
	wstate uint8 // guarded by mu
	drop   bool  // guarded by mu: discard pending frames not yet started
	role   Role  // set once at construction
	// li is the index of the connection's epoll loop in Transport.loops
	// (Epoll; see loop), set once at construction: a byte of what was
	// padding instead of an 8-byte pointer (TestConnSize).
	li uint8
	// fd is the socket, used under a reference (see sock.go); fdRefs counts
	// them. Both are set at construction.
	fd      int32
	qbytes  int      // guarded by mu: bytes queued or pending, not yet written
	qframes int      // guarded by mu: frames queued or pending, not yet fully written
	queue   [][]byte // guarded by mu: frames not yet taken by a writer

	// Owned by the writer holding the connection (wstate wReady), or by the
	// loop while wstate is wWaitOut; otherwise guarded by mu.
	pending [][]byte // frames taken from queue, not yet fully written
	pendOff int32    // bytes of pending[0] already written (a queued frame is shorter than maxQueueBytes)
	gen     uint32   // set once at construction; tells reused fds apart

	// closeReason is guarded by mu: set when the close begins. A pointer,
	// allocated by the close, keeps the string's 16 bytes out of every open
	// connection (TestConnSize).
	closeReason *string

	x      *connOwn // set once at construction: nil for a bare descriptor (AttachFD) on Epoll with nothing buffered
	h      Handler  // set once at construction
	fdRefs atomic.Int32
	// flags holds flagAbort, flagCloseSent and flagPeerClosed, one word
	// instead of three (TestConnSize).
	flags atomic.Uint32

	lastRead   atomic.Int64 // transport clock of the last read from the socket
	unwritable atomic.Int64 // transport clock when the socket was first found full; 0 when writable
	closingAt  atomic.Int64 // transport clock when the close began

	pingAt int64 // owned by the heartbeat goroutine: when the last ping was queued

	// Read side, owned by the loop goroutine.
	p parser
}

// Conn.flags bits. Each is only ever set, never cleared.
const (
	// flagAbort is set (under mu, with the close) for a 4108 close: the
	// close frame is written only if the socket takes it at once, then the
	// connection finishes without waiting for the peer; if the socket is
	// full it is reset. A slow consumer's resources and registration are
	// released at once instead of after WriteTimeout.
	flagAbort      uint32 = 1 << iota
	flagCloseSent         // our close frame has been written to the socket
	flagPeerClosed        // the peer's close frame was read (or the read side is done)
)

// setFlag sets f and reports whether it was already set.
func (c *Conn) setFlag(f uint32) bool { return c.flags.Or(f)&f != 0 }

// hasFlag reports whether f is set.
func (c *Conn) hasFlag(f uint32) bool { return c.flags.Load()&f != 0 }

// connOwn is the part of a Conn that a bare descriptor attached by the front
// door (AttachFD on Epoll: the common case, tens of thousands of idle
// connections) does not need; without it a Conn fits the 224-byte size
// class (TestConnSize).
type connOwn struct {
	pc      *portConn // Portable: the writer's wake-up and the OnClose hand-off
	nc      net.Conn  // the descriptor's owner, or nil when it is bare (AttachFD)
	initial []byte    // owned by the loop goroutine: bytes buffered before registration, parsed first
	value   any       // set once at construction: AttachOptions.Value (Value)
}

// newConnOwn returns the connOwn of a Conn, or nil when it would be empty.
func newConnOwn(pc *portConn, nc net.Conn, opts AttachOptions) *connOwn {
	if pc == nil && nc == nil && len(opts.Buffered) == 0 && opts.Value == nil {
		return nil
	}
	return &connOwn{pc: pc, nc: nc, initial: opts.Buffered, value: opts.Value}
}

// loop returns the epoll loop the connection is registered with (Epoll).
func (c *Conn) loop() *loop { return c.t.loops[c.li] }

// netConn returns the descriptor's owner, or nil when it is bare.
func (c *Conn) netConn() net.Conn {
	if c.x == nil {
		return nil
	}
	return c.x.nc
}

// port returns the Portable state, or nil on Epoll.
func (c *Conn) port() *portConn {
	if c.x == nil {
		return nil
	}
	return c.x.pc
}

// takeInitial returns the bytes buffered before registration, once. Only
// the loop goroutine (the reader, on Portable) calls it.
func (c *Conn) takeInitial() []byte {
	if c.x == nil {
		return nil
	}
	data := c.x.initial
	c.x.initial = nil
	return data
}

// Handler returns the connection's handler.
func (c *Conn) Handler() Handler { return c.h }

// Value returns the owner's per-connection value (AttachOptions.Value),
// or nil.
//
// Only the load generator uses it: one Handler serves its tens of
// thousands of connections and finds each one's state here. The hub does
// not need it (its connection is the Handler), so the value is kept in
// connOwn, which a bare descriptor's connection does not have.
func (c *Conn) Value() any {
	if c.x == nil {
		return nil
	}
	return c.x.value
}

// QueueLen returns the frames and bytes queued for the connection that are
// not yet written to the socket.
func (c *Conn) QueueLen() (frames, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.qframes, c.qbytes
}

// Send queues a complete frame, as produced by PrepareText or PrepareClose,
// for writing. It never blocks. The frame slice is shared (the same bytes may
// be queued to many connections) and must not be modified afterwards. On a
// RoleClient connection frames must be masked, so use SendText there.
//
// Send returns ErrClosed when the connection is closing or closed. When the
// frame would exceed MaxQueueBytes or MaxQueueFrames it returns
// ErrQueueFull and closes the connection with 4108 "slow consumer": queued
// frames are discarded, the close frame is written if the socket takes it at
// once (otherwise the connection is reset), and the connection finishes
// without waiting for the peer's answer.
func (c *Conn) Send(frame []byte) error {
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.qframes+1 > c.t.cfg.MaxQueueFrames || c.qbytes+len(frame) > c.t.cfg.MaxQueueBytes {
		c.drop = true
		c.queue = clearFrames(c.queue)
		d := protocol.DisconnectSlowConsumer
		sched := c.beginCloseLocked(d.Code, d.Reason, c.closeFrame(d.Code, d.Reason))
		sched = c.abortLocked() || sched
		c.mu.Unlock()
		c.t.slowConsumers.Add(1)
		if sched {
			c.t.schedule(c)
		}
		return ErrQueueFull
	}
	sched := c.enqueueLocked(frame)
	c.mu.Unlock()
	if sched {
		c.t.scheduleUrgent(c)
	}
	return nil
}

// SendText frames payload as one text message and queues it, masked with a
// fresh random mask on a RoleClient connection. It allocates one frame per
// call; to send the same message to many connections, PrepareText once and
// Send it.
func (c *Conn) SendText(payload []byte) error {
	if c.role == RoleClient {
		return c.Send(prepareMasked(opText, payload))
	}
	return c.Send(PrepareText(payload))
}

// Close closes the connection: frames already queued are written, then a
// close frame with code and reason, then the socket is closed once the peer
// answers the close or hangs up, or at the latest WriteTimeout after Close.
// It never blocks and is idempotent. OnClose follows, with code, on the
// connection's loop goroutine.
//
// A close with 4108 (protocol.CloseSlowConsumer) does not wait: the close frame is
// written after the queued frames only if the socket takes it at once
// (otherwise the connection is reset), and the connection finishes as soon
// as it is written.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return
	}
	sched := c.beginCloseLocked(code, reason, c.closeFrame(code, reason))
	if code == protocol.CloseSlowConsumer {
		sched = c.abortLocked() || sched
	}
	c.mu.Unlock()
	if sched {
		c.t.schedule(c)
	}
}

// Disconnect is Close with d's code and reason.
func (c *Conn) Disconnect(d protocol.Disconnect) { c.Close(d.Code, d.Reason) }

// closeFrame returns a close frame for the connection's role.
func (c *Conn) closeFrame(code int, reason string) []byte {
	if c.role == RoleClient {
		return prepareMasked(opClose, closePayload(code, reason))
	}
	return PrepareClose(code, reason)
}

// enqueueLocked appends frames and reports whether the caller must put the
// connection on the ready list (after unlocking mu).
func (c *Conn) enqueueLocked(frames ...[]byte) bool {
	c.queue = append(c.queue, frames...)
	for _, f := range frames {
		c.qbytes += len(f)
	}
	c.qframes += len(frames)
	if c.wstate == wIdle {
		c.wstate = wReady
		return true
	}
	return false
}

// beginCloseLocked moves an open connection to closing and queues frame, the
// close frame. It reports whether the caller must schedule the connection.
func (c *Conn) beginCloseLocked(code int, reason string, frame []byte) bool {
	c.state.Store(stateClosing)
	c.closeCode, c.closeReason = int32(code), &reason
	c.closingAt.Store(c.t.now())
	return c.enqueueLocked(frame)
}

// abortLocked marks a closing connection's close as not waiting (see
// Conn.abort). A connection waiting for EPOLLOUT is handed back to the
// writers, so that the close frame is tried now rather than when the peer
// reads; it reports whether the caller must schedule the connection.
func (c *Conn) abortLocked() bool {
	c.setFlag(flagAbort)
	if c.port() != nil {
		// A portable writer blocked on the full socket gives up now (and
		// sees abort); set under mu, so a writer that already saw abort
		// set its own short deadline after this one.
		_ = c.netConn().SetWriteDeadline(time.Now())
		return false
	}
	if c.wstate == wWaitOut {
		// The loop owns pending while wWaitOut; under mu it passes to the
		// writer. A later EPOLLOUT finds wstate != wWaitOut and does nothing.
		c.wstate = wReady
		return true
	}
	return false
}

// cut resets the connection (SO_LINGER 0: the unsent bytes are dropped and
// the peer gets RST) and finishes it. It is how an aborted close ends when
// its close frame does not fit in the socket. Called by the writer holding
// c.
func (c *Conn) cut() {
	if c.port() != nil {
		resetConn(c.netConn())
	} else if c.acquireFD() {
		_ = resetOnClose(int(c.fd))
		c.releaseFD()
	}
	c.finish(protocol.CloseAbnormal, "cut", false)
}

// onPeerClose handles the peer's close frame: the close is echoed with the
// peer's code (RFC 6455 §5.5.1) and the connection finishes once the echo is
// written. Called by the loop.
func (c *Conn) onPeerClose(payload []byte) {
	code, reason := protocol.CloseNoStatus, ""
	var echo []byte
	if len(payload) >= 2 {
		code = int(binary.BigEndian.Uint16(payload))
		reason = string(payload[2:])
		echo = payload[:2]
	}
	c.mu.Lock()
	var sched bool
	if c.state.Load() == stateOpen {
		frame := PrepareFrame(opClose, echo)
		if c.role == RoleClient {
			frame = prepareMasked(opClose, echo)
		}
		sched = c.beginCloseLocked(code, reason, frame)
	}
	c.mu.Unlock()
	c.setFlag(flagPeerClosed)
	if sched {
		// The echo is all there is to write: write it from here rather
		// than wake a writer, and finish without waking this loop.
		c.flushFromLoop()
	}
	if c.hasFlag(flagCloseSent) {
		c.finish(protocol.CloseAbnormal, "", true)
	}
}

// onCloseWritten is called by a writer once our close frame is in the
// socket: the write side is shut down (the peer reads EOF after the close
// frame) and the connection finishes now if the peer already closed or the
// close does not wait (abort), or else when the peer closes (loop) or when
// WriteTimeout expires (heartbeat).
func (c *Conn) onCloseWritten(fromLoop bool) {
	if c.setFlag(flagCloseSent) {
		return
	}
	if c.hasFlag(flagPeerClosed) || c.hasFlag(flagAbort) {
		c.finish(protocol.CloseAbnormal, "", fromLoop) // close(2) ends both directions
		return
	}
	if c.port() != nil {
		closeWrite(c.netConn())
	} else if c.acquireFD() {
		_ = shutdownWrite(int(c.fd))
		c.releaseFD()
	}
	if c.hasFlag(flagPeerClosed) {
		c.finish(protocol.CloseAbnormal, "", fromLoop)
	}
}

// finish tears the connection down: it leaves its loop, the socket is
// closed, queued frames are released and OnClose is handed to the loop (the
// reader, with Portable). If
// a close was in progress, OnClose reports its code; otherwise code and
// reason (1006 for an abrupt end). It is idempotent. fromLoop says the
// caller is the connection's loop goroutine, which then need not be woken.
func (c *Conn) finish(code int, reason string, fromLoop bool) {
	c.mu.Lock()
	prev := c.state.Load()
	if prev == stateClosed {
		c.mu.Unlock()
		return
	}
	c.state.Store(stateClosed)
	c.t.finishing.Add(1) // until OnClose is with the loop (see Transport.Close)
	if prev == stateClosing {
		code, reason = int(c.closeCode), *c.closeReason
	}
	c.queue = nil
	c.qbytes, c.qframes = 0, 0
	if c.wstate != wReady {
		// No writer holds pending; a writer holding it drops it on return.
		c.pending, c.pendOff = nil, 0
		c.wstate = wIdle
	}
	c.mu.Unlock()

	if c.port() != nil {
		c.finishPortable(code, reason)
		return
	}
	l := c.loop()
	l.remove(c)
	c.shutFD()
	c.t.open.Add(-1)
	l.closed(c, code, reason, fromLoop)
	c.t.finishing.Add(-1)
}

// releaseIdleArrays drops the queue arrays (the queue and the writer's
// spare) of a connection that has nothing queued: a busy connection keeps
// them between writes (see keepQueueCap), but once a stream stops, an idle
// subscriber should not hold kilobytes of empty arrays. The heartbeat calls
// it on every tick; a connection still busy regrows an array at most once
// per tick. It never waits for the lock.
func (c *Conn) releaseIdleArrays() {
	if !c.mu.TryLock() {
		return
	}
	if c.wstate == wIdle && len(c.queue) == 0 {
		c.queue, c.pending = nil, nil
	}
	c.mu.Unlock()
}

// clearFrames drops the references q holds and returns q emptied, or nil
// when its backing array is too large to keep for an idle connection.
func clearFrames(q [][]byte) [][]byte {
	clear(q)
	if cap(q) > keepQueueCap {
		return nil
	}
	return q[:0]
}

// keepQueueCap is the largest queue backing array a connection keeps when
// its queue empties; larger arrays are released so idle connections stay
// small. A connection that receives a steady stream reuses its two arrays
// (the queue and the writer's spare) instead of growing a new one from
// nothing after every write. append grows an array of 74 frames to 170
// (the 4 KiB size class), so the bound is above 170: with 128, a fan-out at
// max rate, whose writes find 75-170 frames queued now and then, dropped
// the grown array after each such write and regrew it from one frame
// through eight allocations; that was 80-97 % of the server's allocations
// at 1,000 and 10,000 subscribers (issue 11). A busy connection holds at
// most 2 × 170 × 24 B = 8 KiB (an array grown past 256 frames is still
// released). Once nothing is queued, the heartbeat releases both
// (releaseIdleArrays), so an idle connection holds none.
const keepQueueCap = 256

// Batch gathers the connections that a fan-out makes ready, so that they are
// put on the writers' ready list under one lock with one wake-up instead of
// one lock and one wake-up per connection. A Batch is used by one goroutine;
// Flush must follow the last SendBatch. The zero value is ready to use.
type Batch struct {
	t     *Transport
	ready []*Conn
}

// batchFlushAt is how many ready connections a Batch gathers before it hands
// them to the writers anyway, so writing starts while a large fan-out is
// still queueing.
const batchFlushAt = 256

// SendBatch is Send, except that when the connection becomes ready it is
// recorded in b and handed to the writers by b.Flush (or once b holds
// batchFlushAt connections).
func (c *Conn) SendBatch(b *Batch, frame []byte) error {
	c.mu.Lock()
	if c.state.Load() != stateOpen || c.qframes+1 > c.t.cfg.MaxQueueFrames || c.qbytes+len(frame) > c.t.cfg.MaxQueueBytes {
		c.mu.Unlock()
		return c.Send(frame) // the rare paths: refused or slow consumer
	}
	sched := c.enqueueLocked(frame)
	c.mu.Unlock()
	if sched {
		b.add(c)
	}
	return nil
}

// SendFramesBatch is SendBatch for several frames, queued in order under
// one lock of the connection: a fan-out of several publications at once
// pays for the connection's lock and cache lines once, not per frame. When
// the frames would not all fit in the queue's bounds it is SendBatch of
// each in turn (the frames that fit are queued, then the connection is
// closed with 4108). It returns how many frames were queued and the first
// error.
func (c *Conn) SendFramesBatch(b *Batch, frames [][]byte) (int, error) {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	c.mu.Lock()
	if c.state.Load() != stateOpen || c.qframes+len(frames) > c.t.cfg.MaxQueueFrames || c.qbytes+n > c.t.cfg.MaxQueueBytes {
		c.mu.Unlock()
		for i, f := range frames {
			if err := c.SendBatch(b, f); err != nil {
				return i, err
			}
		}
		return len(frames), nil
	}
	sched := c.enqueueLocked(frames...)
	c.mu.Unlock()
	if sched {
		b.add(c)
	}
	return len(frames), nil
}

// add records c, just made ready, for the writers.
func (b *Batch) add(c *Conn) {
	if b.t != c.t && len(b.ready) > 0 {
		b.Flush()
	}
	b.t = c.t
	b.ready = append(b.ready, c)
	if len(b.ready) >= batchFlushAt {
		b.Flush()
	}
}

// Flush hands the gathered connections to the writers.
func (b *Batch) Flush() {
	if len(b.ready) == 0 {
		return
	}
	b.t.scheduleMany(b.ready)
	clear(b.ready)
	b.ready = b.ready[:0]
}

// process feeds data read from the connection to its parser and acts on
// what it yields. Called by the goroutine that reads the connection (its
// epoll loop, or its portable reader).
func (c *Conn) process(data []byte) {
	err := c.p.feed(data, func(op byte, payload []byte) bool {
		switch c.state.Load() {
		case stateClosed:
			return false
		case stateClosing:
			// Only the peer's close frame matters now.
			if op == opClose {
				c.onPeerClose(payload)
			}
			return true
		}
		switch op {
		case opText:
			c.h.OnMessage(c, payload)
		case opBinary:
			c.h.(BinaryHandler).OnBinary(c, payload) // the parser yields binary only then (binaryLimit)
		case opPing:
			var pong []byte
			if c.role == RoleClient {
				pong = prepareMasked(opPong, payload)
			} else {
				pong = PrepareFrame(opPong, payload)
			}
			_ = c.Send(pong)
		case opClose:
			c.onPeerClose(payload)
		}
		return true
	})
	var ce *closeError
	if errors.As(err, &ce) {
		// The parser cannot find the peer's close frame after a violation,
		// so the close does not wait for it: the connection finishes once
		// our close frame is written.
		c.setFlag(flagPeerClosed)
		c.Close(ce.code, ce.reason)
	}
}

// advance drops the n bytes just written from c.pending and returns how
// many frames were completed. Called by the writer holding c.
func (c *Conn) advance(n int) (done int) {
	p := c.pending
	off := int(c.pendOff)
	i := 0
	for i < len(p) && n > 0 {
		rem := len(p[i]) - off
		if n < rem {
			off += n
			break
		}
		n -= rem
		off = 0
		i++
	}
	if i > 0 {
		k := copy(p, p[i:])
		clear(p[k:])
		c.pending = p[:k]
	}
	c.pendOff = int32(off) // off < len(p[0]), a queued frame (maxQueueBytes)
	return i
}

// dropLocked discards the frames that are pending but not yet started: only
// a partially written frame is kept, so the close frame that follows in
// queue starts on a frame boundary. Called with mu held by the writer
// holding c.
func (c *Conn) dropLocked() {
	c.drop = false
	if c.pendOff > 0 && len(c.pending) > 0 {
		clear(c.pending[1:])
		c.pending = c.pending[:1]
	} else {
		c.pending = clearFrames(c.pending)
		c.pendOff = 0
	}
	c.qbytes, c.qframes = 0, 0
	for i, f := range c.pending {
		if i == 0 {
			f = f[c.pendOff:]
		}
		c.qbytes += len(f)
		c.qframes++
	}
	for _, f := range c.queue {
		c.qbytes += len(f)
		c.qframes++
	}
}
