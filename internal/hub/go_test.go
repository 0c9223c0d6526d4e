package hub_test

import (
	"context"
	"sync"
	"testing"

	"github.com/junctionhq/junction/internal/hub"
)

// TestGoDuringClose: Hub.Go called by goroutines the hub does not own (a
// request handler) while Close waits for the hub's goroutines neither
// misuses the wait group (the race detector and sync.WaitGroup catch an
// Add from zero concurrent with Wait) nor loses fn: fn runs, with its
// context cancelled once Close began.
func TestGoDuringClose(t *testing.T) {
	for range 20 {
		h, err := hub.New(hub.Config{}, hub.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
		const callers = 8
		var ran sync.WaitGroup
		ran.Add(callers)
		start := make(chan struct{})
		for range callers {
			go func() {
				<-start
				h.Go(func(ctx context.Context) {
					defer ran.Done()
					<-ctx.Done()
				})
			}()
		}
		close(start)
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		ran.Wait() // every fn ran and saw its context cancelled
	}
}
