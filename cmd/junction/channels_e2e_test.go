package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

func withNamespaces(ns ...hub.NamespaceConfig) func(*Config) {
	return func(c *Config) { c.Hub.Namespaces = ns }
}

func TestChannelResumeAcrossReconnect(t *testing.T) {
	m := startServer(t, func(c *Config) {
		withNamespaces(hub.NamespaceConfig{
			Pattern: "feed:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, HistorySize: 10000,
		})(c)
		// The publisher calls as fast as the server answers: more than the
		// default 1,000 requests/s when nothing else runs.
		c.Hub.RequestsPerSecond = -1
	})
	proxy := newStallProxy(t, m.Addr().String()) // cut like a network failure
	const total = 3000

	var (
		mu    sync.Mutex
		got   []int
		subs  []client.Subscribed
		cond  = sync.NewCond(&mu)
		ctx   = context.Background()
		token = mintToken(t, m, "alice", "a1", "phone")
	)
	sub := client.New(checkedOptions(m, client.Options{URL: "ws://" + proxy.ln.Addr().String() + "/ws", Token: token,
		Reconnect: true, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sub.Connect(cctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if !slices.Contains(sub.Welcome().Features, "channels") {
		t.Fatalf("got features %v, want channels", sub.Welcome().Features)
	}
	_, err := sub.SubscribeWith(cctx, "feed:1", func(p client.Publication) {
		var n int
		_ = json.Unmarshal(p.Data, &n)
		mu.Lock()
		got = append(got, n)
		cond.Broadcast()
		mu.Unlock()
	}, client.SubscribeOptions{OnSubscribed: func(s client.Subscribed) {
		mu.Lock()
		subs = append(subs, s)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}

	pub := dialClient(t, m, "bob", "b1", "phone")
	waitCount := func(n int) {
		t.Helper()
		timer := time.AfterFunc(30*time.Second, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
		defer timer.Stop()
		deadline := time.Now().Add(30 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		for len(got) < n {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: got %d publications, want %d", len(got), n)
			}
			cond.Wait()
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= total; i++ {
			if _, _, err := pub.Publish(ctx, "feed:1", i); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	})
	waitCount(total / 3)
	if n := proxy.cut(); n == 0 {
		t.Fatal("cut no connection")
	}
	wg.Wait() // publishing went on while the subscriber was away
	waitCount(total)

	mu.Lock()
	defer mu.Unlock()
	if len(got) != total {
		t.Fatalf("got %d publications, want %d", len(got), total)
	}
	for i, n := range got {
		if n != i+1 {
			t.Fatalf("got %d at %d, want %d: lost, duplicated or out of order", n, i, i+1)
		}
	}
	if len(subs) < 2 || !subs[len(subs)-1].Resubscribed || !subs[len(subs)-1].Recovered {
		t.Fatalf("got subscriptions %+v, want a recovered resubscription", subs)
	}
}

func TestChannelREST(t *testing.T) {
	m := startServer(t, withNamespaces(hub.NamespaceConfig{
		Pattern: "room:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, Presence: true, HistorySize: 3,
	}))
	writer := mintToken(t, m, "alice", "a1", "phone")
	reader := mintToken(t, m, "bob", "b1", "phone", "read")
	watcher := dialClient(t, m, "carol", "c1", "phone")
	ctx := context.Background()
	var gotMsgs []client.Publication
	var mu sync.Mutex
	if _, err := watcher.Subscribe(ctx, "room:1", func(p client.Publication) {
		mu.Lock()
		gotMsgs = append(gotMsgs, p)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	do := func(method, path, token, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, m.URL()+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for i := 1; i <= 5; i++ {
		status, out := do("POST", "/api/v1/channels/room:1/publish", writer, fmt.Sprintf(`{"data": {"n": %d}}`, i))
		if status != 200 || out["offset"] != float64(i) {
			t.Fatalf("publish %d: got %d %v, want 200 with offset %d", i, status, out, i)
		}
	}
	eventually(t, "the REST publications over WebSocket", func() bool { mu.Lock(); defer mu.Unlock(); return len(gotMsgs) == 5 })

	status, out := do("GET", "/api/v1/channels/room:1/history?limit=2", reader, "")
	if pubs, _ := out["publications"].([]any); status != 200 || len(pubs) != 2 {
		t.Fatalf("history: got %d %v, want 2 publications", status, out)
	}
	epoch := out["epoch"].(string)
	status, out = do("GET", "/api/v1/channels/room:1/presence", reader, "")
	if clients, _ := out["clients"].(map[string]any); status != 200 || len(clients) != 1 {
		t.Fatalf("presence: got %d %v, want carol", status, out)
	}

	tests := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"no credential", "POST", "/api/v1/channels/room:1/publish", "", `{"data":1}`, 401, "unauthorized"},
		{"publish without write", "POST", "/api/v1/channels/room:1/publish", reader, `{"data":1}`, 403, "forbidden"},
		{"unknown namespace", "POST", "/api/v1/channels/nope:1/publish", writer, `{"data":1}`, 404, "not_found"},
		{"bad topic", "POST", "/api/v1/channels/room:a%20b/publish", writer, `{"data":1}`, 400, "bad_request"},
		{"missing data", "POST", "/api/v1/channels/room:1/publish", writer, `{}`, 400, "bad_request"},
		{"unknown member", "POST", "/api/v1/channels/room:1/publish", writer, `{"data":1,"x":2}`, 400, "bad_request"},
		{"other user's channel", "GET", "/api/v1/channels/user:alice/history", reader, "", 403, "forbidden"},
		{"presence disabled", "GET", "/api/v1/channels/public:x/presence", reader, "", 404, "not_found"},
		{"history gap", "GET", "/api/v1/channels/room:1/history?since_epoch=" + epoch + "&since_offset=0", reader, "", 409, "conflict"},
		{"bad since", "GET", "/api/v1/channels/room:1/history?since_epoch=x&since_offset=-1", reader, "", 400, "bad_request"},
		{"bad limit", "GET", "/api/v1/channels/room:1/history?limit=x", reader, "", 400, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := do(tt.method, tt.path, tt.token, tt.body)
			e, _ := out["error"].(map[string]any)
			if status != tt.status || e["code"] != tt.code {
				t.Fatalf("got %d %v, want %d %s", status, out, tt.status, tt.code)
			}
		})
	}
}

// TestChannelMethodsOverWebSocket uses every channel method and the presence
// events over the SDK's WebSocket (the wire contract check sees them all).
func TestChannelMethodsOverWebSocket(t *testing.T) {
	m := startServer(t, withNamespaces(hub.NamespaceConfig{
		Pattern: "room:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, Presence: true, HistorySize: 3,
	}))
	carol := dialClient(t, m, "carol", "c1", "phone")
	events := make(chan *protocol.Frame, 16)
	for _, e := range []string{protocol.EventChannelJoin, protocol.EventChannelLeave} {
		carol.OnEvent(e, func(f *protocol.Frame) { events <- f })
	}
	nextEvent := func(want string) protocol.ClientInfo {
		t.Helper()
		select {
		case f := <-events:
			var info protocol.ClientInfo
			if f.Event != want || f.Topic != "room:1" || json.Unmarshal(f.Data, &info) != nil {
				t.Fatalf("got event %s on %q with %s, want %s on room:1", f.Event, f.Topic, f.Data, want)
			}
			return info
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", want)
		}
		return protocol.ClientInfo{}
	}
	if _, err := carol.Subscribe(context.Background(), "room:1", func(client.Publication) {}); err != nil {
		t.Fatal(err)
	}

	bob := dialClient(t, m, "bob", "b1", "phone")
	var sub protocol.SubscribeResult
	if err := call(t, bob, "channel.subscribe", protocol.SubscribeParams{Topic: "room:1"}, &sub); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if info := nextEvent(protocol.EventChannelJoin); info.UserID != "bob" || info.DeviceID != "b1" {
		t.Errorf("join: got %+v, want bob/b1", info)
	}
	var pub protocol.PublishResult
	if err := call(t, bob, "channel.publish", protocol.PublishParams{Topic: "room:1", Data: json.RawMessage(`{"n":1}`)}, &pub); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if pub.Epoch != sub.Epoch || pub.Offset != sub.Offset+1 {
		t.Errorf("publish: got %+v, want the offset after %+v", pub, sub)
	}
	var pres protocol.PresenceResult
	if err := call(t, carol, "channel.presence", protocol.TopicParams{Topic: "room:1"}, &pres); err != nil {
		t.Fatalf("presence: %v", err)
	}
	if len(pres.Clients) != 2 {
		t.Errorf("presence: got %+v, want carol and bob", pres.Clients)
	}
	var hist protocol.HistoryResult
	if err := call(t, carol, "channel.history", protocol.HistoryParams{Topic: "room:1", Limit: 5}, &hist); err != nil {
		t.Fatalf("history: %v", err)
	}
	if len(hist.Publications) != 1 || hist.Publications[0].Info == nil || hist.Publications[0].Info.UserID != "bob" ||
		string(hist.Publications[0].Data) != `{"n":1}` {
		t.Errorf("history: got %+v, want bob's publication", hist)
	}
	if err := call(t, bob, "channel.unsubscribe", protocol.TopicParams{Topic: "room:1"}, nil); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	if info := nextEvent(protocol.EventChannelLeave); info.UserID != "bob" {
		t.Errorf("leave: got %+v, want bob", info)
	}
	var again protocol.SubscribeResult
	err := call(t, bob, "channel.subscribe", protocol.SubscribeParams{Topic: "room:1", Since: &protocol.StreamPosition{Epoch: sub.Epoch, Offset: sub.Offset}}, &again)
	if err != nil {
		t.Fatalf("resubscribe: %v", err)
	}
	if !again.Recovered || len(again.Publications) != 1 || again.Publications[0].Offset != pub.Offset {
		t.Errorf("resubscribe: got %+v, want the missed publication recovered", again)
	}
}
