package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// TestPublishDoesNotWaitForFanout holds the fan-out of a topic's first
// publication inside the hub's delivery (a hook, not a sleep) and shows that
// further publications to the same topic complete meanwhile, with their
// offsets, and that the subscriber still receives every publication once,
// in offset order, when the fan-out is released.
func TestPublishDoesNotWaitForFanout(t *testing.T) {
	const topic = "public:held"
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startHub(t, hub.Config{}, func(h *hub.Hub) {
		hub.SetDeliverHook(h, func(tp string, pub hub.Publication) {
			if tp == topic && pub.Offset == 1 {
				close(entered)
				<-release
			}
		})
	})
	sub := ts.dial(t, "alice/a1/read")
	rec := newRecorder(sub)
	mustCall(t, sub, "channel.subscribe", map[string]any{"topic": topic}, nil)

	first := make(chan error, 1)
	go func() {
		_, err := ts.hub.Publish(context.Background(), topic, raw(map[string]int{"n": 1}))
		first <- err
	}()
	select {
	case <-entered:
	case <-time.After(20 * time.Second): // turns a hang into a failure
		t.Fatal("the first publication's fan-out never started")
	}

	const more = 5
	published := make(chan error, 1)
	go func() {
		for i := 2; i <= 1+more; i++ {
			pos, err := ts.hub.Publish(context.Background(), topic, raw(map[string]int{"n": i}))
			if err == nil && pos.Offset != uint64(i) {
				err = fmt.Errorf("got offset %d, want %d", pos.Offset, i)
			}
			if err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	select {
	case err := <-published:
		if err != nil {
			t.Fatalf("publish during the held fan-out: %v", err)
		}
	case <-time.After(20 * time.Second): // turns a hang into a failure
		close(release)
		t.Fatal("a publish waited for the fan-out in progress on the same topic")
	}
	select {
	case err := <-first:
		t.Fatalf("the held publication returned (err %v) before its fan-out was released", err)
	default:
	}
	if n := rec.count(topic); n != 0 {
		t.Fatalf("got %d messages while the first fan-out was held, want 0 (offset order)", n)
	}

	close(release)
	if err := <-first; err != nil {
		t.Fatalf("held publish: %v", err)
	}
	rec.waitFor(t, "every publication", func() bool { return len(rec.msgs[topic]) == 1+more })
	for i, f := range rec.msgs[topic] {
		if f.Offset != uint64(i+1) || string(f.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
			t.Fatalf("message %d: got offset %d data %s, want offset %d", i, f.Offset, f.Data, i+1)
		}
	}
}

// TestConcurrentPublishersKeepOffsetOrder publishes from several goroutines
// at once to one topic, so that publications queue behind a fan-out in
// progress, and checks that the subscriber receives every offset once, in
// order.
func TestConcurrentPublishersKeepOffsetOrder(t *testing.T) {
	const (
		topic      = "public:busy"
		publishers = 4
		each       = 300
	)
	ts := startHub(t, hub.Config{}, nil)
	sub := ts.dial(t, "alice/a1/read")
	rec := newRecorder(sub)
	rec.mu.Lock()
	rec.lite = true
	rec.mu.Unlock()
	mustCall(t, sub, "channel.subscribe", map[string]any{"topic": topic}, nil)
	errs := make(chan error, publishers)
	for range publishers {
		go func() {
			for range each {
				if _, err := ts.hub.Publish(context.Background(), topic, raw(1)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range publishers {
		if err := <-errs; err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	rec.waitFor(t, "every publication", func() bool { return len(rec.msgs[topic]) == publishers*each })
	for i, f := range rec.msgs[topic] {
		if f.Offset != uint64(i+1) {
			t.Fatalf("message %d: got offset %d, want %d", i, f.Offset, i+1)
		}
	}
}

// TestPublishQueueIsBounded holds a topic's fan-out and publishes until the
// memory broker's delivery queue is full: the next publish waits for room
// (observed as a waiting publisher, not timed), and once the fan-out is
// released everything is delivered once, in offset order.
func TestPublishQueueIsBounded(t *testing.T) {
	const topic = "public:bounded"
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startHub(t, hub.Config{MaxQueueFrames: 3 * hub.MaxQueuedDeliveries, MaxQueueBytes: 16 << 20}, func(h *hub.Hub) {
		hub.SetDeliverHook(h, func(tp string, pub hub.Publication) {
			if tp == topic && pub.Offset == 1 {
				close(entered)
				<-release
			}
		})
	})
	sub := ts.dial(t, "alice/a1/read")
	rec := newRecorder(sub)
	rec.mu.Lock()
	rec.lite = true
	rec.mu.Unlock()
	mustCall(t, sub, "channel.subscribe", map[string]any{"topic": topic}, nil)
	ctx := context.Background()

	first := make(chan error, 1)
	go func() {
		_, err := ts.hub.Publish(ctx, topic, raw(0))
		first <- err
	}()
	<-entered
	for range hub.MaxQueuedDeliveries {
		if _, err := ts.hub.Publish(ctx, topic, raw(1)); err != nil {
			t.Fatal(err)
		}
	}
	streams := ts.hub.Broker().Streams
	if q, w := hub.QueuedDeliveries(streams, topic); q != hub.MaxQueuedDeliveries || w != 0 {
		t.Fatalf("got %d queued, %d waiting, want %d queued, none waiting", q, w, hub.MaxQueuedDeliveries)
	}
	last := make(chan error, 1)
	go func() {
		_, err := ts.hub.Publish(ctx, topic, raw(2))
		last <- err
	}()
	eventually(t, "the publisher over the bound to wait", func() bool {
		_, w := hub.QueuedDeliveries(streams, topic)
		return w == 1
	})
	if q, _ := hub.QueuedDeliveries(streams, topic); q != hub.MaxQueuedDeliveries {
		t.Fatalf("got %d queued while a publisher waits, want %d (bounded)", q, hub.MaxQueuedDeliveries)
	}
	close(release)
	for _, ch := range []chan error{first, last} {
		if err := <-ch; err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	want := hub.MaxQueuedDeliveries + 2
	rec.waitFor(t, "every publication", func() bool { return len(rec.msgs[topic]) == want })
	for i, f := range rec.msgs[topic] {
		if f.Offset != uint64(i+1) {
			t.Fatalf("message %d: got offset %d, want %d", i, f.Offset, i+1)
		}
	}
}

// TestHandlePublicationsAsOneByOne hands the hub a batch of publications at
// once, as the memory broker does with those queued behind a fan-out: each
// subscriber gets what HandlePublication of each in turn sends it. A
// subscriber behind the whole batch gets it all (the batched path); one
// whose join position falls inside the batch gets only what follows it; a
// batch whose stream is reset partway drops every subscriber with "reset"
// after the publications of its epoch.
func TestHandlePublicationsAsOneByOne(t *testing.T) {
	const topic = "public:batch"
	ctx := context.Background()
	ts := startHub(t, hub.Config{}, nil)
	early := ts.dial(t, "alice/a1/read")
	earlyRec := newRecorder(early)
	mustCall(t, early, "channel.subscribe", map[string]any{"topic": topic}, nil)
	for i := 1; i <= 2; i++ {
		if _, err := ts.hub.Publish(ctx, topic, raw(i)); err != nil {
			t.Fatal(err)
		}
	}
	earlyRec.waitFor(t, "the first two publications", func() bool { return len(earlyRec.msgs[topic]) == 2 })
	late := ts.dial(t, "bob/b1/read") // joins at offset 2
	lateRec := newRecorder(late)
	mustCall(t, late, "channel.subscribe", map[string]any{"topic": topic}, nil)
	pos, err := ts.hub.Position(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	pub := func(epoch string, offset uint64) hub.Publication {
		return hub.Publication{Epoch: epoch, Offset: offset, Data: raw(offset)}
	}

	ts.hub.HandlePublications(topic, []hub.Publication{pub(pos.Epoch, 2), pub(pos.Epoch, 3), pub(pos.Epoch, 4)})
	offsetsOf := func(r *recorder) []uint64 {
		var got []uint64
		for _, f := range r.msgs[topic] {
			if f.Epoch != pos.Epoch || string(f.Data) != fmt.Sprint(f.Offset) {
				t.Fatalf("got a message of epoch %q with data %s at offset %d, want epoch %q and the offset as data", f.Epoch, f.Data, f.Offset, pos.Epoch)
			}
			got = append(got, f.Offset)
		}
		return got
	}
	earlyRec.waitFor(t, "the batch", func() bool { return len(earlyRec.msgs[topic]) == 5 })
	lateRec.waitFor(t, "the batch past the join position", func() bool { return len(lateRec.msgs[topic]) == 2 })
	earlyRec.mu.Lock()
	if got, want := fmt.Sprint(offsetsOf(earlyRec)), fmt.Sprint([]uint64{1, 2, 2, 3, 4}); got != want {
		t.Errorf("early subscriber: got offsets %s, want %s (the batch whole after its join at 0)", got, want)
	}
	earlyRec.mu.Unlock()
	lateRec.mu.Lock()
	if got, want := fmt.Sprint(offsetsOf(lateRec)), fmt.Sprint([]uint64{3, 4}); got != want {
		t.Errorf("late subscriber: got offsets %s, want %s (past its join at 2)", got, want)
	}
	lateRec.mu.Unlock()

	ts.hub.HandlePublications(topic, []hub.Publication{pub(pos.Epoch, 5), pub("reset", 1)})
	for _, r := range []*recorder{earlyRec, lateRec} {
		r.waitFor(t, "channel.unsubscribed", func() bool { return len(r.other) > 0 })
		r.mu.Lock()
		var u protocol.Unsubscribed
		if f := r.other[0]; json.Unmarshal(f.Data, &u) != nil || f.Event != hub.EventChannelUnsubscribed || u.Reason != "reset" {
			t.Errorf("got %s %s, want channel.unsubscribed with reason reset", f.Event, f.Data)
		}
		if msgs := r.msgs[topic]; msgs[len(msgs)-1].Offset != 5 {
			t.Errorf("got offset %d last, want 5 (the reset batch's publication of the old epoch)", msgs[len(msgs)-1].Offset)
		}
		r.mu.Unlock()
	}
}
