package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// Shared state of a cluster (docs/cluster.md): two real nodes on one
// redis-server (two shards for the readiness test).

// twoNodes starts two servers sharing the Redis URLs, each with configure.
func twoNodes(t *testing.T, broker string, configure func(*Config)) (*Main, *Main) {
	t.Helper()
	cfg := func(c *Config) {
		c.Broker = broker
		if configure != nil {
			configure(c)
		}
	}
	a, b := startServer(t, cfg), startServer(t, cfg)
	if a.Hub.NodeID() == b.Hub.NodeID() {
		t.Fatalf("two nodes with one id %q", a.Hub.NodeID())
	}
	return a, b
}

// An idempotent publish retried on the other node answers the first
// {epoch, offset} and publishes nothing, also when the hub's record of the
// first request is gone (its node died before storing it): the publication's
// own record, written by the publish script, answers.
func TestClusterStateIdempotentPublish(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	a, b := twoNodes(t, rs.URL(), withNamespaces(hub.NamespaceConfig{
		Pattern: "feed:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, HistorySize: 100,
	}))
	// The same device (the idempotency key space is per device) retries on node B.
	tokA, tokB := mintToken(t, a, "alice", "a1", "phone"), mintToken(t, b, "alice", "a1", "phone")
	body := map[string]any{"data": map[string]int{"n": 1}}
	var first, again protocol.PublishResult
	apiJSON(t, a, tokA, "POST", "/api/v1/channels/feed:1/publish", body, 200, &first, "Idempotency-Key", "k1")
	if first.Offset != 1 || first.Epoch == "" {
		t.Fatalf("got %+v, want offset 1", first)
	}
	apiJSON(t, b, tokB, "POST", "/api/v1/channels/feed:1/publish", body, 200, &again, "Idempotency-Key", "k1")
	if again != first {
		t.Fatalf("got %+v on node B, want the first result %+v", again, first)
	}
	// Over the WebSocket, on node B, the same key space.
	cb := dialClient(t, b, "alice", "a1", "phone")
	var ws protocol.PublishResult
	if err := callIdem(t, cb, "channel.publish", map[string]any{"topic": "feed:1", "data": map[string]int{"n": 1}}, "k1", &ws); err != nil || ws != first {
		t.Fatalf("got %+v, %v over the WebSocket on node B, want %+v", ws, err, first)
	}

	// The hub's records vanish (as if node A died between publishing and
	// recording the outcome, and the record went stale): a retry on node B
	// runs the request again, and the publish script answers the first
	// offset without appending.
	if _, err := rs.Do("EVAL", "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1", "0", "junction:idem:*"); err != nil {
		t.Fatal(err)
	}
	var retried protocol.PublishResult
	apiJSON(t, b, tokB, "POST", "/api/v1/channels/feed:1/publish", body, 200, &retried, "Idempotency-Key", "k1")
	if retried != first {
		t.Fatalf("got %+v after the records were lost, want the first result %+v", retried, first)
	}
	var hist protocol.HistoryResult
	apiJSON(t, a, tokA, "GET", "/api/v1/channels/feed:1/history", nil, 200, &hist)
	if len(hist.Publications) != 1 || hist.Offset != 1 {
		t.Fatalf("got history %+v, want one publication at offset 1", hist)
	}
	// Another key publishes.
	var next protocol.PublishResult
	apiJSON(t, b, tokB, "POST", "/api/v1/channels/feed:1/publish", body, 200, &next, "Idempotency-Key", "k2")
	if next.Offset != 2 || next.Epoch != first.Epoch {
		t.Fatalf("got %+v for another key, want offset 2", next)
	}
}

// callIdem makes a WebSocket call with an idempotency key.
func callIdem(t *testing.T, c *client.Client, method string, params any, key string, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.CallIdem(ctx, method, params, key, out)
}

// A login challenge issued by node A is answered on node B, once: the nonce
// is used up cluster-wide.
func TestClusterStateChallengeAcrossNodes(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	a, b := twoNodes(t, rs.URL(), nil)
	priv := newKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	nonce := challenge(t, a, priv)
	req := map[string]any{
		"publicKey": b64(pub),
		"nonce":     b64(nonce),
		"signature": b64(ed25519.Sign(priv, nonce)),
		"device":    map[string]string{"name": "phone", "kind": "phone"},
	}
	var tokens protocol.Tokens
	apiJSON(t, b, "", "POST", "/api/v1/auth/login", req, 200, &tokens)
	if tokens.AccessToken == "" {
		t.Fatalf("got %+v, want tokens", tokens)
	}
	for _, m := range []*Main{a, b} {
		status, raw := apiCall(t, m, "", "POST", "/api/v1/auth/login", req)
		if e := decodeAPIError(t, raw); status != http.StatusUnauthorized || e.Error.Code != string(protocol.CodeUnauthorized) {
			t.Fatalf("replayed nonce on %s: got %d %s, want 401 unauthorized", m.Hub.NodeID(), status, raw)
		}
	}
}

