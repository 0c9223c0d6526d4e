package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
)

// An idempotent publication repeated on another node answers the first
// position without a second offset: the record is in the publish script.
func TestRedisIdempotentPublishAcrossNodes(t *testing.T) {
	ctx := context.Background()
	urls, _ := servers(t, 2, redistest.Options{})
	prefix := fmt.Sprintf("idem%d:", prefixSeq.Add(1))
	a := newBroker(t, urls, func(c *cluster.Config) { c.Prefix = prefix })
	b := newBroker(t, urls, func(c *cluster.Config) { c.NodeID, c.Prefix = "n2", prefix })
	idem := &hub.PublishIdem{Key: "user:u1\x00k", Fingerprint: "fp", TTL: time.Minute}
	opts := hub.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute, Idem: idem}
	first, err := a.Publish(ctx, "chat:x", json.RawMessage(`{"n":1}`), opts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Publish(ctx, "chat:x", json.RawMessage(`{"n":1}`), opts)
	if err != nil || again != first {
		t.Fatalf("got %+v, %v on node 2, want the first position %+v", again, err, first)
	}
	if got := b.Stats().IdemReplayed; got != 1 {
		t.Fatalf("got %d replayed on node 2, want 1", got)
	}
	other := *idem
	other.Fingerprint = "fp2"
	opts.Idem = &other
	if _, err := b.Publish(ctx, "chat:x", json.RawMessage(`{"n":2}`), opts); !errors.Is(err, hub.ErrIdemConflict) {
		t.Fatalf("got %v, want ErrIdemConflict", err)
	}
	pos, err := a.Position(ctx, "chat:x")
	if err != nil || pos != first {
		t.Fatalf("got position %+v, %v, want %+v: a repeat appended", pos, err, first)
	}
}
