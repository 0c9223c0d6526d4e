package cluster_test

// Gap cases against real redis-server processes: Redis restarted with its
// data (AOF) and without, pub/sub connections killed, the receive queue
// overflowing, an offset gone backwards. Each checks what the handler
// received: every publication exactly once, in order, or an explicit reset
// (never a silent gap).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// recorder records deliveries; gate, when set, blocks the first delivery
// until closed.
type recorder struct {
	mu   sync.Mutex
	pubs map[string][]hub.Publication
	gate chan struct{}
	held chan struct{} // closed when the first delivery is blocked on gate
	once sync.Once
}

func newRecorder() *recorder { return &recorder{pubs: map[string][]hub.Publication{}} }

func (r *recorder) HandlePublication(topic string, p hub.Publication) {
	if r.gate != nil {
		r.once.Do(func() {
			close(r.held)
			<-r.gate
		})
	}
	r.mu.Lock()
	r.pubs[topic] = append(r.pubs[topic], p)
	r.mu.Unlock()
}

func (r *recorder) HandleNodeMessage(json.RawMessage) {}

func (r *recorder) get(topic string) []hub.Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hub.Publication(nil), r.pubs[topic]...)
}

// last returns the last delivery of topic, if any.
func (r *recorder) last(topic string) (hub.Publication, bool) {
	ps := r.get(topic)
	if len(ps) == 0 {
		return hub.Publication{}, false
	}
	return ps[len(ps)-1], true
}

// checkSequence fails unless ps are exactly offsets 1..n of one epoch with
// data i.
func checkSequence(t *testing.T, ps []hub.Publication, epoch string, n int) {
	t.Helper()
	if len(ps) != n {
		t.Fatalf("got %d publications, want %d: %v", len(ps), n, offsets(ps))
	}
	for i, p := range ps {
		if p.Epoch != epoch || p.Offset != uint64(i+1) || string(p.Data) != fmt.Sprint(i+1) {
			t.Fatalf("publication %d: got %s/%d %s, want %s/%d %d", i, p.Epoch, p.Offset, p.Data, epoch, i+1, i+1)
		}
	}
}

func offsets(ps []hub.Publication) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s/%d", p.Epoch, p.Offset))
	}
	return out
}

var hist = hub.PublishOptions{HistorySize: 1000, HistoryTTL: 0}

