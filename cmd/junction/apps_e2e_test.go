package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// Issue 13, items 1 and 2, end to end through the real server: apps and
// their API keys (admin REST and WS, the CLI), keys accepted at the upgrade
// and on REST and refused with documented errors, rotation with overlap,
// installation with consent and its immediate effect on live connections,
// and apps kept apart.

// appsServer starts a server on a clock the test moves, logging everything
// at debug level into the returned buffer.
func appsServer(t *testing.T) (m *Main, advance func(time.Duration), logs *syncBuffer) {
	t.Helper()
	return appsServerWith(t, func(c *Config) { c.Hub.TokenExpiryWarning = 5 * time.Second })
}

// adminTok is an admin access token of m.
func adminTok(t *testing.T, m *Main) string {
	return mintToken(t, m, "op", "", "machine", auth.ScopeAdmin)
}

// createApp registers an app through the admin REST API.
func createApp(t *testing.T, m *Main, params map[string]any) protocol.AppCreated {
	t.Helper()
	var res protocol.AppCreated
	apiJSON(t, m, adminTok(t, m), "POST", "/api/v1/admin/apps", params, 201, &res)
	return res
}

// wsHandshake tries a WebSocket upgrade with credential and extra headers
// (name, value pairs) and returns the status and, when refused, the error.
func wsHandshake(t *testing.T, m *Main, credential string, headers ...string) (int, apiError) {
	t.Helper()
	req, _ := http.NewRequest("GET", m.URL()+"/ws", nil)
	req.Header.Set("Authorization", "Bearer "+credential)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e apiError
	if resp.StatusCode != http.StatusSwitchingProtocols {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		e = decodeAPIError(t, buf.Bytes())
	}
	return resp.StatusCode, e
}

