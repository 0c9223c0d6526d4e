package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// TestRedisRPCAcrossNodes: a caller on node A calls a machine on node B,
// both on one real redis-server: the call's progress and result cross the
// nodes, a cancel reaches the machine's handler, a timeout ends the call
// and the handler. Then node B is cut from Redis mid-call (new connections
// held, live ones closed): its node lease expires and the call fails with
// unavailable within two lease periods (12 s), long before its timeout.
// The machine connecting to node A is found there at once. Node B, joined
// to Redis again, is alive again without a restart.
func TestRedisRPCAcrossNodes(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	proxy := newStallProxy(t, rs.Addr())
	nodes := clusterNodesEach(t, rs, 2, func(i int, c *Config) {
		if i == 1 {
			c.Broker = "redis://" + proxy.ln.Addr().String()
		}
	})
	a, b := nodes[0], nodes[1]
	started := make(chan string, 8)
	ended := make(chan string, 8)
	handlers := map[string]client.RPCHandler{
		"job.work": func(ctx context.Context, req *client.RPCRequest) (any, error) {
			for i := 1; i <= 3; i++ {
				if err := req.Progress(ctx, i); err != nil {
					return nil, err
				}
			}
			return map[string]int{"done": 3}, nil
		},
		"job.block": func(ctx context.Context, req *client.RPCRequest) (any, error) {
			started <- req.ID
			<-ctx.Done()
			ended <- req.ID
			return nil, ctx.Err()
		},
	}
	machine(t, b, "alice", "m1", false, handlers)
	caller := dialClient(t, a, "alice", "phone1", "phone")
	ctx := context.Background()
	wait := func(t *testing.T, ch chan string, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s within 10s", what)
		}
	}

	t.Run("progress and result", func(t *testing.T) {
		var mu sync.Mutex
		var progress []int
		var res struct{ Done int }
		err := caller.CallDevice(ctx, "m1", "job.work", nil, &res, client.WithProgress(func(data json.RawMessage) {
			var n int
			_ = json.Unmarshal(data, &n)
			mu.Lock()
			progress = append(progress, n)
			mu.Unlock()
		}))
		if err != nil || res.Done != 3 {
			t.Fatalf("call: got %+v, %v; want done 3", res, err)
		}
		eventually(t, "three progress events", func() bool { mu.Lock(); defer mu.Unlock(); return len(progress) >= 3 })
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(progress, []int{1, 2, 3}) {
			t.Fatalf("progress %v, want 1, 2, 3", progress)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- caller.CallDevice(cctx, "m1", "job.block", nil, nil) }()
		wait(t, started, "call on the machine")
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call: got %v, want context.Canceled", err)
		}
		wait(t, ended, "end of the cancelled handler")
	})
	t.Run("timeout", func(t *testing.T) {
		err := caller.CallDevice(ctx, "m1", "job.block", nil, nil, client.WithCallTimeout(500*time.Millisecond))
		if code := errCode(err); code != protocol.CodeTimeout {
			t.Fatalf("call past its timeout: got %v, want %s", err, protocol.CodeTimeout)
		}
		wait(t, started, "call on the machine")
		wait(t, ended, "end of the handler at its deadline")
	})
	t.Run("node dies mid-call", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() {
			errc <- caller.CallDevice(ctx, "m1", "job.block", nil, nil, client.WithCallTimeout(time.Minute))
		}()
		wait(t, started, "call on the machine")
		proxy.hold()
		cut := time.Now()
		proxy.cut()
		select {
		case err := <-errc:
			if code := errCode(err); code != protocol.CodeUnavailable {
				t.Fatalf("call to a dead node: got %v, want %s", err, protocol.CodeUnavailable)
			}
			if d := time.Since(cut); d > 12*time.Second {
				t.Fatalf("the call failed %v after its node died, want within two lease periods (12s)", d)
			}
			t.Logf("failed %v after the cut", time.Since(cut).Round(time.Millisecond))
		case <-time.After(20 * time.Second):
			t.Fatal("the call to a dead node still waits 20s after the cut")
		}
		// The device reconnects to node A: calls find it there.
		machine(t, a, "alice", "m1", false, handlers)
		var res struct{ Done int }
		if err := caller.CallDevice(ctx, "m1", "job.work", nil, &res); err != nil || res.Done != 3 {
			t.Fatalf("call to the machine on node A: %+v, %v", res, err)
		}
	})
	t.Run("node B heals", func(t *testing.T) {
		proxy.release()
		rb := a.Broker.Directory.(*cluster.Broker)
		eventuallyLong(t, "node B alive again", func() bool {
			alive, err := rb.NodeAlive(ctx, b.Hub.NodeID())
			return err == nil && alive
		})
	})
}

func errCode(err error) protocol.Code {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
