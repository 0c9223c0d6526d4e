package auth

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"
)

// SharedNonces keeps login nonces where every node of a cluster sees them
// (the Redis broker), so that a challenge issued by one node can be
// answered on any other, and used once across all of them. The methods use
// only standard types, so that the broker satisfies the interface without
// importing auth.
type SharedNonces interface {
	// PutNonce records nonce, issued for publicKey, for ttl.
	PutNonce(ctx context.Context, nonce, publicKey []byte, ttl time.Duration) error
	// TakeNonce consumes nonce if it is live and was issued for
	// publicKey, atomically: of concurrent callers with one nonce (on any
	// node), at most one gets taken true. otherKey reports a live nonce
	// issued for another key, left outstanding.
	TakeNonce(ctx context.Context, nonce, publicKey []byte) (taken, otherKey bool, err error)
	// DropNonce deletes nonce (its node's bounds evicted it).
	DropNonce(ctx context.Context, nonce []byte) error
}

// Share makes c keep its nonces in s too: every node of a cluster shares
// them. c still applies its limits (rate, per client, outstanding) to the
// challenges this node issues; the shared copy decides whether a nonce is
// live and uses it up. Call it before first use.
func (c *Challenges) Share(s SharedNonces) { c.shared = s }

// IssueContext is Issue; with shared nonces (Share) it records the nonce
// there before returning it, and fails when it cannot (unwrapping to the
// shared store's error).
func (c *Challenges) IssueContext(ctx context.Context, client string, publicKey ed25519.PublicKey) ([]byte, time.Time, error) {
	nonce, exp, evicted, err := c.issue(client, publicKey)
	if c.shared != nil && evicted != nil {
		// Best effort: a nonce not dropped expires with its ttl.
		_ = c.shared.DropNonce(context.WithoutCancel(ctx), evicted)
	}
	if err != nil || c.shared == nil {
		return nonce, exp, err
	}
	if err := c.shared.PutNonce(ctx, nonce, publicKey, c.cfg.TTL); err != nil {
		c.forget(nonce)
		return nil, time.Time{}, fmt.Errorf("issue challenge: share nonce: %w", err)
	}
	return nonce, exp, nil
}

// VerifyContext is Verify; with shared nonces (Share) the nonce is looked up
// and used up in the shared store, whichever node issued it. A nonce that
// expired there is unknown (the store forgets it at its ttl), unless this
// node issued it and still holds it (expired). An error of the shared store
// is returned as is (not a *Failure).
func (c *Challenges) VerifyContext(ctx context.Context, publicKey ed25519.PublicKey, nonce, sig []byte) error {
	if c.shared == nil {
		return c.Verify(publicKey, nonce, sig)
	}
	if !VerifySignature(publicKey, nonce, sig) {
		return fail(ReasonSignature, fmt.Errorf("verify challenge: %w", ErrChallengeMismatch))
	}
	if c.expiredHere(nonce) {
		_ = c.shared.DropNonce(context.WithoutCancel(ctx), nonce)
		return fail(ReasonExpired, fmt.Errorf("consume challenge: %w", ErrChallengeExpired))
	}
	taken, otherKey, err := c.shared.TakeNonce(ctx, nonce, publicKey)
	switch {
	case err != nil:
		return fmt.Errorf("consume challenge: %w", err)
	case otherKey:
		return fail(ReasonSignature, fmt.Errorf("consume challenge: %w", ErrChallengeKey))
	case !taken:
		c.forget(nonce)
		return fail(ReasonUnknownKey, fmt.Errorf("consume challenge: %w", ErrChallengeUnknown))
	}
	c.forget(nonce)
	return nil
}

// forget removes this node's record of nonce, if it holds one.
func (c *Challenges) forget(nonce []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.byNonce[string(nonce)]; ok {
		c.removeLocked(ch)
	}
}

// expiredHere reports (and forgets) a nonce this node issued whose ttl has
// passed.
func (c *Challenges) expiredHere(nonce []byte) bool {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.byNonce[string(nonce)]
	if !ok || now.Before(ch.expiresAt) {
		return false
	}
	c.removeLocked(ch)
	return true
}
