package auth

import (
	"container/list"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Challenge defaults.
const (
	// DefaultChallengeTTL is how long a nonce stays valid when
	// ChallengeConfig.TTL is zero.
	DefaultChallengeTTL = 5 * time.Minute
	// DefaultMaxChallenges bounds the outstanding nonces of all clients
	// when ChallengeConfig.Max is zero.
	DefaultMaxChallenges = 100_000
	// DefaultChallengesPerClient bounds the outstanding nonces of one client
	// address when ChallengeConfig.PerClient is zero.
	DefaultChallengesPerClient = 16
	// DefaultChallengeRate is the challenges a client address may ask for
	// per second, sustained, when ChallengeConfig.Rate is zero.
	DefaultChallengeRate = 5
	// DefaultChallengeBurst is the challenges a client address may ask for
	// at once when ChallengeConfig.Burst is zero.
	DefaultChallengeBurst = 20
	// NonceBytes is the length of a challenge nonce.
	NonceBytes = 32
)

// ChallengeConfig bounds the login challenges. The zero value of every field
// selects its default; a normal client (one challenge per login) never
// meets a limit.
type ChallengeConfig struct {
	// TTL is how long a nonce is valid; default DefaultChallengeTTL.
	TTL time.Duration `yaml:"ttl" doc:"how long a login nonce (POST /auth/challenge) is valid (default 5m)"`
	// Rate is how many challenges one client address may ask for per
	// second, sustained; default DefaultChallengeRate; negative disables
	// the rate limit.
	Rate int `yaml:"rate" doc:"login challenges one client address may ask for per second, sustained; over it POST /auth/challenge answers 429 with Retry-After (default 5, negative disables)"`
	// Burst is how many challenges one client address may ask for at once;
	// default DefaultChallengeBurst.
	Burst int `yaml:"burst" doc:"login challenges one client address may ask for at once (default 20)"`
	// PerClient bounds the outstanding nonces of one client address: one
	// more evicts that address's oldest, never another address's; default
	// DefaultChallengesPerClient.
	PerClient int `yaml:"per_client" doc:"outstanding login nonces per client address; one more evicts that address's oldest (default 16)"`
	// Max bounds the outstanding nonces of all clients: when it is reached
	// a new challenge is refused (503 with Retry-After) rather than evict
	// another client's; default DefaultMaxChallenges.
	Max int `yaml:"max" doc:"outstanding login nonces of all clients; when reached, new challenges answer 503 with Retry-After (default 100000)"`
}

// Validate reports a setting out of range, naming its key under
// "auth.challenges".
func (c ChallengeConfig) Validate() error {
	switch {
	case c.TTL < 0:
		return fmt.Errorf("auth.challenges.ttl %v: want a positive duration such as 5m (or 0 for the default)", c.TTL)
	case c.Burst < 0:
		return fmt.Errorf("auth.challenges.burst %d: want a positive number (or 0 for the default)", c.Burst)
	case c.PerClient < 0:
		return fmt.Errorf("auth.challenges.per_client %d: want a positive number (or 0 for the default)", c.PerClient)
	case c.Max < 0:
		return fmt.Errorf("auth.challenges.max %d: want a positive number (or 0 for the default)", c.Max)
	}
	d := c.withDefaults()
	if d.PerClient > d.Max {
		return fmt.Errorf("auth.challenges.per_client %d is over auth.challenges.max %d", d.PerClient, d.Max)
	}
	return nil
}

func (c ChallengeConfig) withDefaults() ChallengeConfig {
	if c.TTL <= 0 {
		c.TTL = DefaultChallengeTTL
	}
	if c.Rate == 0 {
		c.Rate = DefaultChallengeRate
	}
	if c.Burst <= 0 {
		c.Burst = DefaultChallengeBurst
	}
	if c.PerClient <= 0 {
		c.PerClient = DefaultChallengesPerClient
	}
	if c.Max <= 0 {
		c.Max = DefaultMaxChallenges
	}
	return c
}

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

// ChallengeLimitError is what Issue returns when a limit refuses a nonce.
type ChallengeLimitError struct {
	// Full is true when every client's outstanding nonces together reached
	// ChallengeConfig.Max (the server is busy), false when this client
	// address asked faster than ChallengeConfig.Rate.
	Full bool
	// RetryAfter is when asking again can succeed.
	RetryAfter time.Duration
}

func (e *ChallengeLimitError) Error() string {
	if e.Full {
		return fmt.Sprintf("issue challenge: outstanding nonces at the limit; retry after %v", e.RetryAfter)
	}
	return fmt.Sprintf("issue challenge: client over its rate; retry after %v", e.RetryAfter)
}

// ClientKey returns the key under which Challenges counts a client address:
// the address for IPv4, its /64 for IPv6 (a host usually holds a whole
// /64), "" when the address is unknown (all such clients share one key).
func ClientKey(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return ""
	case a.Is4():
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// Challenges holds the nonces of ed25519 challenge login: the server issues a
// random nonce for a public key, the client signs it, and the server verifies
// the signature and consumes the nonce, which can be consumed only once, only
// by a valid signature of the key it was issued for, and only before it
// expires.
//
// Nonces live in memory, so a login must finish on the node that issued its
// challenge, unless they are shared (Share: a cluster's Redis). Each client address may ask for ChallengeConfig.Rate a second
// and hold ChallengeConfig.PerClient outstanding (one more evicts its own
// oldest); when ChallengeConfig.Max are outstanding in all, new ones are
// refused, so no client can evict another's. Challenges is safe for
// concurrent use.
type Challenges struct {
	cfg ChallengeConfig // set once at construction, defaults applied

	// Now is the clock; default time.Now. Set it, if at all, before first use.
	Now func() time.Time

	mu sync.Mutex
	// byNonce maps string(nonce) to its challenge; guarded by mu.
	byNonce map[string]*challenge
	// order holds *challenge values oldest first. All nonces share one ttl,
	// so issue order is also expiry order. Guarded by mu.
	order *list.List
	// clients holds the state of client addresses that have outstanding
	// nonces or a rate bucket not yet full; guarded by mu.
	clients map[string]*challengeClient
	// scanned is when clients was last swept of idle entries; guarded by mu.
	scanned time.Time

	// shared, when set (Share, before first use), holds the nonces every
	// node sees (challenge_shared.go).
	shared SharedNonces
}

// challenge is one outstanding nonce. Its fields are guarded by
// Challenges.mu.
type challenge struct {
	nonce     string
	publicKey ed25519.PublicKey
	expiresAt time.Time
	client    *challengeClient
	elem      *list.Element // in Challenges.order
	clientEl  *list.Element // in client.pending
}

// challengeClient is one client address: its token bucket and its
// outstanding nonces. Guarded by Challenges.mu.
type challengeClient struct {
	key     string
	rate    Bucket    // its asks for challenges
	pending list.List // *challenge, oldest first
}

// NewChallenges returns an empty Challenges configured by cfg (zero fields
// select their defaults; cfg should have passed Validate).
func NewChallenges(cfg ChallengeConfig) *Challenges {
	return &Challenges{
		cfg:     cfg.withDefaults(),
		byNonce: make(map[string]*challenge),
		order:   list.New(),
		clients: make(map[string]*challengeClient),
	}
}

// Config returns the configuration in use, defaults applied.
func (c *Challenges) Config() ChallengeConfig { return c.cfg }

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

// Issue returns a fresh NonceBytes-long random nonce for publicKey, asked
// for by the client address whose ClientKey is client, and when it expires.
// A limit that refuses it returns a *ChallengeLimitError.
func (c *Challenges) Issue(client string, publicKey ed25519.PublicKey) (nonce []byte, expiresAt time.Time, err error) {
	return c.IssueContext(context.Background(), client, publicKey)
}

// issue is Issue on this node; evicted is the client's oldest nonce it
// evicted, if any.
func (c *Challenges) issue(client string, publicKey ed25519.PublicKey) (nonce []byte, expiresAt time.Time, evicted []byte, err error) {
	if len(publicKey) != ed25519.PublicKeySize {
		return nil, time.Time{}, nil, fmt.Errorf("issue challenge: public key is %d bytes, want %d", len(publicKey), ed25519.PublicKeySize)
	}
	nonce = make([]byte, NonceBytes)
	if _, err := rand.Read(nonce); err != nil {
		return nil, time.Time{}, nil, fmt.Errorf("issue challenge: random nonce: %w", err)
	}
	now := c.now()
	expiresAt = now.Add(c.cfg.TTL)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked(now)
	cl := c.clients[client]
	if cl == nil {
		cl = &challengeClient{key: client, rate: Bucket{at: now.UnixNano()}}
		c.clients[client] = cl
	}
	if c.cfg.Rate > 0 {
		if wait, ok := cl.rate.Take(now.UnixNano(), float64(c.cfg.Rate), c.cfg.Burst); !ok {
			return nil, time.Time{}, nil, &ChallengeLimitError{RetryAfter: wait}
		}
	}
	if cl.pending.Len() >= c.cfg.PerClient {
		oldest := cl.pending.Front().Value.(*challenge)
		evicted = []byte(oldest.nonce)
		c.removeLocked(oldest)
	}
	if c.order.Len() >= c.cfg.Max {
		cl.rate.Refund() // refused for another reason: the ask does not count
		oldest := c.order.Front().Value.(*challenge)
		return nil, time.Time{}, evicted, &ChallengeLimitError{Full: true, RetryAfter: max(oldest.expiresAt.Sub(now), time.Millisecond)}
	}
	ch := &challenge{
		nonce:     string(nonce),
		publicKey: append(ed25519.PublicKey(nil), publicKey...),
		expiresAt: expiresAt,
		client:    cl,
	}
	ch.elem = c.order.PushBack(ch)
	ch.clientEl = cl.pending.PushBack(ch)
	c.byNonce[ch.nonce] = ch
	return nonce, expiresAt, evicted, nil
}

// Consume uses up nonce for publicKey. It returns a *Failure when the nonce
// is unknown or already used (ReasonUnknownKey), expired (ReasonExpired) or
// was issued to another key (ReasonSignature); only in the last case does
// the nonce stay outstanding, so that nobody but its key's holder can use it
// up. Consume does not check a signature: see Verify, which is what login
// calls.
func (c *Challenges) Consume(publicKey ed25519.PublicKey, nonce []byte) error {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.byNonce[string(nonce)]
	if !ok {
		return fail(ReasonUnknownKey, fmt.Errorf("consume challenge: %w", ErrChallengeUnknown))
	}
	if !now.Before(ch.expiresAt) {
		c.removeLocked(ch)
		return fail(ReasonExpired, fmt.Errorf("consume challenge: %w", ErrChallengeExpired))
	}
	if len(publicKey) != len(ch.publicKey) || subtle.ConstantTimeCompare(publicKey, ch.publicKey) != 1 {
		return fail(ReasonSignature, fmt.Errorf("consume challenge: %w", ErrChallengeKey))
	}
	c.removeLocked(ch)
	return nil
}

// Verify checks that sig is publicKey's signature of nonce and then consumes
// the nonce, which must have been issued for publicKey. A bad signature, or
// another key's valid signature, leaves the nonce outstanding, so a forged
// attempt cannot burn a legitimate client's challenge; both fail with
// ReasonSignature.
func (c *Challenges) Verify(publicKey ed25519.PublicKey, nonce, sig []byte) error {
	if !VerifySignature(publicKey, nonce, sig) {
		return fail(ReasonSignature, fmt.Errorf("verify challenge: %w", ErrChallengeMismatch))
	}
	return c.Consume(publicKey, nonce)
}

// sweepLocked removes expired nonces from the front of the order and, at
// most once per refill period, the client entries that hold no nonce and
// whose bucket has refilled (forgetting them changes nothing).
func (c *Challenges) sweepLocked(now time.Time) {
	for e := c.order.Front(); e != nil; e = c.order.Front() {
		ch := e.Value.(*challenge)
		if now.Before(ch.expiresAt) {
			break
		}
		c.removeLocked(ch)
	}
	refill := time.Second
	if c.cfg.Rate > 0 {
		refill = time.Duration(float64(c.cfg.Burst) / float64(c.cfg.Rate) * float64(time.Second))
	}
	if now.Sub(c.scanned) < refill {
		return
	}
	c.scanned = now
	for k, cl := range c.clients {
		if cl.pending.Len() == 0 && cl.rate.Idle(now.UnixNano(), float64(c.cfg.Rate)) {
			delete(c.clients, k)
		}
	}
}

func (c *Challenges) removeLocked(ch *challenge) {
	c.order.Remove(ch.elem)
	ch.client.pending.Remove(ch.clientEl)
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
