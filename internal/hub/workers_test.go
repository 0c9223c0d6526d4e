package hub_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/hub"
)

// waitWorkers waits until cond holds for h's workers (live, idle).
func waitWorkers(t *testing.T, h *hub.Hub, what string, cond func(live, idle int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		live, idle := hub.Workers(h)
		if cond(live, idle) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers: want %s, have %d live, %d idle", what, live, idle)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWorkersReused: a task handed to Go while a worker waits runs on that
// worker (no new one); tasks that run at once each get a worker (the pool
// never makes one wait for another); idle workers exit on their own, and
// Close waits for a busy one and ends the idle ones.
func TestWorkersReused(t *testing.T) {
	h, err := hub.New(hub.Config{}, hub.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// The hub's own loops run on workers that never return.
	base, _ := hub.Workers(h)
	run := func() {
		done := make(chan struct{})
		h.Go(func(context.Context) { close(done) })
		<-done
	}
	run()
	waitWorkers(t, h, "1 idle", func(live, idle int) bool { return live == base+1 && idle == 1 })
	run()
	// A second worker would be live now (the first one idles workerIdle).
	if live, _ := hub.Workers(h); live != base+1 {
		t.Fatalf("a task handed over while a worker idled: %d workers, want %d", live, base+1)
	}

	// 50 tasks that can only finish together: each needs a worker of its own.
	const n = 50
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	var finished sync.WaitGroup
	finished.Add(n)
	for range n {
		h.Go(func(context.Context) {
			defer finished.Done()
			started.Done()
			<-release
		})
	}
	started.Wait()
	if live, _ := hub.Workers(h); live < base+n {
		t.Fatalf("%d tasks running at once on %d workers", n, live)
	}
	close(release)
	finished.Wait()
	// Idle for workerIdle, every worker exits without Close.
	waitWorkers(t, h, "none left", func(live, idle int) bool { return live == base && idle == 0 })
}

// TestWorkersClose: Close returns only after a busy worker's task
// returned, and no worker is left after it.
func TestWorkersClose(t *testing.T) {
	h, err := hub.New(hub.Config{}, hub.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	for range 3 { // idle workers
		done := make(chan struct{})
		h.Go(func(context.Context) { close(done) })
		<-done
	}
	var ended atomic.Bool
	running := make(chan struct{})
	h.Go(func(ctx context.Context) {
		close(running)
		<-ctx.Done()
		ended.Store(true)
	})
	<-running
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if !ended.Load() {
		t.Fatal("Close returned while a worker's task ran")
	}
	if live, idle := hub.Workers(h); live != 0 || idle != 0 {
		t.Fatalf("after Close: %d workers, %d idle", live, idle)
	}
}
