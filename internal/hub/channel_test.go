package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

type subResult = protocol.SubscribeResult

func TestChannelErrors(t *testing.T) {
	ts := startHub(t, hub.Config{
		MaxSubscriptions: 2,
		Namespaces: []hub.NamespaceConfig{
			{Pattern: "room:{roomId}", Subscribe: []string{"scope=rooms"}, Publish: []string{"none"}, HistorySize: 2},
		},
	}, nil)
	alice := ts.dial(t, "alice/a1/read")
	// Fill alice's subscriptions on a second connection to test the limit.
	full := ts.dial(t, "alice/a2/read,write")
	mustCall(t, full, "channel.subscribe", map[string]any{"topic": "user:alice"}, nil)
	mustCall(t, full, "channel.subscribe", map[string]any{"topic": "public:a"}, nil)
	mustCall(t, alice, "channel.subscribe", map[string]any{"topic": "public:dup"}, nil)

	// History with a position outside the retained window.
	for i := range 3 {
		if _, err := ts.hub.Publish(context.Background(), "room:r1", raw(i)); err != nil {
			t.Fatal(err)
		}
	}
	pos, _ := ts.hub.Position(context.Background(), "room:r1")
	roomer := ts.dial(t, "bob/b1/rooms")

	tests := []struct {
		name   string
		conn   func() *client.Client
		method string
		params map[string]any
		code   protocol.Code
		field  string
	}{
		{"empty topic", nil, "channel.subscribe", map[string]any{"topic": ""}, protocol.CodeBadRequest, "topic"},
		{"bad character", nil, "channel.subscribe", map[string]any{"topic": "public:a b"}, protocol.CodeBadRequest, "topic"},
		{"slash", nil, "channel.subscribe", map[string]any{"topic": "public:a/b"}, protocol.CodeBadRequest, "topic"},
		{"reserved dollar", nil, "channel.subscribe", map[string]any{"topic": "$ctl:public:a"}, protocol.CodeBadRequest, "topic"},
		{"too long", nil, "channel.subscribe", map[string]any{"topic": "public:" + strings.Repeat("x", protocol.MaxTopicLength)}, protocol.CodeBadRequest, "topic"},
		{"wrong type", nil, "channel.subscribe", map[string]any{"topic": 7}, protocol.CodeBadRequest, "topic"},
		{"unknown field", nil, "channel.subscribe", map[string]any{"topic": "public:a", "x": 1}, protocol.CodeBadRequest, "x"},
		{"no namespace", nil, "channel.subscribe", map[string]any{"topic": "nope:x"}, protocol.CodeNotFound, ""},
		{"no colon", nil, "channel.subscribe", map[string]any{"topic": "public"}, protocol.CodeNotFound, ""},
		{"pattern mismatch", nil, "channel.subscribe", map[string]any{"topic": "user:a:b"}, protocol.CodeNotFound, ""},
		{"other user", nil, "channel.subscribe", map[string]any{"topic": "user:bob"}, protocol.CodeForbidden, ""},
		{"other device", nil, "channel.subscribe", map[string]any{"topic": "device:b1"}, protocol.CodeForbidden, ""},
		{"missing scope", nil, "channel.subscribe", map[string]any{"topic": "room:r1"}, protocol.CodeForbidden, ""},
		{"already subscribed", nil, "channel.subscribe", map[string]any{"topic": "public:dup"}, protocol.CodeConflict, ""},
		{"publish without write", nil, "channel.publish", map[string]any{"topic": "public:a", "data": 1}, protocol.CodeForbidden, ""},
		{"publish to other user", nil, "channel.publish", map[string]any{"topic": "user:bob", "data": 1}, protocol.CodeForbidden, ""},
		{"publish without data", nil, "channel.publish", map[string]any{"topic": "public:a"}, protocol.CodeBadRequest, "data"},
		{"publish unknown namespace", nil, "channel.publish", map[string]any{"topic": "nope:a", "data": 1}, protocol.CodeNotFound, ""},
		{"publish bad topic", nil, "channel.publish", map[string]any{"topic": "public:é", "data": 1}, protocol.CodeBadRequest, "topic"},
		{"presence disabled", nil, "channel.presence", map[string]any{"topic": "public:a"}, protocol.CodeNotFound, ""},
		{"presence forbidden", nil, "channel.presence", map[string]any{"topic": "user:bob"}, protocol.CodeForbidden, ""},
		{"history forbidden", nil, "channel.history", map[string]any{"topic": "room:r1"}, protocol.CodeForbidden, ""},
		{"history negative limit", nil, "channel.history", map[string]any{"topic": "public:a", "limit": -1}, protocol.CodeBadRequest, "limit"},
		{"history gap", func() *client.Client { return roomer }, "channel.history", map[string]any{"topic": "room:r1", "since": map[string]any{"epoch": pos.Epoch, "offset": 0}}, protocol.CodeConflict, ""},
		{"history other epoch", func() *client.Client { return roomer }, "channel.history", map[string]any{"topic": "room:r1", "since": map[string]any{"epoch": "old", "offset": 3}}, protocol.CodeConflict, ""},
		{"publish rule none", func() *client.Client { return roomer }, "channel.publish", map[string]any{"topic": "room:r1", "data": 1}, protocol.CodeForbidden, ""},
		{"too many subscriptions", func() *client.Client { return full }, "channel.subscribe", map[string]any{"topic": "public:c"}, protocol.CodeTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := alice
			if tt.conn != nil {
				c = tt.conn()
			}
			err := call(t, c, tt.method, tt.params, nil)
			if got := errCode(err); got != tt.code {
				t.Fatalf("got %v (%v), want code %s", got, err, tt.code)
			}
			if tt.field != "" {
				var pe *protocol.Error
				errors.As(err, &pe)
				if got := pe.Details["field"]; got != tt.field {
					t.Fatalf("got details.field %v, want %q", got, tt.field)
				}
			}
		})
	}
}

