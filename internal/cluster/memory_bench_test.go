package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
)

// BenchmarkRedisMemory measures what the Redis broker costs in Redis's
// memory (INFO memory's used_memory, before and after, on a fresh
// redis-server): a topic's history per retained publication, a presence
// entry, a device claim. The sizing section of docs/deploy/cluster.md
// quotes it; each sub-benchmark does its work once, whatever b.N:
//
//	go test -run XXX -bench RedisMemory -benchtime=1x ./internal/cluster
func BenchmarkRedisMemory(b *testing.B) {
	// A publication as a client makes it: a JSON payload of about
	// payload bytes and the publisher's client info.
	info := &hub.ClientInfo{ConnID: "c8f3a1b2d4e5f607", UserID: "alice", DeviceID: "phone-1", Kind: "phone", NodeID: "node1"}
	for _, payload := range []int{100, 1000} {
		b.Run(fmt.Sprintf("history/payload=%d", payload), func(b *testing.B) {
			const topics, history = 100, 100
			_, br, rc := memoryBroker(b)
			data := json.RawMessage(`{"v":"` + strings.Repeat("x", payload-8) + `"}`)
			opts := hub.PublishOptions{HistorySize: history, HistoryTTL: 24 * time.Hour, Info: info}
			before := usedMemory(b, rc)
			ctx := context.Background()
			for i := range topics {
				// Twice the history: the stream is trimmed to it.
				for range 2 * history {
					if _, err := br.Publish(ctx, fmt.Sprintf("feed:%d", i), data, opts); err != nil {
						b.Fatal(err)
					}
				}
			}
			after := usedMemory(b, rc)
			perTopic := float64(after-before) / topics
			b.ReportMetric(perTopic, "B/topic")
			b.ReportMetric(perTopic/history, "B/retained-pub")
			b.ReportMetric(float64(len(data)), "B/payload")
		})
	}
	b.Run("presence", func(b *testing.B) {
		const topics, perTopic = 10, 200
		_, br, rc := memoryBroker(b)
		before := usedMemory(b, rc)
		ctx := context.Background()
		for i := range topics {
			for j := range perTopic {
				ci := *info
				ci.ConnID = fmt.Sprintf("%016x", i*perTopic+j)
				if err := br.AddPresence(ctx, fmt.Sprintf("room:%d", i), ci.ConnID, ci, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(usedMemory(b, rc)-before)/(topics*perTopic), "B/entry")
	})
	b.Run("claims", func(b *testing.B) {
		const devices = 2000
		_, br, rc := memoryBroker(b)
		before := usedMemory(b, rc)
		ctx := context.Background()
		for i := range devices {
			if _, _, err := br.ClaimDevice(ctx, fmt.Sprintf("device-%06d", i), "node1", time.Minute); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(usedMemory(b, rc)-before)/devices, "B/device")
	})
}

// memoryBroker starts a fresh redis-server, a broker on it (node1, the
// default prefix) and a plain client to read its INFO.
func memoryBroker(b *testing.B) (*redistest.Server, *cluster.Broker, *redis.Client) {
	b.Helper()
	rs := redistest.New(b, redistest.Options{})
	br := newBrokerTB(b, []string{rs.URL()})
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	b.Cleanup(func() { _ = rc.Close() })
	return rs, br, rc
}

// newBrokerTB returns a started broker for node1 on urls with the default
// prefix, closed when tb ends.
func newBrokerTB(tb testing.TB, urls []string) *cluster.Broker {
	tb.Helper()
	br, err := cluster.New(cluster.Config{URLs: urls, NodeID: "node1"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := br.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = br.Close() })
	return br
}

// usedMemory is INFO memory's used_memory.
func usedMemory(b *testing.B, rc *redis.Client) int64 {
	b.Helper()
	s, err := rc.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no used_memory in INFO memory: %q", s)
	return 0
}
