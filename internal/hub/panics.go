package hub

import (
	"runtime/debug"
	"sync"
	"time"
)

// panicLogEvery is the least time between two log lines about method
// handlers that panicked: a client that finds a request that panics can
// send it as fast as its rate limit allows, and the log must not become the
// attack (the web edge does the same for HTTP).
const panicLogEvery = 10 * time.Second

// panicLog decides which recovered panics are logged: at most one per
// panicLogEvery, with the number left unlogged since the previous one.
type panicLog struct {
	mu         sync.Mutex
	last       time.Time // guarded by mu
	suppressed int       // guarded by mu
}

// note records a panic at now and reports whether to log it, with how many
// were not logged before it.
func (p *panicLog) note(now time.Time) (log bool, suppressed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.IsZero() && now.Sub(p.last) < panicLogEvery {
		p.suppressed++
		return false, 0
	}
	n := p.suppressed
	p.last, p.suppressed = now, 0
	return true, n
}

// logPanic logs (or counts) a method handler's panic v.
func (h *Hub) logPanic(method, conn string, v any) {
	if ok, n := h.panics.note(h.deps.Now()); ok {
		h.log.Error("method panicked; answered internal", "method", method, "conn", conn, "panic", v,
			"suppressed", n, "stack", string(debug.Stack()))
	}
}