// pair returns two brokers of two nodes sharing urls and a prefix: a, which
// subscribes (delivering to r), and b, which publishes.
func pair(t *testing.T, urls []string, r *recorder, mod func(*cluster.Config)) (a, b *cluster.Broker) {
	t.Helper()
	prefix := fmt.Sprintf("p%d:", prefixSeq.Add(1))
	a = newBroker(t, urls, func(c *cluster.Config) {
		c.Prefix, c.NodeID = prefix, "a"
		if mod != nil {
			mod(c)
		}
	})
	if err := a.Deliver(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	b = newBroker(t, urls, func(c *cluster.Config) { c.Prefix, c.NodeID = prefix, "b" })
	return a, b
}

func publish(t *testing.T, b *cluster.Broker, topic string, from, to int, opts hub.PublishOptions) hub.StreamPosition {
	t.Helper()
	var pos hub.StreamPosition
	for i := from; i <= to; i++ {
		var err error
		if pos, err = b.Publish(context.Background(), topic, json.RawMessage(fmt.Sprint(i)), opts); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	return pos
}

// TestRedisRestartWithAOF: Redis killed and restarted with its append-only
// file. Positions continue in the same epoch, history recovers an old
// position, and the subscribed node receives every publication, those made
// while its pub/sub connection was reconnecting included.
func TestRedisRestartWithAOF(t *testing.T) {
	ctx := context.Background()
	urls, srvs := servers(t, 1, redistest.Options{AOF: true})
	r := newRecorder()
	a, b := pair(t, urls, r, nil)
	if err := a.Subscribe(ctx, "t:aof"); err != nil {
		t.Fatal(err)
	}
	before := publish(t, b, "t:aof", 1, 5, hist)
	waitFor(t, "5 publications", func() bool { return len(r.get("t:aof")) == 5 })

	if err := srvs[0].Restart(ctx, true); err != nil {
		t.Fatal(err)
	}
	// The publisher's pool notices the dead connections on first use:
	// retry until Redis takes the publication (it is not applied twice:
	// a failed call never reached the script).
	var first hub.StreamPosition
	waitFor(t, "a publication after the restart", func() bool {
		var err error
		first, err = b.Publish(ctx, "t:aof", json.RawMessage(`6`), hist)
		return err == nil
	})
	if first.Epoch != before.Epoch || first.Offset != 6 {
		t.Fatalf("got position %+v after the restart, want %s/6 (data kept)", first, before.Epoch)
	}
	publish(t, b, "t:aof", 7, 20, hist)
	waitFor(t, "20 publications", func() bool { return len(r.get("t:aof")) == 20 })
	checkSequence(t, r.get("t:aof"), before.Epoch, 20)

	pubs, pos, err := a.History(ctx, "t:aof", &hub.StreamPosition{Epoch: before.Epoch, Offset: 3}, 0)
	if err != nil || len(pubs) != 17 || pubs[0].Offset != 4 || pos.Offset != 20 {
		t.Fatalf("history since 3: got %d publications, %+v, %v; want 4..20 (recovered)", len(pubs), pos, err)
	}
	waitFor(t, "a reported pub/sub reconnect", func() bool { return a.Stats().ReceiveErrors > 0 })
	t.Logf("stats: %+v", a.Stats())
}

// TestRedisRestartWithoutPersistence: Redis restarted empty. The topic's
// next publication starts a new epoch at offset 1, the subscribed node
// receives it (its hub resets subscribers of the old epoch), and history
// from an old position is a gap: recovered false, never a silent gap.
func TestRedisRestartWithoutPersistence(t *testing.T) {
	ctx := context.Background()
	urls, srvs := servers(t, 1, redistest.Options{})
	r := newRecorder()
	a, b := pair(t, urls, r, nil)
	if err := a.Subscribe(ctx, "t:lost"); err != nil {
		t.Fatal(err)
	}
	before := publish(t, b, "t:lost", 1, 5, hist)
	waitFor(t, "5 publications", func() bool { return len(r.get("t:lost")) == 5 })

	if err := srvs[0].Restart(ctx, true); err != nil { // nothing persisted: starts empty
		t.Fatal(err)
	}
	var after hub.StreamPosition
	waitFor(t, "a publication after the restart", func() bool {
		var err error
		after, err = b.Publish(ctx, "t:lost", json.RawMessage(`1`), hist)
		return err == nil
	})
	if after.Epoch == before.Epoch || after.Offset != 1 {
		t.Fatalf("got position %+v after losing the data, want a new epoch at offset 1 (was %+v)", after, before)
	}
	publish(t, b, "t:lost", 2, 3, hist)
	waitFor(t, "the new epoch's publications", func() bool {
		p, ok := r.last("t:lost")
		return ok && p.Epoch == after.Epoch && p.Offset == 3
	})
	got := r.get("t:lost")
	checkSequence(t, got[:5], before.Epoch, 5)
	checkSequence(t, got[5:], after.Epoch, 3)
	// The hub resets the topic's subscribers on the new epoch: counted,
	// like any reset, so that the loss shows in the metrics.
	if st := a.Stats(); st.Resets != 1 {
		t.Fatalf("resets counted by the subscribing node after Redis lost the topic: %d, want 1", st.Resets)
	}

	if _, pos, err := a.History(ctx, "t:lost", &before, 0); !errors.Is(err, hub.ErrHistoryGap) || pos.Epoch != after.Epoch {
		t.Fatalf("history since the lost position: got %+v, %v, want hub.ErrHistoryGap in the new epoch", pos, err)
	}
}

// TestPubSubConnectionKilled: Redis closes every pub/sub connection
// (CLIENT KILL TYPE pubsub) while publications continue. go-redis
// reconnects silently; the broker notices, checks the topics' positions
// after resubscribing, and fills what the connection missed.
func TestPubSubConnectionKilled(t *testing.T) {
	ctx := context.Background()
	urls, srvs := servers(t, 1, redistest.Options{})
	r := newRecorder()
	a, b := pair(t, urls, r, func(c *cluster.Config) { c.PubSubConns = 2 })
	topics := []string{"t:k1", "t:k2", "t:k3", "t:k4"}
	for _, tp := range topics {
		if err := a.Subscribe(ctx, tp); err != nil {
			t.Fatal(err)
		}
	}
	var epochs []string
	for _, tp := range topics {
		epochs = append(epochs, publish(t, b, tp, 1, 10, hist).Epoch)
	}
	for round := range 3 {
		if _, err := srvs[0].Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
			t.Fatal(err)
		}
		for _, tp := range topics {
			publish(t, b, tp, 11+round*20, 30+round*20, hist)
		}
	}
	for i, tp := range topics {
		waitFor(t, tp+": 70 publications", func() bool {
			p, ok := r.last(tp)
			return ok && p.Offset == 70
		})
		checkSequence(t, r.get(tp), epochs[i], 70)
	}
	st := a.Stats()
	t.Logf("stats: %+v", st)
	if st.ReceiveErrors == 0 || st.Resubscribed == 0 {
		t.Fatalf("got stats %+v, want pub/sub receive errors and resubscriptions", st)
	}
}

// TestQueueOverflowIsFilled: a handler that stalls fills the bounded queue;
// the messages dropped are counted and filled from the stream, in order.
func TestQueueOverflowIsFilled(t *testing.T) {
	ctx := context.Background()
	urls, _ := servers(t, 1, redistest.Options{})
	r := newRecorder()
	r.gate, r.held = make(chan struct{}), make(chan struct{})
	a, b := pair(t, urls, r, func(c *cluster.Config) { c.QueueSize = 2; c.PubSubConns = 1 })
	if err := a.Subscribe(ctx, "t:o"); err != nil {
		t.Fatal(err)
	}
	pos := publish(t, b, "t:o", 1, 1, hist)
	<-r.held // the dispatcher is stuck in the first delivery
	publish(t, b, "t:o", 2, 100, hist)
	waitFor(t, "dropped messages", func() bool { return a.Stats().Dropped > 0 })
	close(r.gate)
	waitFor(t, "100 publications", func() bool {
		p, ok := r.last("t:o")
		return ok && p.Offset == 100
	})
	checkSequence(t, r.get("t:o"), pos.Epoch, 100)
	t.Logf("stats: %+v", a.Stats())
	if st := a.Stats(); st.Filled == 0 || st.Resets != 0 {
		t.Fatalf("got stats %+v, want fills and no reset", st)
	}
}

// TestOverflowWithoutHistoryResets: the same overflow on a topic without
// history cannot be filled: the handler receives a reset marker (empty
// epoch) before the next publication, never a silent gap.
func TestOverflowWithoutHistoryResets(t *testing.T) {
	ctx := context.Background()
	urls, _ := servers(t, 1, redistest.Options{})
	r := newRecorder()
	r.gate, r.held = make(chan struct{}), make(chan struct{})
	a, b := pair(t, urls, r, func(c *cluster.Config) { c.QueueSize = 2; c.PubSubConns = 1 })
	if err := a.Subscribe(ctx, "t:nh"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "t:nh", 1, 1, hub.PublishOptions{})
	<-r.held
	publish(t, b, "t:nh", 2, 100, hub.PublishOptions{})
	waitFor(t, "dropped messages", func() bool { return a.Stats().Dropped > 0 })
	close(r.gate)
	waitFor(t, "offset 100", func() bool {
		p, ok := r.last("t:nh")
		return ok && p.Offset == 100
	})
	// Every offset is either delivered, or covered by a reset marker that
	// precedes the next delivery.
	next := uint64(1)
	resets := 0
	for _, p := range r.get("t:nh") {
		switch {
		case p.Epoch == "":
			if p.Offset < next || p.Data != nil {
				t.Fatalf("reset marker %+v at expected offset %d", p, next)
			}
			next = p.Offset + 1
			resets++
		case p.Offset != next:
			t.Fatalf("got offset %d, want %d: a silent gap (%v)", p.Offset, next, offsets(r.get("t:nh")))
		default:
			next++
		}
	}
	t.Logf("stats: %+v, %d resets", a.Stats(), resets)
	if resets == 0 || a.Stats().Resets == 0 {
		t.Fatalf("got no reset marker: %v", offsets(r.get("t:nh")))
	}
}

// TestOffsetBackwardsStartsNewEpoch: a topic's offset restored behind its
// stream (the meta older than the stream) starts a new epoch rather than
// reuse offsets.
func TestOffsetBackwardsStartsNewEpoch(t *testing.T) {
	ctx := context.Background()
	urls, srvs := servers(t, 1, redistest.Options{})
	r := newRecorder()
	a, b := pair(t, urls, r, nil)
	before := publish(t, b, "t:back", 1, 5, hist)
	prefix := strings.TrimSuffix(a.Channel("t:back"), "{t:back}:pub")
	if _, err := srvs[0].Do("HSET", prefix+"{t:back}:meta", "o", "2"); err != nil {
		t.Fatal(err)
	}
	after := publish(t, b, "t:back", 1, 1, hist)
	if after.Epoch == before.Epoch || after.Offset != 1 {
		t.Fatalf("got %+v, want a new epoch at offset 1 (was %+v)", after, before)
	}
	if _, _, err := a.History(ctx, "t:back", &hub.StreamPosition{Epoch: before.Epoch, Offset: 2}, 0); !errors.Is(err, hub.ErrHistoryGap) {
		t.Fatalf("history in the old epoch: got %v, want hub.ErrHistoryGap", err)
	}
}

// TestOffsetRollbackStartsNewEpoch: Redis comes back with a topic's offset
// behind what a node delivered (as from an older snapshot). The node's
// position check after its pub/sub reconnect notices, starts a new epoch
// and resets its subscribers; later publications follow in the new epoch.
func TestOffsetRollbackStartsNewEpoch(t *testing.T) {
	ctx := context.Background()
	urls, srvs := servers(t, 1, redistest.Options{})
	r := newRecorder()
	a, b := pair(t, urls, r, nil)
	if err := a.Subscribe(ctx, "t:rb"); err != nil {
		t.Fatal(err)
	}
	before := publish(t, b, "t:rb", 1, 10, hist)
	waitFor(t, "10 publications", func() bool { return len(r.get("t:rb")) == 10 })
	prefix := strings.TrimSuffix(a.Channel("t:rb"), "{t:rb}:pub")
	// The state of an older snapshot: offset 5, entries up to 5.
	for _, cmd := range [][]string{
		{"HSET", prefix + "{t:rb}:meta", "o", "5"},
		{"XDEL", prefix + "{t:rb}:stream", "6-0", "7-0", "8-0", "9-0", "10-0"},
		{"CLIENT", "KILL", "TYPE", "pubsub"},
	} {
		if _, err := srvs[0].Do(cmd...); err != nil {
			t.Fatal(cmd, err)
		}
	}
	waitFor(t, "a new epoch", func() bool {
		pos, err := a.Position(ctx, "t:rb")
		return err == nil && pos.Epoch != before.Epoch
	})
	after := publish(t, b, "t:rb", 1, 3, hist)
	if after.Offset != 3 || after.Epoch == before.Epoch {
		t.Fatalf("got %+v, want offset 3 in a new epoch", after)
	}
	waitFor(t, "the new epoch's publications", func() bool {
		p, ok := r.last("t:rb")
		return ok && p.Epoch == after.Epoch && p.Offset == 3
	})
	got := r.get("t:rb")
	checkSequence(t, got[:10], before.Epoch, 10)
	if got[10].Epoch != "" {
		t.Fatalf("got %+v after the rollback, want a reset marker first", got[10])
	}
	checkSequence(t, got[11:], after.Epoch, 3)
}

// TestRedisDownIsUnavailable: with its Redis gone, the broker's calls fail
// with a retryable "unavailable" for clients, the cause for logs; they work
// again once Redis is back.
func TestRedisDownIsUnavailable(t *testing.T) {
	ctx := context.Background()
	urls, srvs := servers(t, 1, redistest.Options{AOF: true})
	b := newBroker(t, urls, nil)
	pos := publish(t, b, "t:down", 1, 1, hist)
	srvs[0].Kill()
	_, err := b.Publish(ctx, "t:down", json.RawMessage(`2`), hist)
	if pe := protocol.AsError(err); err == nil || pe.Code != protocol.CodeUnavailable || !pe.Retryable {
		t.Fatalf("publish with Redis down: got %v (%+v), want a retryable unavailable", err, pe)
	}
	if err := b.Ping(ctx); err == nil {
		t.Fatal("Ping with Redis down: got nil")
	}
	if err := srvs[0].Restart(ctx, true); err != nil {
		t.Fatal(err)
	}
	var again hub.StreamPosition
	waitFor(t, "a publication once Redis is back", func() bool {
		again, err = b.Publish(ctx, "t:down", json.RawMessage(`2`), hist)
		return err == nil
	})
	if again.Epoch != pos.Epoch || again.Offset != 2 {
		t.Fatalf("got %+v, want %s/2", again, pos.Epoch)
	}
}

// TestMetrics: the counters are exported from zero and follow Stats.
func TestMetrics(t *testing.T) {
	urls, _ := servers(t, 1, redistest.Options{})
	b := newBroker(t, urls, nil)
	reg := prometheus.NewRegistry()
	if err := b.Register(reg); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "t:m", 1, 3, hist)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"junction_broker_publications_total/published": 3, "junction_broker_publications_total/delivered": 0,
		"junction_broker_publications_total/filled": 0, "junction_broker_resets_total": 0, "junction_broker_dropped_total": 0,
		"junction_broker_resubscribed_total": 0, "junction_broker_position_checks_total": 0, "junction_broker_pubsub_errors_total": 0,
		"junction_broker_node_messages_total": 0, "junction_broker_node_batches_total": 0,
		"junction_broker_publish_batches_total": 0,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got metrics %v, want %v", got, want)
	}
}

