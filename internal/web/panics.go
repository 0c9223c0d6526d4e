package web

import (
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"
)

// panicLogEvery is the least time between two log lines about recovered
// panics: a client that finds a panicking request can repeat it thousands
// of times a second, and the log must not become the attack.
const panicLogEvery = 10 * time.Second

// panicLog logs recovered panics, at most one line per panicLogEvery; a
// line counts the panics left unlogged since the previous one. It is safe
// for concurrent use.
type panicLog struct {
	log *slog.Logger // set once at construction

	mu         sync.Mutex
	last       time.Time // guarded by mu: when the last line was logged
	suppressed int       // guarded by mu: panics since then, not logged
}

// report logs (or counts) a panic v recovered while serving a request from
// remote, where names the edge that recovered it.
func (p *panicLog) report(where string, v any, remote string) {
	now := time.Now()
	p.mu.Lock()
	if !p.last.IsZero() && now.Sub(p.last) < panicLogEvery {
		p.suppressed++
		p.mu.Unlock()
		return
	}
	n := p.suppressed
	p.last, p.suppressed = now, 0
	p.mu.Unlock()
	p.log.Error("panic serving a request; the connection was dropped", "where", where, "panic", v,
		"remote", remote, "suppressed", n, "stack", string(debug.Stack()))
}

// recoverRequest is deferred by the edge's handlers: a panic (other than
// http.ErrAbortHandler) is reported, then turned into http.ErrAbortHandler,
// which net/http and the front door both take as "drop the connection
// quietly", so nothing further logs it.
func (p *panicLog) recoverRequest(where string, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v != http.ErrAbortHandler {
		p.report(where, v, r.RemoteAddr)
	}
	panic(http.ErrAbortHandler)
}
