//go:build linux

package ws

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBusyConnKeepsGrownQueueArrays: a connection that had 150 frames
// queued between two writes (append grows its array to 170) keeps the array
// once they are written, so that the next burst does not regrow one from a
// single frame (keepQueueCap). Until the heartbeat finds it idle: that
// release is TestIdleConnReleasesQueueArrays.
func TestBusyConnKeepsGrownQueueArrays(t *testing.T) {
	h := newTestHandler(false)
	// A tick channel nobody sends on: the heartbeat never runs.
	tr, url := startServer(t, Config{Kind: Epoll, PingInterval: -1, tick: make(chan time.Time)}, h)
	cl := dial(t, url)
	c := h.waitConn(t)

	// Hold the connection as a writer that took it does, so that the
	// frames pile up in its queue instead of being written one by one.
	c.mu.Lock()
	if c.wstate != wIdle {
		c.mu.Unlock()
		t.Fatalf("got writer state %d after the upgrade, want idle", c.wstate)
	}
	c.wstate = wReady
	c.mu.Unlock()
	const burst = 150
	frame := PrepareText([]byte("x"))
	for range burst {
		if err := c.Send(frame); err != nil {
			t.Fatal(err)
		}
	}
	w := &writer{t: tr, iov: make([]unix.Iovec, 0, maxIov)}
	w.flush(c)
	for range burst {
		cl.recv(t)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wstate != wIdle {
		t.Fatalf("got writer state %d after the flush, want idle", c.wstate)
	}
	if held := max(cap(c.queue), cap(c.pending)); held < burst {
		t.Fatalf("got queue arrays of %d frames kept after a burst of %d, want at least %d", held, burst, burst)
	}
}
