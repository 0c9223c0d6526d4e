package hub_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
)

// BenchmarkRPCRelay measures caller → gateway → machine → gateway → caller
// over real loopback WebSockets, with 100 callers (one connection each)
// calling one machine concurrently. It reports calls/s and the p50 and p99
// latency of a call.
//
//	go test ./internal/hub -run '^$' -bench BenchmarkRPCRelay -benchtime 20000x
func BenchmarkRPCRelay(b *testing.B) {
	const callers = 100
	node := startNode(b, hub.Config{NodeID: "bench", MaxAsyncPerConn: 1024}, hub.Broker{})
	node.dial(b, "u1", "mac1", "machine", map[string]client.RPCHandler{
		"bench.echo": func(_ context.Context, req *client.RPCRequest) (any, error) { return req.Params, nil },
	}, func(o *client.Options) { o.MaxHandlers = 4 * callers })
	cs := make([]*client.Client, callers)
	for i := range cs {
		cs[i] = node.dial(b, "u1", fmt.Sprintf("phone%d", i), "phone", nil)
	}
	params := map[string]any{"cmd": "echo", "n": 42}
	// Warm up every connection once.
	for _, c := range cs {
		if err := c.CallDevice(context.Background(), "mac1", "bench.echo", params, nil); err != nil {
			b.Fatalf("warm-up call: %v", err)
		}
	}

	lat := make([][]time.Duration, callers)
	var next atomic.Int64
	var failed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := c.CallDevice(context.Background(), "mac1", "bench.echo", params, nil); err != nil {
					if failed.Add(1) == 1 {
						b.Logf("first failure: %v", err)
					}
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d calls failed", n)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(float64(len(all))*p))].Microseconds())
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "calls/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
