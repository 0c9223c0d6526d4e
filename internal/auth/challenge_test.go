package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func genKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// newTestChallenges returns Challenges on a fake clock without a rate limit,
// where one client may hold all max nonces.
func newTestChallenges(ttl time.Duration, max int) (*Challenges, *testClock) {
	return newLimitedChallenges(ChallengeConfig{TTL: ttl, Max: max, PerClient: max, Rate: -1})
}

func newLimitedChallenges(cfg ChallengeConfig) (*Challenges, *testClock) {
	clock := newClock()
	c := NewChallenges(cfg)
	c.Now = clock.Now
	return c, clock
}

func TestChallengeFlow(t *testing.T) {
	pub, _ := genKey(t)
	other, _ := genKey(t)
	tests := []struct {
		name       string
		run        func(c *Challenges, clock *testClock, nonce []byte) error
		wantReason string
		wantErr    error
	}{
		{"consume once", func(c *Challenges, _ *testClock, n []byte) error { return c.Consume(pub, n) }, "", nil},
		{"consume twice", func(c *Challenges, _ *testClock, n []byte) error {
			if err := c.Consume(pub, n); err != nil {
				return err
			}
			return c.Consume(pub, n)
		}, ReasonUnknownKey, ErrChallengeUnknown},
		{"unknown nonce", func(c *Challenges, _ *testClock, n []byte) error {
			m := append([]byte(nil), n...)
			m[0] ^= 1
			return c.Consume(pub, m)
		}, ReasonUnknownKey, ErrChallengeUnknown},
		{"nil nonce", func(c *Challenges, _ *testClock, _ []byte) error { return c.Consume(pub, nil) }, ReasonUnknownKey, ErrChallengeUnknown},
		{"just before expiry", func(c *Challenges, clock *testClock, n []byte) error {
			clock.Advance(5*time.Minute - time.Nanosecond)
			return c.Consume(pub, n)
		}, "", nil},
		{"at expiry", func(c *Challenges, clock *testClock, n []byte) error {
			clock.Advance(5 * time.Minute)
			return c.Consume(pub, n)
		}, ReasonExpired, ErrChallengeExpired},
		{"other key", func(c *Challenges, _ *testClock, n []byte) error { return c.Consume(other, n) }, ReasonSignature, ErrChallengeKey},
		// Issue 10: another key must not burn the nonce (it used to).
		{"other key leaves the nonce to its key", func(c *Challenges, _ *testClock, n []byte) error {
			if err := c.Consume(other, n); FailureReason(err) != ReasonSignature {
				return fmt.Errorf("other key: got %v, want a signature failure", err)
			}
			return c.Consume(pub, n)
		}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clock := newTestChallenges(0, 0)
			nonce, exp, err := c.Issue("client", pub)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if len(nonce) != NonceBytes {
				t.Fatalf("got nonce of %d bytes, want %d", len(nonce), NonceBytes)
			}
			if want := clock.Now().Add(DefaultChallengeTTL); !exp.Equal(want) {
				t.Fatalf("got expiresAt %v, want %v", exp, want)
			}
			err = tt.run(c, clock, nonce)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			assertReason(t, err, tt.wantReason)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want it to wrap %v", err, tt.wantErr)
			}
		})
	}
}

func TestChallengeIssueRejectsBadKey(t *testing.T) {
	c, _ := newTestChallenges(time.Minute, 10)
	for _, key := range []ed25519.PublicKey{nil, make([]byte, 31), make([]byte, 33)} {
		if n, _, err := c.Issue("client", key); err == nil {
			t.Fatalf("Issue(%d-byte key): got nonce %x, want error", len(key), n)
		}
	}
}

func TestChallengeCapacityEviction(t *testing.T) {
	c, clock := newTestChallenges(time.Minute, 3)
	pub, _ := genKey(t)
	var nonces [][]byte
	for range 5 {
		n, _, err := c.Issue("client", pub)
		if err != nil {
			t.Fatal(err)
		}
		nonces = append(nonces, n)
		clock.Advance(time.Second)
	}
	if got := c.Len(); got != 3 {
		t.Fatalf("got %d outstanding, want 3", got)
	}
	for i, n := range nonces {
		err := c.Consume(pub, n)
		if evicted := i < 2; evicted {
			assertReason(t, err, ReasonUnknownKey)
		} else if err != nil {
			t.Fatalf("nonce %d: got %v, want success", i, err)
		}
	}
}

