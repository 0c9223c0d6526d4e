package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestMemoryBrokerContract(t *testing.T) {
	testBroker(t, func(t *testing.T) Broker { return NewMemoryBroker("n1") })
}

// contractHandler records what a broker delivers.
type contractHandler struct {
	mu    sync.Mutex
	pubs  map[string][]Publication
	nodes []json.RawMessage
	cond  *sync.Cond
}

func newContractHandler() *contractHandler {
	h := &contractHandler{pubs: map[string][]Publication{}}
	h.cond = sync.NewCond(&h.mu)
	return h
}

func (h *contractHandler) HandlePublication(topic string, pub Publication) {
	h.mu.Lock()
	h.pubs[topic] = append(h.pubs[topic], pub)
	h.cond.Broadcast()
	h.mu.Unlock()
}

func (h *contractHandler) HandleNodeMessage(msg json.RawMessage) {
	h.mu.Lock()
	h.nodes = append(h.nodes, msg)
	h.cond.Broadcast()
	h.mu.Unlock()
}

// wait waits until cond holds under h.mu; the deadline only turns a hang
// into a failure (a clustered broker delivers asynchronously).
func (h *contractHandler) wait(t *testing.T, what string, cond func() bool) {
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

// testBroker checks the Broker specification (broker.go) against any
// implementation; newBroker returns a fresh broker for the node "n1" whose
// streams are empty. The Redis broker runs it too.
func testBroker(t *testing.T, newBroker func(t *testing.T) Broker) {
	ctx := context.Background()
	start := func(t *testing.T) (Broker, *contractHandler) {
		t.Helper()
		b := newBroker(t)
		h := newContractHandler()
		if err := b.Run(ctx, h); err != nil {
			t.Fatalf("Run: %v", err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b, h
	}

	t.Run("offsets and delivery in order to subscribed nodes only", func(t *testing.T) {
		b, h := start(t)
		if _, err := b.Publish(ctx, "t:before", json.RawMessage(`0`), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := b.Subscribe(ctx, "t:a"); err != nil {
			t.Fatal(err)
		}
		var epoch string
		for i := 1; i <= 50; i++ {
			pos, err := b.Publish(ctx, "t:a", json.RawMessage(fmt.Sprint(i)), PublishOptions{HistorySize: 10, HistoryTTL: time.Minute})
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
		if _, err := b.Publish(ctx, "t:a", json.RawMessage(`51`), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		pos, err := b.Position(ctx, "t:a")
		if err != nil || pos.Offset != 51 || pos.Epoch != epoch {
			t.Fatalf("got Position %+v, %v, want offset 51", pos, err)
		}
	})

	t.Run("concurrent publishers get distinct offsets", func(t *testing.T) {
		b, h := start(t)
		if err := b.Subscribe(ctx, "t:c"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 50 {
					if _, err := b.Publish(ctx, "t:c", json.RawMessage(`1`), PublishOptions{}); err != nil {
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

	t.Run("history", func(t *testing.T) {
		b, _ := start(t)
		empty, err := b.Position(ctx, "t:h")
		if err != nil || empty.Offset != 0 || empty.Epoch == "" {
			t.Fatalf("got Position of a new topic %+v, %v, want offset 0 with an epoch", empty, err)
		}
		var epoch string
		for i := 1; i <= 8; i++ {
			pos, err := b.Publish(ctx, "t:h", json.RawMessage(fmt.Sprint(i)), PublishOptions{HistorySize: 5, HistoryTTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			epoch = pos.Epoch
		}
		offsets := func(ps []Publication) []uint64 {
			var out []uint64
			for _, p := range ps {
				out = append(out, p.Offset)
			}
			return out
		}
		tests := []struct {
			name  string
			since *StreamPosition
			limit int
			want  []uint64
			gap   bool
		}{
			{"all retained", nil, 0, []uint64{4, 5, 6, 7, 8}, false},
			{"limited", nil, 2, []uint64{4, 5}, false},
			{"since inside", &StreamPosition{epoch, 5}, 0, []uint64{6, 7, 8}, false},
			{"since at the oldest boundary", &StreamPosition{epoch, 3}, 0, []uint64{4, 5, 6, 7, 8}, false},
			{"since inside limited", &StreamPosition{epoch, 5}, 1, []uint64{6}, false},
			{"since current", &StreamPosition{epoch, 8}, 0, nil, false},
			{"since too old", &StreamPosition{epoch, 2}, 0, nil, true},
			{"since in the future", &StreamPosition{epoch, 9}, 0, nil, true},
			{"since another epoch", &StreamPosition{"other", 5}, 0, nil, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				pubs, pos, err := b.History(ctx, "t:h", tt.since, tt.limit)
				if tt.gap {
					if !errors.Is(err, ErrHistoryGap) || len(pubs) != 0 {
						t.Fatalf("got %v, %v, want ErrHistoryGap and no publications", offsets(pubs), err)
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
		pos, _ := b.Publish(ctx, "t:nohist", json.RawMessage(`1`), PublishOptions{})
		if _, _, err := b.History(ctx, "t:nohist", &StreamPosition{pos.Epoch, 0}, 0); !errors.Is(err, ErrHistoryGap) {
			t.Fatalf("got %v, want ErrHistoryGap without history", err)
		}
		if _, _, err := b.History(ctx, "t:nohist", &pos, 0); err != nil {
			t.Fatalf("got %v at the current position, want nil", err)
		}
	})

	t.Run("presence", func(t *testing.T) {
		b, _ := start(t)
		a := ClientInfo{ConnID: "c1", UserID: "u1", NodeID: "n1"}
		if err := b.AddPresence(ctx, "t:p", "c1", a, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := b.AddPresence(ctx, "t:p", "c2", ClientInfo{ConnID: "c2"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := b.AddPresence(ctx, "t:p", "c3", ClientInfo{ConnID: "c3"}, time.Nanosecond); err != nil {
			t.Fatal(err)
		}
		if err := b.RemovePresence(ctx, "t:p", "c2"); err != nil {
			t.Fatal(err)
		}
		var got map[string]ClientInfo
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
		if len(got) != 1 || got["c1"] != a {
			t.Fatalf("got presence %v, want only c1 (c2 removed, c3 expired)", got)
		}
	})

	t.Run("devices and node messages", func(t *testing.T) {
		b, h := start(t)
		if err := b.SetDeviceNode(ctx, "d1", "n1", time.Minute); err != nil {
			t.Fatal(err)
		}
		if node, ok, err := b.DeviceNode(ctx, "d1"); err != nil || !ok || node != "n1" {
			t.Fatalf("got %q %v %v, want n1", node, ok, err)
		}
		if err := b.ClearDeviceNode(ctx, "d1", "n2"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := b.DeviceNode(ctx, "d1"); !ok {
			t.Fatal("ClearDeviceNode for another node removed the lease")
		}
		if err := b.ClearDeviceNode(ctx, "d1", "n1"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := b.DeviceNode(ctx, "d1"); ok {
			t.Fatal("got a lease after ClearDeviceNode")
		}
		if err := b.SendToNode(ctx, "n1", json.RawMessage(`{"x":1}`)); err != nil {
			t.Fatal(err)
		}
		h.wait(t, "the node message", func() bool { return len(h.nodes) == 1 })
		if string(h.nodes[0]) != `{"x":1}` {
			t.Fatalf("got node message %s", h.nodes[0])
		}
	})

	t.Run("idempotency", func(t *testing.T) {
		b, _ := start(t)
		first, _, err := b.IdemClaim(ctx, "p", "k", time.Minute)
		if err != nil || !first {
			t.Fatalf("got first=%v %v, want the first claim", first, err)
		}
		first, rec, err := b.IdemClaim(ctx, "p", "k", time.Minute)
		if err != nil || first || rec.Done {
			t.Fatalf("got first=%v rec=%+v %v, want a pending repeat", first, rec, err)
		}
		if err := b.IdemStore(ctx, "p", "k", json.RawMessage(`"r"`), time.Minute); err != nil {
			t.Fatal(err)
		}
		_, rec, _ = b.IdemClaim(ctx, "p", "k", time.Minute)
		if !rec.Done || string(rec.Result) != `"r"` {
			t.Fatalf("got %+v, want the stored result", rec)
		}
		if first, _, _ := b.IdemClaim(ctx, "other", "k", time.Minute); !first {
			t.Fatal("another principal's key collided")
		}
	})

	t.Run("closed", func(t *testing.T) {
		b, _ := start(t)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := b.Publish(ctx, "t:x", json.RawMessage(`1`), PublishOptions{}); !errors.Is(err, ErrBrokerClosed) {
			t.Fatalf("got %v, want ErrBrokerClosed", err)
		}
	})
}

// TestMemoryBrokerSweepRace subscribes while the sweep forgets idle topics:
// a subscription must never land on a forgotten topic.
func TestMemoryBrokerSweepRace(t *testing.T) {
	b := NewMemoryBroker("n1")
	b.now = func() time.Time { return time.Now().Add(time.Hour) } // every unsubscribed topic is idle
	h := newContractHandler()
	if err := b.Run(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for i := range 200 {
		topic := fmt.Sprint("t:", i)
		done := make(chan struct{})
		go func() { b.sweep(); close(done) }()
		if err := b.Subscribe(ctx, topic); err != nil {
			t.Fatal(err)
		}
		<-done
		if _, err := b.Publish(ctx, topic, json.RawMessage(`1`), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		n := len(h.pubs[topic])
		h.mu.Unlock()
		if n != 1 {
			t.Fatalf("topic %s: got %d deliveries after Subscribe, want 1", topic, n)
		}
	}
}
