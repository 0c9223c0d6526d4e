package main

import (
	"slices"
	"testing"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/proxy"
	"github.com/junctionhq/junction/internal/schedule"
)

// TestFixedChanges: a reload reports the changed settings it does not
// apply, and only those.
func TestFixedChanges(t *testing.T) {
	running := &Config{Addr: "127.0.0.1:7700"}
	next := *running
	next.Proxy = proxy.Config{Connect: "x", Backends: []proxy.BackendConfig{{Name: "x"}}}
	next.Hub.Namespaces = []hub.NamespaceConfig{{Pattern: "a:{b}"}}
	next.Hub.RequestsPerSecond, next.Hub.MaxConnectionsPerUser = 5, 2
	if got := fixedChanges(running, &next); len(got) != 0 {
		t.Errorf("reloadable changes only: got %v, want none", got)
	}
	next.Hub.MaxFrameBytes = 1 << 10
	next.Web.RESTRate = 5
	next.Schedule.Jobs = []schedule.JobConfig{{Name: "j"}}
	want := []string{"hub.max_frame_bytes", "web.rest_rate", "schedule.jobs"}
	if got := fixedChanges(running, &next); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
