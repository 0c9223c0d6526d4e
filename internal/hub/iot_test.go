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
		"negative heartbeat": {HeartbeatInterval: -time.Second},
	} {
		if _, err := hub.New(hub.Config{IoT: c}, hub.Deps{}); err == nil || !strings.Contains(err.Error(), "iot:") {
			t.Errorf("%s: got %v, want an iot config error", name, err)
		}
	}
}
