package cluster

// Shared security state besides revocations and lockdown (hub events):
// login nonces (auth.SharedNonces) and per-user connection counts
// (hub.UserConns).

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// scriptNonceTake consumes a login nonce issued for a public key: 1 taken,
// 0 absent (never issued, expired or used), -1 issued for another key
// (left as is).
//
//	KEYS[1] the nonce, ARGV[1] the public key
var scriptNonceTake = redis.NewScript(`
local k = redis.call('GET', KEYS[1])
if not k then return 0 end
if k ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
return 1
`)

// nonceKey is a login nonce: PREFIX nonce:{HEX} = the public key it was
// issued for, expiring with its ttl.
func (b *Broker) nonceKey(nonce []byte) string {
	return b.cfg.Prefix + "nonce:{" + hex.EncodeToString(nonce) + "}"
}

func (b *Broker) nonceClient(nonce []byte) *redis.Client {
	return b.shardOf("nonce:" + hex.EncodeToString(nonce)).client
}

// PutNonce implements auth.SharedNonces.
func (b *Broker) PutNonce(ctx context.Context, nonce, publicKey []byte, ttl time.Duration) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if err := b.nonceClient(nonce).Set(ctx, b.nonceKey(nonce), publicKey, ttl).Err(); err != nil {
		return redisErr("cluster: put login nonce: %w", err)
	}
	return nil
}

// TakeNonce implements auth.SharedNonces: one script, so that of two nodes
// answering one challenge at once exactly one succeeds.
func (b *Broker) TakeNonce(ctx context.Context, nonce, publicKey []byte) (taken, otherKey bool, err error) {
	if err := b.checkOpen(); err != nil {
		return false, false, err
	}
	n, err := scriptNonceTake.Run(ctx, b.nonceClient(nonce), []string{b.nonceKey(nonce)}, publicKey).Int()
	if err != nil {
		return false, false, redisErr("cluster: take login nonce: %w", err)
	}
	return n == 1, n == -1, nil
}

// DropNonce implements auth.SharedNonces.
func (b *Broker) DropNonce(ctx context.Context, nonce []byte) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if err := b.nonceClient(nonce).Del(ctx, b.nonceKey(nonce)).Err(); err != nil {
		return redisErr("cluster: drop login nonce: %w", err)
	}
	return nil
}

// Per-user connection counts (hub.UserConns): per owner, a hash holder →
// count and a sorted set holder → expiry (ms, Redis's clock), both living
// as long as their longest-lived holder. A holder is one run of one node.

// scriptUConnAcquire drops the expired holders, and counts one more
// connection for a holder unless the live total reaches the limit: 1
// counted, 0 refused.
//
//	KEYS[1] hash, KEYS[2] sorted set
//	ARGV[1] holder, ARGV[2] limit, ARGV[3] ttl in ms
var scriptUConnAcquire = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(dead) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  total = total + tonumber(v)
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local ttl = math.max(1, tonumber(last[2]) - now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`)

// scriptUConnRelease counts n fewer connections for a holder; a count that
// reaches 0 (or less: Redis lost the count meanwhile) is removed.
//
//	KEYS[1] hash, KEYS[2] sorted set; ARGV[1] holder, ARGV[2] n
var scriptUConnRelease = redis.NewScript(`
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if v <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return v
`)

// scriptUConnSet sets a holder's count and extends its lease.
//
//	KEYS[1] hash, KEYS[2] sorted set
//	ARGV[1] holder, ARGV[2] count, ARGV[3] ttl in ms
var scriptUConnSet = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local ttl = math.max(1, tonumber(last[2]) - now)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`)

func (b *Broker) uconnKeys(owner string) []string {
	k := b.cfg.Prefix + "uconn:{" + owner + "}"
	return []string{k, k + ":exp"}
}

func (b *Broker) uconnClient(owner string) *redis.Client {
	return b.shardOf("uconn:" + owner).client
}

// AcquireUserConn implements hub.UserConns.
func (b *Broker) AcquireUserConn(ctx context.Context, owner, holder string, limit int, ttl time.Duration) (bool, error) {
	if err := b.checkOpen(); err != nil {
		return false, err
	}
	n, err := scriptUConnAcquire.Run(ctx, b.uconnClient(owner), b.uconnKeys(owner), holder, limit, ms(ttl)).Int()
	if err != nil {
		return false, redisErr("cluster: acquire user connection: %w", err)
	}
	return n == 1, nil
}

// ReleaseUserConns implements hub.UserConns.
func (b *Broker) ReleaseUserConns(ctx context.Context, owner, holder string, n int) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if err := scriptUConnRelease.Run(ctx, b.uconnClient(owner), b.uconnKeys(owner), holder, n).Err(); err != nil {
		return redisErr("cluster: release user connections: %w", err)
	}
	return nil
}

// RefreshUserConns implements hub.UserConns: one pipeline per shard.
func (b *Broker) RefreshUserConns(ctx context.Context, holder string, counts map[string]int, ttl time.Duration) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	byShard := map[*shard][]string{}
	for owner := range counts {
		sh := b.shardOf("uconn:" + owner)
		byShard[sh] = append(byShard[sh], owner)
	}
	for sh, owners := range byShard {
		// A pipeline cannot fall back from EVALSHA on NOSCRIPT: load the
		// script first (a Redis restarted in between fails this refresh,
		// and the next one loads it again).
		if err := scriptUConnSet.Load(ctx, sh.client).Err(); err != nil {
			return redisErr("cluster: refresh user connections on shard %d: %w", sh.idx, err)
		}
		for len(owners) > 0 {
			chunk := owners[:min(len(owners), 512)]
			owners = owners[len(chunk):]
			p := sh.client.Pipeline()
			for _, owner := range chunk {
				scriptUConnSet.EvalSha(ctx, p, b.uconnKeys(owner), holder, counts[owner], ms(ttl))
			}
			if _, err := p.Exec(ctx); err != nil {
				return redisErr("cluster: refresh user connections on shard %d: %w", sh.idx, err)
			}
		}
	}
	return nil
}

// scriptTakeToken takes one token from a bucket: a hash t = tokens, u =
// last update (ms, Redis's clock), refilled at rate a second up to burst,
// expiring once it would be full again. It returns {1, 0} taken, or {0,
// wait in ms}.
//
//	KEYS[1] the bucket; ARGV[1] rate a second, ARGV[2] burst
var scriptTakeToken = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local r = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = tonumber(r[1]) or burst
local last = tonumber(r[2]) or now
if now > last then
  tokens = math.min(burst, tokens + (now - last) * rate / 1000)
end
local ok, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 't', tokens, 'u', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {ok, wait}
`)

// TakeToken implements web.SharedRates: one script on the key's shard.
func (b *Broker) TakeToken(ctx context.Context, key string, rate float64, burst int) (time.Duration, bool, error) {
	if err := b.checkOpen(); err != nil {
		return 0, false, err
	}
	if rate <= 0 {
		return 0, true, nil
	}
	res, err := scriptTakeToken.Run(ctx, b.shardOf("rate:"+key).client,
		[]string{b.cfg.Prefix + "rate:{" + key + "}"}, rate, max(burst, 1)).Int64Slice()
	if err != nil {
		return 0, false, redisErr("cluster: rate %q: %w", key, err)
	}
	if len(res) != 2 {
		return 0, false, fmt.Errorf("cluster: rate %q: unexpected reply %v", key, res)
	}
	return time.Duration(res[1]) * time.Millisecond, res[0] == 1, nil
}
