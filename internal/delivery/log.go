package delivery

import (
	"slices"
	"sync"
	"time"
)

// Stage says where an attempt ended.
type Stage string

// Stages.
const (
	StageGuard     Stage = "guard"     // refused by the address guard (or a bad URL): nothing sent
	StageBreaker   Stage = "breaker"   // refused by the open circuit breaker: nothing sent
	StageConnect   Stage = "connect"   // the connection failed (refused, reset, DNS, TLS)
	StageTimeout   Stage = "timeout"   // no response within the HTTP timeout
	StageResponse  Stage = "response"  // a response came back; see Status
	StageCancelled Stage = "cancelled" // the caller gave up
)

// Attempt is one delivery attempt, as the delivery log records it.
type Attempt struct {
	Delivery string        // the message id (webhook-id), the same on every attempt of a delivery
	Target   string        // Target.ID: the app, for its owner's view
	Attempt  int           // 1 for the first attempt of a delivery
	At       time.Time     // when the attempt started (the Deliverer's clock)
	Stage    Stage         // where it ended
	Status   int           // the HTTP status, for StageResponse
	Latency  time.Duration // from the request to the response's headers (wall time)
	Error    string        // why it failed; empty for a 2xx
	Retry    time.Duration // the wait before the next attempt; zero when this was the last
}

// Log records every attempt. Record is called outside the Deliverer's
// locks, possibly from many goroutines at once; it must not block long.
type Log interface {
	Record(a Attempt)
}

// MemoryLog is a bounded in-memory Log: the last PerTarget attempts of each
// of the last MaxTargets targets that recorded one. Safe for concurrent use.
type MemoryLog struct {
	PerTarget  int // attempts kept per target; zero means 100
	MaxTargets int // targets kept; zero means 1024. The least recently written is forgotten first.

	mu      sync.Mutex
	targets map[string]*ring // guarded by mu
	seq     uint64           // guarded by mu: write order, for eviction
}

type ring struct {
	buf     []Attempt // oldest first once full (start marks the oldest)
	start   int
	lastSeq uint64
}

var _ Log = (*MemoryLog)(nil)

// Record adds an attempt.
func (l *MemoryLog) Record(a Attempt) {
	per, maxT := l.PerTarget, l.MaxTargets
	if per <= 0 {
		per = 100
	}
	if maxT <= 0 {
		maxT = 1024
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.targets == nil {
		l.targets = make(map[string]*ring)
	}
	r := l.targets[a.Target]
	if r == nil {
		if len(l.targets) >= maxT {
			l.evictLocked()
		}
		r = &ring{}
		l.targets[a.Target] = r
	}
	l.seq++
	r.lastSeq = l.seq
	if len(r.buf) < per {
		r.buf = append(r.buf, a)
		return
	}
	r.buf[r.start] = a
	r.start = (r.start + 1) % len(r.buf)
}

// evictLocked forgets the least recently written target.
func (l *MemoryLog) evictLocked() {
	var oldest string
	var seq uint64
	for k, r := range l.targets {
		if oldest == "" || r.lastSeq < seq {
			oldest, seq = k, r.lastSeq
		}
	}
	delete(l.targets, oldest)
}

// List returns a target's attempts, newest first, at most limit (zero: all
// kept).
func (l *MemoryLog) List(target string, limit int) []Attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.targets[target]
	if r == nil {
		return nil
	}
	out := make([]Attempt, 0, len(r.buf))
	out = append(out, r.buf[r.start:]...)
	out = append(out, r.buf[:r.start]...)
	slices.Reverse(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
