package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

func TestKeyLogin(t *testing.T) {
	m := startServer(t, nil)
	priv := newKey(t)
	pub := b64(priv.Public().(ed25519.PublicKey))

	first := login(t, m, priv, "phone")
	if !first.Created || first.AccountID == "" || first.DeviceID == "" || first.AccessToken == "" || !strings.HasPrefix(first.RefreshToken, "jrt_") {
		t.Fatalf("first login: got %+v, want a created account with tokens", first)
	}
	second := login(t, m, priv, "machine")
	if second.Created || second.AccountID != first.AccountID || second.DeviceID == first.DeviceID {
		t.Fatalf("second login: got %+v, want the same account (not created) and a new device", second)
	}

	var me protocol.Me
	apiJSON(t, m, second.AccessToken, "GET", "/api/v1/auth/me", nil, 200, &me)
	if me.AccountID != first.AccountID || me.DeviceID != second.DeviceID || me.Kind != "machine" || b64(me.PublicKey) != pub {
		t.Errorf("me: got %+v", me)
	}
	if strings.Join(me.Scopes, ",") != "read,write,rpc.serve" {
		t.Errorf("machine scopes: got %v, want read,write,rpc.serve", me.Scopes)
	}
	apiJSON(t, m, first.AccessToken, "GET", "/api/v1/auth/me", nil, 200, &me)
	if strings.Join(me.Scopes, ",") != "read,write" || me.Kind != "phone" {
		t.Errorf("phone principal: got kind %q scopes %v", me.Kind, me.Scopes)
	}

	// The access token opens a WebSocket whose welcome names the account.
	c := dialToken(t, m, first.AccessToken)
	if w := c.Welcome(); w.Principal.UserID != first.AccountID || w.Principal.DeviceID != first.DeviceID {
		t.Errorf("welcome principal: got %+v", w.Principal)
	} else if !slices.Contains(w.Features, "data") {
		t.Errorf("welcome features: got %v, want data among them", w.Features)
	}

	// Resuming a device by id keeps its id.
	nonce := challenge(t, m, priv)
	var resumed protocol.Tokens
	apiJSON(t, m, "", "POST", "/api/v1/auth/login", map[string]any{
		"publicKey": pub, "nonce": b64(nonce), "signature": b64(ed25519.Sign(priv, nonce)),
		"device": map[string]string{"id": first.DeviceID, "kind": "phone"},
	}, 200, &resumed)
	if resumed.DeviceID != first.DeviceID {
		t.Errorf("resumed device: got %s, want %s", resumed.DeviceID, first.DeviceID)
	}
}

func TestKeyLoginRefused(t *testing.T) {
	m := startServer(t, nil)
	priv := newKey(t)
	other := newKey(t)
	pub := b64(priv.Public().(ed25519.PublicKey))

	// A nonce is single-use: the replay of a whole login is refused.
	nonce := challenge(t, m, priv)
	body := map[string]any{"publicKey": pub, "nonce": b64(nonce), "signature": b64(ed25519.Sign(priv, nonce))}
	apiJSON(t, m, "", "POST", "/api/v1/auth/login", body, 200, nil)
	status, raw := apiCall(t, m, "", "POST", "/api/v1/auth/login", body)
	if status != 401 {
		t.Fatalf("replayed login: status %d, want 401; %s", status, raw)
	}

	// A wrong signature fails and does not burn the nonce.
	nonce = challenge(t, m, priv)
	status, _ = apiCall(t, m, "", "POST", "/api/v1/auth/login", map[string]any{"publicKey": pub, "nonce": b64(nonce), "signature": b64(ed25519.Sign(other, nonce))})
	if status != 401 {
		t.Fatalf("forged signature: status %d, want 401", status)
	}
	apiJSON(t, m, "", "POST", "/api/v1/auth/login", map[string]any{"publicKey": pub, "nonce": b64(nonce), "signature": b64(ed25519.Sign(priv, nonce))}, 200, nil)

	// A nonce issued to one key does not log in another.
	nonce = challenge(t, m, priv)
	status, _ = apiCall(t, m, "", "POST", "/api/v1/auth/login", map[string]any{
		"publicKey": b64(other.Public().(ed25519.PublicKey)), "nonce": b64(nonce), "signature": b64(ed25519.Sign(other, nonce))})
	if status != 401 {
		t.Fatalf("nonce of another key: status %d, want 401", status)
	}
	// ...and does not burn it: its own key still logs in with it (issue 10).
	apiJSON(t, m, "", "POST", "/api/v1/auth/login", map[string]any{"publicKey": pub, "nonce": b64(nonce), "signature": b64(ed25519.Sign(priv, nonce))}, 200, nil)
	// A made-up nonce.
	fake := []byte("0123456789abcdef0123456789abcdef")
	status, _ = apiCall(t, m, "", "POST", "/api/v1/auth/login", map[string]any{"publicKey": pub, "nonce": b64(fake), "signature": b64(ed25519.Sign(priv, fake))})
	if status != 401 {
		t.Fatalf("unknown nonce: status %d, want 401", status)
	}

	sig := b64(ed25519.Sign(priv, nonce))
	for _, tc := range []struct {
		name, path, body, field string
	}{
		{"challenge without key", "/api/v1/auth/challenge", `{}`, "publicKey"},
		{"challenge key not base64", "/api/v1/auth/challenge", `{"publicKey":"***"}`, "publicKey"},
		{"challenge key too short", "/api/v1/auth/challenge", `{"publicKey":"AAAA"}`, "publicKey"},
		{"challenge key wrong type", "/api/v1/auth/challenge", `{"publicKey":42}`, "publicKey"},
		{"challenge unknown field", "/api/v1/auth/challenge", `{"publicKey":"` + pub + `","password":"x"}`, "password"},
		{"login without nonce", "/api/v1/auth/login", `{"publicKey":"` + pub + `","signature":"` + sig + `"}`, "nonce"},
		{"login without signature", "/api/v1/auth/login", `{"publicKey":"` + pub + `","nonce":"` + b64(nonce) + `"}`, "signature"},
		{"login bad kind", "/api/v1/auth/login", `{"publicKey":"` + pub + `","nonce":"` + b64(nonce) + `","signature":"` + sig + `","device":{"kind":"toaster"}}`, "device.kind"},
		{"login device wrong type", "/api/v1/auth/login", `{"publicKey":"` + pub + `","nonce":"` + b64(nonce) + `","signature":"` + sig + `","device":"phone"}`, "device"},
		{"refresh without token", "/api/v1/auth/refresh", `{}`, "refreshToken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := apiCall(t, m, "", "POST", tc.path, tc.body)
			if status != 400 {
				t.Fatalf("status %d, want 400; %s", status, raw)
			}
			e := decodeAPIError(t, raw)
			if e.Error.Code != "bad_request" || e.Error.Details["field"] != tc.field {
				t.Fatalf("error: got %+v, want bad_request naming %q", e.Error, tc.field)
			}
		})
	}
}

