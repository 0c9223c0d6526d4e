package cluster_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/redistest"
)

// lookups returns how many claim and lease reads (HMGET, GET) the Redis
// server at url has served.
func lookups(t *testing.T, url string) int {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile(`cmdstat_(?:hmget|get):calls=(\d+)`).FindAllStringSubmatch(info, -1) {
		c, _ := strconv.Atoi(m[1])
		n += c
	}
	return n
}

// TestDeviceRoute: DeviceRoute answers a device's node from the route cache
// without asking Redis, while DeviceNode always reads Redis (and refreshes
// the cache). A stale route stays until it is forgotten (ForgetRoute) or
// expires; a node that no longer listens is forgotten by the failed send
// to it, and its claims route nothing. A negative ttl turns the cache off.
func TestDeviceRoute(t *testing.T) {
	urls, _ := servers(t, 1, redistest.Options{})
	prefix := fmt.Sprintf("t%d:", prefixSeq.Add(1))
	ctx := context.Background()
	node := func(id string, ttl time.Duration) *cluster.Broker {
		return newBroker(t, urls, func(c *cluster.Config) { c.NodeID, c.Prefix, c.RouteCacheTTL = id, prefix, ttl })
	}
	n1, n2, n3 := node("n1", time.Hour), node("n2", 0), node("n3", 0)
	route := func(b *cluster.Broker, device, want string) {
		t.Helper()
		got, ok, err := b.DeviceRoute(ctx, device)
		if err != nil || ok != (want != "") || got != want {
			t.Fatalf("DeviceRoute(%s) from %s = %q, %v, %v; want %q", device, b.NodeID(), got, ok, err, want)
		}
	}
	if _, _, err := n2.ClaimDevice(ctx, "d1", "n2", time.Minute); err != nil {
		t.Fatal(err)
	}
	route(n1, "d1", "n2")
	before := lookups(t, urls[0])
	for range 20 {
		route(n1, "d1", "n2")
	}
	if got := lookups(t, urls[0]) - before; got != 0 {
		t.Fatalf("20 cached routes read Redis %d times, want 0", got)
	}

	// The device moves to n3: the cached route is stale until forgotten.
	if _, _, err := n3.ClaimDevice(ctx, "d1", "n3", time.Minute); err != nil {
		t.Fatal(err)
	}
	route(n1, "d1", "n2")
	if got, ok, err := n1.DeviceNode(ctx, "d1"); err != nil || !ok || got != "n3" {
		t.Fatalf("DeviceNode(d1) = %q, %v, %v after the move; want n3", got, ok, err)
	}
	route(n1, "d1", "n3") // DeviceNode's fresh answer replaced the cached one
	if _, _, err := n2.ClaimDevice(ctx, "d1", "n2", time.Minute); err != nil {
		t.Fatal(err)
	}
	route(n1, "d1", "n3")
	n1.ForgetRoute("d1", "n3", false)
	route(n1, "d1", "n2")

	// n3 stops: a send to it fails, which forgets its lease; its claims
	// route nothing from then on.
	if _, _, err := n3.ClaimDevice(ctx, "d2", "n3", time.Minute); err != nil {
		t.Fatal(err)
	}
	route(n1, "d2", "n3")
	if err := n3.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n1.SendToNode(ctx, "n3", []byte(`{}`)); err == nil {
		t.Fatal("SendToNode to a closed node succeeded")
	}
	route(n1, "d2", "")

	// A short ttl: the move is seen once the cached route expires.
	short := node("n4", 50*time.Millisecond)
	route(short, "d1", "n2")
	if _, _, err := n2.ClaimDevice(ctx, "d1", "n5", time.Minute); err != nil {
		t.Fatal(err)
	}
	node("n5", 0)
	waitFor(t, "the cached route expiring", func() bool {
		got, _, _ := short.DeviceRoute(ctx, "d1")
		return got == "n5"
	})

	// No cache: every route reads Redis.
	off := node("n6", -1)
	route(off, "d1", "n5")
	before = lookups(t, urls[0])
	route(off, "d1", "n5")
	if got := lookups(t, urls[0]) - before; got < 2 {
		t.Fatalf("an uncached route read Redis %d times, want the claim and the lease (2)", got)
	}
}
