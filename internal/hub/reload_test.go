package hub_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// TestReloadNamespaces: a new set of namespaces takes effect whole; one that
// does not compile, or names a snapshot provider nobody registered, is
// refused and the running set stays.
func TestReloadNamespaces(t *testing.T) {
	ts := startHub(t, hub.Config{Namespaces: []hub.NamespaceConfig{{Pattern: "room:{room}", Subscribe: []string{"any"}, Publish: []string{"any"}}}}, nil)
	h, ctx := ts.hub, context.Background()
	publish := func(topic string) protocol.Code {
		_, err := h.Publish(ctx, topic, json.RawMessage(`{"n":1}`))
		if err == nil {
			return ""
		}
		return protocol.AsError(err).Code
	}
	if got := publish("team:red"); got != protocol.CodeNotFound {
		t.Fatalf("team:red before the reload: got %q, want not_found", got)
	}
	next := []hub.NamespaceConfig{{Pattern: "team:{team}", Subscribe: []string{"any"}, Publish: []string{"any"}}}
	if err := h.ReloadNamespaces(next); err != nil {
		t.Fatal(err)
	}
	if got := publish("team:red"); got != "" {
		t.Errorf("team:red after the reload: got %q, want published", got)
	}
	if got := publish("room:1"); got != protocol.CodeNotFound {
		t.Errorf("room:1 after a reload without it: got %q, want not_found", got)
	}
	if got := publish("public:news"); got != "" {
		t.Errorf("the built-in public namespace after the reload: got %q, want published", got)
	}
	for name, bad := range map[string][]hub.NamespaceConfig{
		"bad pattern":         {{Pattern: "x:{a", Subscribe: []string{"any"}, Publish: []string{"any"}}},
		"unknown snapshot":    {{Pattern: "x:{a}", Subscribe: []string{"any"}, Publish: []string{"any"}, Snapshot: "nobody", HistorySize: 1}},
		"declared twice":      {next[0], next[0]},
		"rule without a rule": {{Pattern: "x:{a}"}},
	} {
		if err := h.ReloadNamespaces(bad); err == nil {
			t.Errorf("%s: got no error, want the set refused", name)
		}
		if got := publish("team:red"); got != "" {
			t.Errorf("%s: team:red after a refused reload: got %q, want the running set kept", name, got)
		}
	}
}

func TestMatchTopic(t *testing.T) {
	tp, err := hub.MatchTopic("chat:{room}:thread:{thread}", "chat:r1:thread:t9")
	if err != nil || tp.Namespace != "chat" || tp.Param("room") != "r1" || tp.Param("thread") != "t9" {
		t.Errorf("got %+v %v, want chat with room r1 and thread t9", tp, err)
	}
	if _, err := hub.MatchTopic("chat:{room}", "news:1"); protocol.AsError(err).Code != protocol.CodeNotFound {
		t.Errorf("a topic of another namespace: got %v, want not_found", err)
	}
	if _, err := hub.MatchTopic("chat:{room", "chat:1"); err == nil {
		t.Errorf("a bad pattern: want an error")
	}
}

// TestSetLimits: reloaded limits apply to the next requests of open
// connections and to the next handshakes, and new welcomes show them.
func TestSetLimits(t *testing.T) {
	ts := startHub(t, hub.Config{}, nil)
	open := ts.dial(t, "u1/d1/read")
	for range 3 {
		mustCall(t, open, "sys.ping", nil, nil)
	}
	ts.hub.SetLimits(hub.Limits{RequestsPerSecond: 1, RequestBurst: 1, MaxConnectionsPerUser: 2})
	// A burst of one: of two requests in a row at most one goes through.
	codes := []protocol.Code{errCode(call(t, open, "sys.ping", nil, nil)), errCode(call(t, open, "sys.ping", nil, nil))}
	if codes[1] != protocol.CodeRateLimited {
		t.Errorf("the open connection's requests after the reload: got %v, want the second rate_limited", codes)
	}
	second := ts.dial(t, "u1/d2/read")
	if w := second.Welcome(); w.Limits.RequestsPerSecond != 1 || w.Limits.RequestBurst != 1 {
		t.Errorf("welcome after the reload: got %+v, want requestsPerSecond 1, requestBurst 1", w.Limits)
	}
	c := client.New(client.Options{URL: ts.url(), Token: "u1/d3/read"})
	if err := c.Connect(context.Background()); err == nil {
		c.Close()
		t.Errorf("a third connection of u1 over max_connections_per_user 2: connected, want refused")
	}
	// Zero selects the defaults again.
	ts.hub.SetLimits(hub.Limits{})
	third := ts.dial(t, "u1/d3/read")
	if w := third.Welcome(); w.Limits.RequestsPerSecond != 1000 {
		t.Errorf("welcome after resetting the limits: got %+v, want the default 1000", w.Limits)
	}
	if open.State() != client.StateConnected {
		t.Errorf("the connection opened before the reloads did not stay open")
	}
}

