//go:build linux

package ws

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// testLoop is a loop without epoll descriptors: enough for its pass
// bookkeeping and flushUrgent, which write nothing for connections with
// nothing queued.
func testLoop(t *Transport) *loop {
	l := &loop{t: t, batch: make([]*Conn, 0, maxTake)}
	l.w = newLoopWriter(l)
	return l
}

// readyConns returns n connections in the state scheduleUrgent expects
// (wReady: the sender moved them there).
func readyConns(n int) []*Conn {
	cs := make([]*Conn, n)
	for i := range cs {
		cs[i] = &Conn{wstate: wReady}
	}
	return cs
}

// written counts the connections a flush has handed back (wIdle).
func written(cs []*Conn) int {
	n := 0
	for _, c := range cs {
		c.mu.Lock()
		if c.wstate == wIdle {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

// TestLoopWritesUrgentOfItsPass: connections made urgent while loops are in
// a pass are written by the loops when their passes end (maxTake per pass,
// in order), and a loop that ends its pass while another is busy leaves the
// rest to that one.
func TestLoopWritesUrgentOfItsPass(t *testing.T) {
	tr := New(Config{Writers: 2})
	a, b := testLoop(tr), testLoop(tr)
	a.beginPass()
	cs := readyConns(maxTake + 36)
	for _, c := range cs {
		tr.scheduleUrgent(c)
	}
	b.beginPass()

	a.flushUrgent()
	if got := written(cs[:maxTake]); got != maxTake {
		t.Fatalf("after the first loop's pass: got %d of the first %d connections written, want all", got, maxTake)
	}
	if got := written(cs[maxTake:]); got != 0 {
		t.Fatalf("after the first loop's pass: got %d of the rest written, want 0 (at most maxTake per pass)", got)
	}
	a.endPass()
	tr.readyMu.Lock()
	left := len(tr.urgent)
	tr.readyMu.Unlock()
	if left != 36 {
		t.Fatalf("got %d urgent connections left for the busy loop, want 36", left)
	}

	b.flushUrgent()
	b.endPass()
	if got := written(cs); got != len(cs) {
		t.Fatalf("got %d of %d connections written after both passes, want all", got, len(cs))
	}
	if n := tr.loopsBusy.Load(); n != 0 {
		t.Fatalf("got %d loops busy after both passes ended, want 0", n)
	}
}

// TestLastLoopHandsRestToWriters: what a pass leaves on the urgent list
// (more than maxTake) is handed to a writer when the last busy loop ends its
// pass, so nothing waits for the next pass of a loop that may never come.
func TestLastLoopHandsRestToWriters(t *testing.T) {
	tr := New(Config{Writers: 2})
	l := testLoop(tr)
	got := make(chan []*Conn, 1)
	go func() { got <- tr.takeReady(nil) }()
	waitParkedIn(t, "takeReady")

	l.beginPass()
	cs := readyConns(maxTake + 5)
	for _, c := range cs {
		tr.scheduleUrgent(c)
	}
	l.flushUrgent()
	l.endPass()
	select {
	case rest := <-got:
		if len(rest) != 5 || rest[0] != cs[maxTake] {
			t.Fatalf("writer got %d connections, want the 5 the loop left, from the %d-th", len(rest), maxTake)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer was not woken for the connections the loop left")
	}
	if w := written(cs[:maxTake]); w != maxTake {
		t.Fatalf("the loop wrote %d connections, want %d", w, maxTake)
	}
}

// waitParkedIn waits until a goroutine blocked in a sync.Cond inside fn
// shows in the goroutine dump.
func waitParkedIn(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "sync.(*Cond).Wait") && strings.Contains(g, fn) {
				return
			}
		}
		runtime.Gosched()
	}
	t.Fatalf("no goroutine parked in %s", fn)
}
