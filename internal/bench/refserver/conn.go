//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/junctionhq/junction/internal/jsonscan"
	"github.com/junctionhq/junction/protocol"
)

// Junction's default bounds (its welcome's limits).
const (
	maxFrameBytes  = 64 << 10 // an inbound message
	maxQueueFrames = 4096     // a connection's outbound queue
	maxQueueBytes  = 1 << 20
	maxIovecs      = 1024 // IOV_MAX: frames per writev
	popBatch       = 64   // connections a writer takes from the ready list at once
)

// WebSocket opcodes.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xa
)

// conn is one WebSocket connection, or a keep-alive connection of REST
// publishes (rest). The reader goroutine owns its input and is the only
// one that closes fd; writers use fd only while writing is set, which
// keeps the reader from closing it under them.
type conn struct {
	fd       int     // set once
	id       uint32  // set once: tells its epoll events from those of an earlier connection on the same fd
	srv      *server // set once
	canRead  bool    // set once: the token grants scope read
	canWrite bool    // set once: the token grants scope write
	rest     bool    // set once: a keep-alive HTTP connection of REST publishes (rest.go), not a WebSocket

	in       []byte   // owned by the reader: an incomplete frame carried over to the next read
	topics   []*topic // owned by the reader: the subscriptions
	stopRead bool     // owned by the reader: a close is under way, input is ignored

	gone atomic.Bool // dead, readable without mu (topics drop gone subscribers)

	mu        sync.Mutex
	queue     [][]byte // guarded by mu: frames not yet taken by a writer (shared, never modified)
	queued    int      // guarded by mu: bytes queued or taken by a writer and not yet written
	scheduled bool     // guarded by mu: in the ready list, being written (by a writer, or by the reader: writeDirect), or parked
	writing   bool     // guarded by mu: a writer is in a system call on fd
	parked    bool     // guarded by mu: the socket is full; epoll waits for EPOLLOUT
	closing   bool     // guarded by mu: nothing more is queued; once written, the socket is shut down
	dead      bool     // guarded by mu: fd is closed
}

// enqueue appends frames (size bytes in all) to c's queue and reports
// whether c must join the ready list. A queue over its bounds cuts c
// (slow consumer).
func (c *conn) enqueue(frames [][]byte, size int) (wake bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.dead {
		return false
	}
	if len(c.queue)+len(frames) > maxQueueFrames || c.queued+size > maxQueueBytes {
		return c.cutLocked()
	}
	c.queue = append(c.queue, frames...)
	c.queued += size
	return c.scheduleLocked()
}

// How sendLocked hands a frame over.
const (
	sendDropped = iota // c is closing
	sendQueued         // behind what is queued; a writer has c
	sendWake           // queued; c must join the ready list
	sendDirect         // nothing queued and no writer: the caller writes it (writeDirect)
)

// sendLocked takes one frame from the reader, closing c after it when
// closing. With nothing queued and no writer on c it claims c (scheduled,
// so that frames queued meanwhile wait) for the caller to write the frame
// at once: the reader answers requests without a writer's round trip.
func (c *conn) sendLocked(frame []byte, closing bool) int {
	if c.closing || c.dead {
		return sendDropped
	}
	c.closing = closing
	if !c.scheduled && len(c.queue) == 0 {
		c.scheduled = true
		return sendDirect
	}
	if len(c.queue) >= maxQueueFrames || c.queued+len(frame) > maxQueueBytes {
		if c.cutLocked() {
			return sendWake
		}
		return sendQueued
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	return sendQueued // scheduled already
}

// send sends one frame from the reader.
func (c *conn) send(frame []byte, closing bool) {
	c.mu.Lock()
	how := c.sendLocked(frame, closing)
	c.mu.Unlock()
	c.finishSend(frame, how)
}

// finishSend completes a sendLocked outside the locks.
func (c *conn) finishSend(frame []byte, how int) {
	switch how {
	case sendWake:
		c.srv.ready.push(c)
	case sendDirect:
		c.writeDirect(frame)
	}
}

// writeDirect writes frame on c, claimed by sendLocked, from the reader
// (the only goroutine that closes fd), then hands c back: to the ready list
// when frames were queued meanwhile or some of frame is left.
func (c *conn) writeDirect(frame []byte) {
	n, err := unix.Write(c.fd, frame)
	for errors.Is(err, unix.EINTR) {
		n, err = unix.Write(c.fd, frame)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil && !errors.Is(err, unix.EAGAIN):
		c.closing = true
		c.queue = nil
		c.scheduled = false
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR) // the reader closes fd at the end it reports
	case n < len(frame):
		n = max(n, 0)
		c.queue = append([][]byte{frame[n:]}, c.queue...)
		c.queued += len(frame) - n
		c.srv.ready.push(c)
	default:
		c.releaseLocked()
	}
}

