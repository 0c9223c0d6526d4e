package hub_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// TestJoinAcrossEpochReset: publications that reach a subscriber while it
// joins are buffered and sent after the subscribe reply. When the stream
// was reset (a new epoch, as a Redis broker that lost a topic's data makes)
// after the position the reply carries, they cannot follow it: the client
// is told to resubscribe, never left with a silent gap. Publications of an
// older epoch followed by ones of the joined epoch are from before the join
// and are skipped, as history before the position is.
func TestJoinAcrossEpochReset(t *testing.T) {
	for _, tc := range []struct {
		name      string
		inject    func(cur hub.StreamPosition) []hub.Publication
		wantReset bool
	}{
		{"newer epoch while joining", func(cur hub.StreamPosition) []hub.Publication {
			return []hub.Publication{{Epoch: "reset-epoch", Offset: 1, Data: raw("after reset")}}
		}, true},
		{"older epoch, then the joined one", func(cur hub.StreamPosition) []hub.Publication {
			return []hub.Publication{
				{Epoch: "old-epoch", Offset: cur.Offset + 7, Data: raw("stale")},
				{Epoch: cur.Epoch, Offset: cur.Offset + 1, Data: raw("next")},
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h *hub.Hub
			ts := startHub(t, hub.Config{Namespaces: []hub.NamespaceConfig{
				{Pattern: "board:{id}", Subscribe: []string{"any"}, Publish: []string{"any"}, Snapshot: "board", HistorySize: 5},
			}}, func(hh *hub.Hub) {
				h = hh
				// The snapshot is taken while the subscriber is attached and
				// buffering: the broker's fan-out delivers what tc injects
				// then, as it would a publication racing the join.
				h.RegisterSnapshot("board", hub.SnapshotFunc(func(ctx context.Context, tp hub.Topic) (hub.Snapshot, error) {
					pos, err := h.Position(ctx, tp.Name)
					if err != nil {
						return hub.Snapshot{}, err
					}
					for _, pub := range tc.inject(pos) {
						h.HandlePublication(tp.Name, pub)
					}
					return hub.Snapshot{Data: raw([]int{}), Position: &pos}, nil
				}))
			})
			if _, err := h.Publish(context.Background(), "board:1", raw("first")); err != nil {
				t.Fatal(err)
			}
			c := ts.dial(t, "alice/a1/read")
			rec := newRecorder(c)
			var res subResult
			mustCall(t, c, "channel.subscribe", map[string]any{"topic": "board:1"}, &res)
			if tc.wantReset {
				rec.waitFor(t, "channel.unsubscribed", func() bool { return len(rec.other) > 0 })
				rec.mu.Lock()
				f := rec.other[0]
				rec.mu.Unlock()
				var u protocol.Unsubscribed
				if err := json.Unmarshal(f.Data, &u); err != nil || f.Event != hub.EventChannelUnsubscribed || u.Reason != "reset" || !u.Resubscribe {
					t.Fatalf("got %s %+v (%v), want channel.unsubscribed {reason: reset, resubscribe: true}", f.Event, u, err)
				}
				if n := rec.count("board:1"); n != 0 {
					t.Fatalf("got %d publications, want none of the reset stream", n)
				}
				// The drop detaches in the background: wait for it.
				eventually(t, "the reset subscriber detached", func() bool { return h.Subscribers("board:1") == 0 })
				return
			}
			rec.waitFor(t, "the next publication", func() bool { return len(rec.msgs["board:1"]) > 0 })
			rec.mu.Lock()
			got := rec.msgs["board:1"]
			other := len(rec.other)
			rec.mu.Unlock()
			if len(got) != 1 || got[0].Epoch != res.Epoch || got[0].Offset != res.Offset+1 || string(got[0].Data) != `"next"` || other != 0 {
				t.Fatalf("got %d publications (first %+v) and %d other events, want only offset %d of the joined epoch", len(got), got[0], other, res.Offset+1)
			}
		})
	}
}
