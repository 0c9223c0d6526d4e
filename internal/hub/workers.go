package hub

import (
	"sync/atomic"
	"time"
)

// Pooled goroutines for the hub's short tasks: an Async request's handler
// and what Go runs (a call served for another node, most of all).
//
// A fresh goroutine starts with the runtime's smallest stack; a request
// forwarded to another node runs ~3 KB of frames deep, so every such
// goroutine grew its stack once (runtime.newstack copying it), then freed
// the grown stack when it exited: 5-8 % of a cluster node's CPU in the
// cross-node rpc.call benchmark (BENCHMARKS.md). A worker that finished a
// task waits workerIdle for the next one on the same goroutine, its stack
// already grown; none waiting, a task gets a new worker. A burst leaves
// as many idle workers as it had tasks at once, each gone workerIdle later;
// Close ends the idle ones at once (Hub.ctx) and waits for the busy ones
// (Hub.wg counts workers, not tasks).

// workerIdle is how long a worker waits for another task before it exits.
const workerIdle = 2 * time.Second

// workerPool is the hub's workers.
type workerPool struct {
	work chan func()  // set once, unbuffered: a send is taken by an idle worker or not at all
	live atomic.Int32 // workers running
	idle atomic.Int32 // workers waiting for a task
}

// spawn runs fn on a worker owned by the hub: Close waits for it. Called
// once Close is waiting, fn runs on a goroutine of its own, not waited for
// (as Go).
func (h *Hub) spawn(fn func()) {
	select {
	case h.pool.work <- fn: // an idle worker took it; it is counted in wg
		return
	default:
	}
	h.goMu.RLock()
	if h.waiting {
		h.goMu.RUnlock()
		go fn()
		return
	}
	h.wg.Add(1)
	h.goMu.RUnlock()
	h.pool.live.Add(1)
	go h.worker(fn)
}

// worker runs fn, then the tasks handed to it while it waits, until it has
// been idle for workerIdle or the hub closes.
func (h *Hub) worker(fn func()) {
	p := &h.pool
	defer h.wg.Done()
	defer p.live.Add(-1)
	var idle *time.Timer
	for {
		fn()
		fn = nil // not kept alive while idle
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		p.idle.Add(1)
		select {
		case fn = <-p.work:
			p.idle.Add(-1)
		case <-idle.C:
			p.idle.Add(-1)
			return
		case <-h.ctx.Done():
			p.idle.Add(-1)
			idle.Stop()
			return
		}
	}
}
