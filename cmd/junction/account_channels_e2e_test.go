package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// docsNamespaceYAML returns the example configuration of docs/channels.md
// (its first yaml block), read from the doc so that the doc cannot drift
// from what the binary accepts.
func docsNamespaceYAML(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "channels.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "```yaml\n")
	if !ok {
		t.Fatal("docs/channels.md has no yaml block")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok || !strings.Contains(block, "snapshot: session") || !strings.Contains(block, "owner: session") {
		t.Fatalf("docs/channels.md example is not the one this test is about:\n%s", block)
	}
	return block
}

// startWithConfigFile starts the real Main from a config file, as
// "junction serve --config FILE" does.
func startWithConfigFile(t *testing.T, yaml string) *Main {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "junction.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cfg, err := loadConfig("serve", []string{"--config", file, "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--log-level", "error"}, nil, &stderr)
	if err != nil {
		t.Fatalf("load the docs' config: %v (%s)", err, stderr.String())
	}
	m := NewMain(cfg, io.Discard, io.Discard)
	if err := m.Open(context.Background()); err != nil {
		t.Fatalf("open with the docs' config: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// subscribeResult subscribes c to topic and returns what OnSubscribed saw.
func subscribeResult(t *testing.T, c *client.Client, topic string) (client.Subscribed, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan client.Subscribed, 1)
	_, err := c.SubscribeWith(ctx, topic, func(client.Publication) {}, client.SubscribeOptions{
		OnSubscribed: func(s client.Subscribed) {
			select {
			case got <- s:
			default:
			}
		}})
	if err != nil {
		return client.Subscribed{}, err
	}
	select {
	case s := <-got:
		return s, nil
	case <-ctx.Done():
		t.Fatalf("subscribe %s: no OnSubscribed", topic)
	}
	return client.Subscribed{}, nil
}

// TestDocsExampleConfigStarts starts the binary with the exact example of
// docs/channels.md: the session namespace's owner rule and snapshot use
// the built-in "session" owner lookup and snapshot provider.
func TestDocsExampleConfigStarts(t *testing.T) {
	m := startWithConfigFile(t, docsNamespaceYAML(t))

	alice := login(t, m, newKey(t), "phone")
	var s protocol.Session
	apiJSON(t, m, alice.AccessToken, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte("m1")), "agentState": b64([]byte("a1"))}, 201, &s)
	var updated protocol.Session
	apiJSON(t, m, alice.AccessToken, "PUT", "/api/v1/sessions/"+s.ID+"/metadata", map[string]any{"value": b64([]byte("m2")), "expectedVersion": 1}, 200, &updated)

	// The owner subscribes and gets the session as stored, in the same
	// wire form as GET /api/v1/sessions/{id}.
	c := dialToken(t, m, alice.AccessToken)
	sub, err := subscribeResult(t, c, "session:"+s.ID)
	if err != nil {
		t.Fatalf("owner subscribe: %v", err)
	}
	var snap protocol.Session
	if err := json.Unmarshal(sub.Snapshot, &snap); err != nil {
		t.Fatalf("snapshot %s: %v", sub.Snapshot, err)
	}
	_, rawGet := apiCall(t, m, alice.AccessToken, "GET", "/api/v1/sessions/"+s.ID, nil)
	if !bytes.Equal(bytes.TrimSpace(rawGet), sub.Snapshot) {
		t.Errorf("snapshot differs from GET:\n got %s\nwant %s", sub.Snapshot, bytes.TrimSpace(rawGet))
	}
	if snap.ID != s.ID || string(snap.Metadata.Value) != "m2" || snap.Metadata.Version != 2 || string(snap.AgentState.Value) != "a1" {
		t.Errorf("snapshot: got %+v, want the session with metadata m2 v2", snap)
	}

	// Publishing needs owner & scope=write: the owner may.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.Publish(ctx, "session:"+s.ID, map[string]string{"typing": "yes"}); err != nil {
		t.Fatalf("owner publish: %v", err)
	}

	// Another account may neither subscribe nor publish.
	mallory := dialToken(t, m, login(t, m, newKey(t), "phone").AccessToken)
	if _, err := subscribeResult(t, mallory, "session:"+s.ID); codeOf(err) != protocol.CodeForbidden {
		t.Errorf("other account subscribe: got %v, want forbidden", err)
	}
	if _, _, err := mallory.Publish(ctx, "session:"+s.ID, 1); codeOf(err) != protocol.CodeForbidden {
		t.Errorf("other account publish: got %v, want forbidden", err)
	}
	// A session that does not exist has no owner: forbidden, never "not
	// found" (that would reveal which ids exist).
	if _, err := subscribeResult(t, c, "session:nope"); codeOf(err) != protocol.CodeForbidden {
		t.Errorf("missing session: got %v, want forbidden", err)
	}
}

// TestOwnerSubscribesToOwnDevices: the built-in device owner lookup lets an
// account's other devices use device:{id}; other accounts are refused.
func TestOwnerSubscribesToOwnDevices(t *testing.T) {
	m := startServer(t, nil)
	key := newKey(t)
	phone := login(t, m, key, "phone")
	laptop := login(t, m, key, "browser")
	other := login(t, m, newKey(t), "phone")

	phoneConn := dialToken(t, m, phone.AccessToken)
	got := make(chan client.Publication, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := phoneConn.Subscribe(ctx, "device:"+phone.DeviceID, func(p client.Publication) { got <- p }); err != nil {
		t.Fatalf("own device: %v", err)
	}

	laptopConn := dialToken(t, m, laptop.AccessToken)
	if _, err := subscribeResult(t, laptopConn, "device:"+phone.DeviceID); err != nil {
		t.Fatalf("the owner's second device on device:{first}: %v", err)
	}
	if _, _, err := laptopConn.Publish(ctx, "device:"+phone.DeviceID, map[string]string{"from": "laptop"}); err != nil {
		t.Fatalf("the owner's second device publishing: %v", err)
	}
	select {
	case p := <-got:
		if !strings.Contains(string(p.Data), "laptop") {
			t.Fatalf("phone got %s", p.Data)
		}
	case <-ctx.Done():
		t.Fatal("the phone did not receive its owner's publication")
	}

	otherConn := dialToken(t, m, other.AccessToken)
	if _, err := subscribeResult(t, otherConn, "device:"+phone.DeviceID); codeOf(err) != protocol.CodeForbidden {
		t.Errorf("another account's device: got %v, want forbidden", err)
	}
	if _, _, err := otherConn.Publish(ctx, "device:"+phone.DeviceID, 1); codeOf(err) != protocol.CodeForbidden {
		t.Errorf("another account's publish: got %v, want forbidden", err)
	}
}

// TestRetainedSnapshot: snapshot "retained" answers the topic's last
// publication with its position; a namespace without history refuses it.
func TestRetainedSnapshot(t *testing.T) {
	m := startServer(t, withNamespaces(hub.NamespaceConfig{
		Pattern: "state:{name}", Subscribe: []string{"any"}, Publish: []string{"scope=write"},
		HistorySize: 4, Snapshot: hub.SnapshotRetained,
	}))
	pub := dialClient(t, m, "alice", "a1", "phone")
	sub := dialClient(t, m, "bob", "b1", "phone")

	// Nothing published yet: null at offset 0.
	first, err := subscribeResult(t, sub, "state:empty")
	if err != nil {
		t.Fatal(err)
	}
	if string(first.Snapshot) != "null" || first.Offset != 0 {
		t.Errorf("empty topic: got snapshot %s at %d, want null at 0", first.Snapshot, first.Offset)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 1; i <= 6; i++ { // more than history_size: the last is still there
		if _, _, err := pub.Publish(ctx, "state:lamp", map[string]int{"level": i}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := subscribeResult(t, sub, "state:lamp")
	if err != nil {
		t.Fatal(err)
	}
	var last struct {
		Offset uint64          `json:"offset"`
		Epoch  string          `json:"epoch"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(got.Snapshot, &last); err != nil {
		t.Fatalf("snapshot %s: %v", got.Snapshot, err)
	}
	if string(last.Data) != `{"level":6}` || last.Offset != 6 || got.Offset != 6 || last.Epoch != got.Epoch {
		t.Errorf("retained: got %s at position %s/%d, want level 6 at offset 6 of the same epoch", got.Snapshot, got.Epoch, got.Offset)
	}

	// Config validation: retained needs history.
	cfg := &Config{Addr: "127.0.0.1:0", Data: t.TempDir()}
	cfg.Hub.Namespaces = []hub.NamespaceConfig{{Pattern: "state:{name}", Subscribe: []string{"any"}, Publish: []string{"any"}, Snapshot: hub.SnapshotRetained}}
	cfg.setDefaults()
	err = cfg.validate()
	if err == nil {
		m2 := NewMain(cfg, io.Discard, io.Discard)
		err = m2.Open(context.Background())
		if err == nil {
			_ = m2.Close(context.Background())
		}
	}
	if err == nil || !strings.Contains(err.Error(), "history_size") {
		t.Fatalf("retained without history: got %v, want an error naming history_size", err)
	}
}