func TestChallengeSweepsExpired(t *testing.T) {
	c, clock := newTestChallenges(time.Minute, 100)
	pub, _ := genKey(t)
	for range 10 {
		if _, _, err := c.Issue("client", pub); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute)
	if _, _, err := c.Issue("client", pub); err != nil {
		t.Fatal(err)
	}
	if got := c.Len(); got != 1 {
		t.Fatalf("got %d outstanding after expiry, want 1", got)
	}
}

func TestChallengeConcurrentConsume(t *testing.T) {
	c, _ := newTestChallenges(time.Minute, 100)
	pub, _ := genKey(t)
	for round := range 50 {
		nonce, _, err := c.Issue("client", pub)
		if err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 16 {
			wg.Go(func() {
				<-start
				if c.Consume(pub, nonce) == nil {
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if got := wins.Load(); got != 1 {
			t.Fatalf("round %d: got %d winners, want exactly 1", round, got)
		}
	}
}

func TestChallengeVerify(t *testing.T) {
	pub, priv := genKey(t)
	_, otherPriv := genKey(t)
	c, _ := newTestChallenges(time.Minute, 10)
	nonce, _, err := c.Issue("client", pub)
	if err != nil {
		t.Fatal(err)
	}
	// A forged signature fails and leaves the nonce for the real client.
	err = c.Verify(pub, nonce, ed25519.Sign(otherPriv, nonce))
	assertReason(t, err, ReasonSignature)
	if err := c.Verify(pub, nonce, ed25519.Sign(priv, nonce)); err != nil {
		t.Fatalf("Verify(real signature): got %v, want success", err)
	}
	err = c.Verify(pub, nonce, ed25519.Sign(priv, nonce))
	assertReason(t, err, ReasonUnknownKey)
}

// TestChallengeForgerCannotBurnNonce is issue 10's case: another key's valid
// signature over the victim's nonce fails and leaves the nonce to the
// victim's key.
func TestChallengeForgerCannotBurnNonce(t *testing.T) {
	victim, victimPriv := genKey(t)
	forger, forgerPriv := genKey(t)
	c, _ := newTestChallenges(time.Minute, 10)
	nonce, _, err := c.Issue("victim", victim)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		err := c.Verify(forger, nonce, ed25519.Sign(forgerPriv, nonce))
		assertReason(t, err, ReasonSignature)
		if !errors.Is(err, ErrChallengeKey) {
			t.Fatalf("forger: got %v, want ErrChallengeKey", err)
		}
	}
	if err := c.Verify(victim, nonce, ed25519.Sign(victimPriv, nonce)); err != nil {
		t.Fatalf("victim after the forger: got %v, want success", err)
	}
}

func TestChallengeRateLimit(t *testing.T) {
	pub, _ := genKey(t)
	c, clock := newLimitedChallenges(ChallengeConfig{Rate: 2, Burst: 3, PerClient: 100})
	for i := range 3 {
		if _, _, err := c.Issue("a", pub); err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
	}
	_, _, err := c.Issue("a", pub)
	le, ok := errors.AsType[*ChallengeLimitError](err)
	if !ok || le.Full || le.RetryAfter != 500*time.Millisecond {
		t.Fatalf("over the burst: got %v, want a rate limit with RetryAfter 500ms", err)
	}
	// Another address has its own bucket.
	if _, _, err := c.Issue("b", pub); err != nil {
		t.Fatalf("other client: %v", err)
	}
	clock.Advance(500 * time.Millisecond)
	if _, _, err := c.Issue("a", pub); err != nil {
		t.Fatalf("after RetryAfter: %v", err)
	}
	if _, _, err := c.Issue("a", pub); err == nil {
		t.Fatal("second after RetryAfter: got a nonce, want the limit")
	}
	// Disabled.
	c, _ = newLimitedChallenges(ChallengeConfig{Rate: -1, Burst: 1})
	for i := range 50 {
		if _, _, err := c.Issue("a", pub); err != nil {
			t.Fatalf("rate disabled, issue %d: %v", i, err)
		}
	}
}

// TestChallengeFloodCannotEvictOthers is issue 10's case: one address asking
// for many challenges evicts only its own nonces, and a full table refuses
// new nonces rather than evict another address's.
func TestChallengeFloodCannotEvictOthers(t *testing.T) {
	victim, victimPriv := genKey(t)
	flooder, _ := genKey(t)
	c, clock := newLimitedChallenges(ChallengeConfig{Rate: -1, PerClient: 4, Max: 10})
	nonce, _, err := c.Issue("victim", victim)
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if _, _, err := c.Issue("flooder", flooder); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.Len(); got != 5 {
		t.Fatalf("outstanding: got %d, want 5 (4 of the flooder, 1 of the victim)", got)
	}
	// Many addresses fill the table: new challenges are refused until the
	// oldest expires, and the victim's nonce stays.
	for i := range 5 {
		if _, _, err := c.Issue(fmt.Sprint("other", i), flooder); err != nil {
			t.Fatalf("filling, %d: %v", i, err)
		}
	}
	clock.Advance(time.Minute)
	_, _, err = c.Issue("late", flooder)
	le, ok := errors.AsType[*ChallengeLimitError](err)
	if !ok || !le.Full || le.RetryAfter != DefaultChallengeTTL-time.Minute {
		t.Fatalf("full: got %v, want Full with RetryAfter %v", err, DefaultChallengeTTL-time.Minute)
	}
	if err := c.Verify(victim, nonce, ed25519.Sign(victimPriv, nonce)); err != nil {
		t.Fatalf("victim after the flood: got %v, want success", err)
	}
	// Idle client entries are forgotten once their bucket has refilled.
	clock.Advance(DefaultChallengeTTL)
	if _, _, err := c.Issue("late", flooder); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	n := len(c.clients)
	c.mu.Unlock()
	if n != 1 {
		t.Fatalf("client entries after expiry: got %d, want 1", n)
	}
}

func TestChallengeConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ChallengeConfig
		want string // "" when valid
	}{
		{"zero", ChallengeConfig{}, ""},
		{"rate disabled", ChallengeConfig{Rate: -1}, ""},
		{"negative ttl", ChallengeConfig{TTL: -time.Second}, "auth.challenges.ttl"},
		{"negative burst", ChallengeConfig{Burst: -1}, "auth.challenges.burst"},
		{"negative per_client", ChallengeConfig{PerClient: -1}, "auth.challenges.per_client"},
		{"negative max", ChallengeConfig{Max: -1}, "auth.challenges.max"},
		{"per_client over max", ChallengeConfig{PerClient: 20, Max: 10}, "auth.challenges.per_client 20 is over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "",
		"192.0.2.7":            "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
	} {
		var a netip.Addr
		if in != "" {
			a = netip.MustParseAddr(in)
		}
		if got := ClientKey(a); got != want {
			t.Errorf("ClientKey(%q): got %q, want %q", in, got, want)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifySignatureRFC8032(t *testing.T) {
	// RFC 8032 section 7.1, TEST 1 (empty message).
	pub := ed25519.PublicKey(mustHex(t, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"))
	sig := mustHex(t, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
	seed := mustHex(t, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	if got := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey); !got.Equal(pub) {
		t.Fatalf("got public key %x from the RFC seed, want %x", got, pub)
	}
	flipped := func(b []byte, i int) []byte {
		c := append([]byte(nil), b...)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name string
		pub  ed25519.PublicKey
		msg  []byte
		sig  []byte
		want bool
	}{
		{"rfc vector", pub, nil, sig, true},
		{"rfc vector empty slice message", pub, []byte{}, sig, true},
		{"other message", pub, []byte("x"), sig, false},
		{"flipped signature", pub, nil, flipped(sig, 0), false},
		{"flipped key", flipped(pub, 0), nil, sig, false},
		{"short signature", pub, nil, sig[:63], false},
		{"long signature", pub, nil, append(append([]byte(nil), sig...), 0), false},
		{"short key", pub[:31], nil, sig, false},
		{"nil key", nil, nil, sig, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifySignature(tt.pub, tt.msg, tt.sig); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
