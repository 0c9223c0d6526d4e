package hub_test

import (
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/hub"
)

// TestIoTConfig: defaults fill the zero value; bad settings are refused by
// hub.New with the iot prefix.
func TestIoTConfig(t *testing.T) {
	h, err := hub.New(hub.Config{}, hub.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	got := h.Config().IoT
	want := hub.IoTConfig{MaxFrameBytes: 4096, MaxQueueBytes: 64 << 10, MaxQueueFrames: 64, HeartbeatInterval: 20 * time.Second, HeartbeatTimeout: 10 * time.Second}
	if got != want {
		t.Fatalf("got defaults %+v, want %+v", got, want)
	}
	for name, c := range map[string]hub.IoTConfig{
		"frame too small":    {MaxFrameBytes: 100},
		"frame too big":      {MaxFrameBytes: 32 << 20},
		"negative queue":     {MaxQueueBytes: -1},
		"queue over 1 GiB":   {MaxQueueBytes: 1<<30 + 1},
		"negative heartbeat": {HeartbeatInterval: -time.Second},
	} {
		if _, err := hub.New(hub.Config{IoT: c}, hub.Deps{}); err == nil || !strings.Contains(err.Error(), "iot:") {
			t.Errorf("%s: got %v, want an iot config error", name, err)
		}
	}
}

// TestQueueBytesBounded: hub.max_queue_bytes over 1 GiB is refused at start
// (the transport keeps a queued frame's offset in 32 bits).
func TestQueueBytesBounded(t *testing.T) {
	if _, err := hub.New(hub.Config{MaxQueueBytes: 1<<30 + 1}, hub.Deps{}); err == nil || !strings.Contains(err.Error(), "max_queue_bytes") {
		t.Fatalf("got %v, want a max_queue_bytes error", err)
	}
}
