package auth

import (
	"strconv"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	var b Bucket
	now := time.Unix(1000, 0).UnixNano()
	for i := range 3 {
		if _, ok := b.Take(now, 2, 3); !ok {
			t.Fatalf("take %d within the burst refused", i)
		}
	}
	wait, ok := b.Take(now, 2, 3)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("take over the burst: %v %v, want refused with 500ms", wait, ok)
	}
	if b.Idle(now, 2) {
		t.Fatal("an emptied bucket is idle")
	}
	now += int64(500 * time.Millisecond)
	if _, ok := b.Take(now, 2, 3); !ok {
		t.Fatal("a token earned back was refused")
	}
	b.Refund()
	if _, ok := b.Take(now, 2, 3); !ok {
		t.Fatal("a refunded token was refused")
	}
	if b.Idle(now+int64(time.Second), 2) {
		t.Fatal("idle before it filled")
	}
	if !b.Idle(now+int64(1500*time.Millisecond), 2) {
		t.Fatal("not idle once full again")
	}
	// A clock that goes back earns nothing and spends nothing extra.
	var c Bucket
	c.Take(now, 1, 1)
	if _, ok := c.Take(now-int64(time.Hour), 1, 1); ok {
		t.Fatal("a clock going back refilled the bucket")
	}
}

func TestLimiterPerKey(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(1, 2, 0)
	l.Now = func() time.Time { return now }
	for i := range 2 {
		if _, ok := l.Allow("a"); !ok {
			t.Fatalf("a's request %d within the burst refused", i)
		}
	}
	if wait, ok := l.Allow("a"); ok || wait != time.Second {
		t.Fatalf("a over the burst: %v %v, want refused with 1s", wait, ok)
	}
	if _, ok := l.Allow("b"); !ok {
		t.Fatal("b limited by a")
	}
	now = now.Add(time.Second)
	if _, ok := l.Allow("a"); !ok {
		t.Fatal("a's token earned back refused")
	}
	if NewLimiter(0, 5, 0) != nil || NewLimiter(-1, 5, 0) != nil {
		t.Fatal("a rate of zero or less is not nil (no limit)")
	}
	var none *Limiter
	if _, ok := none.Allow("x"); !ok || none.Len() != 0 {
		t.Fatal("a nil Limiter limits")
	}
}

// TestLimiterBounded: a flood of distinct keys never holds more than
// maxKeys, idle keys are forgotten, and a key under its limit is never
// refused because of the bound.
func TestLimiterBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(10, 1, 100)
	l.Now = func() time.Time { return now }
	for i := range 10_000 {
		if _, ok := l.Allow("k" + strconv.Itoa(i)); !ok {
			t.Fatalf("a new key %d refused", i)
		}
		if n := l.Len(); n > 100 {
			t.Fatalf("after %d keys the limiter holds %d, want at most 100", i+1, n)
		}
	}
	// Once every bucket is full again (burst/rate = 100ms), the next new
	// key sweeps them all.
	now = now.Add(100 * time.Millisecond)
	l.Allow("fresh")
	if n := l.Len(); n != 1 {
		t.Fatalf("after the refill period the limiter holds %d keys, want 1", n)
	}
}