// releaseLocked hands c back after a write that emptied what it took: to
// the end of the ready list when frames were queued meanwhile (the others
// get their turn and more piles up), else idle, its socket shut down when
// it is closing (the reader closes fd at the end it reports).
func (c *conn) releaseLocked() {
	switch {
	case len(c.queue) > 0:
		c.srv.ready.push(c)
	case c.closing:
		c.scheduled = false
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	default:
		c.scheduled = false
	}
}

func (c *conn) scheduleLocked() bool {
	if c.scheduled {
		return false
	}
	c.scheduled = true
	return true
}

// cutLocked closes a slow consumer: with 4108 when no frame is half
// written (the queued frames are dropped for it), else by shutting the
// socket down.
func (c *conn) cutLocked() (wake bool) {
	c.closing = true
	if c.parked {
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
		return false
	}
	clear(c.queue)
	c.queue = append(c.queue[:0], slowConsumerFrame)
	return c.scheduleLocked()
}

var slowConsumerFrame = closeFrame(protocol.CloseSlowConsumer, "slow consumer")

// closeFrame returns a server close frame.
func closeFrame(code int, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return appendFrame(nil, opClose, append(p, reason...))
}

// appendFrame appends an unmasked, final WebSocket frame.
func appendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, byte(n))
	case n < 1<<16:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// writeLoop is one of the two writers: it takes connections from the
// ready list and writes all that is queued on each, until Close.
func (s *server) writeLoop() {
	var batch []*conn
	iov := make([]unix.Iovec, 0, maxIovecs)
	for {
		if batch = s.ready.pop(batch[:0]); batch == nil {
			return
		}
		for _, c := range batch {
			c.flush(iov)
		}
		clear(batch)
		// Yield after each take: while the ready list has work the writers
		// never block, and their writev calls are too short for the
		// scheduler to hand their processor to the goroutines made runnable
		// meanwhile (the fan-out, the epoll reader back from epoll_wait).
		runtime.Gosched()
	}
}

// flush writes everything queued on c; a full socket parks c until epoll
// reports it writable.
func (c *conn) flush(iov []unix.Iovec) {
	c.mu.Lock()
	if c.dead {
		c.scheduled = false
		c.mu.Unlock()
		return
	}
	q := c.queue
	c.queue = nil
	c.writing = true
	c.mu.Unlock()

	rest, written, err := writeFrames(c.fd, q, iov)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.writing = false
	c.queued -= written
	switch {
	case err != nil || (len(rest) > 0 && c.closing):
		// The peer is gone, or c is being cut with a frame half written:
		// the shutdown lets the reader see the end and close fd.
		c.closing = true
		c.queue = nil
		c.scheduled = false
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	case len(rest) > 0:
		c.queue = append(rest, c.queue...)
		c.parked = true
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT, Fd: int32(c.fd), Pad: int32(c.id)}
		_ = unix.EpollCtl(c.srv.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
	default:
		if len(c.queue) == 0 && cap(q) <= 64 { // keep a small array for the next frames
			clear(q[:cap(q)])
			c.queue = q[:0]
		}
		c.releaseLocked()
	}
}