// TestFanOutAcrossShardsAndNodes: three nodes on two shards, twenty
// topics, two nodes publishing concurrently: every subscribed node
// receives every topic's publications exactly once, in offset order, and
// the offsets are contiguous whichever node published.
func TestFanOutAcrossShardsAndNodes(t *testing.T) {
	ctx := context.Background()
	urls, srvs := servers(t, 2, redistest.Options{})
	prefix := fmt.Sprintf("f%d:", prefixSeq.Add(1))
	var nodes []*cluster.Broker
	var recs []*recorder
	for i := range 3 {
		r := newRecorder()
		n := newBroker(t, urls, func(c *cluster.Config) { c.Prefix, c.NodeID = prefix, fmt.Sprint("n", i) })
		if err := n.Deliver(ctx, r); err != nil {
			t.Fatal(err)
		}
		nodes, recs = append(nodes, n), append(recs, r)
	}
	var topics []string
	for i := range 20 {
		topics = append(topics, fmt.Sprintf("t:fan%d", i))
	}
	for _, n := range nodes[1:] { // node 0 only publishes
		for _, tp := range topics {
			if err := n.Subscribe(ctx, tp); err != nil {
				t.Fatal(err)
			}
		}
	}
	const per = 25 // per topic per publishing node
	var wg sync.WaitGroup
	for _, n := range nodes[:2] {
		wg.Go(func() {
			for i := range per {
				for _, tp := range topics {
					if _, err := n.Publish(ctx, tp, json.RawMessage(fmt.Sprint(i)), hist); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for i, srv := range srvs { // the topics spread over both shards
		if n, err := srv.Do("DBSIZE"); err != nil || n == ":0" {
			t.Fatalf("shard %d: DBSIZE %s, %v: no topic there", i, n, err)
		}
	}
	for i, r := range recs {
		for _, tp := range topics {
			if i == 0 {
				if n := len(r.get(tp)); n != 0 {
					t.Fatalf("node 0 got %d publications of %s without subscribing", n, tp)
				}
				continue
			}
			waitFor(t, fmt.Sprintf("node %d: %s", i, tp), func() bool { return len(r.get(tp)) >= 2*per })
			ps := r.get(tp)
			if len(ps) != 2*per {
				t.Fatalf("node %d %s: got %d publications, want %d", i, tp, len(ps), 2*per)
			}
			for j, p := range ps {
				if p.Offset != uint64(j+1) || p.Epoch != ps[0].Epoch {
					t.Fatalf("node %d %s: got %v, want offsets 1..%d in one epoch", i, tp, offsets(ps), 2*per)
				}
			}
		}
	}
}
