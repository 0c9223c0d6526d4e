//go:build linux

package ws

import "golang.org/x/sys/unix"

// A loop writes the replies its own pass made.
//
// Most urgent connections (scheduleUrgent: a reply, an event for one
// connection) are made ready by a handler running on a loop: a request read
// there is answered there, and a relayed rpc.call is sent to its target and
// later answered to its caller from the loops. Waking a writer for each costs
// a goroutine hand-off, often a thread wake-up, per reply, and the writer
// then finds one frame per connection. Instead, while a loop is in a pass
// (beginPass .. endPass) scheduleUrgent wakes nobody; at the end of its pass
// the loop takes the urgent list (at most maxTake connections) and writes
// them itself, with one writev each for everything its pass queued (the
// requests of many callers to one target leave in one write). Connections
// made urgent by other goroutines while a loop is busy are written by it too.
//
// Nothing is left behind: an entry appended while some loop was busy is
// seen by that loop's endPass, which runs later and looks at the list under
// readyMu; the last busy loop to end its pass wakes a writer for whatever is
// still there (more than maxTake, or entries its flush queued). A fan-out
// (SendBatch, scheduleMany) still goes to the writers' ready list, and the
// writers still take urgent connections first, so a busy loop does not hold
// a reply back longer than its pass.

// beginPass marks the loop as in a pass: urgent connections wait for its
// end instead of waking a writer.
func (l *loop) beginPass() { l.t.loopsBusy.Add(1) }

// flushUrgent takes up to maxTake urgent connections and writes them from
// the loop goroutine. The connections may belong to any loop, so its writer
// is not onLoop: a connection finished while written wakes its loop, which
// for this loop's own connections is one spare wake-up on a rare path (the
// pass's OnClose calls, which follow, deliver it already).
func (l *loop) flushUrgent() {
	t := l.t
	t.readyMu.Lock()
	n := min(len(t.urgent), maxTake)
	l.batch = append(l.batch[:0], t.urgent[:n]...)
	rest := copy(t.urgent, t.urgent[n:])
	clear(t.urgent[rest:])
	t.urgent = t.urgent[:rest]
	if rest == 0 && cap(t.urgent) > 1024 {
		t.urgent = nil
	}
	t.readyMu.Unlock()
	for i, c := range l.batch {
		l.w.flush(c)
		l.batch[i] = nil
	}
}

// endPass ends the pass, after flushUrgent and before the pass's OnClose
// calls (handlers whose hooks may take longer than a read: urgent
// connections queued meanwhile wake writers as usual). The last busy loop
// wakes writers for what is left on the urgent list: more than one
// flushUrgent takes, or connections made urgent during the flush.
func (l *loop) endPass() {
	t := l.t
	t.readyMu.Lock()
	left := 0
	if t.loopsBusy.Add(-1) == 0 {
		left = len(t.urgent)
	}
	t.readyMu.Unlock()
	switch {
	case left > maxTake:
		t.readyCond.Broadcast()
	case left > 0:
		t.readyCond.Signal()
	}
}

// newLoopWriter returns the writer state a loop writes urgent connections
// with.
func newLoopWriter(l *loop) *writer {
	return &writer{t: l.t, iov: make([]unix.Iovec, 0, maxIov), raw: true}
}
