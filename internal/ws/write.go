//go:build linux

package ws

import (
	"errors"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/junctionhq/junction/protocol"
)

const (
	maxIov    = 1024 // IOV_MAX: iovecs per writev
	maxRounds = 4    // writevs per turn before a busy connection goes to the back of the list
)

// writer is one writer goroutine's scratch state.
type writer struct {
	t     *Transport
	iov   []unix.Iovec // scratch, reused for every writev
	batch []*Conn      // scratch for takeReady
	// onLoop says the flush runs on the loop goroutine of the connection
	// (see flushFromLoop): a finish need not wake that loop.
	onLoop bool
	// raw says the flush runs on a loop goroutine, which writes with
	// RawSyscall (see loop.read).
	raw bool
}

// writeLoop serves the ready list until Close stops the writers.
func (t *Transport) writeLoop() { t.serveWrites(t.takeReady) }

// helpLoop is the helper writer's loop (Config.Writers): writeLoop, but it
// takes connections only while the ready list is longer than helperBacklog.
func (t *Transport) helpLoop() { t.serveWrites(t.takeBacklog) }

// serveWrites flushes the connections take hands over until it returns nil.
func (t *Transport) serveWrites(take func(dst []*Conn) []*Conn) {
	w := &writer{t: t, iov: make([]unix.Iovec, 0, maxIov), batch: make([]*Conn, 0, maxTake)}
	for {
		w.batch = take(w.batch[:0])
		if w.batch == nil {
			return
		}
		for i, c := range w.batch {
			w.flush(c)
			w.batch[i] = nil
		}
		// Yield after each take: the writev calls above are short system
		// calls, which the scheduler does not hand this writer's processor
		// away for, and while the ready list has work a writer never blocks.
		// Without this, the goroutines made runnable meanwhile (an HTTP
		// publisher, an RPC relay, a handshake) wait for a processor until
		// the list runs dry or the ~10 ms preemption comes (issue 11).
		runtime.Gosched()
	}
}

// flush writes what is queued for c, which this writer holds (wReady), with
// as few writev calls as possible, until the queue is empty, the socket is
// full (then the loop waits for EPOLLOUT) or maxRounds writes were made (then
// c goes to the back of the ready list).
func (w *writer) flush(c *Conn) {
	var wrote, done int // written since the last accounting under mu
	for round := 0; ; round++ {
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
			// Keep the emptied array: as the queue when that is nil, else
			// as the spare the next flush swaps in for the queue, so a
			// connection that is sent frames while it is written does not
			// grow a new queue from nothing every time.
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
			if c.unwritable.Load() != 0 {
				c.unwritable.Store(0)
			}
			if closing {
				c.onCloseWritten(w.onLoop)
			}
			return
		}
		if round == maxRounds {
			c.mu.Unlock()
			w.t.schedule(c) // still wReady
			return
		}
		c.mu.Unlock()

		n, total, err := w.writev(c)
		if n > 0 {
			wrote = n
			done = c.advance(n)
			if c.unwritable.Load() != 0 {
				c.unwritable.Store(0)
			}
		}
		switch {
		case err == nil && n == total:
			continue
		case err == nil || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			// The socket is full: wait for EPOLLOUT in the loop.
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
			if c.hasFlag(flagAbort) {
				if len(c.queue) > 0 {
					// The close frame was queued after this writev began:
					// try it (once) before giving up on the socket.
					c.mu.Unlock()
					continue
				}
				// The close frame did not fit: do not wait for the peer.
				c.mu.Unlock()
				c.cut()
				c.mu.Lock()
				c.pending, c.pendOff = nil, 0
				c.wstate = wIdle
				c.mu.Unlock()
				return
			}
			c.wstate = wWaitOut
			c.mu.Unlock()
			if c.unwritable.Load() == 0 {
				c.unwritable.Store(w.t.now())
			}
			c.loop().armOut(c)
			return
		default:
			c.finish(protocol.CloseAbnormal, "write: "+err.Error(), w.onLoop)
			c.mu.Lock()
			c.pending, c.pendOff = nil, 0
			c.wstate = wIdle
			c.mu.Unlock()
			return
		}
	}
}

// writev writes c.pending (from c.pendOff) with one writev(2), at most
// maxIov frames, without parking: the socket is non-blocking. It returns
// the bytes written and the bytes it tried to write.
//
// unix.Writev is not used because it heap-allocates its iovec array for
// more than 8 buffers; this writer's array is reused.
func (w *writer) writev(c *Conn) (n, total int, err error) {
	iov := w.iov[:0]
	for i, f := range c.pending {
		if len(iov) == maxIov {
			break
		}
		if i == 0 {
			f = f[c.pendOff:]
		}
		v := unix.Iovec{Base: &f[0]}
		v.SetLen(len(f))
		iov = append(iov, v)
		total += len(f)
	}
	if !c.acquireFD() {
		clear(iov)
		return 0, total, ErrClosed
	}
	// A writer uses Syscall, not RawSyscall: the socket is non-blocking,
	// but a writev of many frames still takes microseconds in the kernel,
	// and a raw call hides that from the scheduler, which then never hands
	// this writer's processor to the goroutines waiting for one (HTTP
	// publishers, RPC relays, handshakes): under a heavy fan-out they
	// starved (issue 11). A loop is one of those: it writes raw.
	var r uintptr
	var errno unix.Errno
	if w.raw {
		r, _, errno = unix.RawSyscall(unix.SYS_WRITEV, uintptr(c.fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	} else {
		r, _, errno = unix.Syscall(unix.SYS_WRITEV, uintptr(c.fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	}
	c.releaseFD()
	clear(iov) // drop references to frames
	if errno != 0 {
		return 0, total, errno
	}
	n = int(r)
	return n, total, err
}