// hub.max_connections_per_user counts a user's connections on every node.
func TestClusterStateUserConnLimit(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	a, b := twoNodes(t, rs.URL(), func(c *Config) { c.Hub.MaxConnectionsPerUser = 2 })
	first, _, err := dialRaw(t, a, bearer(mintToken(t, a, "u-many", "d-1", "phone")), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dialRaw(t, b, bearer(mintToken(t, b, "u-many", "d-2", "phone")), ""); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Main{a, b} {
		status, ra, e := handshake(t, m, bearer(mintToken(t, m, "u-many", "d-3", "phone")))
		wantRefusal(t, "the user's third connection on "+m.Hub.NodeID(), status, ra, e, 429, protocol.CodeRateLimited)
	}
	if _, _, err := dialRaw(t, b, bearer(mintToken(t, b, "u-other", "d-9", "phone")), ""); err != nil {
		t.Fatalf("another user: %v", err)
	}
	// A connection closed on node A frees a slot on node B.
	first.nc.Close()
	var third *rawConn
	eventually(t, "the user's slot given back across nodes", func() bool {
		c, _, err := dialRaw(t, b, bearer(mintToken(t, b, "u-many", "d-3", "phone")), "")
		third = c
		return err == nil
	})
	// Node A holds one more, then stops: its count is dropped as it
	// closes, not kept for hub.presence_ttl (60 s).
	third.nc.Close()
	eventually(t, "a slot on node A", func() bool {
		_, _, err := dialRaw(t, a, bearer(mintToken(t, a, "u-many", "d-4", "phone")), "")
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node A's connections no longer counted", func() bool {
		c, _, err := dialRaw(t, b, bearer(mintToken(t, b, "u-many", "d-5", "phone")), "")
		if err == nil {
			c.nc.Close()
		}
		return err == nil
	})
}

// /readyz names each dependency; a Redis shard killed makes the node not
// ready with that shard named, and its return makes it ready again without
// a restart of the node.
func TestClusterStateReadyz(t *testing.T) {
	shards := []*redistest.Server{redistest.New(t, redistest.Options{}), redistest.New(t, redistest.Options{})}
	m := startServer(t, func(c *Config) { c.Broker = shards[0].URL() + "," + shards[1].URL() })
	type dep struct {
		Check     string  `json:"check"`
		Status    string  `json:"status"`
		Addr      string  `json:"addr"`
		LatencyMs float64 `json:"latency_ms"`
		Error     string  `json:"error"`
		LastError string  `json:"last_error"`
	}
	type readyz struct {
		Status       string            `json:"status"`
		Checks       map[string]string `json:"checks"`
		Dependencies map[string]dep    `json:"dependencies"`
		Details      map[string]any    `json:"details"`
	}
	get := func() (int, readyz) {
		status, raw := apiCall(t, m, "", "GET", "/readyz", nil)
		var r readyz
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("readyz %s: %v", raw, err)
		}
		return status, r
	}
	status, r := get()
	if status != 200 || r.Status != "ready" || r.Checks["broker"] != "ok" || r.Checks["store"] != "ok" || r.Details["services"] == nil {
		t.Fatalf("got %d %+v, want ready with checks and details as before", status, r)
	}
	for name, wantCheck := range map[string]string{"database": "store", "redis shard 0": "broker", "redis shard 1": "broker", "node lease": "broker", "node channel": "broker"} {
		if d, ok := r.Dependencies[name]; !ok || d.Check != wantCheck || d.Status != "ok" || d.LatencyMs < 0 {
			t.Fatalf("got dependency %q = %+v, want ok under %s", name, d, wantCheck)
		}
	}
	if d := r.Dependencies["redis shard 1"]; d.Addr != shards[1].Addr() {
		t.Fatalf("got shard 1 at %q, want %s", d.Addr, shards[1].Addr())
	}

	shards[1].Kill()
	status, r = get()
	if d := r.Dependencies["redis shard 1"]; status != 503 || r.Status != "not ready" || r.Checks["broker"] != "unavailable" || d.Status != "unavailable" || d.Error == "" {
		t.Fatalf("got %d %+v with shard 1 killed, want not ready naming it", status, r)
	}
	if d := r.Dependencies["redis shard 0"]; d.Status != "ok" {
		t.Fatalf("got shard 0 %+v, want ok", d)
	}

	if err := shards[1].Restart(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	eventuallyLong(t, "ready again", func() bool {
		status, r = get()
		return status == 200
	})
	if d := r.Dependencies["redis shard 1"]; d.Status != "ok" || d.LastError == "" {
		t.Fatalf("got shard 1 %+v, want ok with its last error kept", d)
	}
}

// web.principal_rate counts a user's REST requests on every node: the
// burst is the user's, not each node's.
func TestClusterStatePrincipalRate(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	a, b := twoNodes(t, rs.URL(), func(c *Config) { c.Web.PrincipalRate, c.Web.PrincipalBurst = 1, 3 })
	tokA, tokB := mintToken(t, a, "u-busy", "d-1", "phone"), mintToken(t, b, "u-busy", "d-2", "phone")
	for i, n := range []struct {
		m   *Main
		tok string
	}{{a, tokA}, {b, tokB}, {a, tokA}} {
		if status, _, raw := restFrom(t, n.m, "", n.tok, "POST", "/api/v1/channels/user:u-busy/publish", `{"data":1}`); status != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, status, raw)
		}
	}
	// Node B served one request of the user: its own bucket would let
	// this one through; the user's bucket in Redis is empty.
	status, ra, raw := restFrom(t, b, "", tokB, "POST", "/api/v1/channels/user:u-busy/publish", `{"data":1}`)
	wantRefusal(t, "the user's request over its rate on the other node", status, ra, decodeAPIError(t, raw), 429, protocol.CodeRateLimited)
	if status, _, raw := restFrom(t, b, "", mintToken(t, b, "u-calm", "d-3", "phone"), "POST", "/api/v1/channels/user:u-calm/publish", `{"data":1}`); status != 200 {
		t.Fatalf("another user: %d %s", status, raw)
	}
}
