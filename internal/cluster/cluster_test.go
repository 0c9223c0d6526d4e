package cluster_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/hub/brokertest"
	"github.com/junctionhq/junction/internal/redistest"
)

var prefixSeq atomic.Int64

// servers starts n redis-servers for t and returns their URLs.
func servers(t *testing.T, n int, opts redistest.Options) ([]string, []*redistest.Server) {
	t.Helper()
	var urls []string
	var srvs []*redistest.Server
	for range n {
		s := redistest.New(t, opts)
		urls = append(urls, s.URL())
		srvs = append(srvs, s)
	}
	return urls, srvs
}

// newBroker returns a started broker for node "n1" on urls, under a prefix
// of its own (so that brokers sharing servers start empty), closed when t
// ends.
func newBroker(t *testing.T, urls []string, mod func(*cluster.Config)) *cluster.Broker {
	t.Helper()
	cfg := cluster.Config{
		URLs:   urls,
		NodeID: "n1",
		Prefix: fmt.Sprintf("t%d:", prefixSeq.Add(1)),
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// The contract suites of every interface, against one Redis and against
// two shards.
func TestContract(t *testing.T) {
	for _, shards := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d shards", shards), func(t *testing.T) {
			urls, _ := servers(t, shards, redistest.Options{})
			t.Run("streams", func(t *testing.T) {
				brokertest.Streams(t, func(t *testing.T, h hub.PublicationHandler) hub.Streams {
					b := newBroker(t, urls, nil)
					if err := b.Deliver(context.Background(), h); err != nil {
						t.Fatal(err)
					}
					return b
				})
			})
			t.Run("presence", func(t *testing.T) {
				brokertest.Presence(t, func(t *testing.T) hub.Presence { return newBroker(t, urls, nil) })
			})
			t.Run("directory", func(t *testing.T) {
				brokertest.Directory(t, func(t *testing.T, h hub.NodeHandler) hub.Directory {
					b := newBroker(t, urls, nil)
					if err := b.Receive(context.Background(), h); err != nil {
						t.Fatal(err)
					}
					return b
				})
			})
			t.Run("records", func(t *testing.T) {
				brokertest.Records(t, func(t *testing.T) hub.IdemRecords { return newBroker(t, urls, nil) })
			})
		})
	}
}

// waitFor waits for cond; the deadline only turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
