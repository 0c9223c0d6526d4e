package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/junctionhq/junction/internal/hub"
)

var _ hub.NodeQueue = (*Broker)(nil)

// TestQueueToNode: messages queued without waiting leave in order with
// those sent by SendToNode (one writer per shard), each gets its outcome
// (not reachable when nobody listens on the node's channel), a full queue
// refuses a message rather than wait, and a closed broker queues nothing.
func TestQueueToNode(t *testing.T) {
	ctx := context.Background()
	_, b, in, admin := sendPair(t)
	w := b.shardOf("node:a").sender

	var mu sync.Mutex
	outcomes := map[string]error{}
	sent := func(name string) func(error) {
		return func(err error) {
			mu.Lock()
			outcomes[name] = err
			mu.Unlock()
		}
	}
	outcome := func(name string) (error, bool) {
		mu.Lock()
		defer mu.Unlock()
		err, ok := outcomes[name]
		return err, ok
	}

	// In order with SendToNode's messages.
	if !b.QueueToNode("a", json.RawMessage(`"q1"`), sent("q1")) {
		t.Fatal("QueueToNode q1: not queued")
	}
	if err := b.SendToNode(ctx, "a", json.RawMessage(`"s2"`)); err != nil {
		t.Fatal(err)
	}
	if !b.QueueToNode("a", json.RawMessage(`"q3"`), nil) {
		t.Fatal("QueueToNode q3: not queued")
	}
	if !b.QueueToNode("c", json.RawMessage(`"to c"`), sent("c")) {
		t.Fatal("QueueToNode to c: not queued")
	}
	waitUntil(t, "q1, s2, q3 at a", func() bool { return len(in.list()) == 3 })
	if got := strings.Join(in.list(), " "); got != `"q1" "s2" "q3"` {
		t.Fatalf("a received %s, want q1 s2 q3 in order", got)
	}
	waitUntil(t, "the outcome for c", func() bool { _, ok := outcome("c"); return ok })
	if err, _ := outcome("q1"); err != nil {
		t.Fatalf("q1's outcome: %v", err)
	}
	if err, _ := outcome("c"); err == nil || !strings.Contains(err.Error(), `node "c" is not reachable`) {
		t.Fatalf("outcome for c: %v, want not reachable", err)
	}

	// A full queue refuses; what was queued leaves once Redis answers.
	unpause := pause(t, admin)
	taken := w.taken.Load()
	if !b.QueueToNode("a", json.RawMessage(`"p0"`), nil) {
		t.Fatal("QueueToNode p0: not queued")
	}
	waitUntil(t, "p0 taken", func() bool { return w.taken.Load() == taken+1 })
	queued := 0
	for b.QueueToNode("a", json.RawMessage(fmt.Sprintf(`"p%d"`, queued+1)), nil) {
		queued++
		if queued > nodeQueueSize {
			t.Fatalf("queued %d messages while Redis was paused, want at most %d", queued, nodeQueueSize)
		}
	}
	if queued != nodeQueueSize {
		t.Fatalf("queued %d before the queue refused, want %d", queued, nodeQueueSize)
	}
	unpause()
	waitUntil(t, "every message at a", func() bool { return len(in.list()) == 3+1+queued })
	for i, m := range in.list()[3:] {
		if want := fmt.Sprintf(`"p%d"`, i); m != want {
			t.Fatalf("message %d at a: %s, want %s", i, m, want)
		}
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b.QueueToNode("a", json.RawMessage(`"late"`), nil) {
		t.Fatal("QueueToNode after Close: queued")
	}
}