func TestChannelPublishSubscribe(t *testing.T) {
	ts := startHub(t, hub.Config{Namespaces: []hub.NamespaceConfig{
		{Pattern: "room:{roomId}", Subscribe: []string{"any"}, Publish: []string{"any"}, Presence: true, HistorySize: 10},
	}}, nil)
	alice := ts.dial(t, "alice/a1/read")
	bob := ts.dial(t, "bob/b1/read,write")
	ra, rb := newRecorder(alice), newRecorder(bob)

	var sa, sb subResult
	mustCall(t, alice, "channel.subscribe", map[string]any{"topic": "room:1"}, &sa)
	mustCall(t, bob, "channel.subscribe", map[string]any{"topic": "room:1"}, &sb)
	if sa.Epoch == "" || sa.Offset != 0 || sa.Recovered {
		t.Fatalf("got first subscribe %+v, want a fresh position at 0", sa)
	}
	ra.waitFor(t, "bob's join", func() bool { return len(ra.other) == 1 })
	if ra.other[0].Event != hub.EventChannelJoin || !strings.Contains(string(ra.other[0].Data), `"userId":"bob"`) {
		t.Fatalf("got %s %s, want channel.join of bob", ra.other[0].Event, ra.other[0].Data)
	}
	var pres protocol.PresenceResult
	mustCall(t, alice, "channel.presence", map[string]any{"topic": "room:1"}, &pres)
	if len(pres.Clients) != 2 {
		t.Fatalf("got presence %v, want 2 clients", pres.Clients)
	}

	for i := 1; i <= 5; i++ {
		var pr protocol.PublishResult
		mustCall(t, alice, "channel.publish", map[string]any{"topic": "room:1", "data": map[string]int{"n": i}}, &pr)
		if pr.Offset != uint64(i) || pr.Epoch != sa.Epoch {
			t.Fatalf("got publish position %+v, want offset %d epoch %s", pr, i, sa.Epoch)
		}
	}
	for _, r := range []*recorder{ra, rb} {
		r.waitFor(t, "5 messages", func() bool { return len(r.msgs["room:1"]) == 5 })
		for i, f := range r.msgs["room:1"] {
			if f.Offset != uint64(i+1) || f.Epoch != sa.Epoch || string(f.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
				t.Fatalf("got message %d: offset %d epoch %s data %s", i, f.Offset, f.Epoch, f.Data)
			}
		}
	}

	var hist protocol.HistoryResult
	mustCall(t, bob, "channel.history", map[string]any{"topic": "room:1", "limit": 2}, &hist)
	if len(hist.Publications) != 2 || hist.Publications[0].Offset != 4 || hist.Offset != 5 {
		t.Fatalf("got history %+v, want offsets 4,5 at position 5", hist)
	}
	hist = protocol.HistoryResult{}
	mustCall(t, bob, "channel.history", map[string]any{"topic": "room:1", "since": map[string]any{"epoch": sa.Epoch, "offset": 1}, "limit": 2}, &hist)
	if len(hist.Publications) != 2 || hist.Publications[0].Offset != 2 {
		t.Fatalf("got history since 1 %+v, want offsets 2,3", hist)
	}

	mustCall(t, bob, "channel.unsubscribe", map[string]any{"topic": "room:1"}, nil)
	ra.waitFor(t, "bob's leave", func() bool { return len(ra.other) == 2 })
	if ra.other[1].Event != hub.EventChannelLeave {
		t.Fatalf("got %s, want channel.leave", ra.other[1].Event)
	}
	mustCall(t, alice, "channel.publish", map[string]any{"topic": "room:1", "data": 6}, nil)
	ra.waitFor(t, "message 6", func() bool { return len(ra.msgs["room:1"]) == 6 })
	if n := rb.count("room:1"); n != 5 {
		t.Fatalf("got %d messages for bob after unsubscribing, want 5", n)
	}
	if got := ts.hub.Subscribers("room:1"); got != 1 {
		t.Fatalf("got %d local subscribers, want 1", got)
	}

	// Closing the connection drops its subscriptions and presence.
	_ = alice.Close()
	eventually(t, "alice's subscription dropped", func() bool { return ts.hub.Subscribers("room:1") == 0 })
	var after protocol.PresenceResult
	mustCall(t, bob, "channel.presence", map[string]any{"topic": "room:1"}, &after)
	if len(after.Clients) != 0 {
		t.Fatalf("got presence %v after everyone left, want none", after.Clients)
	}
}