// TestRevokedDeviceInBandRefresh: a device revoked while its connection
// stays open (a revocation through another node sharing the database,
// which cannot close this node's connection) cannot renew its credential
// in-band: auth.refresh checks revocation like the upgrade and REST.
func TestRevokedDeviceInBandRefresh(t *testing.T) {
	m := startServer(t, nil)
	tok := login(t, m, newKey(t), "phone")
	c := dialToken(t, m, tok.AccessToken)

	fresh := func() string {
		var next protocol.Tokens
		apiJSON(t, m, tok.AccessToken, "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": tok.RefreshToken}, 200, &next)
		tok.RefreshToken = next.RefreshToken
		return next.AccessToken
	}
	// Before the revocation a fresh token renews the connection.
	if err := call(t, c, "auth.refresh", map[string]string{"token": fresh()}, nil); err != nil {
		t.Fatalf("refresh before revocation: %v", err)
	}
	// A token minted for the device (still valid by signature and expiry).
	later := mintTokenFor(t, m, tok.AccountID, tok.DeviceID)

	// Revoke in the store directly: this node's hub is not told, so the
	// connection stays open, as it would on another node.
	if _, _, err := m.Store.RevokeDevice(context.Background(), tok.AccountID, tok.DeviceID); err != nil {
		t.Fatal(err)
	}
	err := call(t, c, "auth.refresh", map[string]string{"token": later}, nil)
	if codeOf(err) != protocol.CodeUnauthorized {
		t.Fatalf("in-band refresh of a revoked device: got %v, want unauthorized", err)
	}
	// The upgrade and REST refuse it too.
	if status, _ := apiCall(t, m, later, "GET", "/api/v1/auth/me", nil); status != 401 {
		t.Errorf("REST with a revoked device's token: status %d, want 401", status)
	}
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c2, err := client.Dial(dctx, client.Options{URL: m.WSURL() + "/ws", Token: later}); err == nil {
		_ = c2.Close()
		t.Error("upgrade with a revoked device's token succeeded")
	}
}

// mintTokenFor issues an access token for an account's device, as login
// would.
func mintTokenFor(t *testing.T, m *Main, account, device string) string {
	t.Helper()
	return mintToken(t, m, account, device, "phone")
}
