package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
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

func newTestChallenges(ttl time.Duration, max int) (*Challenges, *testClock) {
	clock := newClock()
	c := NewChallenges(ttl, max)
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
		{"other key burns the nonce", func(c *Challenges, _ *testClock, n []byte) error {
			_ = c.Consume(other, n)
			return c.Consume(pub, n)
		}, ReasonUnknownKey, ErrChallengeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clock := newTestChallenges(0, 0)
			nonce, exp, err := c.Issue(pub)
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
	c := NewChallenges(time.Minute, 10)
	for _, key := range []ed25519.PublicKey{nil, make([]byte, 31), make([]byte, 33)} {
		if n, _, err := c.Issue(key); err == nil {
			t.Fatalf("Issue(%d-byte key): got nonce %x, want error", len(key), n)
		}
	}
}

func TestChallengeCapacityEviction(t *testing.T) {
	c, clock := newTestChallenges(time.Minute, 3)
	pub, _ := genKey(t)
	var nonces [][]byte
	for range 5 {
		n, _, err := c.Issue(pub)
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
		if _, _, err := c.Issue(pub); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute)
	if _, _, err := c.Issue(pub); err != nil {
		t.Fatal(err)
	}
	if got := c.Len(); got != 1 {
		t.Fatalf("got %d outstanding after expiry, want 1", got)
	}
}

func TestChallengeConcurrentConsume(t *testing.T) {
	c := NewChallenges(time.Minute, 100)
	pub, _ := genKey(t)
	for round := range 50 {
		nonce, _, err := c.Issue(pub)
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
	nonce, _, err := c.Issue(pub)
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
