package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// TestRedisRPCStaleRoute: node A's route cache names node B for machine m1
// (broker_route_cache_ttl is an hour, so that nothing expires during the
// test and every stale route is met). m1 moves to node C: B closes its
// older connection with 4009, and the next call from A, sent to B, is
// answered there that the device is not there; A looks again and the call
// reaches m1 on C, with no error and no wait. Then C stops and m1
// reconnects to B: A's route names C, where nobody listens any more; the
// send fails, A looks again and the call reaches m1 on B.
func TestRedisRPCStaleRoute(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	nodes := clusterNodes(t, rs, 3, func(c *Config) { c.BrokerRouteCacheTTL = time.Hour })
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	where := func(node int) map[string]client.RPCHandler {
		return map[string]client.RPCHandler{
			"job.where": func(context.Context, *client.RPCRequest) (any, error) { return map[string]int{"node": node}, nil },
		}
	}
	caller := dialClient(t, a, "alice", "phone1", "phone")
	call := func(want int) {
		t.Helper()
		var res struct{ Node int }
		start := time.Now()
		if err := caller.CallDevice(ctx, "m1", "job.where", nil, &res, client.WithCallTimeout(10*time.Second)); err != nil || res.Node != want {
			t.Fatalf("call m1: got node %d, %v; want node %d", res.Node, err, want)
		}
		t.Logf("answered by node %d in %v", want, time.Since(start).Round(time.Millisecond))
	}
	rb, ok := a.Broker.Directory.(*cluster.Broker)
	if !ok {
		t.Fatalf("directory %T, want the Redis broker", a.Broker.Directory)
	}
	route := func() string {
		t.Helper()
		node, _, err := rb.DeviceRoute(ctx, "m1")
		if err != nil {
			t.Fatal(err)
		}
		return node
	}

	old := machine(t, b, "alice", "m1", false, where(2))
	call(2)
	if got := route(); got != b.Hub.NodeID() {
		t.Fatalf("A's route to m1: %q, want node B's %q", got, b.Hub.NodeID())
	}

	machine(t, c, "alice", "m1", false, where(3))
	eventually(t, "node B closing m1's older connection with 4009", func() bool {
		return old.State() == client.StateClosed && old.CloseCode() == protocol.CloseReplaced
	})
	if got := route(); got != b.Hub.NodeID() {
		t.Fatalf("A's route to m1 after the move: %q, want the stale node B (the cache lasts an hour)", got)
	}
	call(3)
	wantStale(t, a, 1, 0)
	if got := route(); got != c.Hub.NodeID() {
		t.Fatalf("A's route to m1 after the call: %q, want node C's %q", got, c.Hub.NodeID())
	}

	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	machine(t, b, "alice", "m1", false, where(2))
	if got := route(); got != c.Hub.NodeID() {
		t.Fatalf("A's route to m1 after node C stopped: %q, want the stale node C", got)
	}
	call(2)
	wantStale(t, a, 1, 1)
	if got := route(); got != b.Hub.NodeID() {
		t.Fatalf("A's route to m1 after the call: %q, want node B's", got)
	}
	// The two calls on a cached route left from the caller's read loop
	// (internal/hub/rpc_forward.go) and were handed to the slow path when
	// the route proved stale.
	if body := scrape(t, a); !strings.Contains(body, "junction_rpc_forwarded_inline_total 2\n") {
		t.Errorf("/metrics of node A: want junction_rpc_forwarded_inline_total 2")
	}
}

// wantStale checks m's junction_rpc_stale_routes_total by reason.
func wantStale(t *testing.T, m *Main, offline, unreachable int) {
	t.Helper()
	body := scrape(t, m)
	for reason, want := range map[string]int{"offline": offline, "unreachable": unreachable} {
		line := fmt.Sprintf("junction_rpc_stale_routes_total{reason=%q} %d\n", reason, want)
		if !strings.Contains(body, line) {
			t.Errorf("/metrics of node A: want %q", strings.TrimSpace(line))
		}
	}
}
