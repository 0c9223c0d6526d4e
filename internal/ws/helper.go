package ws

import (
	"runtime"
	"time"
)

// helperBacklog is how many connections must wait on the ready list before
// the helper writer takes a share (Config.Writers). At 5-15 µs per writev,
// one writer passes over that many in 10-30 ms: shorter passes leave the
// last processor to the network poll and the rest of the server, longer
// ones are shared.
const helperBacklog = 2048

// helperBurst is how long a backlog is a burst the helper shares. A
// backlog that lasts longer is a fan-out the writers cannot keep up with:
// then one writer batches more (each connection waits longer between its
// writes, so more frames go in each writev) and delivers more with the same
// processors — at 10,000 subscribers at full rate, 2.3 M deliveries/s at
// 0.40 µs each against 1.4 M at 0.73 µs with the helper writing
// (BENCHMARKS.md, session 11) — while a burst (a publication to every
// subscriber at a low rate) ends sooner with the helper.
const helperBurst = int64(100 * time.Millisecond)

// helperWantedLocked reports whether the helper writer should take a
// share of the ready list now: more than helperBacklog connections wait,
// in a backlog that began less than helperBurst ago. Called with readyMu
// held.
func (t *Transport) helperWantedLocked() bool {
	return len(t.ready)-t.readyHead > helperBacklog && t.now()-t.readySince < helperBurst
}

// helpers is how many of the writers are helpers: one when the writers
// are as many as the processors, at least two, none otherwise.
func (c Config) helpers() int {
	if c.Writers >= 2 && c.Writers >= runtime.GOMAXPROCS(0) {
		return 1
	}
	return 0
}

// takeBacklog is takeReady for the helper writer: it waits until the ready
// list holds more than helperBacklog connections and takes a share of them
// (never the urgent ones, which the other writers serve first). It returns
// nil when the writers must stop.
func (t *Transport) takeBacklog(dst []*Conn) []*Conn {
	t.readyMu.Lock()
	defer t.readyMu.Unlock()
	for !t.helperWantedLocked() {
		if t.stopWrite {
			return nil
		}
		t.helperCond.Wait()
	}
	avail := len(t.ready) - t.readyHead
	n := max(1, min(maxTake, avail/t.cfg.Writers))
	dst = append(dst, t.ready[t.readyHead:t.readyHead+n]...)
	clear(t.ready[t.readyHead : t.readyHead+n])
	t.readyHead += n
	if t.readyHead == len(t.ready) {
		t.ready, t.readyHead = t.ready[:0], 0
	}
	return dst
}
