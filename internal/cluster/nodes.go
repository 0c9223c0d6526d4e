package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Node leases: every node keeps PREFIX node:{NODE}:lease = its boot id,
// with a ttl of Config.NodeLeaseTTL, refreshed every third of it while the
// broker runs. A node whose lease is gone (killed, or cut from Redis for a
// ttl) is dead to the others: its device claims no longer route calls
// (DeviceNode), and calls forwarded to it fail (hub.Directory.NodeAlive).
// A lease naming another boot id is a restarted node: its old claims are
// stale.

// nodeLeaseKey is the key of a node's lease.
func (b *Broker) nodeLeaseKey(node string) string { return b.cfg.Prefix + "node:{" + node + "}:lease" }

// refreshNodeLease writes this node's lease.
func (b *Broker) refreshNodeLease(ctx context.Context) error {
	name := "node:" + b.cfg.NodeID
	if err := b.shardOf(name).client.Set(ctx, b.nodeLeaseKey(b.cfg.NodeID), b.cfg.BootID, b.cfg.NodeLeaseTTL).Err(); err != nil {
		return redisErr("cluster: node lease: %w", err)
	}
	return nil
}

// runNodeLease refreshes this node's lease until Close; it stops with the
// lease deleted, so that the others see a closed node gone at once.
func (b *Broker) runNodeLease() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.NodeLeaseTTL / 3)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-b.stop:
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			name := "node:" + b.cfg.NodeID
			_ = b.shardOf(name).client.Del(ctx, b.nodeLeaseKey(b.cfg.NodeID)).Err()
			cancel()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.NodeLeaseTTL/3)
		err := b.refreshNodeLease(ctx)
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			b.log.Warn("cluster: cannot refresh the node lease", "err", err)
		case err == nil && failing:
			failing = false
			b.log.Info("cluster: node lease refreshed again")
		}
	}
}

// nodeBoot returns the boot id in node's lease, or alive false, read from
// Redis (the route cache keeps the answer: route.go).
func (b *Broker) nodeBoot(ctx context.Context, node string) (string, bool, error) {
	return b.lookupLease(ctx, node)
}

// readLease reads node's lease.
func (b *Broker) readLease(ctx context.Context, node string) (string, bool, error) {
	boot, err := b.shardOf("node:"+node).client.Get(ctx, b.nodeLeaseKey(node)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, redisErr("cluster: node lease of %q: %w", node, err)
	}
	return boot, true, nil
}

// NodeAlive implements hub.Directory: node's lease is live.
func (b *Broker) NodeAlive(ctx context.Context, node string) (bool, error) {
	if err := b.checkOpen(); err != nil {
		return false, err
	}
	if node == b.cfg.NodeID {
		return true, nil
	}
	_, alive, err := b.nodeBoot(ctx, node)
	return alive, err
}

// Dependency is one thing the broker needs, checked for /readyz: a shard,
// this node's lease, or this node's channel subscription.
type Dependency struct {
	Name  string // "redis shard N", "node lease" or "node channel"
	Addr  string // host:port of the shard (no credentials)
	Check func(ctx context.Context) error
}

// Dependencies returns the broker's dependencies: each shard (it answers a
// PING) and this node's lease (Redis holds it under this run's boot id: it
// is missing for up to a third of Config.NodeLeaseTTL after Redis lost its
// data, during which the other nodes cannot route calls to this one), and
// this node's channel (subscribed on the current pub/sub connection: after
// a reconnect, answers to calls this node forwards would be lost until
// Redis confirmed it again).
func (b *Broker) Dependencies() []Dependency {
	var out []Dependency
	for _, sh := range b.shards {
		out = append(out, Dependency{Name: fmt.Sprintf("redis shard %d", sh.idx), Addr: sh.url, Check: func(ctx context.Context) error {
			if err := sh.client.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis shard %d (%s): %w", sh.idx, sh.url, err)
			}
			return nil
		}})
	}
	name := "node:" + b.cfg.NodeID
	out = append(out, Dependency{Name: "node lease", Addr: b.shardOf(name).url, Check: func(ctx context.Context) error {
		if err := b.checkOpen(); err != nil {
			return err
		}
		boot, alive, err := b.nodeBoot(ctx, b.cfg.NodeID)
		switch {
		case err != nil:
			return err
		case !alive:
			return fmt.Errorf("node lease of %q missing in Redis (renewed every %v)", b.cfg.NodeID, b.cfg.NodeLeaseTTL/3)
		case boot != b.cfg.BootID:
			return fmt.Errorf("node lease of %q held by another run (boot %s): two nodes share this node id", b.cfg.NodeID, boot)
		}
		return nil
	}})
	out = append(out, Dependency{Name: "node channel", Addr: b.shardOf(name).url, Check: func(ctx context.Context) error {
		if b.nodes.Load() == nil {
			return nil // nothing receives yet (Receive not called)
		}
		if _, ok := b.Receiving(); !ok {
			return fmt.Errorf("node channel of %q not subscribed in Redis (reconnecting): calls through other nodes cannot be answered here", b.cfg.NodeID)
		}
		return nil
	}})
	return out
}
