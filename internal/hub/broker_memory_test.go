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

// batchRecorder is a PublicationBatchHandler that holds the delivery of
// offset 1 until release is closed, and records each call's offsets.
type batchRecorder struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	calls   [][]uint64 // guarded by mu: the offsets of each call, in order
}

func (h *batchRecorder) HandlePublication(topic string, pub Publication) {
	if pub.Offset == 1 {
		close(h.entered)
		<-h.release
	}
	h.HandlePublications(topic, []Publication{pub})
}

func (h *batchRecorder) HandlePublications(_ string, pubs []Publication) {
	offsets := make([]uint64, len(pubs))
	for i, p := range pubs {
		offsets[i] = p.Offset
	}
	h.mu.Lock()
	h.calls = append(h.calls, offsets)
	h.mu.Unlock()
}

// TestMemoryBrokerHandsQueueOverInBatches: the publications queued while a
// topic's fan-out is held reach a PublicationBatchHandler together, in
// offset order, at most maxHandedOver per call.
func TestMemoryBrokerHandsQueueOverInBatches(t *testing.T) {
	ctx := context.Background()
	b := NewMemoryBroker("n1")
	h := &batchRecorder{entered: make(chan struct{}), release: make(chan struct{})}
	if err := b.Deliver(ctx, h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Subscribe(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		_, err := b.Publish(ctx, "t", json.RawMessage(`1`), PublishOptions{})
		first <- err
	}()
	<-h.entered
	const queued = maxHandedOver + 36
	for range queued {
		if _, err := b.Publish(ctx, "t", json.RawMessage(`1`), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	close(h.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	var calls [][]uint64
	deadline := time.Now().Add(20 * time.Second) // turns a hang into a failure
	for {
		h.mu.Lock()
		calls = append(calls[:0], h.calls...)
		h.mu.Unlock()
		n := 0
		for _, c := range calls {
			n += len(c)
		}
		if n == 1+queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d publications delivered", n, 1+queued)
		}
		time.Sleep(time.Millisecond)
	}
	want := [][]uint64{{1}, offsets(2, 1+maxHandedOver), offsets(2+maxHandedOver, 1+queued)}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("got deliveries in calls of offsets %v, want %v", calls, want)
	}
}

// offsets returns from, from+1, ..., to.
func offsets(from, to uint64) []uint64 {
	var s []uint64
	for o := from; o <= to; o++ {
		s = append(s, o)
	}
	return s
}
