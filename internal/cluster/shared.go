package cluster

// Shared security state besides revocations and lockdown (hub events):
// login nonces (auth.SharedNonces) and per-user connection counts
// (hub.UserConns).

import (
	"context"
	"encoding/hex"
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
