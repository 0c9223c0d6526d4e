package main

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// TestRedisBrokerTwoNodes runs two servers on two real redis-servers as
// shards (--broker redis://...,redis://...): a subscriber on node A receives what a publisher
// on node B publishes, exactly once and in order, across a cut of its own
// connection (it resumes from history in Redis: recovered). Then Redis
// restarts without its data: the subscriber is told (recovered: false)
// rather than left with a silent gap, and publications flow again.
func TestRedisBrokerTwoNodes(t *testing.T) {
	shards := []*redistest.Server{redistest.New(t, redistest.Options{}), redistest.New(t, redistest.Options{})}
	cfg := func(c *Config) {
		withNamespaces(hub.NamespaceConfig{
			Pattern: "feed:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, HistorySize: 1000,
		})(c)
		c.Hub.RequestsPerSecond = -1
		c.Broker = shards[0].URL() + "," + shards[1].URL()
	}
	a := startServer(t, cfg)
	b := startServer(t, cfg)
	if a.Hub.NodeID() == b.Hub.NodeID() {
		t.Fatalf("two nodes with one id %q", a.Hub.NodeID())
	}
	for _, m := range []*Main{a, b} {
		var ready map[string]any
		apiJSON(t, m, "", "GET", "/readyz", nil, 200, &ready)
		if checks, _ := ready["checks"].(map[string]any); checks["broker"] != "ok" || checks["store"] != "ok" {
			t.Fatalf("readyz: got %v, want store and broker ok", ready)
		}
	}
	proxy := newStallProxy(t, a.Addr().String())

	var (
		mu   sync.Mutex
		got  []int
		subs []client.Subscribed
		ctx  = context.Background()
	)
	sub := client.New(checkedOptions(a, client.Options{URL: "ws://" + proxy.ln.Addr().String() + "/ws",
		Token: mintToken(t, a, "alice", "a1", "phone"), Reconnect: true,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sub.Connect(cctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.SubscribeWith(cctx, "feed:1", func(p client.Publication) {
		var n int
		_ = json.Unmarshal(p.Data, &n)
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}, client.SubscribeOptions{OnSubscribed: func(s client.Subscribed) {
		mu.Lock()
		subs = append(subs, s)
		mu.Unlock()
	}}); err != nil {
		t.Fatal(err)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	pub := dialClient(t, b, "bob", "b1", "phone")
	const total = 600
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= total; i++ {
			if _, _, err := pub.Publish(ctx, "feed:1", i); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	})
	eventually(t, "a third of the publications on node A", func() bool { return count() >= total/3 })
	if n := proxy.cut(); n == 0 {
		t.Fatal("cut no connection")
	}
	wg.Wait()
	eventuallyLong(t, "every publication on node A", func() bool { return count() >= total })
	mu.Lock()
	if !slices.Equal(got, seq(1, total)) {
		t.Fatalf("got %d publications %v..., want 1..%d exactly once in order", len(got), got[:min(len(got), 20)], total)
	}
	if last := subs[len(subs)-1]; len(subs) < 2 || !last.Resubscribed || !last.Recovered {
		t.Fatalf("got subscriptions %+v, want a recovered resubscription", subs)
	}
	nsubs := len(subs)
	mu.Unlock()

	// Redis (both shards) loses everything. Node B publishes again (retrying while its
	// connections to Redis come back) until node A's subscriber has been
	// reset and has resubscribed, not recovered.
	for _, rs := range shards {
		if err := rs.Restart(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	n := total
	eventuallyLong(t, "a resubscription that is not recovered", func() bool {
		n++
		if _, _, err := pub.Publish(ctx, "feed:1", n); err != nil {
			n--
		}
		mu.Lock()
		defer mu.Unlock()
		for _, s := range subs[nsubs:] {
			if s.Resubscribed && !s.Recovered {
				return true
			}
		}
		return false
	})
	mu.Lock()
	after := len(got)
	mu.Unlock()
	for i := n + 1; i <= n+50; i++ {
		if _, _, err := pub.Publish(ctx, "feed:1", i); err != nil {
			t.Fatalf("publish %d after the reset: %v", i, err)
		}
	}
	eventuallyLong(t, "the publications after the reset", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[len(got)-1] == n+50
	})
	mu.Lock()
	defer mu.Unlock()
	// What follows the reset arrives exactly once, in order.
	tail := got[after:]
	if len(tail) < 50 || !slices.Equal(tail[len(tail)-50:], seq(n+1, n+50)) {
		t.Fatalf("got %v after the reset, want ... %d..%d in order", tail, n+1, n+50)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("got %d after %d: duplicated or out of order", got[i], got[i-1])
		}
	}
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from+1)
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// eventuallyLong is eventually with room for a Redis restart.
func eventuallyLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRedisBrokerPresenceAcrossNodes: presence sets, join and leave events
// and history (with the publisher's info) are cluster-wide: carol on node A
// sees bob, who is on node B.
func TestRedisBrokerPresenceAcrossNodes(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	cfg := func(c *Config) {
		withNamespaces(hub.NamespaceConfig{
			Pattern: "room:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, Presence: true, HistorySize: 3,
		})(c)
		c.Broker = rs.URL()
	}
	a, b := startServer(t, cfg), startServer(t, cfg)
	carol := dialClient(t, a, "carol", "c1", "phone")
	events := make(chan *protocol.Frame, 16)
	for _, e := range []string{protocol.EventChannelJoin, protocol.EventChannelLeave} {
		carol.OnEvent(e, func(f *protocol.Frame) { events <- f })
	}
	nextEvent := func(want string) protocol.ClientInfo {
		t.Helper()
		select {
		case f := <-events:
			var info protocol.ClientInfo
			if f.Event != want || f.Topic != "room:1" || json.Unmarshal(f.Data, &info) != nil {
				t.Fatalf("got event %s on %q with %s, want %s on room:1", f.Event, f.Topic, f.Data, want)
			}
			return info
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", want)
		}
		return protocol.ClientInfo{}
	}
	if _, err := carol.Subscribe(context.Background(), "room:1", func(client.Publication) {}); err != nil {
		t.Fatal(err)
	}

	bob := dialClient(t, b, "bob", "b1", "phone")
	var sub protocol.SubscribeResult
	if err := call(t, bob, "channel.subscribe", protocol.SubscribeParams{Topic: "room:1"}, &sub); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if info := nextEvent(protocol.EventChannelJoin); info.UserID != "bob" || info.NodeID != b.Hub.NodeID() {
		t.Errorf("join: got %+v, want bob on node %s", info, b.Hub.NodeID())
	}
	var pub protocol.PublishResult
	if err := call(t, bob, "channel.publish", protocol.PublishParams{Topic: "room:1", Data: json.RawMessage(`{"n":1}`)}, &pub); err != nil {
		t.Fatalf("publish: %v", err)
	}
	var pres protocol.PresenceResult
	if err := call(t, carol, "channel.presence", protocol.TopicParams{Topic: "room:1"}, &pres); err != nil {
		t.Fatalf("presence: %v", err)
	}
	if len(pres.Clients) != 2 {
		t.Errorf("presence on node A: got %+v, want carol and bob", pres.Clients)
	}
	var hist protocol.HistoryResult
	if err := call(t, carol, "channel.history", protocol.HistoryParams{Topic: "room:1", Limit: 5}, &hist); err != nil {
		t.Fatalf("history: %v", err)
	}
	if len(hist.Publications) != 1 || hist.Publications[0].Info == nil || hist.Publications[0].Info.UserID != "bob" ||
		hist.Publications[0].Offset != pub.Offset || string(hist.Publications[0].Data) != `{"n":1}` {
		t.Errorf("history on node A: got %+v, want bob's publication", hist)
	}
	if err := call(t, bob, "channel.unsubscribe", protocol.TopicParams{Topic: "room:1"}, nil); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	if info := nextEvent(protocol.EventChannelLeave); info.UserID != "bob" {
		t.Errorf("leave: got %+v, want bob", info)
	}
	var left protocol.PresenceResult // a fresh map: Unmarshal merges into one
	if err := call(t, carol, "channel.presence", protocol.TopicParams{Topic: "room:1"}, &left); err != nil || len(left.Clients) != 1 {
		t.Errorf("presence after bob left: got %+v, %v, want carol only", left.Clients, err)
	}
}