// TestReloadRechecksSubscriptions: a reload that tightens a namespace's
// subscribe rules, or removes the namespace, ends the subscriptions the new
// rules do not allow (channel.unsubscribed, reason forbidden); those they
// allow, and those of namespaces the reload left alone, stay and keep
// receiving.
func TestReloadRechecksSubscriptions(t *testing.T) {
	open := []hub.NamespaceConfig{
		{Pattern: "room:{room}", Subscribe: []string{"any"}, Publish: []string{"any"}},
		{Pattern: "team:{team}", Subscribe: []string{"any"}, Publish: []string{"any"}},
		{Pattern: "lobby:{id}", Subscribe: []string{"any"}, Publish: []string{"any"}},
	}
	ts := startHub(t, hub.Config{Namespaces: open}, nil)
	h, ctx := ts.hub, context.Background()
	reader := ts.dial(t, "alice/a1/read")
	admin := ts.dial(t, "root/r1/read,admin")
	readerRec, adminRec := newRecorder(reader), newRecorder(admin)
	for _, c := range []*client.Client{reader, admin} {
		for _, topic := range []string{"room:1", "team:red", "lobby:1"} {
			mustCall(t, c, "channel.subscribe", map[string]any{"topic": topic}, nil)
		}
	}
	// room needs the admin scope now; team is gone; lobby is unchanged.
	if err := h.ReloadNamespaces([]hub.NamespaceConfig{
		{Pattern: "room:{room}", Subscribe: []string{"scope=admin"}, Publish: []string{"any"}},
		open[2],
	}); err != nil {
		t.Fatal(err)
	}
	unsubscribed := func(r *recorder) map[string]string {
		got := map[string]string{}
		for _, f := range r.other {
			var u protocol.Unsubscribed
			if f.Event == hub.EventChannelUnsubscribed && json.Unmarshal(f.Data, &u) == nil {
				got[f.Topic] = u.Reason
			}
		}
		return got
	}
	readerRec.waitFor(t, "the reader's room and team subscriptions ended", func() bool { return len(unsubscribed(readerRec)) == 2 })
	adminRec.waitFor(t, "the admin's team subscription ended", func() bool { return len(unsubscribed(adminRec)) == 1 })
	readerRec.mu.Lock()
	r := unsubscribed(readerRec)
	readerRec.mu.Unlock()
	if r["room:1"] != "forbidden" || r["team:red"] != "forbidden" {
		t.Fatalf("reader: got %v, want room:1 and team:red ended with forbidden", r)
	}
	adminRec.mu.Lock()
	a := unsubscribed(adminRec)
	adminRec.mu.Unlock()
	if a["team:red"] != "forbidden" || len(a) != 1 {
		t.Fatalf("admin: got %v, want only team:red ended", a)
	}
	// What stays keeps receiving: lobby for both, room for the admin.
	for _, topic := range []string{"lobby:1", "room:1"} {
		if _, err := h.Publish(ctx, topic, json.RawMessage(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	adminRec.waitFor(t, "the admin's lobby and room publications", func() bool {
		return len(adminRec.msgs["lobby:1"]) == 1 && len(adminRec.msgs["room:1"]) == 1
	})
	readerRec.waitFor(t, "the reader's lobby publication", func() bool { return len(readerRec.msgs["lobby:1"]) == 1 })
	if n := readerRec.count("room:1"); n != 0 {
		t.Fatalf("the reader got %d room:1 publications after its subscription ended", n)
	}
}
