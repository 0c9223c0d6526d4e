package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/internal/schedule"
	"github.com/junctionhq/junction/internal/schedule/leasetest"
)

// The scheduler's leases on Redis: the contract suite on one server and on
// two shards, and two brokers (two nodes) sharing the servers.
func TestLeasesContract(t *testing.T) {
	urls, _ := servers(t, 2, redistest.Options{})
	t.Run("one shard", func(t *testing.T) {
		leasetest.Run(t, func(t *testing.T) schedule.Leases { return newBroker(t, urls[:1], nil) })
	})
	t.Run("two shards", func(t *testing.T) {
		leasetest.Run(t, func(t *testing.T) schedule.Leases { return newBroker(t, urls, nil) })
	})
}

func TestLeasesAcrossNodes(t *testing.T) {
	urls, _ := servers(t, 1, redistest.Options{})
	prefix := fmt.Sprintf("t%d:", prefixSeq.Add(1))
	n1 := newBroker(t, urls, func(c *cluster.Config) { c.Prefix = prefix })
	n2 := newBroker(t, urls, func(c *cluster.Config) { c.NodeID = "n2"; c.Prefix = prefix })
	ctx := t.Context()
	for i, c := range []struct {
		b    *cluster.Broker
		key  string
		want bool
	}{
		{n1, "schedule:j:1", true},
		{n2, "schedule:j:1", false},
		{n2, "schedule:j:2", true},
		{n1, "schedule:j:2", false},
	} {
		got, err := c.b.Acquire(ctx, c.key, c.b.NodeID(), time.Minute)
		if err != nil || got != c.want {
			t.Fatalf("call %d: %s Acquire(%s) = %v, %v; want %v", i, c.b.NodeID(), c.key, got, err, c.want)
		}
	}
}
