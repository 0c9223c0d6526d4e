package hub

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// detachHub is a started hub on the memory broker, for driving attach and
// detach directly.
func detachHub(t testing.TB) *Hub {
	t.Helper()
	h, err := New(Config{}, Deps{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// attachN attaches n subscribers to topic.
func attachN(t testing.TB, h *Hub, topic string, n int) []*subscriber {
	t.Helper()
	subs := make([]*subscriber, n)
	for i := range subs {
		subs[i] = &subscriber{topic: topic}
		if err := h.attach(context.Background(), subs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return subs
}

// brokerSubscribed reports whether the memory broker has the node
// subscribed to topic.
func brokerSubscribed(h *Hub, topic string) bool {
	b := h.ch.streams.(*MemoryBroker)
	sh := b.shard(topic)
	sh.mu.Lock()
	mt := sh.topics[topic]
	sh.mu.Unlock()
	if mt == nil {
		return false
	}
	mt.mu.Lock()
	defer mt.mu.Unlock()
	return mt.subscribed
}

// TestDetachConcurrent: many subscribers of one topic detached at once, from
// many goroutines (as when their connections close together), all leave
// the list exactly once, the others stay in their order, the gauge agrees,
// and the node leaves the broker only when the last one is gone.
func TestDetachConcurrent(t *testing.T) {
	h := detachHub(t)
	const topic, n = "public:detach", 2000
	subs := attachN(t, h, topic, n)
	gauge := func() int {
		var m dto.Metric
		if err := h.ch.metrics.subscriptions.Write(&m); err != nil {
			t.Fatal(err)
		}
		return int(m.GetGauge().GetValue())
	}
	if got := gauge(); got != n {
		t.Fatalf("gauge %d after attach, want %d", got, n)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 50 { // every third subscriber, from 50 goroutines
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * 3; i < n; i += 50 * 3 {
				h.detach(ctx, subs[i])
				h.detach(ctx, subs[i]) // idempotent
			}
		}()
	}
	wg.Wait()
	lt := h.ch.lookup(topic)
	if lt == nil {
		t.Fatal("topic forgotten while subscribers remain")
	}
	left := *lt.subs.Load()
	var want []*subscriber
	for i, s := range subs {
		if i%3 != 0 {
			want = append(want, s)
		} else if !s.has(subUnlisted) {
			t.Fatalf("detached subscriber %d not marked unlisted", i)
		}
	}
	if len(left) != len(want) {
		t.Fatalf("%d subscribers left, want %d", len(left), len(want))
	}
	for i := range want {
		if left[i] != want[i] {
			t.Fatalf("subscriber %d out of place after detach", i)
		}
	}
	if got := gauge(); got != len(want) {
		t.Fatalf("gauge %d, want %d", got, len(want))
	}
	if !brokerSubscribed(h, topic) {
		t.Fatal("node left the broker with subscribers left")
	}

	for w := range 50 { // the rest
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(want); i += 50 {
				h.detach(ctx, want[i])
			}
		}()
	}
	wg.Wait()
	if h.ch.lookup(topic) != nil || h.Subscribers(topic) != 0 {
		t.Fatal("topic kept after its last subscriber detached")
	}
	if gauge() != 0 {
		t.Fatalf("gauge %d after every detach", gauge())
	}
	if brokerSubscribed(h, topic) {
		t.Fatal("node still subscribed in the broker")
	}
	// A new subscriber after that gets a fresh topic and the broker again.
	s := attachN(t, h, topic, 1)[0]
	if h.Subscribers(topic) != 1 || !brokerSubscribed(h, topic) {
		t.Fatal("re-attach after the topic emptied")
	}
	h.detach(ctx, s)
	if h.Subscribers(topic) != 0 {
		t.Fatal("re-attached subscriber not detached")
	}
}

// TestDetachBeforeAttach: a subscriber detached before it attached is never
// listed (attach refuses it) and detaching it leaves the others alone.
func TestDetachBeforeAttach(t *testing.T) {
	h := detachHub(t)
	const topic = "public:early"
	others := attachN(t, h, topic, 3)
	s := &subscriber{topic: topic}
	h.detach(context.Background(), s)
	if err := h.attach(context.Background(), s); err == nil {
		t.Fatal("attach of a detached subscriber succeeded")
	}
	if got := h.Subscribers(topic); got != len(others) {
		t.Fatalf("%d subscribers, want %d", got, len(others))
	}
}

// BenchmarkDetachAll detaches every subscriber of one topic at once, each
// from a hub worker (what connClosed does when n connections close
// together), and reports the time per detach.
func BenchmarkDetachAll(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := detachHub(b)
			for i := range b.N {
				topic := fmt.Sprintf("public:bench%d", i)
				b.StopTimer()
				subs := attachN(b, h, topic, n)
				b.StartTimer()
				var wg sync.WaitGroup
				for _, s := range subs {
					wg.Add(1)
					h.Go(func(ctx context.Context) { defer wg.Done(); h.detach(ctx, s) })
				}
				wg.Wait()
				if h.Subscribers(topic) != 0 {
					b.Fatal("subscribers left")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/detach")
		})
	}
}

// TestLiveNotSetOnceGone: a subscriber removed or kicked is never made live
// again, whatever the order of the flags' writers.
func TestLiveNotSetOnceGone(t *testing.T) {
	for _, f := range []uint32{subRemoved, subKicked} {
		s := &subscriber{}
		s.set(f)
		if s.setLiveUnlessGone() || s.live() {
			t.Fatalf("flag %b: made live", f)
		}
	}
	s := &subscriber{}
	s.set(subInPresence)
	if !s.setLiveUnlessGone() || !s.live() || !s.has(subInPresence) {
		t.Fatal("a joining subscriber was not made live, or lost a flag")
	}
}
