package hub_test

// The hub's paths that take access away or keep cluster records alive:
// Recheck and Unsubscribe (the server removes a subscription), the presence
// refresh with a configured TTL and the RPC lease refresh. The broker runs
// on a clock the test moves (hub.SetMemoryBrokerClock), so a record can only
// be found alive after the clock jumped past it if the refresh loop wrote it
// again.

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// unsubscribedLog collects the reasons of one SDK subscription's
// OnUnsubscribed calls.
type unsubscribedLog struct {
	mu      sync.Mutex
	reasons []string
	ch      chan string
}

func newUnsubscribedLog() *unsubscribedLog { return &unsubscribedLog{ch: make(chan string, 16)} }

func (l *unsubscribedLog) on(reason string) {
	l.mu.Lock()
	l.reasons = append(l.reasons, reason)
	l.mu.Unlock()
	l.ch <- reason
}

func (l *unsubscribedLog) wait(t *testing.T) string {
	t.Helper()
	select {
	case r := <-l.ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("OnUnsubscribed not called within 20s")
		return ""
	}
}

func (l *unsubscribedLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reasons)
}

// connOf returns the hub's connection of user's device.
func connOf(t *testing.T, h *hub.Hub, user, device string) *hub.Conn {
	t.Helper()
	var found *hub.Conn
	h.ConnsOfUser(user, func(c *hub.Conn) {
		if c.Principal().DeviceID == device {
			found = c
		}
	})
	if found == nil {
		t.Fatalf("no connection of %s/%s", user, device)
	}
	return found
}

// publishThenMarker publishes data to topic, then to marker, and waits
// until r (subscribed to marker) has n marker messages. A connection's
// frames arrive in the order they were queued, so by then whatever a live
// subscription of r to topic was sent has arrived: the marker proves that
// a publication was not delivered. A subscription still joining sends what
// it buffered after its reply, possibly after the marker: a positive count
// must be waited for.
func publishThenMarker(t *testing.T, h *hub.Hub, r *recorder, topic, marker string, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := h.Publish(ctx, topic, raw(map[string]int{"n": n})); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	if _, err := h.Publish(ctx, marker, raw(map[string]int{"n": n})); err != nil {
		t.Fatalf("publish %s: %v", marker, err)
	}
	r.waitFor(t, "the marker", func() bool { return len(r.msgs[marker]) >= n })
}

// TestRecheck: after a change of permissions, Recheck removes exactly the
// subscribers no longer allowed: they get channel.unsubscribed with reason
// "forbidden" (the SDK's OnUnsubscribed) and no further publication, the
// others keep receiving; the SDK forgets the removed subscription, so
// subscribing again is judged afresh.
func TestRecheck(t *testing.T) {
	var owner atomic.Value
	owner.Store("alice")
	ts := startHub(t, hub.Config{Namespaces: []hub.NamespaceConfig{
		{Pattern: "doc:{docId}", Subscribe: []string{"owner", "scope=auditor"}, Publish: []string{"scope=write"}},
	}}, func(h *hub.Hub) {
		h.RegisterOwnerLookup("doc", hub.OwnerFunc(func(ctx context.Context, tp hub.Topic) (string, error) {
			return owner.Load().(string), nil
		}))
	})
	ctx := context.Background()
	alice := ts.dial(t, "alice/a1/read,write")
	carol := ts.dial(t, "carol/c1/read,auditor")
	ra, rc := newRecorder(alice), newRecorder(carol)
	aliceGone, carolGone := newUnsubscribedLog(), newUnsubscribedLog()
	if _, err := alice.SubscribeWith(ctx, "doc:1", func(client.Publication) {}, client.SubscribeOptions{OnUnsubscribed: aliceGone.on}); err != nil {
		t.Fatalf("alice subscribes doc:1: %v", err)
	}
	if _, err := carol.SubscribeWith(ctx, "doc:1", func(client.Publication) {}, client.SubscribeOptions{OnUnsubscribed: carolGone.on}); err != nil {
		t.Fatalf("carol subscribes doc:1: %v", err)
	}
	for _, c := range []*client.Client{alice, carol} {
		if _, err := c.Subscribe(ctx, "public:marker", func(client.Publication) {}); err != nil {
			t.Fatalf("subscribe public:marker: %v", err)
		}
	}
	publishThenMarker(t, ts.hub, ra, "doc:1", "public:marker", 1)
	ra.waitFor(t, "alice's doc:1 message", func() bool { return len(ra.msgs["doc:1"]) >= 1 }) // topics are not ordered with each other
	if n := ra.count("doc:1"); n != 1 {
		t.Fatalf("alice got %d doc:1 messages before the recheck, want 1", n)
	}

	// Nothing changed: a recheck removes nobody.
	if err := ts.hub.Recheck(ctx, "doc:1"); err != nil {
		t.Fatalf("Recheck: %v", err)
	}
	owner.Store("bob")
	if err := ts.hub.Recheck(ctx, "doc:1"); err != nil {
		t.Fatalf("Recheck: %v", err)
	}
	if got := aliceGone.wait(t); got != "forbidden" {
		t.Fatalf("alice's OnUnsubscribed reason %q, want forbidden", got)
	}
	if n := aliceGone.count(); n != 1 {
		t.Fatalf("alice's OnUnsubscribed ran %d times, want 1 (the first recheck removed her?)", n)
	}

	publishThenMarker(t, ts.hub, ra, "doc:1", "public:marker", 2)
	if n := ra.count("doc:1"); n != 1 {
		t.Fatalf("alice got %d doc:1 messages, want the 1 from before the recheck", n)
	}
	rc.waitFor(t, "carol's second doc:1 message", func() bool { return len(rc.msgs["doc:1"]) == 2 })
	rc.waitFor(t, "carol's marker", func() bool { return len(rc.msgs["public:marker"]) == 2 })
	if n := carolGone.count(); n != 0 {
		t.Fatalf("carol, still allowed, was unsubscribed %d times", n)
	}

	// The SDK forgot the subscription: a new one is refused for what it
	// is (forbidden), not as a duplicate, and accepted once allowed again.
	if _, err := alice.Subscribe(ctx, "doc:1", func(client.Publication) {}); errCode(err) != protocol.CodeForbidden {
		t.Fatalf("alice subscribes again while not the owner: %v, want forbidden", err)
	}
	owner.Store("alice")
	if _, err := alice.Subscribe(ctx, "doc:1", func(client.Publication) {}); err != nil {
		t.Fatalf("alice subscribes again as the owner: %v", err)
	}

	if err := ts.hub.Recheck(ctx, "nowhere:1"); err == nil {
		t.Fatalf("Recheck of a topic in no namespace succeeded")
	}
}

