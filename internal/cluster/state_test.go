package cluster_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
)

// An idempotent publication repeated on another node answers the first
// position without a second offset: the record is in the publish script.
func TestRedisIdempotentPublishAcrossNodes(t *testing.T) {
	ctx := context.Background()
	urls, _ := servers(t, 2, redistest.Options{})
	prefix := fmt.Sprintf("idem%d:", prefixSeq.Add(1))
	a := newBroker(t, urls, func(c *cluster.Config) { c.Prefix = prefix })
	b := newBroker(t, urls, func(c *cluster.Config) { c.NodeID, c.Prefix = "n2", prefix })
	idem := &hub.PublishIdem{Key: "user:u1\x00k", Fingerprint: "fp", TTL: time.Minute}
	opts := hub.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute, Idem: idem}
	first, err := a.Publish(ctx, "chat:x", json.RawMessage(`{"n":1}`), opts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Publish(ctx, "chat:x", json.RawMessage(`{"n":1}`), opts)
	if err != nil || again != first {
		t.Fatalf("got %+v, %v on node 2, want the first position %+v", again, err, first)
	}
	if got := b.Stats().IdemReplayed; got != 1 {
		t.Fatalf("got %d replayed on node 2, want 1", got)
	}
	other := *idem
	other.Fingerprint = "fp2"
	opts.Idem = &other
	if _, err := b.Publish(ctx, "chat:x", json.RawMessage(`{"n":2}`), opts); !errors.Is(err, hub.ErrIdemConflict) {
		t.Fatalf("got %v, want ErrIdemConflict", err)
	}
	pos, err := a.Position(ctx, "chat:x")
	if err != nil || pos != first {
		t.Fatalf("got position %+v, %v, want %+v: a repeat appended", pos, err, first)
	}
}

// A login challenge issued on one node is answered on another, once: the
// nonce lives in Redis.
func TestRedisLoginNonceAcrossNodes(t *testing.T) {
	ctx := context.Background()
	urls, _ := servers(t, 2, redistest.Options{})
	prefix := fmt.Sprintf("nonce%d:", prefixSeq.Add(1))
	ra := newBroker(t, urls, func(c *cluster.Config) { c.Prefix = prefix })
	rb := newBroker(t, urls, func(c *cluster.Config) { c.NodeID, c.Prefix = "n2", prefix })
	nodeA, nodeB, nodeC := auth.NewChallenges(auth.ChallengeConfig{}), auth.NewChallenges(auth.ChallengeConfig{}), auth.NewChallenges(auth.ChallengeConfig{})
	nodeA.Share(ra)
	nodeB.Share(rb)
	nodeC.Share(rb)
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)

	nonce, _, err := nodeA.IssueContext(ctx, "10.0.0.1", pub)
	if err != nil {
		t.Fatal(err)
	}
	// Another key's valid signature fails and leaves the nonce outstanding.
	if err := nodeB.VerifyContext(ctx, otherPub, nonce, ed25519.Sign(otherPriv, nonce)); auth.FailureReason(err) != auth.ReasonSignature {
		t.Fatalf("got %v for another key, want a signature failure", err)
	}
	// Two nodes answer at once: exactly one wins.
	sig := ed25519.Sign(priv, nonce)
	errs := make(chan error, 2)
	for _, n := range []*auth.Challenges{nodeB, nodeC} {
		go func() { errs <- n.VerifyContext(ctx, pub, nonce, sig) }()
	}
	won := 0
	for range 2 {
		err := <-errs
		switch {
		case err == nil:
			won++
		case !errors.Is(err, auth.ErrChallengeUnknown):
			t.Fatalf("got %v, want success or unknown", err)
		}
	}
	if won != 1 {
		t.Fatalf("got %d successful logins with one nonce, want 1", won)
	}
	// Used up everywhere, the issuing node included.
	if err := nodeA.VerifyContext(ctx, pub, nonce, sig); !errors.Is(err, auth.ErrChallengeUnknown) {
		t.Fatalf("got %v on the issuing node after use, want unknown", err)
	}
	if nodeA.Len() != 0 {
		t.Fatalf("got %d nonces on the issuing node, want 0", nodeA.Len())
	}

	// A nonce evicted by its node's per-client bound is gone everywhere.
	small := auth.NewChallenges(auth.ChallengeConfig{PerClient: 1})
	small.Share(ra)
	first, _, err := small.IssueContext(ctx, "10.0.0.2", pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := small.IssueContext(ctx, "10.0.0.2", pub); err != nil {
		t.Fatal(err)
	}
	if err := nodeB.VerifyContext(ctx, pub, first, ed25519.Sign(priv, first)); !errors.Is(err, auth.ErrChallengeUnknown) {
		t.Fatalf("got %v for an evicted nonce, want unknown", err)
	}
}