// writeFrames writes q to the non-blocking socket fd in writev calls of
// up to maxIovecs frames, until all is written, the socket is full (rest
// holds what is left, the first frame possibly cut) or an error.
func writeFrames(fd int, q [][]byte, iov []unix.Iovec) (rest [][]byte, written int, err error) {
	for len(q) > 0 {
		iov = iov[:0]
		total := 0
		for _, f := range q[:min(len(q), maxIovecs)] {
			v := unix.Iovec{Base: &f[0]}
			v.SetLen(len(f))
			iov = append(iov, v)
			total += len(f)
		}
		// unix.Syscall, not RawSyscall: the scheduler sees the writer in
		// the system call and can run other goroutines meanwhile.
		r, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return q, written, nil
		default:
			return q, written, errno
		}
		n := int(r)
		written += n
		for n > 0 {
			if n >= len(q[0]) {
				n -= len(q[0])
				q = q[1:]
			} else {
				q[0] = q[0][n:]
				n = 0
			}
		}
		if int(r) < total {
			return q, written, nil // the socket is full
		}
	}
	return nil, written, nil
}

// readyList is the FIFO of connections with frames to write.
type readyList struct {
	mu     sync.Mutex
	cond   sync.Cond // L is &mu (set by Start)
	conns  []*conn   // guarded by mu: waiting from head on
	head   int       // guarded by mu
	closed bool      // guarded by mu
}

func (l *readyList) push(c *conn) {
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	l.cond.Signal()
}

func (l *readyList) pushAll(cs []*conn) {
	if len(cs) == 0 {
		return
	}
	l.mu.Lock()
	l.conns = append(l.conns, cs...)
	l.mu.Unlock()
	if len(cs) == 1 {
		l.cond.Signal()
	} else {
		l.cond.Broadcast()
	}
}

// pop appends up to popBatch connections to dst, waiting for one; it
// returns nil once the list is closed.
func (l *readyList) pop(dst []*conn) []*conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.head == len(l.conns) && !l.closed {
		l.cond.Wait()
	}
	if l.closed {
		return nil
	}
	n := min(len(l.conns)-l.head, popBatch)
	dst = append(dst, l.conns[l.head:l.head+n]...)
	clear(l.conns[l.head : l.head+n])
	l.head += n
	switch {
	case l.head == len(l.conns):
		l.conns, l.head = l.conns[:0], 0
	case l.head > len(l.conns)/2: // keep the array from growing under a list that never empties
		m := copy(l.conns, l.conns[l.head:])
		clear(l.conns[m:])
		l.conns, l.head = l.conns[:m], 0
	}
	return dst
}

func (l *readyList) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cond.Broadcast()
}

// readLoop is the epoll reader: it reads every WebSocket (one read per
// event, level-triggered), unparks full sockets that became writable and
// closes the connections that ended, until Close.
func (s *server) readLoop() {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.EpollWait(s.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || s.closed.Load() {
			return
		}
		for _, ev := range events[:n] {
			c := s.lookup(int(ev.Fd), uint32(ev.Pad))
			if c == nil {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				c.unpark()
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				c.read(buf)
			}
		}
		// The publications of the pass go out together.
		for i, t := range s.dirty {
			t.fanOut()
			s.dirty[i] = nil
		}
		s.dirty = s.dirty[:0]
	}
}

// published runs the fan-out of t after a publication: at the end of the
// epoll reader's pass when called from it, else at once.
func (s *server) published(t *topic, fromReader bool) {
	if !fromReader {
		t.fanOut()
		return
	}
	if !slices.Contains(s.dirty, t) {
		s.dirty = append(s.dirty, t)
	}
}