// dialApp connects the Go SDK with an app key, acting for user when set.
func dialApp(t *testing.T, m *Main, key, user string) *client.Client {
	t.Helper()
	o := client.Options{URL: m.WSURL() + "/ws", Token: key}
	if user != "" {
		o.Header = http.Header{auth.UserHeader: {user}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, checkedOptions(m, o))
	if err != nil {
		t.Fatalf("dial as app (user %q): %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// wantKeyRefused checks that credential gets status with message containing
// reason, both on REST and at the upgrade.
func wantKeyRefused(t *testing.T, m *Main, what, credential string, status int, reason string, headers ...string) {
	t.Helper()
	code, raw := apiCall(t, m, credential, "GET", "/api/v1/apps/installs", nil, headers...)
	if e := decodeAPIError(t, raw); code != status || !strings.Contains(e.Error.Message, reason) {
		t.Errorf("%s on REST: %d %s, want %d naming %q", what, code, raw, status, reason)
	}
	code, e := wsHandshake(t, m, credential, headers...)
	if code != status || !strings.Contains(e.Error.Message, reason) {
		t.Errorf("%s at the upgrade: %d %+v, want %d naming %q", what, code, e.Error, status, reason)
	}
}

// TestAppKeys: a registered app's key is accepted at the upgrade and on
// REST as the app's principal; malformed, unknown, wrong, expired and
// revoked keys are refused with 401 naming the reason; revoking closes the
// key's live connections; the secret is shown once and never logged; the
// last use is recorded.
func TestAppKeys(t *testing.T) {
	m, advance, logs := appsServer(t)
	created := createApp(t, m, map[string]any{"id": "com.example.captions", "name": "Captions",
		"scopes": []string{"read", "write"}, "webhookUrl": "https://captions.example.com/hooks", "capabilities": []string{"display"}})
	key, keyID := created.Key.Key, created.Key.AppKey.ID
	if !strings.HasPrefix(key, "jk_"+keyID+"_") || created.App.Kind != "foreground" || created.App.Priority != "foreground" || created.App.Owner != "op" {
		t.Fatalf("created %+v", created)
	}
	_, secret, err := auth.ParseAPIKey(key)
	if err != nil || len(secret) != 32 {
		t.Fatalf("the key does not parse to a 256-bit secret: %v", err)
	}
	secretPart := key[len("jk_"+keyID+"_"):]

	// Accepted at the upgrade: the app's principal with its scopes.
	c := dialApp(t, m, key, "")
	if p := c.Welcome().Principal; p.AppID != "com.example.captions" || p.UserID != "" || strings.Join(p.Scopes, ",") != "read,write" {
		t.Fatalf("welcome principal %+v, want app com.example.captions with read,write and no user", p)
	}
	// And on REST: the app's installations (none yet).
	var ins protocol.AppInstallList
	apiJSON(t, m, key, "GET", "/api/v1/apps/installs", nil, 200, &ins)
	if len(ins.Installs) != 0 {
		t.Fatalf("installs %+v, want none", ins)
	}

	// Refusals, each with its documented reason.
	wrong := "jk_" + keyID + "_" + strings.Repeat("A", 43)
	if wrong == key {
		wrong = "jk_" + keyID + "_" + strings.Repeat("B", 43)
	}
	wantKeyRefused(t, m, "malformed", "jk_0123456789abcdef0123456789abcdef", 401, "malformed")
	wantKeyRefused(t, m, "unknown id", "jk_00000000000000ff_"+secretPart, 401, "unknown_key")
	wantKeyRefused(t, m, "wrong secret", wrong, 401, "signature")
	// A key's id bound to another key's secret does not verify either.
	other := createApp(t, m, map[string]any{"id": "com.example.other", "name": "Other"})
	otherSecret := other.Key.Key[len("jk_"+other.Key.AppKey.ID+"_"):]
	wantKeyRefused(t, m, "another key's secret", "jk_"+keyID+"_"+otherSecret, 401, "signature")

	// Last use is written coalesced: nothing until the writer runs.
	var keys protocol.AppKeyList
	m.Apps.FlushLastUse(t.Context())
	apiJSON(t, m, adminTok(t, m), "GET", "/api/v1/admin/apps/com.example.captions/keys", nil, 200, &keys)
	if len(keys.Keys) != 1 || keys.Keys[0].LastUsedAt == nil || !keys.Keys[0].Active || keys.Keys[0].ExpiresAt != nil {
		t.Fatalf("keys %+v, want one active key with a last use", keys)
	}

	// Expiry: a key with a ttl is refused once it passed.
	short := createApp(t, m, map[string]any{"id": "com.example.short", "name": "Short", "keyTtlMs": 60_000})
	apiJSON(t, m, short.Key.Key, "GET", "/api/v1/apps/installs", nil, 200, nil)
	advance(61 * time.Second)
	wantKeyRefused(t, m, "expired", short.Key.Key, 401, "expired")

	// Revocation: refused at once, and the key's live connection closed.
	var revoked protocol.AppKey
	apiJSON(t, m, adminTok(t, m), "DELETE", "/api/v1/admin/apps/com.example.captions/keys/"+keyID, nil, 200, &revoked)
	if revoked.RevokedAt == nil || revoked.Active {
		t.Fatalf("revoked key %+v", revoked)
	}
	wantClosed(t, c, "connection of a revoked key", protocol.CloseForbidden)
	wantKeyRefused(t, m, "revoked", key, 401, "revoked")

	// The secret was shown once: not in the key listing, never in the logs
	// (debug level included).
	status, raw := apiCall(t, m, adminTok(t, m), "GET", "/api/v1/admin/apps/com.example.captions/keys", nil)
	if status != 200 || strings.Contains(string(raw), secretPart) {
		t.Fatalf("key listing %d %s: want 200 without the secret", status, raw)
	}
	if strings.Contains(logs.String(), secretPart) || strings.Contains(logs.String(), otherSecret) {
		t.Fatal("an API key's secret appears in the server's log")
	}
	if !strings.Contains(logs.String(), keyID) {
		t.Fatal("the server's log never names the key id (want registrations and revocations logged by id)")
	}
}

// TestAppKeyRotation: a rotation adds a key and keeps the old one working
// for the overlap only; a live connection of the old key is closed with
// 4001 when the overlap ends, one of the new key stays.
func TestAppKeyRotation(t *testing.T) {
	m, advance, _ := appsServer(t)
	old := createApp(t, m, map[string]any{"id": "com.example.rotate", "name": "Rotate", "scopes": []string{"read"}}).Key.Key
	oldConn := dialApp(t, m, old, "")
	apiJSON(t, m, mintToken(t, m, "alice", "alice-phone", "phone"), "PUT", "/api/v1/apps/com.example.rotate/install", map[string]any{"scopes": []string{"read"}}, 200, nil)
	forAlice := dialApp(t, m, old, "alice")

	var fresh protocol.AppKeySecret
	apiJSON(t, m, adminTok(t, m), "POST", "/api/v1/admin/apps/com.example.rotate/keys", map[string]any{"overlapMs": 60_000}, 201, &fresh)
	if !strings.HasPrefix(fresh.Key, "jk_"+fresh.AppKey.ID+"_") || fresh.AppKey.ExpiresAt != nil {
		t.Fatalf("rotated key %+v, want a new key without expiry", fresh.AppKey)
	}
	// Overlap: both keys work.
	apiJSON(t, m, old, "GET", "/api/v1/apps/installs", nil, 200, nil)
	apiJSON(t, m, fresh.Key, "GET", "/api/v1/apps/installs", nil, 200, nil)
	newConn := dialApp(t, m, fresh.Key, "")
	var keys protocol.AppKeyList
	apiJSON(t, m, adminTok(t, m), "GET", "/api/v1/admin/apps/com.example.rotate/keys", nil, 200, &keys)
	if len(keys.Keys) != 2 || keys.Keys[0].ExpiresAt == nil || !keys.Keys[0].Active || !keys.Keys[1].Active {
		t.Fatalf("keys during the overlap %+v, want the old one expiring and both active", keys.Keys)
	}

	// A connection acting for alice moves to the new key in-band and
	// keeps acting for her.
	var refreshed protocol.RefreshResult
	if err := call(t, forAlice, "auth.refresh", map[string]any{"token": fresh.Key}, &refreshed); err != nil || refreshed.ExpiresAtMs != 0 {
		t.Fatalf("auth.refresh with the new key: %+v %v, want a credential that does not expire", refreshed, err)
	}
	var who protocol.WhoamiResult
	if err := call(t, forAlice, "conn.whoami", nil, &who); err != nil || who.Principal.UserID != "alice" || strings.Join(who.Principal.Scopes, ",") != "read" {
		t.Fatalf("after the refresh: %+v %v, want alice with read", who.Principal, err)
	}
	// Another app's key cannot take the connection over.
	otherKey := createApp(t, m, map[string]any{"id": "com.example.thief", "name": "Thief", "scopes": []string{"read"}}).Key.Key
	if err := call(t, forAlice, "auth.refresh", map[string]any{"token": otherKey}, nil); asProtocolError(err) == nil {
		t.Fatal("auth.refresh with another app's key succeeded")
	}

	// After the overlap: the old key is refused and its connection closed.
	advance(61 * time.Second)
	wantKeyRefused(t, m, "old key after the overlap", old, 401, "expired")
	wantClosed(t, oldConn, "connection of the old key", protocol.CloseTokenExpired)
	apiJSON(t, m, fresh.Key, "GET", "/api/v1/apps/installs", nil, 200, nil)
	for _, c := range []*client.Client{newConn, forAlice} {
		if err := call(t, c, "sys.ping", nil, nil); err != nil {
			t.Fatalf("a connection on the new key after the overlap: %v", err)
		}
	}

	// Overlap 0 ends the other keys now.
	var third protocol.AppKeySecret
	apiJSON(t, m, adminTok(t, m), "POST", "/api/v1/admin/apps/com.example.rotate/keys", map[string]any{"overlapMs": 0}, 201, &third)
	wantKeyRefused(t, m, "second key after a rotation without overlap", fresh.Key, 401, "expired")
	wantClosed(t, newConn, "connection of the second key", protocol.CloseTokenExpired)
	apiJSON(t, m, third.Key, "GET", "/api/v1/apps/installs", nil, 200, nil)
}

// TestAppInstallLive: a user installs an app granting a subset of its
// scopes (over the WebSocket), the app acts for the user within them; a
// narrowed grant drops the app's subscriptions at once, an uninstall (over
// REST) closes its connection and refuses it from then on.
func TestAppInstallLive(t *testing.T) {
	m, _, _ := appsServer(t)
	key := createApp(t, m, map[string]any{"id": "com.example.live", "name": "Live", "scopes": []string{"read", "write", "stream.audio"}}).Key.Key
	alice := dialClient(t, m, "alice", "alice-phone", "phone")

	// Not installed yet: the app cannot act for alice.
	wantKeyRefused(t, m, "not installed", key, 403, "not installed", auth.UserHeader, "alice")

	// Consent cannot exceed the app's scopes or the user's own.
	err := call(t, alice, "apps.install", map[string]any{"appId": "com.example.live", "scopes": []string{"admin"}}, nil)
	if pe := asProtocolError(err); pe == nil || pe.Code != protocol.CodeBadRequest {
		t.Fatalf("granting a scope the app does not ask for: %v, want bad_request", err)
	}
	reader := dialClient(t, m, "alice", "alice-tv", "tv", auth.ScopeRead)
	err = call(t, reader, "apps.install", map[string]any{"appId": "com.example.live", "scopes": []string{"read"}}, nil)
	if pe := asProtocolError(err); pe == nil || pe.Code != protocol.CodeForbidden {
		t.Fatalf("installing with a read-only credential: %v, want forbidden", err)
	}

	var inst protocol.AppInstalled
	if err := call(t, alice, "apps.install", map[string]any{"appId": "com.example.live", "scopes": []string{"read", "write"}}, &inst); err != nil {
		t.Fatal(err)
	}
	if !inst.Created || strings.Join(inst.Install.Scopes, ",") != "read,write" || inst.Install.UserID != "alice" {
		t.Fatalf("install %+v", inst)
	}

	// The app acts for alice with what she granted (not stream.audio).
	app := dialApp(t, m, key, "alice")
	if p := app.Welcome().Principal; p.UserID != "alice" || p.AppID != "com.example.live" || strings.Join(p.Scopes, ",") != "read,write" {
		t.Fatalf("app principal %+v, want alice's grant", p)
	}
	msgs := make(chan client.Publication, 8)
	dropped := make(chan string, 1)
	ctx := t.Context()
	if _, err := app.SubscribeWith(ctx, "user:alice", func(p client.Publication) { msgs <- p },
		client.SubscribeOptions{OnUnsubscribed: func(reason string) { dropped <- reason }}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := alice.Publish(ctx, "user:alice", map[string]string{"n": "1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-msgs:
	case <-time.After(10 * time.Second):
		t.Fatal("the app did not receive alice's publication")
	}
	// On REST too, as alice: her channel's history.
	apiJSON(t, m, key, "GET", "/api/v1/channels/user:alice/history", nil, 200, nil, auth.UserHeader, "alice")
	// Never the account's own operations.
	status, raw := apiCall(t, m, key, "POST", "/api/v1/devices/pairing", nil, auth.UserHeader, "alice")
	if status != 403 || !strings.Contains(string(raw), "not available to apps") {
		t.Fatalf("an app creating a pairing code for alice: %d %s, want 403", status, raw)
	}
	// Nor a user's devices' methods on a generic write grant: that takes
	// scope rpc.call (which the app does not ask for).
	target := map[string]string{"deviceId": "alice-phone"}
	for method, params := range map[string]any{
		"rpc.call": map[string]any{"target": target, "method": "shell.run"},
		"rpc.list": map[string]any{"target": target},
	} {
		err := call(t, app, method, params, nil)
		if pe := asProtocolError(err); pe == nil || pe.Code != protocol.CodeForbidden || !strings.Contains(pe.Message, "rpc.call") {
			t.Fatalf("%s by an app with write: %v, want forbidden naming scope rpc.call", method, err)
		}
	}
	// Nor installing itself elsewhere.
	status, raw = apiCall(t, m, key, "PUT", "/api/v1/apps/com.example.live/install", map[string]any{"scopes": []string{"read"}}, auth.UserHeader, "alice")
	if status != 403 {
		t.Fatalf("an app installing itself: %d %s, want 403", status, raw)
	}

	// Narrowing to read: publishing is refused at once, the subscription
	// stays.
	if err := call(t, alice, "apps.install", map[string]any{"appId": "com.example.live", "scopes": []string{"read"}}, &inst); err != nil {
		t.Fatal(err)
	}
	if inst.Created {
		t.Fatal("changing the scopes reported a new installation")
	}
	if _, _, err := app.Publish(ctx, "user:alice", map[string]string{"from": "app"}); asProtocolError(err) == nil || asProtocolError(err).Code != protocol.CodeForbidden {
		t.Fatalf("publishing after write was revoked: %v, want forbidden", err)
	}
	if _, _, err := alice.Publish(ctx, "user:alice", map[string]string{"n": "2"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-msgs:
	case <-time.After(10 * time.Second):
		t.Fatal("the app's subscription did not survive a grant that kept read")
	}
	// Narrowing to nothing: the subscription goes at once, with its reason;
	// reading is refused on the socket and on REST.
	if err := call(t, alice, "apps.install", map[string]any{"appId": "com.example.live"}, &inst); err != nil {
		t.Fatal(err)
	}
	select {
	case reason := <-dropped:
		if reason != "forbidden" {
			t.Fatalf("unsubscribed with reason %q, want forbidden", reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the app kept its subscription after read was revoked")
	}
	if got := app.Welcome().Principal.Scopes; strings.Join(got, ",") != "read,write" {
		t.Fatalf("welcome scopes changed to %v: the welcome is history", got)
	}
	var who protocol.WhoamiResult
	if err := call(t, app, "conn.whoami", nil, &who); err != nil || len(who.Principal.Scopes) != 0 {
		t.Fatalf("conn.whoami after the grant was emptied: %+v %v, want no scopes", who.Principal, err)
	}
	if _, err := app.Subscribe(ctx, "user:alice", func(client.Publication) {}); asProtocolError(err) == nil || asProtocolError(err).Code != protocol.CodeForbidden {
		t.Fatalf("subscribing without read: %v, want forbidden", err)
	}
	if status, raw := apiCall(t, m, key, "GET", "/api/v1/channels/user:alice/history", nil, auth.UserHeader, "alice"); status != 403 {
		t.Fatalf("REST history without read: %d %s, want 403", status, raw)
	}

	// Uninstall over REST: the live connection closes, the key no longer
	// acts for alice.
	var un protocol.AppUninstalled
	apiJSON(t, m, mintToken(t, m, "alice", "alice-laptop", "browser"), "DELETE", "/api/v1/apps/com.example.live/install", nil, 200, &un)
	if !un.Uninstalled || un.Disconnected != 1 {
		t.Fatalf("uninstall %+v, want one connection closed", un)
	}
	wantClosed(t, app, "the app's connection for alice after the uninstall", protocol.CloseForbidden)
	wantKeyRefused(t, m, "after the uninstall", key, 403, "not installed", auth.UserHeader, "alice")
	status, raw = apiCall(t, m, mintToken(t, m, "alice", "alice-laptop", "browser"), "DELETE", "/api/v1/apps/com.example.live/install", nil)
	if e := decodeAPIError(t, raw); status != 404 || e.Error.Code != "not_found" {
		t.Fatalf("uninstalling twice: %d %s, want 404", status, raw)
	}
}

// gatedInstalls holds one installation lookup of an app's handshake (the
// n-th after it is armed) until the test lets it go, before or after the
// lookup reads the store.
type gatedInstalls struct {
	auth.Installations
	hold    int32 // the lookup held: 1, authenticating the key for the user; 2, the check after the connection registered
	after   bool  // hold it after it read the store
	armed   atomic.Bool
	calls   atomic.Int32
	reached chan struct{} // closed when the held lookup waits
	release chan struct{} // closed by the test
}

func (g *gatedInstalls) InstalledScopes(ctx context.Context, appID, userID string) ([]string, error) {
	held := g.armed.Load() && g.calls.Add(1) == g.hold
	if held && !g.after {
		close(g.reached)
		<-g.release
	}
	scopes, err := g.Installations.InstalledScopes(ctx, appID, userID)
	if held && g.after {
		close(g.reached)
		<-g.release
	}
	return scopes, err
}

// TestAppGrantNarrowedDuringUpgrade: a grant narrowed while an app's
// connection is being set up leaves the connection open with the scopes
// still granted, as it does for the app's live connections. The server
// checks a new connection again once it is registered (a revocation
// meanwhile missed it); that check took the narrowed grant for a
// revocation and closed the connection with 4003 — TestAppInstallLive's
// rare failure under load.
func TestAppGrantNarrowedDuringUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hold  int32
		after bool
	}{
		// The narrowing finds the registered connection and narrows it while
		// the check waits to read the grant.
		{"after the registration", 2, false},
		// The narrowing commits after the handshake read the grant and before
		// the connection is registered: it does not find the connection, the
		// check after the registration narrows it.
		{"before the registration", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gate := &gatedInstalls{hold: tc.hold, after: tc.after, reached: make(chan struct{}), release: make(chan struct{})}
			m, _, _ := appsServerWith(t, func(c *Config) { c.Hub.TokenExpiryWarning = 5 * time.Second }, func(m *Main) {
				m.ConfigureHub = func(*hub.Hub) { // runs in Open, after the authenticator got its installations
					gate.Installations = m.Auth.Installs
					m.Auth.Installs = gate
				}
			})
			key := createApp(t, m, map[string]any{"id": "com.example.narrow", "name": "Narrow", "scopes": []string{"read", "write"}}).Key.Key
			alice := dialClient(t, m, "alice", "alice-phone", "phone")
			if err := call(t, alice, "apps.install", map[string]any{"appId": "com.example.narrow", "scopes": []string{"read", "write"}}, nil); err != nil {
				t.Fatal(err)
			}

			gate.armed.Store(true)
			type dialed struct {
				c   *client.Client
				err error
			}
			done := make(chan dialed, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c, err := client.Dial(ctx, checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", Token: key, Header: http.Header{auth.UserHeader: {"alice"}}}))
				done <- dialed{c, err}
			}()
			select {
			case <-gate.reached:
			case <-time.After(10 * time.Second):
				t.Fatalf("the app's handshake never made installation lookup %d", tc.hold)
			}
			if err := call(t, alice, "apps.install", map[string]any{"appId": "com.example.narrow", "scopes": []string{"read"}}, nil); err != nil {
				t.Fatal(err)
			}
			close(gate.release)
			d := <-done
			if d.err != nil {
				t.Fatalf("dial as app: %v", d.err)
			}
			app := d.c
			t.Cleanup(func() { _ = app.Close() })

			// The check after the registration runs beside the welcome: the
			// first requests may still see the handshake's scopes.
			deadline := time.Now().Add(10 * time.Second)
			for {
				var who protocol.WhoamiResult
				err := call(t, app, "conn.whoami", nil, &who)
				if err == nil && strings.Join(who.Principal.Scopes, ",") == "read" {
					break
				}
				if err != nil || time.Now().After(deadline) {
					t.Fatalf("conn.whoami after the grant narrowed during the upgrade: %+v %v, want an open connection with scopes [read]", who.Principal, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, _, err := app.Publish(t.Context(), "user:alice", map[string]string{"from": "app"}); asProtocolError(err) == nil || asProtocolError(err).Code != protocol.CodeForbidden {
				t.Fatalf("publishing with the narrowed grant: %v, want forbidden", err)
			}
		})
	}
}

// TestAppForeignInstalls: one app cannot act for the users of another, nor
// see or change their installations, nor use the admin API.
func TestAppForeignInstalls(t *testing.T) {
	m, _, _ := appsServer(t)
	a := createApp(t, m, map[string]any{"id": "com.example.a", "name": "A", "scopes": []string{"read"}}).Key.Key
	b := createApp(t, m, map[string]any{"id": "com.example.b", "name": "B", "scopes": []string{"read"}}).Key.Key
	aliceTok := mintToken(t, m, "alice", "alice-phone", "phone")
	apiJSON(t, m, aliceTok, "PUT", "/api/v1/apps/com.example.a/install", map[string]any{"scopes": []string{"read"}}, 200, nil)
	apiJSON(t, m, mintToken(t, m, "bob", "bob-phone", "phone"), "PUT", "/api/v1/apps/com.example.b/install", map[string]any{"scopes": []string{"read"}}, 200, nil)

	// Alice lists her installations over the WebSocket: A only.
	var mine protocol.AppInstallList
	if err := call(t, dialToken(t, m, aliceTok), "apps.installs", nil, &mine); err != nil || len(mine.Installs) != 1 || mine.Installs[0].AppID != "com.example.a" {
		t.Fatalf("alice's installs %+v %v, want com.example.a only", mine.Installs, err)
	}
	// B cannot act for alice, who installed A only.
	wantKeyRefused(t, m, "B for alice", b, 403, "not installed", auth.UserHeader, "alice")
	// Each app sees only its own installations.
	var ins protocol.AppInstallList
	apiJSON(t, m, b, "GET", "/api/v1/apps/installs", nil, 200, &ins)
	if len(ins.Installs) != 1 || ins.Installs[0].UserID != "bob" || ins.Installs[0].AppID != "com.example.b" {
		t.Fatalf("B's installs %+v, want bob's only", ins.Installs)
	}
	apiJSON(t, m, a, "GET", "/api/v1/apps/installs", nil, 200, &ins, auth.UserHeader, "alice")
	if len(ins.Installs) != 1 || ins.Installs[0].AppID != "com.example.a" {
		t.Fatalf("A acting for alice sees %+v, want its own installation only", ins.Installs)
	}
	// B cannot uninstall A for alice, nor install itself for her.
	for _, tc := range []struct{ method, path string }{
		{"DELETE", "/api/v1/apps/com.example.a/install"},
		{"PUT", "/api/v1/apps/com.example.b/install"},
	} {
		if status, raw := apiCall(t, m, b, tc.method, tc.path, nil); status != 403 {
			t.Errorf("B: %s %s: %d %s, want 403", tc.method, tc.path, status, raw)
		}
	}
	// An app key acting for a user cannot switch to another: A's key with
	// a second user header is one user only (the header names one).
	wantKeyRefused(t, m, "A for bob", a, 403, "not installed", auth.UserHeader, "bob")
	// No app reaches the admin API, even with the scopes of an installation.
	if status, raw := apiCall(t, m, a, "DELETE", "/api/v1/admin/apps/com.example.b", nil); status != 403 {
		t.Fatalf("A deleting B: %d %s, want 403", status, raw)
	}
	if status, raw := apiCall(t, m, a, "GET", "/api/v1/admin/apps", nil, auth.UserHeader, "alice"); status != 403 {
		t.Fatalf("A listing apps as alice: %d %s, want 403", status, raw)
	}
	// A token cannot borrow the user header.
	if status, raw := apiCall(t, m, aliceTok, "GET", "/api/v1/apps/installs", nil, auth.UserHeader, "bob"); status != 401 {
		t.Fatalf("a user token with Junction-User: %d %s, want 401", status, raw)
	}
	// B's connection for bob survives A's deletion; A's connection for
	// alice does not.
	aConn := dialApp(t, m, a, "alice")
	bConn := dialApp(t, m, b, "bob")
	var del protocol.AppDeleted
	apiJSON(t, m, adminTok(t, m), "DELETE", "/api/v1/admin/apps/com.example.a", nil, 200, &del)
	if !del.Deleted || del.Uninstalled != 1 {
		t.Fatalf("delete %+v, want one installation removed", del)
	}
	wantClosed(t, aConn, "A's connection after A was deleted", protocol.CloseForbidden)
	if err := call(t, bConn, "sys.ping", nil, nil); err != nil {
		t.Fatalf("B's connection after A was deleted: %v", err)
	}
	wantKeyRefused(t, m, "a deleted app's key", a, 401, "unknown_key")
}

// TestAppAdminAPI: registration is validated, needs admin, and is served
// over REST and as WebSocket methods.
func TestAppAdminAPI(t *testing.T) {
	m, _, _ := appsServer(t)
	admin := adminTok(t, m)
	for _, tc := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"not reverse-DNS", map[string]any{"id": "captions", "name": "C"}, "id"},
		{"uppercase id", map[string]any{"id": "com.Example.c", "name": "C"}, "id"},
		{"no name", map[string]any{"id": "com.example.c"}, "name"},
		{"bad kind", map[string]any{"id": "com.example.c", "name": "C", "kind": "daemon"}, "kind"},
		{"admin scope", map[string]any{"id": "com.example.c", "name": "C", "scopes": []string{"admin"}}, "scopes"},
		{"bad webhook", map[string]any{"id": "com.example.c", "name": "C", "webhookUrl": "ftp://x"}, "webhookUrl"},
		{"bad priority", map[string]any{"id": "com.example.c", "name": "C", "priority": "urgent"}, "priority"},
		{"settings schema not an object", map[string]any{"id": "com.example.c", "name": "C", "settingsSchema": []int{1}}, "settingsSchema"},
		{"duplicate tool", map[string]any{"id": "com.example.c", "name": "C", "tools": []map[string]any{{"name": "t"}, {"name": "t"}}}, "tools"},
	} {
		status, raw := apiCall(t, m, admin, "POST", "/api/v1/admin/apps", tc.body)
		if e := decodeAPIError(t, raw); status != 400 || e.Error.Code != "bad_request" || e.Error.Details["field"] != tc.field {
			t.Errorf("%s: %d %s, want 400 bad_request naming %s", tc.name, status, raw, tc.field)
		}
	}
	if status, raw := apiCall(t, m, mintToken(t, m, "alice", "p", "phone"), "POST", "/api/v1/admin/apps", map[string]any{"id": "com.example.c", "name": "C"}); status != 403 {
		t.Fatalf("a non-admin registering: %d %s, want 403", status, raw)
	}
	full := createApp(t, m, map[string]any{"id": "com.example.full", "name": "Full", "kind": "background",
		"settingsSchema": map[string]any{"type": "object"}, "tools": []map[string]any{{"name": "lookup", "description": "d", "params": map[string]any{"type": "object"}}},
		"scopes": []string{"read", "stream.transcript"}, "capabilities": []string{"microphone"}, "owner": "dev"})
	if a := full.App; a.Kind != "background" || a.Priority != "background" || len(a.Tools) != 1 || a.Tools[0].Name != "lookup" || a.Owner != "dev" || string(a.SettingsSchema) != `{"type":"object"}` {
		t.Fatalf("created %+v", a)
	}
	if status, raw := apiCall(t, m, admin, "POST", "/api/v1/admin/apps", map[string]any{"id": "com.example.full", "name": "Again"}); status != 409 {
		t.Fatalf("registering an id twice: %d %s, want 409", status, raw)
	}
	// The same operations over the WebSocket.
	ws := dialToken(t, m, admin)
	var list protocol.AppList
	if err := call(t, ws, "apps.list", map[string]any{"limit": 1}, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Apps) != 1 || list.Apps[0].ID != "com.example.full" || list.Next != "" {
		t.Fatalf("apps.list %+v", list)
	}
	createApp(t, m, map[string]any{"id": "com.example.zz", "name": "ZZ"})
	if err := call(t, ws, "apps.list", map[string]any{"limit": 1}, &list); err != nil || list.Next != "com.example.full" {
		t.Fatalf("apps.list page 1: %+v %v, want next", list, err)
	}
	if err := call(t, ws, "apps.list", map[string]any{"limit": 1, "after": list.Next}, &list); err != nil || len(list.Apps) != 1 || list.Apps[0].ID != "com.example.zz" {
		t.Fatalf("apps.list page 2: %+v %v", list, err)
	}
	var got protocol.App
	if err := call(t, ws, "apps.get", map[string]any{"id": "com.example.full"}, &got); err != nil || got.Name != "Full" {
		t.Fatalf("apps.get %+v %v", got, err)
	}
	if err := call(t, ws, "apps.get", map[string]any{"id": "com.example.none"}, &got); asProtocolError(err) == nil || asProtocolError(err).Code != protocol.CodeNotFound {
		t.Fatalf("apps.get unknown: %v, want not_found", err)
	}
	var sec protocol.AppKeySecret
	if err := call(t, ws, "apps.rotateKey", map[string]any{"id": "com.example.full"}, &sec); err != nil || !strings.HasPrefix(sec.Key, "jk_") {
		t.Fatalf("apps.rotateKey %v", err)
	}
	var keys protocol.AppKeyList
	if err := call(t, ws, "apps.keys", map[string]any{"id": "com.example.full"}, &keys); err != nil || len(keys.Keys) != 2 || keys.Keys[0].ExpiresAt == nil {
		t.Fatalf("apps.keys after a rotation with the default overlap: %+v %v", keys, err)
	}
	if want := time.Now().Add(24 * time.Hour); keys.Keys[0].ExpiresAt.Before(want.Add(-time.Minute)) || keys.Keys[0].ExpiresAt.After(want.Add(time.Minute)) {
		t.Fatalf("old key expires %v, want in 24h (the default overlap)", keys.Keys[0].ExpiresAt)
	}
	var del protocol.AppDeleted
	if err := call(t, ws, "apps.delete", map[string]any{"id": "com.example.full"}, &del); err != nil || !del.Deleted {
		t.Fatalf("apps.delete %+v %v", del, err)
	}
	if status, _ := apiCall(t, m, admin, "GET", "/api/v1/admin/apps/com.example.full", nil); status != 404 {
		t.Fatalf("a deleted app: %d, want 404", status)
	}
}

// TestAppCLI drives "junction app" against the running server, minting its
// admin token with the data directory's key.
func TestAppCLI(t *testing.T) {
	m, _, _ := appsServer(t)
	tools := t.TempDir() + "/tools.json"
	if err := os.WriteFile(tools, []byte(`[{"name":"caption","params":{"type":"object"}}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	app := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		args = append([]string{"app"}, args...)
		args = append(args, "--url", m.URL(), "--data", m.Config.Data)
		code := run(t.Context(), args, nil, &out, &errb)
		if code != 0 {
			return out.String(), fmt.Errorf("exit %d: %s", code, errb.String())
		}
		return out.String(), nil
	}
	out, err := app("create", "--id", "com.example.cli", "--name", "CLI app", "--scopes", "read,write", "--tools", tools, "--webhook", "https://cli.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "jk_") || !strings.Contains(out, "shown only this once") || !strings.Contains(out, "tools:        1") {
		t.Fatalf("create printed %q, want the app and its key on the last line", out)
	}
	// The printed key works.
	p, err := m.Auth.Authenticate(t.Context(), key)
	if err != nil || p.AppID != "com.example.cli" {
		t.Fatalf("the CLI's key: %+v %v", p, err)
	}
	out, err = app("list")
	if err != nil || !strings.Contains(out, "com.example.cli\tforeground\tread,write\tCLI app") {
		t.Fatalf("list: %q %v", out, err)
	}
	out, err = app("rotate-key", "com.example.cli", "--overlap", "0s")
	if err != nil || !strings.Contains(out, "shown only this once") {
		t.Fatalf("rotate-key: %q %v", out, err)
	}
	if _, err := m.Auth.Authenticate(t.Context(), key); auth.FailureReason(err) != auth.ReasonExpired {
		t.Fatalf("the first key after a rotation without overlap: %v, want expired", err)
	}
	out, err = app("show", "com.example.cli")
	if err != nil || strings.Count(out, "  active  ") != 1 || strings.Count(out, "  expired  ") != 1 || strings.Contains(out, key[len(key)-20:]) {
		t.Fatalf("show: %q %v, want one active and one expired key, no secret", out, err)
	}
	keyID, _, _ := auth.ParseAPIKey(key)
	if out, err = app("revoke-key", "com.example.cli", keyID); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke-key: %q %v", out, err)
	}
	if _, err := app("show", "com.example.none"); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("show of an unknown app: %v, want not_found", err)
	}
	if _, err := app("create", "--id", "nodots", "--name", "x"); err == nil || !strings.Contains(err.Error(), "bad_request") {
		t.Fatalf("create with a bad id: %v, want bad_request", err)
	}
	if out, err = app("delete", "com.example.cli"); err != nil || !strings.Contains(out, "deleted com.example.cli") {
		t.Fatalf("delete: %q %v", out, err)
	}
	if out, err = app("list"); err != nil || !strings.Contains(out, "no apps") {
		t.Fatalf("list after delete: %q %v", out, err)
	}
}

// TestAPIKeysDocumented: API keys are wired in the server and documented
// where the credentials are (it replaced TestAPIKeysNotPromised, which
// guarded the documents while nothing accepted keys).
func TestAPIKeysDocumented(t *testing.T) {
	m := startServer(t, nil)
	if m.Auth.APIKeys == nil || m.Auth.Installs == nil || len(m.Auth.APIKeyPepper) < auth.MinPepperBytes {
		t.Fatal("API keys are not wired in the server")
	}
	if st, err := os.Stat(m.Config.Data + "/" + auth.PepperFileName); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the pepper file: %v, want DATA/%s with mode 0600", err, auth.PepperFileName)
	}
	code, e := wsHandshake(t, m, "jk_0123456789abcdef0123456789abcdef")
	if code != http.StatusUnauthorized || e.Error.Code != "unauthorized" || !strings.Contains(e.Error.Message, "malformed") {
		t.Fatalf("a malformed jk_ key at /ws: %d %+v, want 401 naming malformed", code, e.Error)
	}
	for doc, wants := range map[string][]string{
		"../../docs/api.md":      {"jk_", auth.UserHeader, "not_installed"},
		"../../docs/SECURITY.md": {"jk_", "pepper", auth.UserHeader},
		"../../docs/apps.md":     {"junction app create", "rotate-key", auth.UserHeader, "unknown_key", "revoked", "expired", "signature", "malformed"},
		"../../README.md":        {"api_key_pepper_file", "junction app"},
	} {
		raw, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range wants {
			if !strings.Contains(string(raw), w) {
				t.Errorf("%s does not mention %q", doc, w)
			}
		}
	}
}

// TestAppIdempotencyPerUser: an app acting for two users has one
// idempotency key space per user: the same key and body for bob is a new
// request, not alice's answer replayed.
func TestAppIdempotencyPerUser(t *testing.T) {
	m, _, _ := appsServer(t)
	key := createApp(t, m, map[string]any{"id": "com.example.idem", "name": "Idem", "scopes": []string{"write"}}).Key.Key
	for _, u := range []string{"alice", "bob"} {
		apiJSON(t, m, mintToken(t, m, u, u+"-phone", "phone"), "PUT", "/api/v1/apps/com.example.idem/install", map[string]any{"scopes": []string{"write"}}, 200, nil)
	}
	publish := func(user string) protocol.PublishResult {
		var res protocol.PublishResult
		apiJSON(t, m, key, "POST", "/api/v1/channels/public:news/publish", map[string]any{"data": map[string]string{"n": "1"}}, 200, &res,
			auth.UserHeader, user, "Idempotency-Key", "k1")
		return res
	}
	a1, a2, b := publish("alice"), publish("alice"), publish("bob")
	if a1 != a2 {
		t.Fatalf("alice's repeat: %+v then %+v, want the first answer", a1, a2)
	}
	if b.Offset == a1.Offset {
		t.Fatalf("bob with alice's key: offset %d, want a publication of his own (not alice's %d replayed)", b.Offset, a1.Offset)
	}
}

// TestAppsPostgres runs the apps platform on PostgreSQL: registration, a
// key at the upgrade and on REST, its last use, rotation, an installation
// acting for a user, and an uninstall closing the app's connection.
func TestAppsPostgres(t *testing.T) {
	dsn := postgresDSN(t)
	m := startServer(t, func(c *Config) { c.Database = dsn })
	if got := m.Store.Dialect(); got != "postgres" {
		t.Fatalf("store dialect %q, want postgres", got)
	}
	created := createApp(t, m, map[string]any{"id": "com.example.pg", "name": "PG", "scopes": []string{"read", "write"}})
	key := created.Key.Key
	wantKeyRefused(t, m, "not installed", key, 403, "not installed", auth.UserHeader, "alice")
	apiJSON(t, m, mintToken(t, m, "alice", "alice-phone", "phone"), "PUT", "/api/v1/apps/com.example.pg/install", map[string]any{"scopes": []string{"read"}}, 200, nil)
	app := dialApp(t, m, key, "alice")
	if p := app.Welcome().Principal; p.UserID != "alice" || strings.Join(p.Scopes, ",") != "read" {
		t.Fatalf("app principal %+v, want alice with read", p)
	}
	m.Apps.FlushLastUse(t.Context())
	var keys protocol.AppKeyList
	apiJSON(t, m, adminTok(t, m), "GET", "/api/v1/admin/apps/com.example.pg/keys", nil, 200, &keys)
	if len(keys.Keys) != 1 || keys.Keys[0].LastUsedAt == nil {
		t.Fatalf("keys %+v, want the key's last use recorded", keys.Keys)
	}
	var fresh protocol.AppKeySecret
	apiJSON(t, m, adminTok(t, m), "POST", "/api/v1/admin/apps/com.example.pg/keys", map[string]any{"overlapMs": 0}, 201, &fresh)
	wantKeyRefused(t, m, "the first key after a rotation without overlap", key, 401, "expired")
	wantClosed(t, app, "the first key's connection after a rotation without overlap", protocol.CloseTokenExpired)
	apiJSON(t, m, fresh.Key, "GET", "/api/v1/apps/installs", nil, 200, nil, auth.UserHeader, "alice")
	app = dialApp(t, m, fresh.Key, "alice")
	apiJSON(t, m, mintToken(t, m, "alice", "alice-phone", "phone"), "DELETE", "/api/v1/apps/com.example.pg/install", nil, 200, nil)
	wantClosed(t, app, "the app's connection for alice after the uninstall", protocol.CloseForbidden)
	wantKeyRefused(t, m, "after the uninstall", fresh.Key, 403, "not installed", auth.UserHeader, "alice")
}

// TestAPIKeyPepperFile: keys verify on every server that shares the
// database and the pepper (auth.api_key_pepper_file), and on no server with
// another pepper; a missing pepper file stops the start.
func TestAPIKeyPepperFile(t *testing.T) {
	shared := t.TempDir()
	db := "sqlite:" + shared + "/junction.db"
	pepperFile := shared + "/pepper.key"
	if err := os.WriteFile(pepperFile, bytes.Repeat([]byte{0x5a}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	withPepper := func(c *Config) { c.Database, c.Auth.APIKeyPepperFile = db, pepperFile }

	a := startServer(t, withPepper)
	key := createApp(t, a, map[string]any{"id": "com.example.pepper", "name": "Pepper", "scopes": []string{"read"}}).Key.Key
	apiJSON(t, a, key, "GET", "/api/v1/apps/installs", nil, 200, nil)
	if _, err := os.Stat(a.Config.Data + "/" + auth.PepperFileName); err == nil {
		t.Fatal("a pepper file was created in the data directory although auth.api_key_pepper_file names one")
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Another node (its own data directory), the same database and pepper.
	b := startServer(t, withPepper)
	apiJSON(t, b, key, "GET", "/api/v1/apps/installs", nil, 200, nil)
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The same database with another pepper: the MAC does not verify.
	c := startServer(t, func(c *Config) { c.Database = db })
	wantKeyRefused(t, c, "another pepper", key, 401, "signature")
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	cfg := &Config{Addr: "127.0.0.1:0", Data: t.TempDir(), LogLevel: "error"}
	cfg.Auth.APIKeyPepperFile = shared + "/missing.key"
	cfg.setDefaults()
	m := NewMain(cfg, io.Discard, io.Discard)
	err := m.Open(t.Context())
	if err == nil {
		_ = m.Close(t.Context())
		t.Fatal("the server started with a missing pepper file")
	}
	if !strings.Contains(err.Error(), "auth.api_key_pepper_file") {
		t.Fatalf("start error %q, want it to name auth.api_key_pepper_file", err)
	}
}
