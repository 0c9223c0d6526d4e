package auth

import (
	"container/list"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Challenge defaults.
const (
	// DefaultChallengeTTL is how long a nonce stays valid when NewChallenges
	// is given a non-positive ttl.
	DefaultChallengeTTL = 5 * time.Minute
	// DefaultMaxChallenges bounds the outstanding nonces when NewChallenges
	// is given a non-positive max.
	DefaultMaxChallenges = 100_000
	// NonceBytes is the length of a challenge nonce.
	NonceBytes = 32
)

// Errors wrapped by the *Failure that Consume returns.
var (
	// ErrChallengeUnknown: the nonce was never issued, was evicted, or was
	// already consumed.
	ErrChallengeUnknown = errors.New("challenge unknown or already used")
	// ErrChallengeExpired: the nonce's TTL has passed.
	ErrChallengeExpired = errors.New("challenge expired")
	// ErrChallengeKey: the nonce was issued for another public key.
	ErrChallengeKey = errors.New("challenge was issued to another key")
	// ErrChallengeMismatch: the signature over the nonce does not verify.
	ErrChallengeMismatch = errors.New("signature does not verify")
)

// Challenges holds the nonces of ed25519 challenge login: the server issues a
// random nonce for a public key, the client signs it, and the server verifies
// the signature and consumes the nonce, which can be consumed only once and
// only before it expires.
//
// Nonces live in memory, so a login must finish on the node that issued its
// challenge. At most max are outstanding; issuing one more evicts the oldest.
// Challenges is safe for concurrent use.
type Challenges struct {
	ttl time.Duration // set once at construction
	max int           // set once at construction

	// Now is the clock; default time.Now. Set it, if at all, before first use.
	Now func() time.Time

	mu sync.Mutex
	// byNonce maps string(nonce) to its element in order; guarded by mu.
	byNonce map[string]*list.Element
	// order holds *challenge values oldest first. All nonces share one ttl,
	// so issue order is also expiry order. Guarded by mu.
	order *list.List
}

// challenge is one outstanding nonce.
type challenge struct {
	nonce     string
	publicKey ed25519.PublicKey
	expiresAt time.Time
}

// NewChallenges returns an empty Challenges whose nonces expire after ttl
// (DefaultChallengeTTL if not positive), holding at most max outstanding
// (DefaultMaxChallenges if not positive).
func NewChallenges(ttl time.Duration, max int) *Challenges {
	if ttl <= 0 {
		ttl = DefaultChallengeTTL
	}
	if max <= 0 {
		max = DefaultMaxChallenges
	}
	return &Challenges{
		ttl:     ttl,
		max:     max,
		byNonce: make(map[string]*list.Element),
		order:   list.New(),
	}
}

func (c *Challenges) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Len returns the number of outstanding nonces, expired ones included until
// they are swept by the next Issue.
func (c *Challenges) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// Issue returns a fresh NonceBytes-long random nonce for publicKey and when
// it expires.
func (c *Challenges) Issue(publicKey ed25519.PublicKey) (nonce []byte, expiresAt time.Time, err error) {
	if len(publicKey) != ed25519.PublicKeySize {
		return nil, time.Time{}, fmt.Errorf("issue challenge: public key is %d bytes, want %d", len(publicKey), ed25519.PublicKeySize)
	}
	nonce = make([]byte, NonceBytes)
	if _, err := rand.Read(nonce); err != nil {
		return nil, time.Time{}, fmt.Errorf("issue challenge: random nonce: %w", err)
	}
	now := c.now()
	expiresAt = now.Add(c.ttl)
	ch := &challenge{
		nonce:     string(nonce),
		publicKey: append(ed25519.PublicKey(nil), publicKey...),
		expiresAt: expiresAt,
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
	for c.order.Len() >= c.max {
		c.removeLocked(c.order.Front())
	}
	c.byNonce[ch.nonce] = c.order.PushBack(ch)
	return nonce, expiresAt, nil
}

// Consume uses up nonce for publicKey. A nonce that is found is removed
// whatever the outcome, so each nonce gets exactly one attempt. It returns a
// *Failure when the nonce is unknown or already used (ReasonUnknownKey),
// expired (ReasonExpired) or was issued to another key (ReasonSignature).
// Consume does not check a signature: see Verify.
func (c *Challenges) Consume(publicKey ed25519.PublicKey, nonce []byte) error {
	now := c.now()
	c.mu.Lock()
	e, ok := c.byNonce[string(nonce)]
	if ok {
		c.removeLocked(e)
	}
	c.mu.Unlock()
	if !ok {
		return fail(ReasonUnknownKey, fmt.Errorf("consume challenge: %w", ErrChallengeUnknown))
	}
	ch := e.Value.(*challenge)
	if !now.Before(ch.expiresAt) {
		return fail(ReasonExpired, fmt.Errorf("consume challenge: %w", ErrChallengeExpired))
	}
	if len(publicKey) != len(ch.publicKey) || subtle.ConstantTimeCompare(publicKey, ch.publicKey) != 1 {
		return fail(ReasonSignature, fmt.Errorf("consume challenge: %w", ErrChallengeKey))
	}
	return nil
}

// Verify checks that sig is publicKey's signature of nonce and then consumes
// the nonce. A bad signature leaves the nonce outstanding, so a forged
// attempt cannot burn a legitimate client's challenge; it fails with
// ReasonSignature.
func (c *Challenges) Verify(publicKey ed25519.PublicKey, nonce, sig []byte) error {
	if !VerifySignature(publicKey, nonce, sig) {
		return fail(ReasonSignature, fmt.Errorf("verify challenge: %w", ErrChallengeMismatch))
	}
	return c.Consume(publicKey, nonce)
}

// sweepLocked removes expired nonces from the front of the order.
func (c *Challenges) sweepLocked(now time.Time) {
	for e := c.order.Front(); e != nil; e = c.order.Front() {
		if now.Before(e.Value.(*challenge).expiresAt) {
			return
		}
		c.removeLocked(e)
	}
}

func (c *Challenges) removeLocked(e *list.Element) {
	ch := c.order.Remove(e).(*challenge)
	delete(c.byNonce, ch.nonce)
}

// VerifySignature reports whether sig is a valid detached ed25519 signature
// of message by publicKey (RFC 8032, as produced by TweetNaCl's
// nacl.sign.detached). Keys and signatures of the wrong length are invalid.
func VerifySignature(publicKey ed25519.PublicKey, message, sig []byte) bool {
	if len(publicKey) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(publicKey, message, sig)
}