// Per-user connection counts hold across nodes; a node that stops
// refreshing (killed) has its counts vanish at their ttl.
func TestRedisUserConnsAcrossNodes(t *testing.T) {
	ctx := context.Background()
	urls, _ := servers(t, 2, redistest.Options{})
	prefix := fmt.Sprintf("uconn%d:", prefixSeq.Add(1))
	a := newBroker(t, urls, func(c *cluster.Config) { c.Prefix = prefix })
	b := newBroker(t, urls, func(c *cluster.Config) { c.NodeID, c.Prefix = "n2", prefix })
	const limit = 3
	acquire := func(br *cluster.Broker, holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := br.AcquireUserConn(ctx, "u/alice", holder, limit, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !acquire(a, "n1/x", time.Minute) || !acquire(a, "n1/x", time.Minute) {
		t.Fatal("node 1 refused under the limit")
	}
	if !acquire(b, "n2/y", time.Minute) {
		t.Fatal("node 2 refused the third connection")
	}
	if acquire(b, "n2/y", time.Minute) || acquire(a, "n1/x", time.Minute) {
		t.Fatal("a fourth connection was admitted across nodes, want refused")
	}
	// Another user is not affected.
	if ok, err := b.AcquireUserConn(ctx, "u/bob", "n2/y", limit, time.Minute); err != nil || !ok {
		t.Fatalf("got %v, %v for another user, want admitted", ok, err)
	}
	if err := a.ReleaseUserConns(ctx, "u/alice", "n1/x", 1); err != nil {
		t.Fatal(err)
	}
	if !acquire(b, "n2/y", time.Minute) {
		t.Fatal("refused after a release on the other node")
	}
	// Node 1 sets its count to 2 with a short lease, then dies (no more
	// refreshes): its connections stop counting once the lease passes.
	if err := a.RefreshUserConns(ctx, "n1/x", map[string]int{"u/alice": 1}, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if acquire(b, "n2/y", time.Minute) {
		t.Fatal("admitted over the limit with node 1's lease live")
	}
	waitFor(t, "node 1's counts to expire", func() bool { return acquire(b, "n2/y", time.Minute) })
	if acquire(b, "n2/y", time.Minute) {
		t.Fatal("admitted a fourth connection of node 2 alone")
	}
}

// A token bucket shared by nodes: the burst is the key's, across nodes.
func TestRedisTakeTokenAcrossNodes(t *testing.T) {
	ctx := context.Background()
	urls, _ := servers(t, 2, redistest.Options{})
	prefix := fmt.Sprintf("rate%d:", prefixSeq.Add(1))
	a := newBroker(t, urls, func(c *cluster.Config) { c.Prefix = prefix })
	b := newBroker(t, urls, func(c *cluster.Config) { c.NodeID, c.Prefix = "n2", prefix })
	// A slow refill (a token per 50 s), so that a loaded machine taking
	// seconds over these calls cannot see a token come back meanwhile.
	const slow = 0.02
	for i, n := range []*cluster.Broker{a, b, a} {
		if _, ok, err := n.TakeToken(ctx, "u/alice", slow, 3); err != nil || !ok {
			t.Fatalf("take %d: got %v, %v, want a token", i, ok, err)
		}
	}
	wait, ok, err := b.TakeToken(ctx, "u/alice", slow, 3)
	if err != nil || ok || wait <= 0 || wait > 50*time.Second {
		t.Fatalf("got %v, %v, %v over the burst, want refused with a wait up to 50s", wait, ok, err)
	}
	if _, ok, err := b.TakeToken(ctx, "u/bob", slow, 3); err != nil || !ok {
		t.Fatalf("another key: got %v, %v, want a token", ok, err)
	}
	// Refilled at the rate: with 5 tokens a second and a burst of 1, a
	// token taken on one node is back for the other after its wait.
	if _, ok, err := a.TakeToken(ctx, "u/carol", 5, 1); err != nil || !ok {
		t.Fatalf("carol's first token: got %v, %v", ok, err)
	}
	waitFor(t, "a refilled token", func() bool {
		_, ok, err := b.TakeToken(ctx, "u/carol", 5, 1)
		return err == nil && ok
	})
}
