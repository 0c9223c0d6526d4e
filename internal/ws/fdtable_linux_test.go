//go:build linux

package ws

import (
	"slices"
	"sync"
	"testing"
)

// TestFDTable: a descriptor finds the connection registered on it; removing
// a connection whose descriptor another connection took since leaves the
// newer one; the table grows to any descriptor; appendConns lists a loop's
// connections only.
func TestFDTable(t *testing.T) {
	var tab fdTable
	l1, l2 := &loop{}, &loop{}
	tr := &Transport{loops: []*loop{l1, l2}} // a connection finds its loop by index
	if c := tab.load(7); c != nil {
		t.Fatalf("empty table: got %p for fd 7, want nil", c)
	}
	tab.remove(&Conn{fd: 7}) // nothing registered: no effect, no panic

	old := &Conn{fd: 7, gen: 1, t: tr, li: 0}
	tab.store(old)
	if got := tab.load(7); got != old {
		t.Fatalf("got %p for fd 7, want %p", got, old)
	}
	// fd 7 closed and reused by a connection of another loop before the
	// old one's remove ran: the remove must not unregister the new one.
	reused := &Conn{fd: 7, gen: 2, t: tr, li: 1}
	tab.store(reused)
	tab.remove(old)
	if got := tab.load(7); got != reused {
		t.Fatalf("after removing the old connection: got %p for fd 7, want the new %p", got, reused)
	}

	far := &Conn{fd: 5*fdChunkSize + 3, gen: 3, t: tr, li: 0} // several chunks away
	tab.store(far)
	if got := tab.load(far.fd); got != far {
		t.Fatalf("got %p for fd %d, want %p", got, far.fd, far)
	}
	if got := tab.load(far.fd + fdChunkSize); got != nil {
		t.Fatalf("got %p for an fd beyond the table, want nil", got)
	}
	if got := tab.load(-1); got != nil {
		t.Fatalf("got %p for fd -1, want nil", got)
	}
	if got := tab.load(7); got != reused {
		t.Fatalf("after growth: got %p for fd 7, want %p", got, reused)
	}

	if got := tab.appendConns(nil, l1); !slices.Equal(got, []*Conn{far}) {
		t.Errorf("loop 1's connections: got %v, want [%p]", got, far)
	}
	if got := tab.appendConns(nil, l2); !slices.Equal(got, []*Conn{reused}) {
		t.Errorf("loop 2's connections: got %v, want [%p]", got, reused)
	}
	tab.remove(reused)
	tab.remove(far)
	if got := tab.appendConns(nil, l1); len(got) != 0 {
		t.Errorf("after removing all: got %v, want none", got)
	}
	if got := tab.load(7); got != nil {
		t.Errorf("after removing all: got %p for fd 7, want nil", got)
	}
}

// TestFDTableConcurrentGrowth: lookups run while registrations grow the
// table (the loops look up events while connections arrive); under -race
// this checks that growth publishes chunks and the index safely.
func TestFDTableConcurrentGrowth(t *testing.T) {
	var tab fdTable
	l := &loop{}
	tr := &Transport{loops: []*loop{l}}
	const n = 4*fdChunkSize + 17
	conns := make([]*Conn, n)
	for i := range conns {
		conns[i] = &Conn{fd: int32(i), gen: uint32(i + 1), t: tr}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			for i := r; ; i = (i + 7) % n {
				select {
				case <-done:
					return
				default:
				}
				if c := tab.load(int32(i)); c != nil && c != conns[i] {
					t.Errorf("fd %d: got a connection of fd %d", i, c.fd)
					return
				}
			}
		})
	}
	for _, c := range conns {
		tab.store(c)
	}
	close(done)
	wg.Wait()
	for i, c := range conns {
		if got := tab.load(int32(i)); got != c {
			t.Fatalf("fd %d: got %p, want %p", i, got, c)
		}
	}
	if got := tab.appendConns(nil, l); len(got) != n {
		t.Errorf("got %d connections, want %d", len(got), n)
	}
}
