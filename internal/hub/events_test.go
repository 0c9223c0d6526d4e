package hub_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// TestClusterEvents: a handler of a kind receives the node's own events in
// order, and the last one is retained for a node that starts later.
func TestClusterEvents(t *testing.T) {
	h, err := hub.New(hub.Config{NodeID: "n1"}, hub.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	h.OnClusterEvent("test", func(data json.RawMessage) {
		mu.Lock()
		got = append(got, string(data))
		mu.Unlock()
	})
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx := context.Background()
	if _, ok, err := h.LastClusterEvent(ctx, "test"); err != nil || ok {
		t.Fatalf("LastClusterEvent before any: %v, %v; want none", ok, err)
	}
	for _, d := range []string{`1`, `{"a":2}`, `3`} {
		if err := h.PublishClusterEvent(ctx, "test", json.RawMessage(d)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "three events", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })
	mu.Lock()
	if got[0] != `1` || got[1] != `{"a":2}` || got[2] != `3` {
		t.Fatalf("events %v, want 1, {\"a\":2}, 3 in order", got)
	}
	mu.Unlock()
	if last, ok, err := h.LastClusterEvent(ctx, "test"); err != nil || !ok || string(last) != `3` {
		t.Fatalf("LastClusterEvent = %s, %v, %v; want 3", last, ok, err)
	}
}

// TestDisconnectEverywhere: the connections a match selects close with the
// given code; the others stay; an empty match is refused.
func TestDisconnectEverywhere(t *testing.T) {
	n := startNode(t, hub.Config{NodeID: "n1"}, hub.NewMemoryBroker("n1").Broker())
	d1 := n.dial(t, "alice", "d1", "phone", nil)
	d2 := n.dial(t, "alice", "d2", "phone", nil)
	b1 := n.dial(t, "bob", "b1", "phone", nil)
	ctx := context.Background()
	if _, err := n.hub.DisconnectEverywhere(ctx, hub.DisconnectMatch{}, protocol.DisconnectForbidden); err == nil {
		t.Fatal("an empty match was accepted")
	}
	closedBefore := 0
	for _, tc := range []struct {
		name   string
		match  hub.DisconnectMatch
		want   int
		closed *client.Client
	}{
		{"device", hub.DisconnectMatch{DeviceID: "d1"}, 1, d1},
		{"other user's device", hub.DisconnectMatch{UserID: "bob", DeviceID: "d2"}, 0, nil},
		{"user", hub.DisconnectMatch{UserID: "alice"}, 1, d2},
		{"kind of app", hub.DisconnectMatch{AppID: "app-1"}, 0, nil},
	} {
		got, err := n.hub.DisconnectEverywhere(ctx, tc.match, protocol.DisconnectForbidden)
		if err != nil || got != tc.want {
			t.Fatalf("%s: closed %d, %v; want %d", tc.name, got, err, tc.want)
		}
		if tc.closed != nil {
			eventually(t, tc.name+": the connection closed with 4003", func() bool {
				return tc.closed.State() == client.StateClosed && tc.closed.CloseCode() == protocol.CloseForbidden &&
					n.hub.ConnOfDevice(tc.match.DeviceID) == nil && n.hub.Len() == 3-tc.want-closedBefore
			})
			closedBefore += tc.want
		}
	}
	if b1.State() != client.StateConnected {
		t.Fatalf("bob's connection is %v, want connected", b1.State())
	}
}
