package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// countHandler counts the publications delivered per topic.
type countHandler struct {
	mu   sync.Mutex
	pubs map[string]int
}

func (h *countHandler) HandlePublication(topic string, _ Publication) {
	h.mu.Lock()
	h.pubs[topic]++
	h.mu.Unlock()
}

// TestMemoryBrokerSweepRace subscribes while the sweep forgets idle topics:
// a subscription must never land on a forgotten topic.
func TestMemoryBrokerSweepRace(t *testing.T) {
	b := NewMemoryBroker("n1")
	b.now = func() time.Time { return time.Now().Add(time.Hour) } // every unsubscribed topic is idle
	h := &countHandler{pubs: map[string]int{}}
	if err := b.Deliver(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
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
		n := h.pubs[topic]
		h.mu.Unlock()
		if n != 1 {
			t.Fatalf("topic %s: got %d deliveries after Subscribe, want 1", topic, n)
		}
	}
}