func TestRefreshRotation(t *testing.T) {
	m := startServer(t, nil)
	first := login(t, m, newKey(t), "phone")

	var next protocol.Tokens
	apiJSON(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": first.RefreshToken}, 200, &next)
	if next.RefreshToken == first.RefreshToken || next.AccountID != first.AccountID || next.DeviceID != first.DeviceID {
		t.Fatalf("refresh: got %+v", next)
	}
	apiJSON(t, m, next.AccessToken, "GET", "/api/v1/auth/me", nil, 200, nil)

	// Reusing the old token revokes the whole family: the new one fails too.
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": first.RefreshToken}); status != 401 {
		t.Fatalf("reused refresh token: status %d, want 401", status)
	}
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": next.RefreshToken}); status != 401 {
		t.Fatalf("refresh after reuse: status %d, want 401 (family revoked)", status)
	}
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": "jrt_nonsense"}); status != 401 {
		t.Fatalf("unknown refresh token: status %d, want 401", status)
	}

	// Logout revokes the login's refresh tokens.
	other := login(t, m, newKey(t), "browser")
	apiJSON(t, m, other.AccessToken, "POST", "/api/v1/auth/logout", nil, 200, nil)
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": other.RefreshToken}); status != 401 {
		t.Fatalf("refresh after logout: status %d, want 401", status)
	}
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/auth/logout", nil); status != 401 {
		t.Fatalf("logout without credential: status %d, want 401", status)
	}
}

