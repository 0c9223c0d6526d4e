package auth

import (
	"sync"
	"time"
)

// Bucket is a token bucket: it holds up to burst tokens and earns rate a
// second; each Take spends one. The zero value is a full bucket. A Bucket
// is not safe for concurrent use: its owner's lock guards it. It is the one
// token bucket of the server: a WebSocket connection's request rate
// (hub.Conn), login challenges per client address (Challenges) and the
// keyed limits of Limiter all use it.
type Bucket struct {
	used float64 // tokens spent and not yet earned back
	at   int64   // unix nanoseconds of the last refill
}

// Take spends one token at now (unix nanoseconds) from a bucket that earns
// rate tokens a second up to burst. When none is left it returns false and
// how long until one is. rate must be positive and burst at least 1.
func (b *Bucket) Take(now int64, rate float64, burst int) (time.Duration, bool) {
	b.refill(now, rate)
	if over := b.used + 1 - float64(burst); over > 0 {
		return max(time.Duration(over/rate*float64(time.Second)), time.Millisecond), false
	}
	b.used++
	return 0, true
}

// Refund gives back a token that Take spent for something that was then
// refused for another reason.
func (b *Bucket) Refund() { b.used = max(0, b.used-1) }

// Idle reports whether the bucket is full at now: forgetting it changes
// nothing, since a new one starts full.
func (b *Bucket) Idle(now int64, rate float64) bool {
	if rate <= 0 {
		return true
	}
	b.refill(now, rate)
	return b.used == 0
}

func (b *Bucket) refill(now int64, rate float64) {
	if elapsed := now - b.at; elapsed > 0 {
		b.used = max(0, b.used-float64(elapsed)/float64(time.Second)*rate)
		b.at = now
	}
}

// DefaultLimiterKeys is how many keys (client addresses, principals) a
// Limiter remembers at most.
const DefaultLimiterKeys = 100_000

// Limiter rate-limits by key (a client address's ClientKey, a principal):
// one Bucket a key, in a map bounded in memory. Keys whose bucket is full
// again are forgotten at most once per refill period (burst/rate); when
// maxKeys are remembered all the same, a new key evicts an arbitrary one,
// which then starts again with a full bucket: the bound can only loosen the
// limit, never refuse a client that is under it. A nil *Limiter allows
// everything. Limiter is safe for concurrent use.
type Limiter struct {
	rate    float64
	burst   int
	maxKeys int
	refill  time.Duration // burst/rate: how long an emptied bucket takes to fill

	// Now is the clock; default time.Now. Set it, if at all, before first use.
	Now func() time.Time

	mu      sync.Mutex
	buckets map[string]*Bucket // guarded by mu
	swept   int64              // guarded by mu: unix nanoseconds of the last sweep
}

// NewLimiter returns a Limiter of rate a second and burst at once per key,
// remembering at most maxKeys keys (DefaultLimiterKeys when 0). A rate of
// zero or less returns nil: no limit. A burst under 1 is 1.
func NewLimiter(rate float64, burst, maxKeys int) *Limiter {
	if rate <= 0 {
		return nil
	}
	burst = max(burst, 1)
	if maxKeys <= 0 {
		maxKeys = DefaultLimiterKeys
	}
	return &Limiter{rate: rate, burst: burst, maxKeys: maxKeys, buckets: make(map[string]*Bucket),
		refill: time.Duration(float64(burst) / rate * float64(time.Second))}
}

// Allow spends one of key's tokens. When none is left it returns false and
// how long until one is.
func (l *Limiter) Allow(key string) (time.Duration, bool) {
	if l == nil {
		return 0, true
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	t := now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		l.sweepLocked(t)
		if len(l.buckets) >= l.maxKeys {
			for k := range l.buckets {
				delete(l.buckets, k)
				break
			}
		}
		b = &Bucket{at: t}
		l.buckets[key] = b
	}
	return b.Take(t, l.rate, l.burst)
}

// Len returns how many keys are remembered.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// sweepLocked forgets the idle keys, at most once per refill period.
func (l *Limiter) sweepLocked(now int64) {
	if time.Duration(now-l.swept) < l.refill {
		return
	}
	l.swept = now
	for k, b := range l.buckets {
		if b.Idle(now, l.rate) {
			delete(l.buckets, k)
		}
	}
}
