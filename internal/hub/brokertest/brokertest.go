// Package brokertest holds the contract suites of the hub's broker
// interfaces (hub.Streams, hub.Presence, hub.Directory, hub.IdemRecords).
// Every implementation runs the suite of each interface it provides: the
// memory ones in package hub, the store's records in cmd/junction, and a
// Redis implementation in internal/cluster.
package brokertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/hub"
)

// Handler records what a broker delivers (publications and node messages).
type Handler struct {
	mu    sync.Mutex
	pubs  map[string][]hub.Publication
	nodes []json.RawMessage
}

// NewHandler returns an empty Handler.
func NewHandler() *Handler {
	return &Handler{pubs: map[string][]hub.Publication{}}
}

// HandlePublication implements hub.PublicationHandler.
func (h *Handler) HandlePublication(topic string, pub hub.Publication) {
	h.mu.Lock()
	h.pubs[topic] = append(h.pubs[topic], pub)
	h.mu.Unlock()
}

// HandleNodeMessage implements hub.NodeHandler.
func (h *Handler) HandleNodeMessage(msg json.RawMessage) {
	h.mu.Lock()
	h.nodes = append(h.nodes, msg)
	h.mu.Unlock()
}

// Publications returns how many publications of topic were delivered.
func (h *Handler) Publications(topic string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pubs[topic])
}

// wait waits until cond holds under h.mu; the deadline only turns a hang
// into a failure (a clustered broker delivers asynchronously).
func (h *Handler) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	h.mu.Lock()
	defer h.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		h.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		h.mu.Lock()
	}
}

