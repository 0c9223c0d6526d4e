package web

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/junctionhq/junction/internal/hub"
)

// /readyz reports each dependency behind a check, with its status, latency
// and last error; one down fails its check and readiness, and it heals
// without a restart. "checks" keeps its format.
func TestReadyDependencies(t *testing.T) {
	var down atomic.Pointer[error]
	e := startEdge(t, Config{}, hub.Config{NodeID: "node-7"}, func(s *Server) {
		s.deps.Ready = append(s.deps.Ready, ReadyCheck{Name: "broker", Parts: []ReadyPart{
			{Name: "redis shard 0", Addr: "127.0.0.1:1", Check: func(context.Context) error { return nil }},
			{Name: "redis shard 1", Addr: "127.0.0.1:2", Check: func(context.Context) error {
				if err := down.Load(); err != nil {
					return *err
				}
				return nil
			}},
		}})
	})
	type dep struct {
		Check       string  `json:"check"`
		Status      string  `json:"status"`
		Addr        string  `json:"addr"`
		LatencyMs   float64 `json:"latency_ms"`
		Error       string  `json:"error"`
		LastError   string  `json:"last_error"`
		LastErrorAt *string `json:"last_error_at"`
	}
	var ready struct {
		Status       string            `json:"status"`
		Checks       map[string]string `json:"checks"`
		Dependencies map[string]dep    `json:"dependencies"`
	}
	get := func(want int) {
		t.Helper()
		ready.Checks, ready.Dependencies = nil, nil
		r := e.do(t, "GET", "/readyz", "", "")
		expect(t, "readyz", r, want, "")
		r.decode(t, &ready)
	}

	get(200)
	if ready.Status != "ready" || ready.Checks["broker"] != "ok" || ready.Checks["store"] != "ok" || len(ready.Dependencies) != 3 {
		t.Fatalf("got %+v, want ready with 3 dependencies", ready)
	}
	if d := ready.Dependencies["store"]; d.Check != "store" || d.Status != "ok" || d.LatencyMs < 0 {
		t.Fatalf("got store %+v", d)
	}
	if d := ready.Dependencies["redis shard 1"]; d.Check != "broker" || d.Status != "ok" || d.Addr != "127.0.0.1:2" || d.Error != "" || d.LastError != "" {
		t.Fatalf("got shard 1 %+v", d)
	}

	gone := errors.New("dial tcp 127.0.0.1:2: connection refused")
	down.Store(&gone)
	get(503)
	if ready.Status != "not ready" || ready.Checks["broker"] != "unavailable" || ready.Checks["store"] != "ok" {
		t.Fatalf("got %+v, want not ready by the broker", ready)
	}
	if d := ready.Dependencies["redis shard 1"]; d.Status != "unavailable" || d.Error != gone.Error() || d.LastError != gone.Error() || d.LastErrorAt == nil {
		t.Fatalf("got shard 1 %+v, want unavailable with its error", d)
	}
	if d := ready.Dependencies["redis shard 0"]; d.Status != "ok" {
		t.Fatalf("got shard 0 %+v, want ok", d)
	}

	down.Store(nil)
	get(200)
	if d := ready.Dependencies["redis shard 1"]; ready.Status != "ready" || d.Status != "ok" || d.Error != "" || d.LastError != gone.Error() {
		t.Fatalf("got %+v, want ready again with shard 1's last error kept", ready)
	}
}