// TestServerUnsubscribe: Hub.Unsubscribe removes one connection's
// subscription: the client gets channel.unsubscribed with reason "server"
// and no further publication of the topic; it reports false for a
// subscription that is not (or no longer) there; the SDK can subscribe
// again.
func TestServerUnsubscribe(t *testing.T) {
	ts := startHub(t, hub.Config{}, nil)
	ctx := context.Background()
	alice := ts.dial(t, "alice/a1/read,write")
	ra := newRecorder(alice)
	gone := newUnsubscribedLog()
	if _, err := alice.SubscribeWith(ctx, "public:room", func(client.Publication) {}, client.SubscribeOptions{OnUnsubscribed: gone.on}); err != nil {
		t.Fatalf("subscribe public:room: %v", err)
	}
	if _, err := alice.Subscribe(ctx, "public:marker", func(client.Publication) {}); err != nil {
		t.Fatalf("subscribe public:marker: %v", err)
	}
	c := connOf(t, ts.hub, "alice", "a1")
	if ts.hub.Unsubscribe(c, "public:elsewhere") {
		t.Fatalf("Unsubscribe of a topic the connection never subscribed reported true")
	}
	if !ts.hub.Unsubscribe(c, "public:room") {
		t.Fatalf("Unsubscribe of a subscribed topic reported false")
	}
	if got := gone.wait(t); got != "server" {
		t.Fatalf("OnUnsubscribed reason %q, want server", got)
	}
	if ts.hub.Unsubscribe(c, "public:room") {
		t.Fatalf("a second Unsubscribe reported true")
	}
	publishThenMarker(t, ts.hub, ra, "public:room", "public:marker", 1)
	if n := ra.count("public:room"); n != 0 {
		t.Fatalf("got %d public:room messages after the server unsubscribed the connection, want 0", n)
	}
	if _, err := alice.Subscribe(ctx, "public:room", func(client.Publication) {}); err != nil {
		t.Fatalf("subscribe again: %v", err)
	}
	publishThenMarker(t, ts.hub, ra, "public:room", "public:marker", 2)
	// Topics are not ordered with each other: the new subscription may
	// still be sending what it buffered while joining when the marker goes
	// out. Wait for the publication, then check it came once.
	ra.waitFor(t, "the public:room message after subscribing again", func() bool { return len(ra.msgs["public:room"]) >= 1 })
	if n := ra.count("public:room"); n != 1 {
		t.Fatalf("got %d public:room messages after subscribing again, want 1", n)
	}
}

