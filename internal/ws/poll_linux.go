//go:build linux

package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/junctionhq/junction/protocol"
)

const (
	defaultKind    = Epoll
	epollSupported = true
)

const (
	readBufSize = 64 << 10 // per-loop scratch read buffer
	maxEvents   = 256
)

// pendingClose is a finished connection whose OnClose the loop delivers.
type pendingClose struct {
	c      *Conn
	code   int
	reason string
}

// loop is one epoll instance and the goroutine that waits on it. It reads
// every connection registered with it, parses frames and calls the
// connections' handlers, and turns EPOLLOUT into writer work.
type loop struct {
	t      *Transport // set once
	epfd   int        // set once; closed by closeFDs after run returns
	wakefd int        // set once: eventfd that interrupts epoll_wait

	stopping atomic.Bool // run returns once set and woken

	// The connections registered with the loop are in t.fds, shared by the
	// loops of t.
	mu      sync.Mutex
	kicks   []*Conn        // guarded by mu: connections with bytes buffered before registration
	onClose []pendingClose // guarded by mu: finished connections awaiting OnClose

	buf    []byte            // owned by run: scratch read buffer shared by all connections
	events []unix.EpollEvent // owned by run
	w      *writer           // owned by run: writes the urgent connections (loopwrite_linux.go)
	batch  []*Conn           // owned by run: scratch for flushUrgent
}

func newLoop(t *Transport) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd), Pad: 0}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	l := &loop{
		t:      t,
		epfd:   epfd,
		wakefd: wakefd,
		buf:    make([]byte, readBufSize),
		events: make([]unix.EpollEvent, maxEvents),
		batch:  make([]*Conn, 0, maxTake),
	}
	l.w = newLoopWriter(l)
	return l, nil
}

// event returns the epoll registration of c: the fd and the generation, so
// that an event for a closed connection whose fd was reused is recognised
// as stale. Generations start at 1; 0 marks the wake eventfd.
func event(c *Conn, events uint32) unix.EpollEvent {
	return unix.EpollEvent{Events: events, Fd: c.fd, Pad: int32(c.gen)}
}

// add registers c; reads start once it returns.
func (l *loop) add(c *Conn) error {
	l.t.fds.store(c)
	kick := c.x != nil && len(c.x.initial) > 0
	if kick {
		l.mu.Lock()
		l.kicks = append(l.kicks, c)
		l.mu.Unlock()
	}
	err := ErrClosed // Transport.Close may cut c before it is in the epoll set
	if c.acquireFD() {
		ev := event(c, unix.EPOLLIN|unix.EPOLLRDHUP)
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(c.fd), &ev)
		c.releaseFD()
	}
	if err != nil {
		l.t.fds.remove(c)
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	if kick {
		l.wake()
	}
	return nil
}

// remove unregisters c. It must run before c's socket is closed, so the fd
// cannot have been reused. A bare descriptor (AttachFD) leaves the epoll set
// by itself when it is closed, since nothing else refers to its socket; one
// owned by a net.Conn is removed explicitly, as its owner may share it.
func (l *loop) remove(c *Conn) {
	l.t.fds.remove(c)
	if c.netConn() != nil && c.acquireFD() {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
		c.releaseFD()
	}
}

// armOut asks for EPOLLOUT on c; the loop then hands c back to the writers.
func (l *loop) armOut(c *Conn) {
	if !c.acquireFD() {
		// Closed meanwhile: finish has released (or will release) pending.
		c.finish(protocol.CloseAbnormal, "closed", false)
		return
	}
	ev := event(c, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLOUT)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev)
	c.releaseFD()
}

// closed queues OnClose for c and wakes the loop unless the caller is it.
func (l *loop) closed(c *Conn, code int, reason string, fromLoop bool) {
	l.mu.Lock()
	l.onClose = append(l.onClose, pendingClose{c, code, reason})
	l.mu.Unlock()
	if !fromLoop {
		l.wake()
	}
}

func (l *loop) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(l.wakefd, one[:])
}

// stop makes run return after it has delivered the pending OnClose calls.
func (l *loop) stop() {
	l.stopping.Store(true)
	l.wake()
}

func (l *loop) closeFDs() {
	_ = unix.Close(l.epfd)
	_ = unix.Close(l.wakefd)
}

// appendConns appends every registered connection to dst.
func (l *loop) appendConns(dst []*Conn) []*Conn {
	return l.t.fds.appendConns(dst, l)
}

