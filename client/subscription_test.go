package client_test

// The SDK's unsubscribe handling, against the real hub of TestMain
// (example_server_test.go).

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

// wire counts the channel.message frames a client receives per topic,
// whatever its subscriptions do with them: what the server sent.
type wire struct {
	mu   sync.Mutex
	n    map[string]int
	cond *sync.Cond
}

func newWire(c *client.Client) *wire {
	w := &wire{n: map[string]int{}}
	w.cond = sync.NewCond(&w.mu)
	c.OnEvent(protocol.EventChannelMessage, func(f *protocol.Frame) {
		w.mu.Lock()
		w.n[f.Topic]++
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	return w
}

func (w *wire) count(topic string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n[topic]
}

// waitCount waits until topic's count reaches n (the deadline only turns a
// hang into a failure).
func (w *wire) waitCount(t *testing.T, topic string, n int) {
	t.Helper()
	timer := time.AfterFunc(20*time.Second, func() {
		w.mu.Lock()
		w.n["\x00timeout"] = 1
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.n[topic] < n {
		if w.n["\x00timeout"] != 0 {
			t.Fatalf("timed out waiting for %d messages of %s (have %d)", n, topic, w.n[topic])
		}
		w.cond.Wait()
	}
}

func connectExample(t *testing.T) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.New(client.Options{URL: serverURL, Token: exampleToken})
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c
}

// TestSubscriptionUnsubscribe: after Unsubscribe returns, the server sends
// the topic's publications no more and the handler is not called again;
// the topic can be subscribed again, which delivers again.
func TestSubscriptionUnsubscribe(t *testing.T) {
	const topic, marker = "public:sdk-unsub", "public:sdk-unsub-marker"
	ctx := context.Background()
	c := connectExample(t)
	defer c.Close()
	w := newWire(c)
	var mu sync.Mutex
	var got []uint64
	s, err := c.Subscribe(ctx, topic, func(p client.Publication) {
		mu.Lock()
		got = append(got, p.Offset)
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if _, err := c.Subscribe(ctx, marker, func(client.Publication) {}); err != nil {
		t.Fatalf("Subscribe marker: %v", err)
	}
	if _, err := c.Subscribe(ctx, topic, func(client.Publication) {}); err == nil {
		t.Fatalf("a second Subscribe of the same topic succeeded")
	}
	if _, _, err := c.Publish(ctx, topic, 1); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	w.waitCount(t, topic, 1)
	if err := s.Unsubscribe(ctx); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	// A publication of the topic, then one of the marker: once the marker
	// arrived, a frame of the topic would have too.
	if _, _, err := c.Publish(ctx, topic, 2); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if _, _, err := c.Publish(ctx, marker, 1); err != nil {
		t.Fatalf("Publish marker: %v", err)
	}
	w.waitCount(t, marker, 1)
	if n := w.count(topic); n != 1 {
		t.Fatalf("the server sent %d messages of %s, want 1 (none after Unsubscribe)", n, topic)
	}
	mu.Lock()
	if len(got) != 1 {
		t.Fatalf("handler got offsets %v, want one", got)
	}
	mu.Unlock()

	again := make(chan uint64, 4)
	if _, err := c.Subscribe(ctx, topic, func(p client.Publication) { again <- p.Offset }); err != nil {
		t.Fatalf("Subscribe after Unsubscribe: %v", err)
	}
	_, off, err := c.Publish(ctx, topic, 3)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case o := <-again:
		if o != off {
			t.Fatalf("the new subscription got offset %d, want %d", o, off)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the new subscription got nothing")
	}
}

// TestSubscriptionHandlerCallsItsSubscription: a handler may call its own
// subscription's Position and Unsubscribe (it once deadlocked: the
// subscription's lock was held while the handler ran, and is not
// reentrant). Position reports the publication being delivered; after the
// handler's Unsubscribe nothing more is delivered.
func TestSubscriptionHandlerCallsItsSubscription(t *testing.T) {
	const topic, marker = "public:sdk-self", "public:sdk-self-marker"
	ctx := context.Background()
	c := connectExample(t)
	w := newWire(c)
	type result struct {
		offset, position uint64
		err              error
	}
	results := make(chan result, 4)
	var s *client.Subscription
	ready := make(chan struct{})
	var err error
	s, err = c.Subscribe(ctx, topic, func(p client.Publication) {
		<-ready
		_, pos := s.Position()
		uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		results <- result{p.Offset, pos, s.Unsubscribe(uctx)}
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	close(ready)
	if _, err := c.Subscribe(ctx, marker, func(client.Publication) {}); err != nil {
		t.Fatalf("Subscribe marker: %v", err)
	}
	_, off, err := c.Publish(ctx, topic, json.RawMessage(`1`))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case r := <-results:
		if r.err != nil || r.offset != off || r.position != off {
			t.Fatalf("handler: offset %d, Position %d, Unsubscribe %v; want %d, %d, nil", r.offset, r.position, r.err, off, off)
		}
	case <-time.After(20 * time.Second):
		// The dispatcher is stuck: do not Close (it waits for it).
		t.Fatalf("the handler's calls to its own subscription did not return: deadlock")
	}
	if _, _, err := c.Publish(ctx, topic, 2); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if _, _, err := c.Publish(ctx, marker, 1); err != nil {
		t.Fatalf("Publish marker: %v", err)
	}
	w.waitCount(t, marker, 1)
	if n := w.count(topic); n != 1 {
		t.Fatalf("the server sent %d messages of %s, want 1 (none after the handler's Unsubscribe)", n, topic)
	}
	select {
	case r := <-results:
		t.Fatalf("the handler ran again after unsubscribing: %+v", r)
	default:
	}
	_ = c.Close()
}
