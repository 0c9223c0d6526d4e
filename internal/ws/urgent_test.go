//go:build linux

package ws

import "testing"

// TestTakeReadyServesUrgentFirst checks the writers' order: a connection
// made ready by Send (a reply) is taken before the connections a fan-out put
// on the ready list earlier, and the ready list still gets its share in the
// same take, so that replies cannot starve a fan-out.
func TestTakeReadyServesUrgentFirst(t *testing.T) {
	tr := New(Config{Writers: 2})
	fanout := make([]*Conn, 1000)
	for i := range fanout {
		fanout[i] = &Conn{}
	}
	tr.scheduleMany(fanout)
	reply := &Conn{}
	tr.scheduleUrgent(reply)

	got := tr.takeReady(nil)
	if len(got) < 2 || got[0] != reply {
		t.Fatalf("got %d connections, first %p; want the reply %p first, then fan-out connections", len(got), got[0], reply)
	}
	if got[1] != fanout[0] {
		t.Errorf("got %p after the reply, want the first fan-out connection %p", got[1], fanout[0])
	}
	if n := len(got) - 1; n != maxTake {
		t.Errorf("got %d fan-out connections with the reply, want %d (a writer's share, at most maxTake)", n, maxTake)
	}
	taken := len(got) - 1
	for taken < len(fanout) {
		next := tr.takeReady(nil)
		for _, c := range next {
			if c != fanout[taken] {
				t.Fatalf("fan-out connection %d: got %p, want %p (order kept)", taken, c, fanout[taken])
			}
			taken++
		}
	}
}
