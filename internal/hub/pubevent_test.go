package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// TestPublicationEventNames: a publication's event name travels to
// subscribers (the frame's "name", "message" when absent), is kept in
// history and resume, takes part in idempotency, and a bad or reserved
// name is refused with bad_request on field "event".
func TestPublicationEventNames(t *testing.T) {
	ts := startHub(t, hub.Config{Namespaces: []hub.NamespaceConfig{
		{Pattern: "room:{id}", Subscribe: []string{"any"}, Publish: []string{"any"}, HistorySize: 10},
	}}, nil)
	ctx := context.Background()
	sub := ts.dial(t, "bob/b1/read")
	pub := ts.dial(t, "alice/a1/write")

	var mu sync.Mutex
	var got []client.Publication
	s, err := sub.Subscribe(ctx, "room:1", func(p client.Publication) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe(ctx)
	if _, _, err := pub.PublishEvent(ctx, "room:1", "temp", map[string]int{"c": 21}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pub.Publish(ctx, "room:1", 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pub.PublishEvent(ctx, "room:1", "message", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.hub.PublishEvent(ctx, "room:1", "relay.state", json.RawMessage(`{"on":true}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "4 publications", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 4 })
	want := []string{"temp", "message", "message", "relay.state"}
	mu.Lock()
	for i, p := range got {
		if p.Event != want[i] {
			t.Errorf("publication %d: got event %q, want %q", i, p.Event, want[i])
		}
	}
	mu.Unlock()

	var hist protocol.HistoryResult
	mustCall(t, sub, "channel.history", protocol.HistoryParams{Topic: "room:1"}, &hist)
	wantStored := []string{"temp", "", "", "relay.state"}
	if len(hist.Publications) != 4 {
		t.Fatalf("got %d publications in history, want 4", len(hist.Publications))
	}
	for i, p := range hist.Publications {
		if p.Event != wantStored[i] {
			t.Errorf("history %d: got event %q, want %q (absent for message)", i, p.Event, wantStored[i])
		}
	}

	for _, name := range []string{"error", "subscribe", "skipped", "bad name", string(make([]byte, 65))} {
		var res protocol.PublishResult
		err := call(t, pub, "channel.publish", protocol.PublishParams{Topic: "room:1", Event: name, Data: json.RawMessage(`1`)}, &res)
		var pe *protocol.Error
		if code := errCode(err); code != protocol.CodeBadRequest {
			t.Errorf("event %q: got %v, want bad_request", name, err)
		} else if errors.As(err, &pe) && pe.Details["field"] != "event" {
			t.Errorf("event %q: got details %v, want field event", name, pe.Details)
		}
	}

	// The same idem key with another event name is another request.
	var first, again protocol.PublishResult
	req := func(ev string, out *protocol.PublishResult) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return pub.CallIdem(cctx, "channel.publish", protocol.PublishParams{Topic: "room:1", Event: ev, Data: json.RawMessage(`7`)}, "k1", out)
	}
	if err := req("temp", &first); err != nil {
		t.Fatal(err)
	}
	if err := req("temp", &again); err != nil || again != first {
		t.Fatalf("got repeat %+v, %v, want the first %+v", again, err, first)
	}
	if err := req("hum", &again); errCode(err) != protocol.CodeConflict {
		t.Fatalf("got %v for the key with another event, want conflict", err)
	}
}
