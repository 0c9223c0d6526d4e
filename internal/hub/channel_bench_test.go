package hub_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/internal/hub"
)

// counterConn is a minimal loopback WebSocket subscriber for benchmarks: it
// reads frame headers and skips payloads, counting channel.message frames
// (every frame after the subscribe response), so that the client costs far
// less CPU than the server it measures.
type counterConn struct {
	nc   net.Conn
	got  atomic.Int64
	done chan struct{}
}

func dialCounter(b *testing.B, ts *testServer, cred, topic string) *counterConn {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := gws.Dialer{Header: gws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + cred}})}
	nc, br, _, err := d.Dial(ctx, ts.url())
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	rd := bufio.NewReaderSize(r, 64<<10)
	req := fmt.Sprintf(`{"type":"req","id":"1","method":"channel.subscribe","params":{"topic":%q}}`, topic)
	if err := wsutil.WriteClientText(nc, []byte(req)); err != nil {
		b.Fatalf("write: %v", err)
	}
	for { // welcome, then the response
		msg, err := wsutil.ReadServerText(struct {
			io.Reader
			io.Writer
		}{rd, nc})
		if err != nil {
			b.Fatalf("read: %v", err)
		}
		if strings.Contains(string(msg), `"type":"res"`) {
			if !strings.Contains(string(msg), `"ok":true`) {
				b.Fatalf("subscribe: %s", msg)
			}
			break
		}
	}
	c := &counterConn{nc: nc, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			h, err := gws.ReadHeader(rd)
			if err != nil {
				return
			}
			if _, err := rd.Discard(int(h.Length)); err != nil {
				return
			}
			if h.OpCode == gws.OpText || h.OpCode == gws.OpContinuation && h.Fin {
				c.got.Add(1)
			}
		}
	}()
	b.Cleanup(func() { nc.Close(); <-c.done })
	return c
}

// benchSubscribers starts a hub with n loopback subscribers of topic.
func benchSubscribers(b *testing.B, n int, topic string) (*testServer, []*counterConn) {
	b.Helper()
	ts := startHub(b, hub.Config{MaxQueueFrames: 1 << 16, MaxQueueBytes: 64 << 20, RequestsPerSecond: -1}, nil)
	conns := make([]*counterConn, n)
	for i := range conns {
		conns[i] = dialCounter(b, ts, fmt.Sprintf("u%d/d%d/read", i, i), topic)
	}
	if got := ts.hub.Subscribers(topic); got != n {
		b.Fatalf("got %d subscribers, want %d", got, n)
	}
	return ts, conns
}

// waitDelivered waits until every conn received at least want frames.
func waitDelivered(b *testing.B, conns []*counterConn, want int64) {
	deadline := time.Now().Add(60 * time.Second)
	for _, c := range conns {
		for c.got.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("timed out: a subscriber got %d of %d", c.got.Load(), want)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// BenchmarkFanout publishes to N subscribers over real loopback WebSockets
// and reports deliveries per second, end to end (until every subscriber has
// read every publication). Server and clients share the machine's cores.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			ts, conns := benchSubscribers(b, n, "public:fanout")
			data := []byte(`{"text":"hello, this is a 64-byte-ish chat message payload!!"}`)
			ctx := context.Background()
			const window = 256 // publications in flight before waiting for the slowest reader
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 1; i <= b.N; i++ {
				if _, err := ts.hub.Publish(ctx, "public:fanout", data); err != nil {
					b.Fatal(err)
				}
				if i%window == 0 {
					waitDelivered(b, conns, int64(i-window))
				}
			}
			waitDelivered(b, conns, int64(b.N))
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)*float64(n)/elapsed.Seconds(), "deliveries/s")
			b.ReportMetric(elapsed.Seconds()*1e9/(float64(b.N)*float64(n)), "ns/delivery")
		})
	}
}

// BenchmarkPublish measures the publisher's cost of one Publish (namespace
// lookup, broker append, and the synchronous fan-out into the subscribers'
// queues of the memory broker), with 0 and 1000 loopback subscribers.
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			ts, conns := benchSubscribers(b, n, "public:pub")
			data := []byte(`{"n":1}`)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				if _, err := ts.hub.Publish(ctx, "public:pub", data); err != nil {
					b.Fatal(err)
				}
				if n > 0 && i%1024 == 0 {
					b.StopTimer() // let the readers drain so queues never overflow
					waitDelivered(b, conns, int64(i))
					b.StartTimer()
				}
			}
		})
	}
}
