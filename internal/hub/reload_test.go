package hub_test

import (
	"context"
	"encoding/json"
	"testing"

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
