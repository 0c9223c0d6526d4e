package hub

import "sync"

// A connection's states (Conn.state), in one atomic word. With the welcome's
// once flag among them and its lock striped (welcomeMu), hub.Conn keeps the
// 144-byte size class where a 12-byte sync.Once and two atomic.Bools took 20
// bytes of every connection.
const (
	// connWelcomed: the welcome ran (welcomeOnce).
	connWelcomed uint32 = 1 << iota
	// connRegistered: in the registry; set after the welcome, cleared by
	// unregister.
	connRegistered
	// connAdmitted: holds a connection slot (Hub.admit), given back once on
	// close (releaseSlot).
	connAdmitted
)

// welcomeMu is the lock of welcomeOnce, striped by connection id: what a
// sync.Once per connection held in each. A caller waits on it only while
// another welcome of the same stripe runs, for microseconds (registration
// and a queued frame); the welcome of a connection found after it is
// welcomed never takes it.
var welcomeMu [251]sync.Mutex

// welcomeOnce runs f once for c, as sync.Once.Do: a caller that finds the
// welcome running waits until it is done.
func (c *Conn) welcomeOnce(f func()) {
	if c.state.Load()&connWelcomed != 0 {
		return
	}
	mu := &welcomeMu[(uint(c.id[connIDLen-2])<<8|uint(c.id[connIDLen-1]))%uint(len(welcomeMu))]
	mu.Lock()
	defer mu.Unlock()
	if c.state.Load()&connWelcomed != 0 {
		return
	}
	defer c.state.Or(connWelcomed)
	f()
}

// registered reports whether c is in the registry.
func (c *Conn) registered() bool { return c.state.Load()&connRegistered != 0 }

// setState sets flag f of c.state.
func (c *Conn) setState(f uint32) { c.state.Or(f) }

// unmarkState clears flag f of c.state and reports whether this call cleared
// it: a CompareAndSwap(true, false) of the flag.
func (c *Conn) unmarkState(f uint32) bool { return c.state.And(^f)&f != 0 }
