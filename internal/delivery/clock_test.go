package delivery

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is the Clock of the retry and breaker tests. With auto set,
// Sleep advances the clock by d and returns at once (a single delivery's
// schedule); without it, Sleep blocks until Advance passes its end, wake
// is closed or ctx ends (deliveries running concurrently).
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	slept   []time.Duration // every Sleep's d, in order
	waiters map[*fakeWaiter]bool
}

type fakeWaiter struct {
	until time.Time
	ch    chan struct{}
}

func newFakeClock(auto bool) *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC), auto: auto, waiters: map[*fakeWaiter]bool{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	c.mu.Lock()
	c.slept = append(c.slept, d)
	if c.auto {
		c.now = c.now.Add(d)
		c.mu.Unlock()
		return nil
	}
	w := &fakeWaiter{until: c.now.Add(d), ch: make(chan struct{})}
	c.waiters[w] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, w)
		c.mu.Unlock()
	}()
	select {
	case <-w.ch:
		return nil
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Advance moves the clock and wakes the sleepers whose time came.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for w := range c.waiters {
		if !w.until.After(c.now) {
			close(w.ch)
			delete(c.waiters, w)
		}
	}
}

func (c *fakeClock) sleeping() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

func (c *fakeClock) sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

// eventually waits for cond, an observable state another goroutine
// reaches, failing after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
