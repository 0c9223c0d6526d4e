package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// Issue 10, items 2, 3 and 5, end to end: a revoked login's access tokens
// are refused at once everywhere and its connections closed; a forger cannot
// burn a victim's login nonce; the login challenge is limited per client
// address.

// wantClosed waits for c to be closed by the server and checks the code.
func wantClosed(t *testing.T, c *client.Client, what string, code int) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still connected, want closed with %d", what, code)
	}
	if got := c.CloseCode(); got != code {
		t.Fatalf("%s: close code %d, want %d", what, got, code)
	}
}

// wantTokenRefused checks that an access token gets 401 on REST and on the
// WebSocket upgrade.
func wantTokenRefused(t *testing.T, m *Main, what, token string) {
	t.Helper()
	if status, raw := apiCall(t, m, token, "GET", "/api/v1/auth/me", nil); status != 401 {
		t.Errorf("%s on REST: status %d, want 401; %s", what, status, raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", Token: token}))
	if err == nil {
		_ = c.Close()
	}
	if he, ok := errors.AsType[*client.HandshakeError](err); !ok || he.StatusCode != 401 {
		t.Errorf("%s on /ws: got %v, want a 401 handshake error", what, err)
	}
}

// wantTokenAccepted checks that an access token still works on REST.
func wantTokenAccepted(t *testing.T, m *Main, what, token string) {
	t.Helper()
	if status, raw := apiCall(t, m, token, "GET", "/api/v1/auth/me", nil); status != 200 {
		t.Errorf("%s on REST: status %d, want 200; %s", what, status, raw)
	}
}

func TestRefreshReuseRevokesLogin(t *testing.T) {
	m := startServer(t, nil)
	key := newKey(t)
	owner := login(t, m, key, "phone")
	// Another login of the same account (a second device) is not touched.
	laptop := login(t, m, key, "browser")
	laptopConn := dialToken(t, m, laptop.AccessToken)

	ownerConn := dialToken(t, m, owner.AccessToken)
	eventually(t, "the owner's connection to be indexed", func() bool { return m.Hub.ConnOfDevice(owner.DeviceID) != nil })

	// The thief rotates the stolen refresh token first...
	var thief protocol.Tokens
	apiJSON(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": owner.RefreshToken}, 200, &thief)
	wantTokenAccepted(t, m, "the thief's access token before the reuse", thief.AccessToken)

	// ...then the owner presents it again: the reuse revokes the login.
	status, raw := apiCall(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": owner.RefreshToken})
	if status != 401 {
		t.Fatalf("reused refresh token: status %d, want 401; %s", status, raw)
	}
	wantClosed(t, ownerConn, "the owner's live connection", protocol.CloseForbidden)
	wantTokenRefused(t, m, "the owner's access token", owner.AccessToken)
	wantTokenRefused(t, m, "the thief's access token", thief.AccessToken)
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": thief.RefreshToken}); status != 401 {
		t.Errorf("the thief's refresh token: status %d, want 401", status)
	}

	// In-band auth.refresh refuses the revoked login's token too (here on a
	// connection of the same device with an operator token, no login).
	op := dialToken(t, m, mintToken(t, m, owner.AccountID, owner.DeviceID, "phone"))
	err := call(t, op, "auth.refresh", protocol.RefreshParams{Token: thief.AccessToken}, nil)
	if pe := asProtocolError(err); pe == nil || pe.Code != protocol.CodeUnauthorized {
		t.Errorf("in-band auth.refresh with the thief's token: got %v, want unauthorized", err)
	}

	// The account's other login still works, and its connection is open.
	wantTokenAccepted(t, m, "the other login's access token", laptop.AccessToken)
	if err := call(t, laptopConn, "sys.ping", nil, nil); err != nil {
		t.Errorf("the other login's connection: %v", err)
	}
}

func TestLogoutRevokesLogin(t *testing.T) {
	m := startServer(t, nil)
	key := newKey(t)
	tok := login(t, m, key, "phone")
	other := login(t, m, key, "tablet")
	conn := dialToken(t, m, tok.AccessToken)
	otherConn := dialToken(t, m, other.AccessToken)
	eventually(t, "the connection to be indexed", func() bool { return m.Hub.ConnOfDevice(tok.DeviceID) != nil })

	var out protocol.LoggedOut
	apiJSON(t, m, tok.AccessToken, "POST", "/api/v1/auth/logout", nil, 200, &out)
	if !out.LoggedOut {
		t.Fatalf("logout: got %+v", out)
	}
	wantClosed(t, conn, "the login's live connection", protocol.CloseForbidden)
	wantTokenRefused(t, m, "the access token after logout", tok.AccessToken)
	if status, _ := apiCall(t, m, "", "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": tok.RefreshToken}); status != 401 {
		t.Errorf("refresh after logout: status %d, want 401", status)
	}
	// A second logout with the same token is refused: it is revoked.
	if status, _ := apiCall(t, m, tok.AccessToken, "POST", "/api/v1/auth/logout", nil); status != 401 {
		t.Errorf("logout again: status %d, want 401", status)
	}

	// The device signs in again: a new login, not revoked.
	again := login(t, m, key, "phone")
	wantTokenAccepted(t, m, "a new login after logout", again.AccessToken)
	// The other device's login is untouched.
	wantTokenAccepted(t, m, "the other device's login", other.AccessToken)
	if err := call(t, otherConn, "sys.ping", nil, nil); err != nil {
		t.Errorf("the other device's connection: %v", err)
	}
}

func TestForgerCannotBurnLoginNonce(t *testing.T) {
	m := startServer(t, nil)
	victim, forger := newKey(t), newKey(t)
	nonce := challenge(t, m, victim)

	// The forger's own key, its valid signature over the victim's nonce.
	status, raw := apiCall(t, m, "", "POST", "/api/v1/auth/login", map[string]any{
		"publicKey": b64(forger.Public().(ed25519.PublicKey)), "nonce": b64(nonce), "signature": b64(ed25519.Sign(forger, nonce))})
	if status != 401 {
		t.Fatalf("forger's login: status %d, want 401; %s", status, raw)
	}
	// The victim's key with the forger's signature.
	status, _ = apiCall(t, m, "", "POST", "/api/v1/auth/login", map[string]any{
		"publicKey": b64(victim.Public().(ed25519.PublicKey)), "nonce": b64(nonce), "signature": b64(ed25519.Sign(forger, nonce))})
	if status != 401 {
		t.Fatalf("forged signature: status %d, want 401", status)
	}
	// The victim's genuine login still succeeds with that nonce.
	var tok protocol.Tokens
	apiJSON(t, m, "", "POST", "/api/v1/auth/login", map[string]any{
		"publicKey": b64(victim.Public().(ed25519.PublicKey)), "nonce": b64(nonce), "signature": b64(ed25519.Sign(victim, nonce))}, 200, &tok)
	if !tok.Created {
		t.Errorf("victim's login: got %+v, want a new account", tok)
	}
}

// challengeFrom asks for a login nonce as the client address addr (the
// server trusts 127.0.0.0/8 as a proxy) and returns the response, whose body
// it has read into raw.
func challengeFrom(t *testing.T, m *Main, addr string, priv ed25519.PrivateKey) (resp *http.Response, raw []byte) {
	t.Helper()
	body := `{"publicKey":"` + b64(priv.Public().(ed25519.PublicKey)) + `"}`
	req, err := http.NewRequest("POST", m.URL()+"/api/v1/auth/challenge", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", addr)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if raw, err = io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

func TestChallengeFloodLimited(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Web.TrustedProxies = []string{"127.0.0.0/8"}
		c.Auth.Challenges = auth.ChallengeConfig{Rate: 1, Burst: 5, PerClient: 3}
	})
	victim, flooder := newKey(t), newKey(t)

	resp, raw := challengeFrom(t, m, "192.0.2.1", victim)
	if resp.StatusCode != 200 {
		t.Fatalf("victim's challenge: status %d; %s", resp.StatusCode, raw)
	}
	var ch protocol.Challenge
	if err := jsonUnmarshal(raw, &ch); err != nil {
		t.Fatal(err)
	}

	// The flooder gets its burst, then 429 with Retry-After; its nonces
	// beyond per_client evict only its own.
	var limited *http.Response
	var limitedBody []byte
	for i := range 50 {
		resp, raw := challengeFrom(t, m, "192.0.2.2", flooder)
		if i < 5 {
			if resp.StatusCode != 200 {
				t.Fatalf("flooder's challenge %d within the burst: status %d; %s", i, resp.StatusCode, raw)
			}
			continue
		}
		if resp.StatusCode != 429 {
			t.Fatalf("flooder's challenge %d over the burst: status %d, want 429; %s", i, resp.StatusCode, raw)
		}
		limited, limitedBody = resp, raw
	}
	if s, err := strconv.Atoi(limited.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("429 Retry-After: got %q, want a positive number of seconds", limited.Header.Get("Retry-After"))
	}
	if e := decodeAPIError(t, limitedBody); e.Error.Code != string(protocol.CodeRateLimited) {
		t.Errorf("429 body: got %s, want rate_limited", limitedBody)
	}
	// Another address is not limited by the flooder.
	if resp, raw := challengeFrom(t, m, "192.0.2.3", flooder); resp.StatusCode != 200 {
		t.Errorf("other address: status %d, want 200; %s", resp.StatusCode, raw)
	}

	// The victim's nonce survived the flood.
	nonce := mustB64(t, ch.Nonce)
	apiJSON(t, m, "", "POST", "/api/v1/auth/login", map[string]any{
		"publicKey": b64(victim.Public().(ed25519.PublicKey)), "nonce": ch.Nonce, "signature": b64(ed25519.Sign(victim, nonce))}, 200, nil)
}

func TestChallengeConfigRefused(t *testing.T) {
	cfg := &Config{Addr: "127.0.0.1:0", Data: t.TempDir()}
	cfg.Auth.Challenges.PerClient = -1
	cfg.setDefaults()
	err := cfg.validate()
	if err == nil || !strings.Contains(err.Error(), "auth.challenges.per_client") {
		t.Fatalf("validate: got %v, want an error naming auth.challenges.per_client", err)
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return b
}
