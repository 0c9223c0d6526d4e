package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/proxy"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// TestClusterPublishBatched: a publisher on node B sends bursts of
// channel.publish requests without waiting for answers; node B publishes
// the consecutive ones of its inbox in one Redis pipeline
// (junction_broker_publish_batches_total counts them). Every request is
// answered in the order sent, the publications take offsets in that order,
// a request of another method in the middle of a burst is answered between
// its neighbours, a publication the rules refuse fails alone, and a
// subscriber on node A receives every publication exactly once, in order.
// Publications to a namespace with a publish hook (room:) go through it in
// order within the bursts: refused, rewritten or passed as it says.
func TestClusterPublishBatched(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	rooms := newTestBackend(t, roomBackend)
	cfg := func(c *Config) {
		withNamespaces(hub.NamespaceConfig{
			Pattern: "feed:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, HistorySize: 10000,
		}, hub.NamespaceConfig{
			Pattern: "room:{room}", Subscribe: []string{"any"}, Publish: []string{"any"}, HistorySize: 100,
		})(c)
		c.Proxy = proxy.Config{Backends: []proxy.BackendConfig{rooms.backend("rooms")},
			Namespaces: []proxy.NamespaceHook{{Namespace: "room", Publish: "rooms"}}}
		c.Hub.RequestsPerSecond = -1
		c.Broker = rs.URL()
	}
	a := startServer(t, cfg)
	b := startServer(t, cfg)
	ctx := context.Background()

	var (
		mu  sync.Mutex
		got []int
	)
	sub := client.New(checkedOptions(a, client.Options{URL: a.WSURL() + "/ws", Token: mintToken(t, a, "alice", "a1", "phone")}))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sub.Connect(cctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Subscribe(cctx, "feed:1", func(p client.Publication) {
		var n int
		_ = json.Unmarshal(p.Data, &n)
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	pub, _, err := dialRaw(t, b, bearer(mintToken(t, b, "bob", "b1", "phone")), "")
	if err != nil {
		t.Fatal(err)
	}
	if f := pub.mustNext(); f.Type != "event" {
		t.Fatalf("got %+v, want the welcome event", f)
	}
	batches := regexp.MustCompile(`(?m)^junction_broker_publish_batches_total (\S+)$`)
	batched := func() float64 {
		m := batches.FindStringSubmatch(scrape(t, b))
		if m == nil {
			t.Fatal("no junction_broker_publish_batches_total in node B's metrics")
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	const burst = 100
	n, room := 0, 0 // publications made to feed:1 and room:lobby
	// Bursts until node B batched some (its first request's Redis round
	// trip is what lets the next ones queue); bounded.
	for round := 0; round < 20 && (round == 0 || batched() == 0); round++ {
		type want struct {
			id     string
			offset uint64        // 0: not a publication
			code   protocol.Code // an error's code, "" for none
		}
		var wants []want
		for i := range burst {
			switch i {
			case burst / 3:
				id := fmt.Sprintf("h%d", round)
				pub.send(`{"type":"req","id":"` + id + `","method":"sys.ping"}`)
				wants = append(wants, want{id: id})
			case burst / 2:
				id := fmt.Sprintf("x%d", round)
				pub.send(`{"type":"req","id":"` + id + `","method":"channel.publish","params":{"topic":"nope:1","data":0}}`)
				wants = append(wants, want{id: id, code: protocol.CodeNotFound})
			}
			if round == 0 && i%10 == 5 { // through the hook: passed, refused, rewritten
				text, code := []string{"hi", "spam", "shout"}[i/10%3], protocol.Code("")
				if text == "spam" {
					code = protocol.CodeBadRequest
				}
				id := fmt.Sprintf("r%d", i)
				pub.send(`{"type":"req","id":"` + id + `","method":"channel.publish","params":{"topic":"room:lobby","data":{"text":"` + text + `"}}}`)
				w := want{id: id, code: code}
				if code == "" {
					room++
					w.offset = uint64(room)
				}
				wants = append(wants, w)
			}
			n++
			id := fmt.Sprintf("p%d", n)
			pub.send(fmt.Sprintf(`{"type":"req","id":"%s","method":"channel.publish","params":{"topic":"feed:1","data":%d}}`, id, n))
			wants = append(wants, want{id: id, offset: uint64(n)})
		}
		for _, w := range wants {
			f := pub.mustNext()
			for f.Type == "event" { // not expected on this connection; skipped all the same
				f = pub.mustNext()
			}
			if f.ID != w.id {
				t.Fatalf("got an answer to %q (%+v), want %q's next: answers out of order", f.ID, f, w.id)
			}
			switch {
			case w.code != "":
				if f.OK || f.Error == nil || f.Error.Code != w.code {
					t.Fatalf("%s: got %+v, want error %s", w.id, f, w.code)
				}
			case w.offset == 0:
				if !f.OK {
					t.Fatalf("%s: got %+v, want ok", w.id, f)
				}
			default:
				var res protocol.PublishResult
				if !f.OK || json.Unmarshal(f.Result, &res) != nil || res.Offset != w.offset {
					t.Fatalf("%s: got %+v (%s), want offset %d", w.id, f, f.Result, w.offset)
				}
			}
		}
	}
	if batched() == 0 {
		t.Fatalf("node B published %d publications in bursts of %d without batching any", n, burst)
	}
	// The hook saw room:lobby's publications and rewrote the shouts.
	hist, err := b.Hub.HistoryAs(ctx, &auth.Principal{UserID: "bob", Scopes: []string{auth.ScopeRead}}, "room:lobby", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, p := range hist.Publications {
		var d struct{ Text string }
		_ = json.Unmarshal(p.Data, &d)
		texts = append(texts, d.Text)
	}
	if want := []string{"hi", "SHOUT", "hi", "SHOUT", "hi", "SHOUT", "hi"}; !slices.Equal(texts, want) || room != len(want) {
		t.Errorf("room:lobby history: got %q (%d published), want %q", texts, room, want)
	}
	eventuallyLong(t, "every publication on node A", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= n })
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, seq(1, n)) {
		t.Fatalf("got %d publications %v..., want 1..%d exactly once in order", len(got), got[:min(len(got), 20)], n)
	}
}
