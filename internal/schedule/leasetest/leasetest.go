// Package leasetest is the contract suite of schedule.Leases: every
// implementation (the memory one, a cluster broker's) runs it.
package leasetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/schedule"
)

// Run checks the implementation newLeases returns (a fresh, empty one per
// call) against the contract of schedule.Leases. It waits for a short ttl
// to pass, by polling the observable claim, never by a fixed sleep.
func Run(t *testing.T, newLeases func(t *testing.T) schedule.Leases) {
	t.Run("FirstWins", func(t *testing.T) {
		l := newLeases(t)
		ctx := t.Context()
		for i, c := range []struct {
			key, node string
			want      bool
		}{
			{"schedule:a:100", "n1", true},
			{"schedule:a:100", "n2", false}, // another node
			{"schedule:a:100", "n1", false}, // the holder too
			{"schedule:a:101", "n2", true},  // the next tick
			{"schedule:b:100", "n2", true},  // another job
		} {
			got, err := l.Acquire(ctx, c.key, c.node, time.Minute)
			if err != nil || got != c.want {
				t.Fatalf("call %d: Acquire(%s, %s) = %v, %v; want %v", i, c.key, c.node, got, err, c.want)
			}
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		l := newLeases(t)
		ctx := t.Context()
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 16 {
			wg.Go(func() {
				ok, err := l.Acquire(ctx, "schedule:c:1", fmt.Sprintf("n%d", i), time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("16 nodes asked for one tick: %d got it, want 1", wins)
		}
	})
	t.Run("Expires", func(t *testing.T) {
		l := newLeases(t)
		ctx := t.Context()
		const ttl = 50 * time.Millisecond
		if ok, err := l.Acquire(ctx, "schedule:d:1", "n1", ttl); !ok || err != nil {
			t.Fatalf("first: %v, %v", ok, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			ok, err := l.Acquire(ctx, "schedule:d:1", "n2", ttl)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the claim did not expire within 10s of its %v ttl", ttl)
			}
			time.Sleep(ttl / 5)
		}
	})
	t.Run("CancelledContext", func(t *testing.T) {
		l := newLeases(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if ok, err := l.Acquire(ctx, "schedule:e:1", "n1", time.Minute); ok || err == nil {
			t.Fatalf("Acquire with a cancelled context: %v, %v; want false and an error", ok, err)
		}
	})
}
