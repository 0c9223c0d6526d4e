package ws

import "runtime"

// helperBacklog is how many connections must wait on the ready list before
// the helper writer takes a share (Config.Writers). At 5-15 µs per writev,
// one writer passes over that many in 10-30 ms: shorter passes leave the
// last processor to the network poll and the rest of the server, longer
// ones are shared.
const helperBacklog = 2048

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
	for len(t.ready)-t.readyHead <= helperBacklog {
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
