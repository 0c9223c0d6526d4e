//go:build linux

package ws

import "golang.org/x/sys/unix"

// Uncork ends the hold of AttachOptions.Corked: what was queued meanwhile
// (the preamble, then frames) is written at once by the calling goroutine,
// without waiting for a writer; what does not fit in the socket is left to
// the loop and the writers as usual. (Portable: the connection's writer
// writes it, all in one write as well.) Call it exactly once, and only on a
// connection attached with Corked.
func (c *Conn) Uncork() {
	if c.port() != nil {
		c.t.schedule(c)
		return
	}
	var iov [8]unix.Iovec
	w := writer{t: c.t, iov: iov[:0]}
	w.flush(c)
}

// flushFromLoop writes what is queued for c from its loop goroutine, which
// holds c (the caller moved it to wReady instead of scheduling it).
func (c *Conn) flushFromLoop() {
	if c.port() != nil {
		c.t.schedule(c) // its writer holds it from here
		return
	}
	var iov [8]unix.Iovec
	w := writer{t: c.t, iov: iov[:0], onLoop: true, raw: true}
	w.flush(c)
}