func TestChannelBuiltinRules(t *testing.T) {
	ts := startHub(t, hub.Config{}, func(h *hub.Hub) {
		h.RegisterOwnerLookup("device", hub.OwnerFunc(func(_ context.Context, tp hub.Topic) (string, error) {
			if strings.HasPrefix(tp.Param("deviceId"), "alice-") {
				return "alice", nil
			}
			return "", nil
		}))
	})
	tests := []struct {
		cred, method, topic string
		want                protocol.Code
	}{
		{"alice/alice-1/read", "channel.subscribe", "user:alice", ""},
		{"alice/alice-1/read", "channel.subscribe", "device:alice-1", ""},
		{"alice/alice-1/read", "channel.subscribe", "device:alice-2", ""}, // owner lookup
		{"alice/alice-1/read", "channel.subscribe", "device:bob-1", protocol.CodeForbidden},
		{"bob/alice-9/read", "channel.subscribe", "device:alice-9", ""}, // the device itself
		{"alice/alice-1/read", "channel.subscribe", "public:x", ""},
		{"alice/alice-1/read", "channel.publish", "public:x", protocol.CodeForbidden},
		{"alice/alice-1/write", "channel.publish", "public:x", ""},
		{"alice/alice-1/read", "channel.publish", "user:alice", protocol.CodeForbidden},
		{"alice/alice-1/write", "channel.publish", "user:alice", ""},
		{"alice/alice-1/write", "channel.publish", "device:alice-2", ""},
		{"alice/alice-1/write", "channel.publish", "device:bob-2", protocol.CodeForbidden},
		{"root/r/admin", "channel.subscribe", "user:alice", ""},
		{"root/r/admin", "channel.publish", "device:bob-2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.cred+" "+tt.method+" "+tt.topic, func(t *testing.T) {
			c := ts.dial(t, tt.cred)
			params := map[string]any{"topic": tt.topic}
			if tt.method == "channel.publish" {
				params["data"] = true
			}
			err := call(t, c, tt.method, params, nil)
			if got := errCode(err); got != tt.want {
				t.Fatalf("got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

// board is a snapshot provider's state: a list of appended numbers, changed
// only together with the publication of the change (under mu), as the
// SnapshotProvider contract asks.
type board struct {
	mu       sync.Mutex
	items    []int
	h        *hub.Hub
	position bool // report the position (contract way 1) or not (way 2)
}

func (b *board) append(t *testing.T, topic string, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.items = append(b.items, n)
	if _, err := b.h.Publish(context.Background(), topic, raw(n)); err != nil {
		t.Error(err)
	}
}

func (b *board) Snapshot(ctx context.Context, tp hub.Topic) (hub.Snapshot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	snap := hub.Snapshot{Data: raw(b.items)}
	if b.position {
		pos, err := b.h.Position(ctx, tp.Name)
		if err != nil {
			return hub.Snapshot{}, err
		}
		snap.Position = &pos
	}
	return snap, nil
}

func TestChannelSnapshotJoin(t *testing.T) {
	for _, withPos := range []bool{true, false} {
		t.Run(fmt.Sprintf("provider position %v", withPos), func(t *testing.T) {
			b := &board{position: withPos}
			ts := startHub(t, hub.Config{Namespaces: []hub.NamespaceConfig{
				{Pattern: "board:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, Snapshot: "board"},
			}}, func(h *hub.Hub) {
				b.h = h
				h.RegisterSnapshot("board", b)
			})
			const (
				topic      = "board:1"
				publishers = 4
				perPub     = 300
				joiners    = 12
			)
			var wg sync.WaitGroup
			for p := range publishers {
				wg.Go(func() {
					for i := range perPub {
						b.append(t, topic, p*perPub+i)
					}
				})
			}
			type joined struct {
				rec  *recorder
				snap []int
				res  subResult
			}
			results := make([]joined, joiners)
			for j := range joiners {
				wg.Go(func() {
					c := ts.dial(t, fmt.Sprintf("u%d/d%d/read", j, j))
					rec := newRecorder(c)
					var res subResult
					for {
						err := call(t, c, "channel.subscribe", map[string]any{"topic": topic}, &res)
						if errCode(err) == protocol.CodeUnavailable {
							continue // documented: a busy topic may need another try
						}
						if err != nil {
							t.Errorf("subscribe: %v", err)
							return
						}
						break
					}
					var snap []int
					if err := json.Unmarshal(res.Snapshot, &snap); err != nil {
						t.Errorf("snapshot %s: %v", res.Snapshot, err)
					}
					results[j] = joined{rec: rec, snap: snap, res: res}
				})
			}
			wg.Wait()
			b.mu.Lock()
			final := slices.Clone(b.items)
			b.mu.Unlock()
			total := uint64(publishers * perPub)
			for j, r := range results {
				if r.rec == nil {
					continue
				}
				want := int(total - r.res.Offset)
				r.rec.waitFor(t, "the rest of the stream", func() bool { return len(r.rec.msgs[topic]) >= want })
				state := slices.Clone(r.snap)
				next := r.res.Offset + 1
				for _, f := range r.rec.msgs[topic] {
					if f.Offset != next {
						t.Fatalf("joiner %d: got offset %d, want %d (snapshot at %d)", j, f.Offset, next, r.res.Offset)
					}
					next++
					var n int
					_ = json.Unmarshal(f.Data, &n)
					state = append(state, n)
				}
				if !slices.Equal(state, final) {
					t.Fatalf("joiner %d: snapshot (%d items at offset %d) + stream gives %d items, want the final %d", j, len(r.snap), r.res.Offset, len(state), len(final))
				}
			}
		})
	}
}

func TestChannelResume(t *testing.T) {
	b := &board{position: true}
	ts := startHub(t, hub.Config{Namespaces: []hub.NamespaceConfig{
		{Pattern: "board:{id}", Subscribe: []string{"any"}, Publish: []string{"any"}, Snapshot: "board", HistorySize: 5},
	}}, func(h *hub.Hub) {
		b.h = h
		h.RegisterSnapshot("board", b)
	})
	for i := range 3 {
		b.append(t, "board:1", i)
	}
	c := ts.dial(t, "alice/a1/read")
	var first subResult
	mustCall(t, c, "channel.subscribe", map[string]any{"topic": "board:1"}, &first)
	mustCall(t, c, "channel.unsubscribe", map[string]any{"topic": "board:1"}, nil)
	for i := 3; i < 6; i++ {
		b.append(t, "board:1", i)
	}
	var res subResult
	mustCall(t, c, "channel.subscribe", map[string]any{"topic": "board:1", "since": map[string]any{"epoch": first.Epoch, "offset": first.Offset}}, &res)
	if !res.Recovered || res.Snapshot != nil || len(res.Publications) != 3 || res.Publications[0].Offset != 4 || res.Offset != 6 {
		t.Fatalf("got %+v, want recovered offsets 4..6 and no snapshot", res)
	}
	mustCall(t, c, "channel.unsubscribe", map[string]any{"topic": "board:1"}, nil)
	for i := 6; i < 16; i++ {
		b.append(t, "board:1", i)
	}
	pos := res
	res = subResult{}
	mustCall(t, c, "channel.subscribe", map[string]any{"topic": "board:1", "since": map[string]any{"epoch": pos.Epoch, "offset": pos.Offset}}, &res)
	if res.Recovered || len(res.Publications) != 0 || res.Snapshot == nil || res.Offset != 16 {
		t.Fatalf("got %+v, want recovered=false with a fresh snapshot at 16 and no partial publications", res)
	}
}

func TestChannelSlowConsumer(t *testing.T) {
	// The write timeout is an hour so that the bounded queue, not a socket
	// that stays full, is what ends the stalled connection, and so that the
	// loop below, which waits for the hub to forget the stalled connection,
	// shows that a 4108 close releases it at once: its close frame cannot
	// be written, so the connection is cut rather than held until the write
	// timeout. Heartbeats are an hour apart too: on a loaded machine the
	// stalled connection, which answers no ping, was otherwise closed with
	// 4102 before its queue overflowed.
	ts := startHub(t, hub.Config{MaxQueueBytes: 64 << 10, MaxQueueFrames: 256, WriteTimeout: time.Hour, HeartbeatInterval: time.Hour}, nil)
	const (
		topic = "public:firehose"
		subs  = 100
		batch = 20
	)
	recs := make([]*recorder, subs)
	for i := range subs {
		c := ts.dial(t, fmt.Sprintf("u%d/d%d/read", i, i))
		recs[i] = newRecorder(c)
		recs[i].mu.Lock()
		recs[i].lite = true // megabytes per subscriber otherwise, gigabytes under -race
		recs[i].mu.Unlock()
		mustCall(t, c, "channel.subscribe", map[string]any{"topic": topic}, nil)
	}
	stalled := dialStalled(t, ts, "slow/s1/read")
	if got := ts.hub.Subscribers(topic); got != subs+1 {
		t.Fatalf("got %d subscribers, want %d", got, subs+1)
	}
	payload := strings.Repeat("x", 2048)
	sent := 0
	publishBatch := func() {
		for range batch {
			sent++
			if _, err := ts.hub.Publish(context.Background(), topic, raw(map[string]any{"n": sent, "p": payload})); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range recs {
			r.waitFor(t, "the batch", func() bool { return len(r.msgs[topic]) == sent })
		}
	}
	// Publish until the stalled connection overflows its bounded queue (the
	// kernel's socket buffers absorb the first megabytes) and the hub has
	// unregistered it, then some more.
	for ts.hub.Len() > subs {
		if sent > 20_000 {
			t.Fatal("the stalled connection was never released")
		}
		publishBatch()
	}
	if got := ts.counter(t, "junction_disconnects_total", "4108"); got != 1 {
		codes := map[string]float64{}
		for _, code := range []string{"1000", "1001", "1006", "1008", "1011", "4102", "4108", "other"} {
			if n := ts.counter(t, "junction_disconnects_total", code); n > 0 {
				codes[code] = n
			}
		}
		t.Fatalf("the stalled connection closed, but slow-consumer closes: got %v, want 1 (closes by code: %v)", got, codes)
	}
	for range 5 {
		publishBatch()
	}
	stalled.Close()
	for i, r := range recs {
		for j, f := range r.msgs[topic] {
			if f.Offset != uint64(j+1) {
				t.Fatalf("subscriber %d: got offset %d at %d, want %d", i, f.Offset, j, j+1)
			}
		}
	}
	if got := ts.hub.Len(); got != subs {
		t.Fatalf("got %d connections, want %d (the slow consumer closed)", got, subs)
	}
	if got := ts.hub.Subscribers(topic); got != subs {
		eventually(t, "the slow consumer's subscription dropped", func() bool { return ts.hub.Subscribers(topic) == subs })
	}
}
