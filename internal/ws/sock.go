package ws

import "net"

// A connection's descriptor is used by the loop (read, epoll), the writers
// (writev) and the closers (shutdown, linger) without a lock of the
// connection, so it is reference-counted: each system call on it holds a
// reference (acquireFD, releaseFD), and the descriptor is closed once it is
// shut (shutFD, when the connection finishes) and the last reference is
// released. A number that was closed can be reused by the kernel for a new
// connection at once, so no call may use it after that.
//
// fdRefs holds the references in its low bits and fdShut once shut.
const fdShut = 1 << 30

// acquireFD takes a reference to c's descriptor for one system call; false
// once the connection has finished and the descriptor is (being) closed.
func (c *Conn) acquireFD() bool {
	for {
		v := c.fdRefs.Load()
		if v&fdShut != 0 {
			return false
		}
		if c.fdRefs.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// releaseFD drops a reference taken by acquireFD; the last one after shutFD
// closes the descriptor.
func (c *Conn) releaseFD() {
	if c.fdRefs.Add(-1) == fdShut {
		c.closeFD()
	}
}

// shutFD refuses further references and closes the descriptor now, or when
// the last reference is released.
func (c *Conn) shutFD() {
	if old := c.fdRefs.Or(fdShut); old == 0 {
		c.closeFD()
	}
}

// closeFD closes the descriptor: through its net.Conn when it has one (the
// Go runtime's poller registered it), else directly.
func (c *Conn) closeFD() {
	if c.netConn() != nil {
		_ = c.netConn().Close()
		return
	}
	closeFD(int(c.fd))
}

// RemoteAddr returns the peer's address, or nil once the connection has
// finished. For a connection attached as a bare descriptor (AttachFD) it is
// asked of the kernel on each call rather than kept in memory.
func (c *Conn) RemoteAddr() net.Addr {
	if c.netConn() != nil {
		return c.netConn().RemoteAddr()
	}
	if !c.acquireFD() {
		return nil
	}
	defer c.releaseFD()
	return peerAddr(int(c.fd))
}