// brokerClock is a clock for the memory broker that moves only when told.
type brokerClock struct{ ns atomic.Int64 }

func newBrokerClock() *brokerClock {
	c := &brokerClock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *brokerClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *brokerClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestPresenceRefreshTTL: a presence entry is written with the configured
// hub.presence_ttl, and the hub's loop writes it again (with the TTL from
// the time of the refresh) while the subscriber stays: once the broker's
// clock jumped an hour past the entry, it is found alive again only because
// the loop refreshed it.
func TestPresenceRefreshTTL(t *testing.T) {
	const ttl = 30 * time.Millisecond
	clk := newBrokerClock()
	b := hub.NewMemoryBroker("n1")
	hub.SetMemoryBrokerClock(b, clk.now)
	n := startNode(t, hub.Config{NodeID: "n1", PresenceTTL: ttl, Namespaces: []hub.NamespaceConfig{
		{Pattern: "room:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, Presence: true},
	}}, b.Broker())
	alice := n.dial(t, "alice", "a1", "phone", nil)
	if _, err := alice.Subscribe(context.Background(), "room:1", func(client.Publication) {}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	id := connOf(t, n.hub, "alice", "a1").ID()
	start := clk.now()
	if exp, ok := hub.PresenceExpiry(b, "room:1", id); !ok || !exp.Equal(start.Add(ttl)) {
		t.Fatalf("presence entry after subscribe: expires %v (present %v), want %v (presence_ttl after the subscription)", exp, ok, start.Add(ttl))
	}
	for round := range 3 {
		clk.advance(time.Hour)
		want := clk.now().Add(ttl)
		eventually(t, "the presence loop to refresh the entry", func() bool {
			exp, ok := hub.PresenceExpiry(b, "room:1", id)
			return ok && exp.Equal(want)
		})
		members, err := b.Presence(context.Background(), "room:1")
		if err != nil || len(members) != 1 || members[id].UserID != "alice" {
			t.Fatalf("round %d: Presence() = %v, %v; want alice's connection", round, members, err)
		}
	}
}

// TestPresenceTTLValidation: hub.presence_ttl may be left out (60 s) but
// not be negative or shorter than its refresh loop can keep up with.
func TestPresenceTTLValidation(t *testing.T) {
	for _, tc := range []struct {
		ttl time.Duration
		ok  bool
	}{{0, true}, {3 * time.Millisecond, true}, {time.Hour, true}, {-time.Second, false}, {time.Millisecond, false}} {
		_, err := hub.New(hub.Config{PresenceTTL: tc.ttl}, hub.Deps{})
		if (err == nil) != tc.ok {
			t.Errorf("presence_ttl %v: New error %v, want ok %v", tc.ttl, err, tc.ok)
		}
	}
}

// TestRPCLeaseRefresh: a serving device's node lease is written with
// hub.rpc.lease_ttl and refreshed by the hub's loop while the device
// serves: after each jump of the broker's clock past the lease, the lease
// names this node again with a fresh TTL. Once the device disconnects, the
// lease is cleared.
func TestRPCLeaseRefresh(t *testing.T) {
	const ttl = 30 * time.Millisecond
	clk := newBrokerClock()
	b := hub.NewMemoryBroker("n1")
	hub.SetMemoryBrokerClock(b, clk.now)
	n := startNode(t, hub.Config{NodeID: "n1", RPC: hub.RPCConfig{LeaseTTL: ttl}}, b.Broker())
	m := n.dial(t, "alice", "m1", "machine", map[string]client.RPCHandler{
		"shell.run": func(ctx context.Context, req *client.RPCRequest) (any, error) {
			return map[string]bool{"ok": true}, nil
		},
	})
	start := clk.now()
	eventually(t, "the lease of m1", func() bool {
		exp, node, ok := hub.LeaseExpiry(b, "m1")
		return ok && node == "n1" && exp.Equal(start.Add(ttl))
	})
	for range 3 {
		clk.advance(time.Hour)
		want := clk.now().Add(ttl)
		eventually(t, "the lease loop to refresh m1's lease", func() bool {
			exp, node, ok := hub.LeaseExpiry(b, "m1")
			return ok && node == "n1" && exp.Equal(want)
		})
		if node, ok, err := b.DeviceNode(context.Background(), "m1"); err != nil || !ok || node != "n1" {
			t.Fatalf("DeviceNode(m1) = %q, %v, %v after the refresh; want n1", node, ok, err)
		}
	}
	_ = m.Close()
	eventually(t, "m1's lease to be cleared", func() bool {
		_, _, ok := hub.LeaseExpiry(b, "m1")
		return !ok
	})
}
