package cluster

import (
	"net/url"

	"github.com/redis/go-redis/v9"
)

// defaultPoolSize is the default of Config.PoolSize. go-redis's own (10 per
// CPU) is below the commands a node has in flight under load (every
// forwarded call, its answer, publications, claims): a command finding no
// idle connection dials one beyond the pool, which is closed again once
// used, and every such connection costs a dial and a handshake.
const defaultPoolSize = 128

// clientOptions sets the client options the broker chooses, unless the
// URL (raw) names them:
//
//   - protocol=2 (RESP2): the broker uses no RESP3 feature (no client-side
//     caching, no push notifications: pub/sub works the same on RESP2),
//     and on RESP3 go-redis peeks every pooled connection for pending push
//     notifications before each command, a cost paid on every call.
//     protocol=3 in the URL turns RESP3 back on.
//   - pool_size: poolSize (Config.PoolSize).
func clientOptions(opt *redis.Options, raw string, poolSize int) {
	q := url.Values{}
	if u, err := url.Parse(raw); err == nil {
		q = u.Query()
	}
	if !q.Has("protocol") {
		opt.Protocol = 2
	}
	if !q.Has("pool_size") {
		opt.PoolSize = poolSize
	}
}
