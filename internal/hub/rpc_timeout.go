package hub

import (
	"sync"
	"time"
)

// The timeouts of the calls relayed on the fast paths (rpc_fast.go,
// rpc_served.go). Calls with the same timeout end in the order they
// started, so each timeout has a queue in start order and one runtime
// timer, set for its head: a call is queued and removed under one lock,
// where a runtime timer of its own (allocated with its callback, set
// twice, stopped) took about a sixth of a relayed call's user-space time.
// A queue's timer fires at its head's deadline, ends the calls whose
// deadline passed, and is set again for the new head. A queue left empty
// is dropped at once, its timer stopped: no queue outlives its calls
// (callers choosing many distinct timeouts leave nothing behind).

// timedCall is a call that a timeout queue ends.
type timedCall interface {
	timedOut()
}

// timeoutEntry is a call's place in its timeout queue, held in the call.
type timeoutEntry struct {
	q          *timeoutQueue // guarded by rpcTimeouts.mu: nil when not queued
	prev, next *timeoutEntry // guarded by rpcTimeouts.mu
	at         time.Time     // guarded by rpcTimeouts.mu: the deadline
	call       timedCall     // set once by add
}

// rpcTimeouts holds the timeout queues of a relay.
type rpcTimeouts struct {
	mu     sync.Mutex
	queues map[time.Duration]*timeoutQueue // guarded by mu
}

// timeoutQueue holds the calls queued with one timeout, in deadline order.
type timeoutQueue struct {
	t          *rpcTimeouts
	d          time.Duration // set once
	head, tail *timeoutEntry // guarded by t.mu
	// timer is set once; it is pending while the queue is in t.queues
	// (for the head's deadline, or an earlier one) and stopped when the
	// queue is dropped.
	timer *time.Timer
}

// add queues e to end call after d. e is queued once.
func (t *rpcTimeouts) add(e *timeoutEntry, call timedCall, d time.Duration) {
	e.call = call
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.queues[d]
	if q == nil {
		if t.queues == nil {
			t.queues = make(map[time.Duration]*timeoutQueue)
		}
		q = &timeoutQueue{t: t, d: d}
		t.queues[d] = q
		q.timer = time.AfterFunc(d, q.fire)
	}
	// The deadline is taken under the lock, so that the queue stays in
	// deadline order.
	e.at = time.Now().Add(d)
	e.q, e.prev, e.next = q, q.tail, nil
	if q.tail != nil {
		q.tail.next = e
	} else {
		q.head = e
	}
	q.tail = e
}

// remove takes e out of its queue, if it is queued.
func (t *rpcTimeouts) remove(e *timeoutEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := e.q
	if q == nil {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		q.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		q.tail = e.prev
	}
	e.q, e.prev, e.next = nil, nil, nil
	if q.head == nil {
		q.timer.Stop()
		t.dropLocked(q)
	}
}

// dropLocked forgets q, unless a newer queue of its timeout replaced it
// already (q's timer may fire after q was dropped). Called with t.mu held.
func (t *rpcTimeouts) dropLocked(q *timeoutQueue) {
	if t.queues[q.d] == q {
		delete(t.queues, q.d)
	}
}

// fire ends the calls of q whose deadline passed and sets the timer for
// the next one, or drops q when it is left empty.
func (q *timeoutQueue) fire() {
	t := q.t
	var ended []timedCall // ended after the lock is released (ending a call removes it: a no-op now)
	t.mu.Lock()
	now := time.Now()
	for q.head != nil && !q.head.at.After(now) {
		e := q.head
		ended = append(ended, e.call)
		q.head = e.next
		e.q, e.prev, e.next = nil, nil, nil
	}
	if q.head != nil {
		q.head.prev = nil
		q.timer.Reset(q.head.at.Sub(now))
	} else {
		q.tail = nil
		t.dropLocked(q)
	}
	t.mu.Unlock()
	for _, c := range ended {
		c.timedOut()
	}
}