// unpark puts a parked connection whose socket became writable back in
// the ready list.
func (c *conn) unpark() {
	c.mu.Lock()
	if !c.parked || c.dead {
		c.mu.Unlock()
		return
	}
	c.parked = false
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd), Pad: int32(c.id)}
	_ = unix.EpollCtl(c.srv.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
	c.mu.Unlock()
	c.srv.ready.push(c)
}

// read reads once from c and handles the complete frames.
func (c *conn) read(buf []byte) {
	n, err := unix.Read(c.fd, buf)
	switch {
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
		return
	case err != nil || n == 0:
		c.closeFD()
		return
	}
	if c.stopRead {
		return
	}
	if c.rest {
		c.readREST(buf[:n])
		return
	}
	data := buf[:n]
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	for !c.stopRead {
		size, ok := c.frame(data)
		if !ok {
			break
		}
		data = data[size:]
	}
	if len(data) == 0 || c.stopRead {
		c.in = nil // an idle connection keeps no buffer
		return
	}
	c.in = append(c.in[:0], data...) // data may be c.in's own tail: append moves it
}

// frame handles the client frame at the start of b and returns its size;
// ok is false while it is incomplete.
func (c *conn) frame(b []byte) (size int, ok bool) {
	if len(b) < 2 {
		return 0, false
	}
	if b[1]&0x80 == 0 {
		c.fail(protocol.CloseProtocolError, "unmasked client frame")
		return 0, false
	}
	n, hl := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, false
		}
		n, hl = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, false
		}
		n, hl = binary.BigEndian.Uint64(b[2:]), 10
	}
	if n > maxFrameBytes {
		c.fail(protocol.CloseTooBig, "message too big")
		return 0, false
	}
	size = hl + 4 + int(n)
	if len(b) < size {
		return 0, false
	}
	mask, p := b[hl:hl+4], b[hl+4:size]
	for i := range p {
		p[i] ^= mask[i&3]
	}
	fin, op := b[0]&0x80 != 0, b[0]&0x0f
	switch {
	case op == opPong:
	case op == opPing:
		c.send(appendFrame(nil, opPong, p), false)
	case op == opClose:
		// Echo the code, then the writer shuts the socket down: the
		// server ends the TCP connection first, as Junction does.
		code := protocol.CloseNormal
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		c.stopRead = true
		c.send(closeFrame(code, ""), true)
	case !fin || op == 0:
		c.fail(protocol.CloseProtocolError, "fragmented messages are not supported")
	case op == opText:
		for f := range bytes.SplitSeq(p, []byte{'\n'}) {
			if len(f) > 0 {
				c.request(f)
			}
		}
	default:
		c.fail(protocol.CloseUnsupportedData, "binary messages are not supported")
	}
	return size, true
}

// fail closes c with code after what is queued.
func (c *conn) fail(code int, reason string) {
	c.stopRead = true
	c.send(closeFrame(code, reason), true)
}

// closeFD closes the connection whose socket ended. While a writer is in a
// system call on fd it only stops the queue: the end is reported again
// (level-triggered) and closes fd then.
func (c *conn) closeFD() {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.queue = nil
	if c.writing {
		c.mu.Unlock()
		return
	}
	c.dead = true
	c.gone.Store(true)
	c.mu.Unlock()
	c.srv.forget(c.fd)
	unix.Close(c.fd)
	for _, t := range c.topics {
		t.unsubscribed()
	}
	c.topics, c.in = nil, nil
}