// run is the loop goroutine.
func (l *loop) run() {
	var ready []*Conn // connections of the current batch of events
	var evs []uint32
	var kicks []*Conn
	var closes []pendingClose
	for {
		n, err := unix.EpollWait(l.epfd, l.events, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			panic(fmt.Sprintf("ws: epoll_wait: %v", err))
		}
		l.beginPass()
		now := l.t.now()
		ready, evs = ready[:0], evs[:0]
		for _, ev := range l.events[:max(n, 0)] {
			if ev.Pad == 0 && ev.Fd == int32(l.wakefd) {
				continue
			}
			c := l.t.fds.load(ev.Fd)
			if c == nil || int32(c.gen) != ev.Pad {
				continue // stale: closed, maybe fd reused
			}
			ready = append(ready, c)
			evs = append(evs, ev.Events)
		}
		l.mu.Lock()
		kicks, l.kicks = l.kicks, kicks[:0]
		l.mu.Unlock()
		if n > 0 {
			for _, ev := range l.events[:n] {
				if ev.Pad == 0 && ev.Fd == int32(l.wakefd) {
					var b [8]byte
					_, _ = unix.Read(l.wakefd, b[:])
				}
			}
		}

		for _, c := range kicks {
			data := c.takeInitial()
			c.lastRead.Store(now)
			c.process(data)
		}
		clear(kicks)
		for i, c := range ready {
			e := evs[i]
			if e&unix.EPOLLOUT != 0 {
				l.writable(c)
			}
			if e&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLRDHUP) != 0 {
				l.read(c, now)
			}
		}
		clear(ready)
		// The pass ends before the OnClose calls, whose hooks may take
		// longer than a read: replies queued meanwhile wake writers again.
		l.flushUrgent()
		l.endPass()

		l.mu.Lock()
		closes, l.onClose = l.onClose, closes[:0]
		l.mu.Unlock()
		for _, pc := range closes {
			pc.c.h.OnClose(pc.c, pc.code, pc.reason)
		}
		clear(closes)
		if l.stopping.Load() {
			l.mu.Lock()
			done := len(l.onClose) == 0
			l.mu.Unlock()
			if done {
				return
			}
		}
		if p := l.t.cfg.ReadPause; p > 0 && n < len(l.events) {
			time.Sleep(p)
		}
	}
}

// writable hands c, whose socket accepts data again, back to the writers.
func (l *loop) writable(c *Conn) {
	if !c.acquireFD() {
		return // finished meanwhile
	}
	ev := event(c, unix.EPOLLIN|unix.EPOLLRDHUP)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev)
	c.releaseFD()
	c.mu.Lock()
	sched := c.wstate == wWaitOut && c.state.Load() != stateClosed
	if sched {
		c.wstate = wReady
	}
	c.mu.Unlock()
	if sched {
		l.t.schedule(c)
	}
}

// read reads what c's socket holds, once (level-triggered epoll reports the
// rest again), into the loop's scratch buffer and parses it.
func (l *loop) read(c *Conn, now int64) {
	if c.state.Load() == stateClosed {
		return
	}
	if !c.acquireFD() {
		return // finished meanwhile
	}
	// RawSyscall: epoll reported the socket ready and it does not block. A
	// call the scheduler sees lets the runtime's monitor hand the loop's
	// processor away when the thread is descheduled in it (a busy host),
	// and the loop, with the rest of its pass (the replies to all it read)
	// still to do, then waits behind the writers for a processor again.
	// The writes of the pass (loopwrite_linux.go) are raw for the same
	// reason.
	r, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&l.buf[0])), uintptr(len(l.buf)))
	c.releaseFD()
	var n int
	var rerr error
	if errno != 0 {
		rerr = errno
	} else {
		n = int(r)
	}
	switch {
	case errors.Is(rerr, unix.EAGAIN), errors.Is(rerr, unix.EINTR):
		return
	case rerr != nil:
		c.finish(protocol.CloseAbnormal, "read: "+rerr.Error(), true)
		return
	case n == 0:
		c.finish(protocol.CloseAbnormal, "connection lost", true)
		return
	}
	c.lastRead.Store(now)
	c.process(l.buf[:n])
}

// closeFD closes a bare descriptor.
func closeFD(fd int) { _ = unix.Close(fd) }

// peerAddr asks the kernel for the peer address of socket fd; nil if it
// cannot say.
func peerAddr(fd int) net.Addr {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return nil
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port, Zone: zoneName(sa.ZoneId)}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: sa.Name, Net: "unix"}
	}
	return nil
}

// zoneName names an IPv6 zone (interface) index, as net does.
func zoneName(index uint32) string {
	if index == 0 {
		return ""
	}
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(index), 10)
}

// shutdownWrite sends FIN after what the socket holds.
func shutdownWrite(fd int) error {
	return unix.Shutdown(fd, unix.SHUT_WR)
}

// resetOnClose makes closing the socket drop what it holds and send RST
// (SO_LINGER with a zero timeout) instead of draining it to the peer.
func resetOnClose(fd int) error {
	return unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}
