package hub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// TestShutdownWhileRequestsArrive sends requests on open connections while
// Shutdown drains: a request that arrives during the drain is counted while
// Shutdown waits for the count to reach zero (a sync.WaitGroup there broke
// its "Add from zero before Wait" rule: the race detector caught it in
// TestRPCNoLeaks, and it can panic with "WaitGroup misuse").
func TestShutdownWhileRequestsArrive(t *testing.T) {
	ts := startHub(t, hub.Config{}, func(h *hub.Hub) {
		h.Register(hub.Method{Name: "test.work", Scope: hub.ScopeAuthenticated, Mode: hub.Async,
			Handler: func(ctx context.Context, call *hub.Call) (any, error) {
				time.Sleep(time.Millisecond) // keep a request in flight most of the time
				return map[string]bool{"ok": true}, nil
			}})
	})
	const clients = 4
	var (
		calls atomic.Int64 // answered calls
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		errs  = make(chan error, clients)
	)
	for i := range clients {
		c := ts.dial(t, fmt.Sprintf("u%d/d%d/", i, i))
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := call(t, c, "test.work", nil, nil)
				if err == nil {
					calls.Add(1)
					continue
				}
				// Once the hub closes the connection, calls fail: as
				// unavailable (1012 close) or because the client is closed.
				if code := errCode(err); code != protocol.CodeUnavailable && !errors.Is(err, client.ErrClosed) {
					errs <- fmt.Errorf("call during shutdown: got %v, want success or unavailable", err)
				}
				return
			}
		})
	}
	eventually(t, "calls before the shutdown", func() bool { return calls.Load() >= 4*clients })

	shutdown := make(chan error, 1)
	go func() { shutdown <- ts.hub.Shutdown(context.Background()) }()
	eventually(t, "the drain to begin", ts.hub.Draining)
	// Requests keep arriving while Shutdown waits for in-flight ones (it
	// may also find none in flight between two and finish first).
	var (
		n    = calls.Load()
		err  error
		done bool
	)
	eventually(t, "calls during the drain, or the end of the shutdown", func() bool {
		select {
		case err = <-shutdown:
			done = true
		default:
		}
		return done || calls.Load() >= n+4*clients
	})
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !done {
		select {
		case err = <-shutdown:
		case <-time.After(20 * time.Second):
			t.Fatalf("Shutdown: not returned within 20s of the last request")
		}
	}
	if err != nil {
		t.Errorf("Shutdown: got %v, want nil", err)
	}
}