// request answers one request frame: channel.subscribe, channel.publish
// and sys.ping; anything else is refused as Junction refuses it.
func (c *conn) request(f []byte) {
	var typ, id, method, params []byte
	ok := readObject(f, func(key []byte) (*[]byte, bool) {
		switch string(key) {
		case "type":
			return &typ, true
		case "id":
			return &id, true
		case "method":
			return &method, true
		case "params":
			return &params, false
		}
		return nil, false
	})
	if !ok || string(typ) != "req" || len(id) == 0 {
		ev := protocol.AppendEvent(nil, "error", "", "", 0, []byte(`{"code":"invalid_frame","message":"not a request frame the reference server reads","retryable":false}`))
		c.send(appendFrame(nil, opText, ev), false)
		return
	}
	switch string(method) {
	case "channel.subscribe":
		topic, _, ok := params2(params)
		switch {
		case !ok || len(topic) == 0:
			c.sendError(id, protocol.CodeBadRequest, "want params {\"topic\": string}")
		case !c.canRead:
			c.sendError(id, protocol.CodeForbidden, "subscribing needs scope read")
		default:
			c.subscribe(id, string(topic))
		}
	case "channel.publish":
		topic, data, ok := params2(params)
		switch {
		case !ok || len(topic) == 0 || data == nil:
			c.sendError(id, protocol.CodeBadRequest, "want params {\"topic\": string, \"data\": value}")
		case !c.canWrite:
			c.sendError(id, protocol.CodeForbidden, "publishing needs scope write")
		default:
			t := c.srv.topic(string(topic))
			off := t.publish(data)
			c.srv.published(t, true)
			c.sendResult(id, c.srv.position(nil, off, false))
		}
	case "sys.ping":
		r := strconv.AppendInt([]byte(`{"pong":true,"timeMs":`), time.Now().UnixMilli(), 10)
		c.sendResult(id, append(r, '}'))
	default:
		c.sendError(id, protocol.CodeUnknownMethod, "unknown method")
	}
}

// subscribe subscribes c to the topic name (once).
func (c *conn) subscribe(id []byte, name string) {
	for _, t := range c.topics {
		if t.name == name {
			t.mu.Lock()
			off := t.offset
			t.mu.Unlock()
			c.sendResult(id, c.srv.position(nil, off, true))
			return
		}
	}
	t := c.srv.topic(name)
	c.topics = append(c.topics, t)
	t.subscribe(c, id)
}

func (c *conn) sendResult(id, result []byte) {
	c.send(appendFrame(nil, opText, protocol.AppendResult(nil, string(id), result)), false)
}

func (c *conn) sendError(id []byte, code protocol.Code, msg string) {
	b, _ := protocol.AppendError(nil, string(id), &protocol.Error{Code: code, Message: msg})
	c.send(appendFrame(nil, opText, b), false)
}

// params2 reads {"topic": string, "data": value} (other members are
// skipped); data is compacted.
func params2(b []byte) (topic, data []byte, ok bool) {
	ok = readObject(b, func(key []byte) (*[]byte, bool) {
		switch string(key) {
		case "topic":
			return &topic, true
		case "data":
			return &data, false
		}
		return nil, false
	})
	if ok && bytes.ContainsAny(data, " \t\r\n") {
		var err error
		data, err = protocol.Compact(data)
		ok = err == nil
	}
	return topic, data, ok
}

// readObject reads the JSON object b: each member whose key pick gives a
// destination gets its value there, aliasing b (str: the contents of a
// string without escapes, else the raw value); the others are checked and
// skipped.
func readObject(b []byte, pick func(key []byte) (dst *[]byte, str bool)) bool {
	end, ok := jsonscan.Object(b, jsonscan.Space(b, 0), func(key []byte, v int) (int, bool) {
		dst, str := pick(key)
		if dst != nil && str {
			s, end, ok := jsonscan.SimpleString(b, v)
			*dst = s
			return end, ok
		}
		end, ok := jsonscan.Value(b, v)
		if ok && dst != nil {
			*dst = b[v:end:end]
		}
		return end, ok
	})
	return ok && jsonscan.Space(b, end) == len(b)
}

// publishData reads the REST publish body {"data": value}.
func publishData(body []byte) ([]byte, bool) {
	_, data, ok := params2(body)
	return data, ok && data != nil && string(data) != "null"
}
