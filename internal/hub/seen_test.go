package hub_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/junctionhq/junction/internal/hub"
)

// seenRecorder is a Deps.DeviceSeen that keeps every call's batch; block,
// when set, runs inside the first call.
type seenRecorder struct {
	mu    sync.Mutex
	calls [][]hub.SeenDevice // guarded by mu
	errs  []error            // guarded by mu: each call's ctx.Err() as it returned
	block func(ctx context.Context)
}

func (r *seenRecorder) record(ctx context.Context, seen []hub.SeenDevice) error {
	r.mu.Lock()
	first := len(r.calls) == 0
	r.calls = append(r.calls, slices.Clone(seen))
	r.mu.Unlock()
	if first && r.block != nil {
		r.block(ctx)
	}
	r.mu.Lock()
	r.errs = append(r.errs, ctx.Err())
	r.mu.Unlock()
	return ctx.Err()
}

func (r *seenRecorder) snapshot() [][]hub.SeenDevice {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// devicesOf returns the sorted "user/device" names of a batch, checking
// that each time is the hub's last-seen time of its device.
func devicesOf(t *testing.T, h *hub.Hub, seen []hub.SeenDevice) []string {
	t.Helper()
	var out []string
	for _, d := range seen {
		if at, ok := h.LastSeen(d.DeviceID); !ok || !at.Equal(d.At) {
			t.Errorf("device %s seen at %v; the hub's last seen: %v, %v", d.DeviceID, d.At, at, ok)
		}
		out = append(out, d.UserID+"/"+d.DeviceID)
	}
	slices.Sort(out)
	return out
}

// TestDeviceSeenBatched: the last-seen times of devices that disconnect
// while a write is in progress go to the store together, in one
// Deps.DeviceSeen call (it was one call, one SQLite transaction, per
// device).
func TestDeviceSeenBatched(t *testing.T) {
	rec := &seenRecorder{}
	entered, release := make(chan struct{}), make(chan struct{})
	rec.block = func(context.Context) { close(entered); <-release }
	ts := startHubDeps(t, hub.Config{}, hub.Deps{DeviceSeen: rec.record}, nil)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	ts.dial(t, "u0/d0/").Close()
	<-entered // the first write is in progress
	for _, cred := range []string{"u1/d1/", "u2/d2/", "u3/d3/", "u1/d4/"} {
		ts.dial(t, cred).Close()
	}
	eventually(t, "four disconnects queued", func() bool { return hub.SeenPending(ts.hub) == 4 })
	close(release)
	eventually(t, "the second write", func() bool { return len(rec.snapshot()) >= 2 })
	calls := rec.snapshot()
	if len(calls) != 2 {
		t.Fatalf("%d DeviceSeen calls: want 2", len(calls))
	}
	if got, want := devicesOf(t, ts.hub, calls[0]), []string{"u0/d0"}; !slices.Equal(got, want) {
		t.Errorf("first write: %v, want %v", got, want)
	}
	if got, want := devicesOf(t, ts.hub, calls[1]), []string{"u1/d1", "u1/d4", "u2/d2", "u3/d3"}; !slices.Equal(got, want) {
		t.Errorf("second write: %v, want %v (one call for the four)", got, want)
	}
}

// TestDeviceSeenFlushedOnClose: last-seen times still waiting when the hub
// closes are written before Close returns, with a context that the close
// did not cancel.
func TestDeviceSeenFlushedOnClose(t *testing.T) {
	rec := &seenRecorder{}
	entered := make(chan struct{})
	// The first write waits for the hub to close: the second device's time
	// is still queued then, and only the close can write it.
	rec.block = func(ctx context.Context) { close(entered); <-ctx.Done() }
	ts := startHubDeps(t, hub.Config{}, hub.Deps{DeviceSeen: rec.record}, nil)

	ts.dial(t, "u0/d0/").Close()
	<-entered
	ts.dial(t, "u1/d1/").Close()
	eventually(t, "the second disconnect queued", func() bool { return hub.SeenPending(ts.hub) == 1 })
	if err := ts.hub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := rec.snapshot()
	if len(calls) != 2 {
		t.Fatalf("%d DeviceSeen calls when Close returned: want 2", len(calls))
	}
	if got, want := devicesOf(t, ts.hub, calls[1]), []string{"u1/d1"}; !slices.Equal(got, want) {
		t.Errorf("write at close: %v, want %v", got, want)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 2 || rec.errs[1] != nil {
		t.Errorf("contexts of the writes: %v, want the one at close not cancelled", rec.errs)
	}
}
