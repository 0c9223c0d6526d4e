package cluster

import (
	"context"
	"time"
)

// Acquire claims key for node until ttl has passed: SET key node NX PX ttl
// on the key's shard. Of all the calls with one key while its claim lasts,
// exactly one, the first, reports true, on every node sharing the Redis
// servers. It satisfies schedule.Leases (the scheduler runs a job's tick on
// the node that gets the tick's lease) without importing it; an error means
// the answer is unknown, and the scheduler skips the tick.
//
// The key lives at PREFIX lease:{KEY}. A Redis that loses its data (a
// restart without persistence) inside a claim's ttl forgets the claim: a
// node asking again for the same tick then gets it, so a tick can run twice
// across such a restart (docs/cluster.md).
func (b *Broker) Acquire(ctx context.Context, key, node string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := b.checkOpen(); err != nil {
		return false, err
	}
	ok, err := b.shardOf("lease:"+key).client.SetNX(ctx, b.leaseKey(key), node, ttl).Result()
	if err != nil {
		return false, redisErr("cluster: lease %q: %w", key, err)
	}
	return ok, nil
}

func (b *Broker) leaseKey(key string) string { return b.cfg.Prefix + "lease:{" + key + "}" }
