package ws

import (
	"testing"
	"time"
	"unsafe"
)

// TestConnSize keeps a Conn in the 224-byte allocation size class: every
// idle connection holds one, and the next class up is 240 bytes. A new field
// must find room in existing padding, go to connOwn if few connections need
// it, or pay for it knowingly.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 224 {
		t.Fatalf("ws.Conn is %d bytes, over the 224-byte size class", n)
	}
}

// TestIdleConnReleasesQueueArrays: after a burst, a connection with nothing
// left to write gives its queue arrays back within a few heartbeat ticks.
func TestIdleConnReleasesQueueArrays(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		_, url := startServer(t, Config{Kind: kind, WriteTimeout: 100 * time.Millisecond}, h)
		cl := dial(t, url)
		c := h.waitConn(t)
		frame := PrepareText([]byte("x"))
		// Bursts of 20: the arrays they grow are small enough to be kept
		// between writes (keepQueueCap).
		for range 10 {
			for range 20 {
				if err := c.Send(frame); err != nil {
					t.Fatal(err)
				}
			}
			for range 20 {
				cl.recv(t)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			// The writer owns pending outside mu until it marks the
			// connection idle (the client may read the last frame before the
			// writer has accounted for it): read it only then.
			c.mu.Lock()
			idle := c.wstate == wIdle
			held := cap(c.queue)
			if idle {
				held += cap(c.pending)
			}
			c.mu.Unlock()
			if idle && held == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("idle connection still holds queue arrays of %d frames", held)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
