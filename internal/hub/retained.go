package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// SnapshotRetained names the built-in snapshot provider that answers a
// topic's last publication: a namespace with "snapshot: retained" gives a
// subscriber the last thing published on the topic (a retained message, as
// in MQTT) followed by what comes after it. It needs history: the
// publication is read from the topic's stream history, so the namespace
// must keep some (history_size >= 1; config validation refuses 0).
const SnapshotRetained = "retained"

// RetainedSnapshot returns the provider registered as SnapshotRetained
// (cmd/junction registers it): the topic's last publication as a
// Publication ({"offset", "epoch", "data", "timeMs", "info"}), or null when
// the topic has none in history (never published in this epoch, or its
// history expired), with the stream position it reflects (read in the same
// broker call, so snapshot and stream neither overlap nor miss).
func RetainedSnapshot(h *Hub) SnapshotProvider {
	return SnapshotFunc(func(ctx context.Context, t Topic) (Snapshot, error) {
		return h.retained(ctx, t.Name)
	})
}

func (h *Hub) retained(ctx context.Context, topic string) (Snapshot, error) {
	b := h.ch.streams
	pos, err := b.Position(ctx, topic)
	if err != nil {
		return Snapshot{}, fmt.Errorf("retained publication of %s: %w", topic, err)
	}
	var pubs []Publication
	if pos.Offset > 0 {
		// Usually one publication: the one at pos (and any that arrived
		// since Position answered).
		since := StreamPosition{Epoch: pos.Epoch, Offset: pos.Offset - 1}
		pubs, pos, err = b.History(ctx, topic, &since, 0)
	}
	if errors.Is(err, ErrHistoryGap) {
		// The epoch changed meanwhile or the history no longer holds pos:
		// whatever history holds now, with its position.
		pubs, pos, err = b.History(ctx, topic, nil, 0)
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("retained publication of %s: %w", topic, err)
	}
	data := json.RawMessage("null")
	if n := len(pubs); n > 0 && pubs[n-1].Offset == pos.Offset {
		if data, err = json.Marshal(pubs[n-1]); err != nil {
			return Snapshot{}, err
		}
	}
	return Snapshot{Data: data, Position: &pos}, nil
}
