package bench

import (
	"bytes"
	"strings"
	"testing"
)

// TestAppStreamsFlags: appstreams needs --data (it registers apps as an
// admin), runs in one process, and refuses sizes beyond one process's
// open files; --rate defaults to 10 events per second per device.
func TestAppStreamsFlags(t *testing.T) {
	data := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--token", "x"}, "needs --data"},
		{[]string{"--data", data, "--procs", "2"}, "one process"},
		{[]string{"--data", data, "--devices", "400", "--apps", "50"}, "open files"},
		{[]string{"--data", data, "--devices", "0"}, "--devices"},
		{[]string{"--data", data, "--audio-rate", "0"}, "--audio-rate"},
		{[]string{"--data", data, "--size", "8"}, "send time"},
	} {
		_, err := ParseFlags(append([]string{"--scenario", "appstreams"}, tc.args...), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	cfg, err := ParseFlags([]string{"--scenario", "appstreams", "--data", data}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Devices != 200 || cfg.Apps != 50 || cfg.Rate != 10 || cfg.AudioRate != 50 {
		t.Errorf("defaults: devices %d, apps %d, rate %g, audio rate %g; want 200, 50, 10, 50", cfg.Devices, cfg.Apps, cfg.Rate, cfg.AudioRate)
	}
}