// Streams checks the hub.Streams contract (hub/broker.go). start returns a
// fresh implementation for the node "n1" whose streams are empty, already
// delivering to h (Deliver called), and closes it when t ends. When it is an
// io.Closer, Close is checked too.
func Streams(t *testing.T, start func(t *testing.T, h hub.PublicationHandler) hub.Streams) {
	ctx := context.Background()
	run := func(t *testing.T) (hub.Streams, *Handler) {
		t.Helper()
		h := NewHandler()
		return start(t, h), h
	}

	t.Run("offsets and delivery in order to subscribed nodes only", func(t *testing.T) {
		b, h := run(t)
		if _, err := b.Publish(ctx, "t:before", json.RawMessage(`0`), hub.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := b.Subscribe(ctx, "t:a"); err != nil {
			t.Fatal(err)
		}
		var epoch string
		for i := 1; i <= 50; i++ {
			pos, err := b.Publish(ctx, "t:a", json.RawMessage(fmt.Sprint(i)), hub.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if pos.Offset != uint64(i) || pos.Epoch == "" || (epoch != "" && pos.Epoch != epoch) {
				t.Fatalf("got position %+v, want offset %d in one epoch", pos, i)
			}
			epoch = pos.Epoch
		}
		h.wait(t, "50 publications", func() bool { return len(h.pubs["t:a"]) == 50 })
		for i, p := range h.pubs["t:a"] {
			if p.Offset != uint64(i+1) || p.Epoch != epoch || string(p.Data) != fmt.Sprint(i+1) {
				t.Fatalf("got publication %d = %+v", i, p)
			}
		}
		if n := len(h.pubs["t:before"]); n != 0 {
			t.Fatalf("got %d publications of an unsubscribed topic, want 0", n)
		}
		if err := b.Unsubscribe(ctx, "t:a"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx, "t:a", json.RawMessage(`51`), hub.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		pos, err := b.Position(ctx, "t:a")
		if err != nil || pos.Offset != 51 || pos.Epoch != epoch {
			t.Fatalf("got Position %+v, %v, want offset 51", pos, err)
		}
	})

	t.Run("concurrent publishers get distinct offsets", func(t *testing.T) {
		b, h := run(t)
		if err := b.Subscribe(ctx, "t:c"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 50 {
					if _, err := b.Publish(ctx, "t:c", json.RawMessage(`1`), hub.PublishOptions{}); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		h.wait(t, "400 publications", func() bool { return len(h.pubs["t:c"]) == 400 })
		for i, p := range h.pubs["t:c"] {
			if p.Offset != uint64(i+1) {
				t.Fatalf("got offset %d at %d: delivery out of order", p.Offset, i)
			}
		}
	})

	t.Run("idempotent publications publish once", func(t *testing.T) {
		b, h := run(t)
		if err := b.Subscribe(ctx, "t:idem"); err != nil {
			t.Fatal(err)
		}
		opts := func(key, fp string) hub.PublishOptions {
			return hub.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute,
				Idem: &hub.PublishIdem{Key: key, Fingerprint: fp, TTL: time.Minute}}
		}
		first, err := b.Publish(ctx, "t:idem", json.RawMessage(`1`), opts("u\x00k1", "fp1"))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				pos, err := b.Publish(ctx, "t:idem", json.RawMessage(`1`), opts("u\x00k1", "fp1"))
				if err != nil || pos != first {
					t.Errorf("got repeat %+v, %v, want the first position %+v", pos, err, first)
				}
			})
		}
		wg.Wait()
		if _, err := b.Publish(ctx, "t:idem", json.RawMessage(`2`), opts("u\x00k1", "fp2")); !errors.Is(err, hub.ErrIdemConflict) {
			t.Fatalf("got %v for the key with another fingerprint, want ErrIdemConflict", err)
		}
		second, err := b.Publish(ctx, "t:idem", json.RawMessage(`3`), opts("u\x00k2", "fp3"))
		if err != nil || second.Offset != first.Offset+1 || second.Epoch != first.Epoch {
			t.Fatalf("got %+v, %v for another key, want offset %d", second, err, first.Offset+1)
		}
		// The key is the topic's: the same key on another topic publishes.
		if pos, err := b.Publish(ctx, "t:idem2", json.RawMessage(`1`), opts("u\x00k1", "fp1")); err != nil || pos.Offset != 1 {
			t.Fatalf("got %+v, %v for the key on another topic, want offset 1", pos, err)
		}
		h.wait(t, "2 publications", func() bool { return len(h.pubs["t:idem"]) >= 2 })
		pos, err := b.Position(ctx, "t:idem")
		if err != nil || pos.Offset != 2 {
			t.Fatalf("got position %+v, %v, want offset 2: a repeat appended", pos, err)
		}
		hist, _, err := b.History(ctx, "t:idem", nil, 0)
		if err != nil || len(hist) != 2 || string(hist[0].Data) != "1" || string(hist[1].Data) != "3" {
			t.Fatalf("got history %+v, %v, want [1 3]", hist, err)
		}
		if n := h.Publications("t:idem"); n != 2 {
			t.Fatalf("got %d deliveries, want 2: a repeat was delivered", n)
		}
	})

	t.Run("event names kept in delivery and history", func(t *testing.T) {
		b, h := run(t)
		if err := b.Subscribe(ctx, "t:ev"); err != nil {
			t.Fatal(err)
		}
		info := &hub.ClientInfo{ConnID: "c-1", UserID: "u"}
		opts := hub.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute}
		want := []string{"", "temp", "", "relay.state"}
		for i, ev := range want {
			o := opts
			o.Event = ev
			if i == 3 {
				o.Info = info
			}
			if _, err := b.Publish(ctx, "t:ev", json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), o); err != nil {
				t.Fatal(err)
			}
		}
		h.wait(t, "4 publications", func() bool { return len(h.pubs["t:ev"]) == 4 })
		h.mu.Lock()
		delivered := append([]hub.Publication(nil), h.pubs["t:ev"]...)
		h.mu.Unlock()
		hist, _, err := b.History(ctx, "t:ev", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for name, pubs := range map[string][]hub.Publication{"delivered": delivered, "history": hist} {
			if len(pubs) != len(want) {
				t.Fatalf("%s: got %d publications, want %d", name, len(pubs), len(want))
			}
			for i, p := range pubs {
				if p.Event != want[i] || string(p.Data) != fmt.Sprintf(`{"n":%d}`, i) {
					t.Errorf("%s %d: got event %q data %s, want %q {\"n\":%d}", name, i, p.Event, p.Data, want[i], i)
				}
			}
			if p := pubs[3]; p.Info == nil || p.Info.ConnID != "c-1" {
				t.Errorf("%s: got info %+v with an event name, want c-1", name, p.Info)
			}
		}
	})

	t.Run("history", func(t *testing.T) {
		b, _ := run(t)
		empty, err := b.Position(ctx, "t:h")
		if err != nil || empty.Offset != 0 || empty.Epoch == "" {
			t.Fatalf("got Position of a new topic %+v, %v, want offset 0 with an epoch", empty, err)
		}
		var epoch string
		for i := 1; i <= 8; i++ {
			pos, err := b.Publish(ctx, "t:h", json.RawMessage(fmt.Sprint(i)), hub.PublishOptions{HistorySize: 5, HistoryTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			epoch = pos.Epoch
		}
		offsets := func(ps []hub.Publication) []uint64 {
			var out []uint64
			for _, p := range ps {
				out = append(out, p.Offset)
			}
			return out
		}
		tests := []struct {
			name  string
			since *hub.StreamPosition
			limit int
			want  []uint64
			gap   bool
		}{
			{"all retained", nil, 0, []uint64{4, 5, 6, 7, 8}, false},
			{"limited", nil, 2, []uint64{4, 5}, false},
			{"since inside", &hub.StreamPosition{Epoch: epoch, Offset: 5}, 0, []uint64{6, 7, 8}, false},
			{"since at the oldest boundary", &hub.StreamPosition{Epoch: epoch, Offset: 3}, 0, []uint64{4, 5, 6, 7, 8}, false},
			{"since inside limited", &hub.StreamPosition{Epoch: epoch, Offset: 5}, 1, []uint64{6}, false},
			{"since current", &hub.StreamPosition{Epoch: epoch, Offset: 8}, 0, nil, false},
			{"since too old", &hub.StreamPosition{Epoch: epoch, Offset: 2}, 0, nil, true},
			{"since in the future", &hub.StreamPosition{Epoch: epoch, Offset: 9}, 0, nil, true},
			{"since another epoch", &hub.StreamPosition{Epoch: "other", Offset: 5}, 0, nil, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				pubs, pos, err := b.History(ctx, "t:h", tt.since, tt.limit)
				if tt.gap {
					if !errors.Is(err, hub.ErrHistoryGap) || len(pubs) != 0 {
						t.Fatalf("got %v, %v, want hub.ErrHistoryGap and no publications", offsets(pubs), err)
					}
				} else if err != nil {
					t.Fatal(err)
				}
				if pos.Epoch != epoch || pos.Offset != 8 {
					t.Fatalf("got position %+v, want %s/8", pos, epoch)
				}
				if fmt.Sprint(offsets(pubs)) != fmt.Sprint(tt.want) {
					t.Fatalf("got offsets %v, want %v", offsets(pubs), tt.want)
				}
			})
		}
		// No history kept: any earlier position is a gap, the current one is not.
		pos, _ := b.Publish(ctx, "t:nohist", json.RawMessage(`1`), hub.PublishOptions{})
		if _, _, err := b.History(ctx, "t:nohist", &hub.StreamPosition{Epoch: pos.Epoch, Offset: 0}, 0); !errors.Is(err, hub.ErrHistoryGap) {
			t.Fatalf("got %v, want hub.ErrHistoryGap without history", err)
		}
		if _, _, err := b.History(ctx, "t:nohist", &pos, 0); err != nil {
			t.Fatalf("got %v at the current position, want nil", err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		b, _ := run(t)
		c, ok := b.(io.Closer)
		if !ok {
			t.Skip("not an io.Closer")
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := b.Publish(ctx, "t:x", json.RawMessage(`1`), hub.PublishOptions{}); !errors.Is(err, hub.ErrBrokerClosed) {
			t.Fatalf("got %v, want hub.ErrBrokerClosed", err)
		}
	})
}

// Presence checks the hub.Presence contract (hub/broker.go). newPresence
// returns a fresh implementation with empty sets.
func Presence(t *testing.T, newPresence func(t *testing.T) hub.Presence) {
	ctx := context.Background()
	t.Run("presence", func(t *testing.T) {
		b := newPresence(t)
		a := hub.ClientInfo{ConnID: "c1", UserID: "u1", NodeID: "n1", Info: json.RawMessage(`{"plan":"pro"}`)}
		if err := b.AddPresence(ctx, "t:p", "c1", a, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := b.AddPresence(ctx, "t:p", "c2", hub.ClientInfo{ConnID: "c2"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := b.AddPresence(ctx, "t:p", "c3", hub.ClientInfo{ConnID: "c3"}, time.Nanosecond); err != nil {
			t.Fatal(err)
		}
		if err := b.RemovePresence(ctx, "t:p", "c2"); err != nil {
			t.Fatal(err)
		}
		var got map[string]hub.ClientInfo
		deadline := time.Now().Add(10 * time.Second)
		for {
			var err error
			if got, err = b.Presence(ctx, "t:p"); err != nil {
				t.Fatal(err)
			}
			if _, expired := got["c3"]; !expired || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if len(got) != 1 || !reflect.DeepEqual(got["c1"], a) {
			t.Fatalf("got presence %v, want only c1 (c2 removed, c3 expired)", got)
		}
	})

}

// Directory checks the hub.Directory contract (hub/broker.go). start returns
// a fresh implementation for the node "n1" without leases, already
// receiving into h (Receive called), and closes it when t ends.
func Directory(t *testing.T, start func(t *testing.T, h hub.NodeHandler) hub.Directory) {
	ctx := context.Background()
	t.Run("devices and node messages", func(t *testing.T) {
		h := NewHandler()
		b := start(t, h)
		g1, prev, err := b.ClaimDevice(ctx, "d1", "n1", time.Minute)
		if err != nil || g1 == 0 || prev != "" {
			t.Fatalf("first claim: got %d %q %v, want a generation and no previous node", g1, prev, err)
		}
		if node, ok, err := b.DeviceNode(ctx, "d1"); err != nil || !ok || node != "n1" {
			t.Fatalf("got %q %v %v, want n1", node, ok, err)
		}
		refresh := func(node string, gen uint64, want bool) {
			t.Helper()
			if ok, err := b.RefreshDevice(ctx, "d1", node, gen, time.Minute); err != nil || ok != want {
				t.Fatalf("RefreshDevice(%s, %d) = %v, %v; want %v", node, gen, ok, err, want)
			}
		}
		refresh("n1", g1, true)
		// A newer connection on another node: its claim wins, and the
		// older one's refresh cannot overwrite it.
		g2, prev, err := b.ClaimDevice(ctx, "d1", "n2", time.Minute)
		if err != nil || g2 <= g1 || prev != "n1" {
			t.Fatalf("second claim: got %d %q %v, want a generation over %d replacing n1", g2, prev, err, g1)
		}
		refresh("n1", g1, false)
		refresh("n2", g2, true)
		if err := b.ClearDevice(ctx, "d1", "n1", g1); err != nil {
			t.Fatal(err)
		}
		refresh("n2", g2, true) // the stale clear removed nothing
		if err := b.ClearDevice(ctx, "d1", "n2", g2); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := b.DeviceNode(ctx, "d1"); ok {
			t.Fatal("got a claim after ClearDevice")
		}
		refresh("n1", g1, false) // cleared, but newer: not recreated
		g3, prev, err := b.ClaimDevice(ctx, "d1", "n1", time.Minute)
		if err != nil || g3 <= g2 || prev != "" {
			t.Fatalf("third claim: got %d %q %v, want a generation over %d and no live previous claim", g3, prev, err, g2)
		}
		if node, ok, err := b.DeviceNode(ctx, "d1"); err != nil || !ok || node != "n1" {
			t.Fatalf("got %q %v %v, want n1", node, ok, err)
		}
		if err := b.ClearDevice(ctx, "d1", "n1", g3); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := b.DeviceNode(ctx, "d1"); ok {
			t.Fatal("got a claim after ClearDevice")
		}
		if alive, err := b.NodeAlive(ctx, "n1"); err != nil || !alive {
			t.Fatalf("NodeAlive(n1) = %v, %v for the node itself; want true", alive, err)
		}
		if alive, err := b.NodeAlive(ctx, "n-never"); err != nil || alive {
			t.Fatalf("NodeAlive(n-never) = %v, %v; want false", alive, err)
		}
		if err := b.SendToNode(ctx, "n1", json.RawMessage(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
		h.wait(t, "the node message", func() bool { return len(h.nodes) == 1 })
		if string(h.nodes[0]) != `{"x":1}` {
			t.Fatalf("got node message %s", h.nodes[0])
		}
	})

}

// Records checks the hub.IdemRecords contract (hub/idem.go). newRecords
// returns a fresh implementation without records.
func Records(t *testing.T, newRecords func(t *testing.T) hub.IdemRecords) {
	ctx := context.Background()

	t.Run("claim, pending repeat, finish, principals", func(t *testing.T) {
		r := newRecords(t)
		before := time.Now().Add(-time.Minute)
		fresh, done, _, started, err := r.IdemBegin(ctx, "p", "k", time.Minute)
		if err != nil || !fresh || done {
			t.Fatalf("got fresh=%v done=%v %v, want the first claim, pending", fresh, done, err)
		}
		if started.Before(before) {
			t.Fatalf("got started %v, want about now", started)
		}
		fresh, done, _, started2, err := r.IdemBegin(ctx, "p", "k", time.Minute)
		if err != nil || fresh || done {
			t.Fatalf("got fresh=%v done=%v %v, want a pending repeat", fresh, done, err)
		}
		if !started2.Equal(started) {
			t.Fatalf("repeat: got started %v, want the first claim's %v", started2, started)
		}
		if found, done, _, _, err := r.IdemLookup(ctx, "p", "k"); err != nil || !found || done {
			t.Fatalf("IdemLookup pending: got found=%v done=%v %v", found, done, err)
		}
		if err := r.IdemFinish(ctx, "p", "k", []byte(`"r"`)); err != nil {
			t.Fatal(err)
		}
		fresh, done, body, _, err := r.IdemBegin(ctx, "p", "k", time.Minute)
		if err != nil || fresh || !done || string(body) != `"r"` {
			t.Fatalf("got fresh=%v done=%v body=%s %v, want the stored result", fresh, done, body, err)
		}
		if found, done, body, _, err := r.IdemLookup(ctx, "p", "k"); err != nil || !found || !done || string(body) != `"r"` {
			t.Fatalf("IdemLookup finished: got found=%v done=%v body=%s %v", found, done, body, err)
		}
		if err := r.IdemFinish(ctx, "p", "k", []byte(`"again"`)); err == nil {
			t.Fatal("IdemFinish twice: got nil, want an error")
		}
		if err := r.IdemFinish(ctx, "p", "nope", []byte(`1`)); err == nil {
			t.Fatal("IdemFinish of an unknown key: got nil, want an error")
		}
		if fresh, _, _, _, _ := r.IdemBegin(ctx, "other", "k", time.Minute); !fresh {
			t.Fatal("another principal's key collided")
		}
		if found, _, _, _, err := r.IdemLookup(ctx, "p", "absent"); err != nil || found {
			t.Fatalf("IdemLookup absent: got found=%v %v", found, err)
		}
	})

	t.Run("abort frees a pending key, a finished one stays", func(t *testing.T) {
		r := newRecords(t)
		r.IdemBegin(ctx, "p", "k2", time.Minute)
		if err := r.IdemAbort(ctx, "p", "k2"); err != nil {
			t.Fatalf("IdemAbort pending: %v", err)
		}
		if found, _, _, _, _ := r.IdemLookup(ctx, "p", "k2"); found {
			t.Fatal("IdemLookup after abort: found")
		}
		if fresh, _, _, _, _ := r.IdemBegin(ctx, "p", "k2", time.Minute); !fresh {
			t.Fatal("IdemBegin after abort: not fresh")
		}
		if err := r.IdemFinish(ctx, "p", "k2", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
		if err := r.IdemAbort(ctx, "p", "k2"); err == nil {
			t.Fatal("IdemAbort finished: got nil, want an error")
		}
		if fresh, done, _, _, _ := r.IdemBegin(ctx, "p", "k2", time.Minute); fresh || !done {
			t.Fatalf("after aborting a finished record: got fresh=%v done=%v, want it kept", fresh, done)
		}
	})

	t.Run("expired records are replaced as if absent", func(t *testing.T) {
		r := newRecords(t)
		if _, _, _, _, err := r.IdemBegin(ctx, "p", "short", time.Millisecond); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			found, _, _, _, err := r.IdemLookup(ctx, "p", "short")
			if err != nil {
				t.Fatal(err)
			}
			if !found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("record with a 1ms ttl still found after 10s")
			}
			time.Sleep(time.Millisecond)
		}
		fresh, done, body, _, err := r.IdemBegin(ctx, "p", "short", time.Minute)
		if err != nil || !fresh || done || body != nil {
			t.Fatalf("IdemBegin after expiry: got fresh=%v done=%v body=%s %v, want fresh pending", fresh, done, body, err)
		}
	})

	t.Run("empty principal or key", func(t *testing.T) {
		r := newRecords(t)
		if _, _, _, _, err := r.IdemBegin(ctx, "", "k", time.Minute); err == nil {
			t.Fatal("empty principal: got nil, want an error")
		}
		if _, _, _, _, err := r.IdemBegin(ctx, "p", "", time.Minute); err == nil {
			t.Fatal("empty key: got nil, want an error")
		}
	})

	t.Run("concurrent first requests: exactly one is fresh", func(t *testing.T) {
		r := newRecords(t)
		var freshN atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				fresh, _, _, _, err := r.IdemBegin(ctx, "p", "race", time.Minute)
				if err != nil {
					t.Errorf("concurrent IdemBegin: %v", err)
				}
				if fresh {
					freshN.Add(1)
				}
			})
		}
		wg.Wait()
		if n := freshN.Load(); n != 1 {
			t.Fatalf("concurrent IdemBegin: %d fresh, want 1", n)
		}
	})
}