func TestPairingAndDevices(t *testing.T) {
	m := startServer(t, nil)
	owner := login(t, m, newKey(t), "phone")

	var code protocol.PairingCode
	apiJSON(t, m, owner.AccessToken, "POST", "/api/v1/devices/pairing", nil, 201, &code)
	u, err := url.Parse(code.URI)
	if err != nil || u.Scheme != "junction" || u.Host != "pair" || strings.ReplaceAll(code.Code, "-", "") != u.Query().Get("code") || u.Query().Get("server") != m.URL() {
		t.Fatalf("pairing code %+v: uri does not carry the code and server", code)
	}

	// A new device pairs without a key of its own; the code is entered
	// loosely (lower case, spaces).
	var tv protocol.Tokens
	apiJSON(t, m, "", "POST", "/api/v1/devices/pair", map[string]any{
		"code": strings.ToLower(strings.ReplaceAll(code.Code, "-", " ")), "device": map[string]string{"name": "living room", "kind": "tv"},
	}, 200, &tv)
	if tv.AccountID != owner.AccountID || tv.DeviceID == owner.DeviceID || tv.AccessToken == "" {
		t.Fatalf("paired tv: got %+v", tv)
	}
	// The code is single-use.
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/devices/pair", map[string]any{"code": code.Code}); status != 401 {
		t.Fatalf("reused pairing code: status %d, want 401", status)
	}

	// A device that proves its own key.
	apiJSON(t, m, owner.AccessToken, "POST", "/api/v1/devices/pairing", nil, 201, &code)
	glassesKey := newKey(t)
	norm := strings.ReplaceAll(code.Code, "-", "")
	badSig := ed25519.Sign(newKey(t), []byte(protocol.PairingSignPrefix+norm))
	req := map[string]any{"code": code.Code, "device": map[string]string{"kind": "glasses", "publicKey": b64(glassesKey.Public().(ed25519.PublicKey))}, "signature": b64(badSig)}
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/devices/pair", req); status != 401 {
		t.Fatalf("pairing with a bad signature: status %d, want 401", status)
	}
	req["signature"] = b64(ed25519.Sign(glassesKey, []byte(protocol.PairingSignPrefix+norm)))
	var glasses protocol.Tokens
	apiJSON(t, m, "", "POST", "/api/v1/devices/pair", req, 200, &glasses)

	var list protocol.DeviceList
	apiJSON(t, m, tv.AccessToken, "GET", "/api/v1/devices", nil, 200, &list)
	if len(list.Items) != 3 {
		t.Fatalf("devices: got %d, want 3", len(list.Items))
	}
	for _, d := range list.Items {
		if d.ID == glasses.DeviceID && b64(d.PublicKey) != b64(glassesKey.Public().(ed25519.PublicKey)) {
			t.Errorf("glasses public key: got %x", d.PublicKey)
		}
	}

	var renamed protocol.Device
	apiJSON(t, m, owner.AccessToken, "PATCH", "/api/v1/devices/"+tv.DeviceID, map[string]string{"name": "bedroom"}, 200, &renamed)
	if renamed.Name != "bedroom" || renamed.Version != 2 {
		t.Errorf("renamed: got %+v", renamed)
	}

	// Revoking the tv closes its connection with 4003 and refuses its
	// access and refresh tokens.
	tvc := dialToken(t, m, tv.AccessToken)
	eventually(t, "the tv's connection to be indexed", func() bool { return m.Hub.ConnOfDevice(tv.DeviceID) != nil })
	apiJSON(t, m, owner.AccessToken, "DELETE", "/api/v1/devices/"+tv.DeviceID, nil, 200, nil)
	select {
	case <-tvc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("revoked device still connected")
	}
	if code := tvc.CloseCode(); code != protocol.CloseForbidden {
		t.Errorf("close code: got %d, want %d", code, protocol.CloseForbidden)
	}
	if status, _ := apiCall(t, m, tv.AccessToken, "GET", "/api/v1/devices", nil); status != 401 {
		t.Errorf("revoked access token on REST: status %d, want 401", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = client.Dial(ctx, checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", Token: tv.AccessToken}))
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != 401 {
		t.Errorf("revoked access token on /ws: got %v, want a 401 handshake error", err)
	}
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": tv.RefreshToken}); status != 401 {
		t.Errorf("revoked device's refresh: status %d, want 401", status)
	}
	// Another account cannot see or touch these devices.
	stranger := login(t, m, newKey(t), "phone")
	if status, _ := apiCall(t, m, stranger.AccessToken, "DELETE", "/api/v1/devices/"+glasses.DeviceID, nil); status != 404 {
		t.Errorf("revoking another account's device: status %d, want 404", status)
	}
	apiJSON(t, m, owner.AccessToken, "GET", "/api/v1/devices/"+tv.DeviceID, nil, 200, &renamed)
	if renamed.RevokedAt.IsZero() {
		t.Error("revoked device has no revokedAt")
	}
}

func TestDeviceLastSeen(t *testing.T) {
	m := startServer(t, nil)
	tok := login(t, m, newKey(t), "phone")
	c := dialToken(t, m, tok.AccessToken)
	if d, err := m.Store.Device(context.Background(), tok.AccountID, tok.DeviceID); err != nil || !d.LastSeenAt.IsZero() {
		t.Fatalf("before disconnect: got %+v, %v; want no last seen", d, err)
	}
	// The server ends the connection (a client's close is covered by the
	// hub's tests); the hub reports the device gone and the store records it.
	// The hub sends the welcome just before it indexes the connection by
	// device, so retry until the close finds it.
	eventually(t, "the device's connection to close", func() bool { return m.Hub.CloseDevice(tok.DeviceID, protocol.CloseNormal) })
	<-c.Done()
	eventually(t, "last seen to be stored", func() bool {
		d, err := m.Store.Device(context.Background(), tok.AccountID, tok.DeviceID)
		return err == nil && !d.LastSeenAt.IsZero()
	})
}
