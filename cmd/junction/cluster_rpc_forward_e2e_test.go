package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// TestRedisRPCForwardInline: once node A's route cache knows the
// machine's node, A forwards calls to it from the caller's read loop and
// answers them from its pub/sub reader (internal/hub/rpc_forward.go):
// results and progress in order, as before; the call's timeout, the
// caller's rpc.cancel and the caller's disconnect each end the call on A
// and reach the machine as rpc.cancel.
func TestRedisRPCForwardInline(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	nodes := clusterNodesEach(t, rs, 2, func(_ int, c *Config) { c.BrokerRouteCacheTTL = time.Hour })
	a, b := nodes[0], nodes[1]
	started := make(chan struct{}, 1)
	ended := make(chan error, 1) // job.block's context, once it ends
	handlers := map[string]client.RPCHandler{
		"job.count": func(ctx context.Context, req *client.RPCRequest) (any, error) {
			var p struct{ N int }
			if err := json.Unmarshal(req.Params, &p); err != nil {
				return nil, err
			}
			for i := 1; i <= p.N; i++ {
				if err := req.Progress(ctx, i); err != nil {
					return nil, err
				}
			}
			return p.N, nil
		},
		"job.block": func(ctx context.Context, req *client.RPCRequest) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			ended <- ctx.Err()
			return nil, ctx.Err()
		},
	}
	machine(t, b, "alice", "m1", false, handlers)
	caller := dialClient(t, a, "alice", "phone1", "phone")
	ctx := context.Background()
	inline := func() int {
		t.Helper()
		m := regexp.MustCompile(`(?m)^junction_rpc_forwarded_inline_total (\d+)$`).FindStringSubmatch(scrape(t, a))
		if m == nil {
			t.Fatal("/metrics of node A: no junction_rpc_forwarded_inline_total")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	// The first call looks the route up and fills A's cache, unless an
	// invalidation raced the lookup (the caller's own claim, made as it
	// connected, may land meanwhile): call until one is forwarded inline.
	before := inline()
	for try := 0; ; try++ {
		var res int
		if err := caller.CallDevice(ctx, "m1", "job.count", map[string]int{"n": 1}, &res); err != nil || res != 1 {
			t.Fatalf("warm-up call: %d, %v", res, err)
		}
		if now := inline(); now > before {
			before = now
			break
		}
		if try == 50 {
			t.Fatal("51 calls in a row took the slow path: node A's route cache never held m1's route")
		}
		time.Sleep(10 * time.Millisecond)
	}

	t.Run("results and progress", func(t *testing.T) {
		const calls = 30
		checkCountCalls(t, caller, "m1", calls, 4)
		if got := inline() - before; got < calls {
			t.Errorf("calls forwarded from the read loop: %d, want all %d", got, calls)
		}
	})

	block := func(t *testing.T, ctx context.Context, opts ...client.CallOption) <-chan error {
		t.Helper()
		errc := make(chan error, 1)
		go func() { errc <- caller.CallDevice(ctx, "m1", "job.block", nil, nil, opts...) }()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the call did not reach the machine")
		}
		return errc
	}
	machineCancelled := func(t *testing.T) {
		t.Helper()
		select {
		case err := <-ended:
			if err == nil {
				t.Fatal("job.block's context ended without an error")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the machine was not told (rpc.cancel) within 10s")
		}
	}
	answer := func(t *testing.T, errc <-chan error) error {
		t.Helper()
		select {
		case err := <-errc:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("no answer within 20s")
			return nil
		}
	}

	t.Run("timeout", func(t *testing.T) {
		n := inline()
		err := answer(t, block(t, ctx, client.WithCallTimeout(500*time.Millisecond)))
		if code := errCode(err); code != protocol.CodeTimeout {
			t.Fatalf("call past its timeout: got %v, want %s", err, protocol.CodeTimeout)
		}
		machineCancelled(t)
		if inline() != n+1 {
			t.Errorf("the call was not forwarded from the read loop")
		}
	})

	t.Run("rpc.cancel", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		errc := block(t, cctx, client.WithCallTimeout(time.Minute))
		cancel()
		if err := answer(t, errc); err == nil {
			t.Fatal("cancelled call: got no error")
		}
		machineCancelled(t)
	})

	t.Run("caller disconnects", func(t *testing.T) {
		other := dialClient(t, a, "alice", "phone2", "phone")
		var res int
		if err := other.CallDevice(ctx, "m1", "job.count", map[string]int{"n": 1}, &res); err != nil {
			t.Fatal(err)
		}
		n := inline()
		go func() { _ = other.CallDevice(ctx, "m1", "job.block", nil, nil, client.WithCallTimeout(time.Minute)) }()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the call did not reach the machine")
		}
		if inline() != n+1 {
			t.Errorf("the call was not forwarded from the read loop")
		}
		_ = other.Close()
		machineCancelled(t)
	})

	t.Run("machine still served", func(t *testing.T) {
		var res int
		if err := caller.CallDevice(ctx, "m1", "job.count", map[string]int{"n": 2}, &res); err != nil || res != 2 {
			t.Fatalf("call after the cancellations: %d, %v", res, err)
		}
	})
}
