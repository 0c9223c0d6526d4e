package main

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// TestRedisRPCServedFastPath: calls forwarded to the machine's node are
// served without a goroutine each, their progress and result queued back
// to the caller's node (internal/hub/rpc_served.go). Many calls at once
// each get all their progress, in order, before their result; a machine
// that disconnects mid-call ends its call with unavailable at once, not at
// the call's timeout; the machine back, calls are served again.
func TestRedisRPCServedFastPath(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	nodes := clusterNodesEach(t, rs, 2, func(int, *Config) {})
	a, b := nodes[0], nodes[1]
	started := make(chan struct{}, 1)
	handlers := map[string]client.RPCHandler{
		"job.count": func(ctx context.Context, req *client.RPCRequest) (any, error) {
			var p struct{ N int }
			if err := json.Unmarshal(req.Params, &p); err != nil {
				return nil, err
			}
			n := p.N
			for i := 1; i <= n; i++ {
				if err := req.Progress(ctx, i); err != nil {
					return nil, err
				}
			}
			return n, nil
		},
		"job.block": func(ctx context.Context, req *client.RPCRequest) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
	mac := machine(t, b, "alice", "m1", false, handlers)
	caller := dialClient(t, a, "alice", "phone1", "phone")
	ctx := context.Background()

	t.Run("progress in order before each result", func(t *testing.T) {
		checkCountCalls(t, caller, "m1", 40, 5)
	})
	t.Run("machine disconnects mid-call", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() {
			errc <- caller.CallDevice(ctx, "m1", "job.block", nil, nil, client.WithCallTimeout(time.Minute))
		}()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the call did not reach the machine")
		}
		closed := time.Now()
		_ = mac.Close()
		select {
		case err := <-errc:
			if code := errCode(err); code != protocol.CodeUnavailable {
				t.Fatalf("call whose target disconnected: got %v, want %s", err, protocol.CodeUnavailable)
			}
			t.Logf("failed %v after the machine closed", time.Since(closed).Round(time.Millisecond))
		case <-time.After(20 * time.Second):
			t.Fatal("the call still waits 20s after its target disconnected (timeout 1m)")
		}
	})
	t.Run("machine back", func(t *testing.T) {
		machine(t, b, "alice", "m1", false, handlers)
		var res int
		if err := caller.CallDevice(ctx, "m1", "job.count", map[string]int{"n": 2}, &res); err != nil || res != 2 {
			t.Fatalf("call after the machine reconnected: %d, %v", res, err)
		}
	})
}

// checkCountCalls makes calls concurrent calls of job.count {"n": each} to
// device (a handler that sends progress 1…each, then answers each) and
// checks that each answers each after all of its progress, in order:
// progress after the result would have been dropped by the caller's node
// (the call ended).
func checkCountCalls(t *testing.T, caller *client.Client, device string, calls, each int) {
	t.Helper()
	want := make([]int, each)
	for i := range want {
		want[i] = i + 1
	}
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			var mu sync.Mutex
			var progress []int
			var res int
			err := caller.CallDevice(context.Background(), device, "job.count", map[string]int{"n": each}, &res, client.WithProgress(func(data json.RawMessage) {
				var n int
				_ = json.Unmarshal(data, &n)
				mu.Lock()
				progress = append(progress, n)
				mu.Unlock()
			}))
			if err != nil || res != each {
				t.Errorf("call %d: got %d, %v; want %d", i, res, err, each)
				return
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				mu.Lock()
				got := slices.Clone(progress)
				mu.Unlock()
				if slices.Equal(got, want) {
					return
				}
				if len(got) >= each || time.Now().After(deadline) {
					t.Errorf("call %d: progress %v, want %v", i, got, want)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
}
