package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
)

// TestPublishBatchInOrder: a batch over two topics on two shards, the
// topics interleaved, publishes each topic's publications in the batch's
// order (offsets 1..n, data 1..n), answers each request its own position,
// counts one batch, and the subscribed node receives them in order; history
// holds them too. Run with Redis's script cache flushed before a batch, so
// that the batch's own SCRIPT LOAD is what lets its EVALSHAs run.
func TestPublishBatchInOrder(t *testing.T) {
	urls, srvs := servers(t, 2, redistest.Options{})
	r := newRecorder()
	a, b := pair(t, urls, r, nil)
	ctx := context.Background()
	topics := []string{"t:batch-a", "t:batch-b", "t:batch-c"}
	for _, topic := range topics {
		if err := a.Subscribe(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	const rounds, perTopic = 3, 5
	for round := range rounds {
		for _, s := range srvs {
			if _, err := s.Do("SCRIPT", "FLUSH"); err != nil {
				t.Fatal(err)
			}
		}
		var reqs []hub.PublishRequest
		for i := range perTopic {
			for _, topic := range topics {
				reqs = append(reqs, hub.PublishRequest{Topic: topic,
					Data: json.RawMessage(fmt.Sprint(round*perTopic + i + 1)), Opts: hist})
			}
		}
		res := b.PublishBatch(ctx, reqs)
		if len(res) != len(reqs) {
			t.Fatalf("got %d results for %d requests", len(res), len(reqs))
		}
		for k, req := range reqs {
			want := uint64(round*perTopic + k/len(topics) + 1)
			if res[k].Err != nil || res[k].Pos.Offset != want || res[k].Pos.Epoch == "" {
				t.Fatalf("request %d (%s): got %+v, want offset %d", k, req.Topic, res[k], want)
			}
		}
	}
	if got := b.Stats().PublishBatches; got != rounds {
		t.Errorf("batches: got %d, want %d", got, rounds)
	}
	for _, topic := range topics {
		waitFor(t, "deliveries of "+topic, func() bool { return len(r.get(topic)) >= rounds*perTopic })
		ps := r.get(topic)
		checkSequence(t, ps, ps[0].Epoch, rounds*perTopic)
		got, pos, err := b.History(ctx, topic, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkSequence(t, got, pos.Epoch, rounds*perTopic)
	}
	// One request alone goes the way of Publish.
	res := b.PublishBatch(ctx, []hub.PublishRequest{{Topic: topics[0], Data: json.RawMessage(`16`), Opts: hist}})
	if res[0].Err != nil || res[0].Pos.Offset != rounds*perTopic+1 {
		t.Fatalf("single request: got %+v, want offset %d", res[0], rounds*perTopic+1)
	}
	if got := b.Stats().PublishBatches; got != rounds {
		t.Errorf("batches after a single request: got %d, want %d", got, rounds)
	}
}

// TestPublishBatchRedisDown: with Redis gone, every request of a batch
// fails with an error (none is reported published), and a closed broker
// refuses them all.
func TestPublishBatchRedisDown(t *testing.T) {
	urls, srvs := servers(t, 1, redistest.Options{})
	b := newBroker(t, urls, nil)
	srvs[0].Kill()
	reqs := []hub.PublishRequest{{Topic: "t:x", Data: json.RawMessage(`1`)}, {Topic: "t:x", Data: json.RawMessage(`2`)}}
	for i, r := range b.PublishBatch(context.Background(), reqs) {
		if r.Err == nil {
			t.Errorf("request %d: got %+v, want an error", i, r)
		}
	}
	_ = b.Close()
	for i, r := range b.PublishBatch(context.Background(), reqs) {
		if r.Err == nil {
			t.Errorf("closed broker, request %d: got %+v, want an error", i, r)
		}
	}
}
