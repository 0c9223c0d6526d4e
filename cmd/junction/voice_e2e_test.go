package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

const (
	voiceURL    = "wss://voice.example.test"
	voiceKey    = "APIjunctiontest"
	voiceSecret = "0123456789abcdef0123456789abcdef-voice-secret"
)

func voiceConfig(c *Config) {
	c.Voice.URL, c.Voice.APIKey, c.Voice.APISecret = voiceURL, voiceKey, voiceSecret
	c.Voice.MaxTTL = 2 * time.Hour
}

// liveKitClaims are the claims a LiveKit server reads from an access token
// (livekit/protocol auth.ClaimGrants), decoded independently of the
// server's own types.
type liveKitClaims struct {
	jwt.RegisteredClaims
	Name  string `json:"name"`
	Video struct {
		RoomJoin     *bool  `json:"roomJoin"`
		Room         string `json:"room"`
		CanPublish   *bool  `json:"canPublish"`
		CanSubscribe *bool  `json:"canSubscribe"`
	} `json:"video"`
}

// verifyVoiceToken checks tok as LiveKit does: HS256 with the secret of the
// API key named by iss, a valid time window; then every claim LiveKit
// needs, against want.
func verifyVoiceToken(t *testing.T, res protocol.VoiceToken, room, identity, name string, canPublish, canSubscribe bool, ttl time.Duration) {
	t.Helper()
	var c liveKitClaims
	tok, err := jwt.ParseWithClaims(res.Token, &c, func(tok *jwt.Token) (any, error) {
		iss, _ := tok.Claims.GetIssuer()
		if iss != voiceKey {
			t.Errorf("iss: got %q, want the API key %q", iss, voiceKey)
		}
		return []byte(voiceSecret), nil
	}, jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuer(voiceKey), jwt.WithSubject(identity))
	if err != nil || !tok.Valid {
		t.Fatalf("token does not verify with the API secret: %v", err)
	}
	if _, err := jwt.Parse(res.Token, func(*jwt.Token) (any, error) { return []byte("another secret of 32 bytes or more!!"), nil }); err == nil {
		t.Fatal("token verifies with another secret")
	}
	if c.NotBefore == nil || c.ExpiresAt == nil {
		t.Fatalf("nbf %v, exp %v: both required", c.NotBefore, c.ExpiresAt)
	}
	if got := c.ExpiresAt.Sub(c.NotBefore.Time); got != ttl {
		t.Errorf("exp - nbf: got %v, want %v", got, ttl)
	}
	if !c.ExpiresAt.Time.Equal(res.ExpiresAt) {
		t.Errorf("expiresAt %v, exp claim %v: want equal", res.ExpiresAt, c.ExpiresAt.Time)
	}
	if d := time.Since(c.NotBefore.Time); d < -2*time.Second || d > time.Minute {
		t.Errorf("nbf %v: want about now", c.NotBefore.Time)
	}
	if c.Name != name {
		t.Errorf("name: got %q, want %q", c.Name, name)
	}
	v := c.Video
	if v.RoomJoin == nil || !*v.RoomJoin || v.Room != room {
		t.Errorf("video grant: roomJoin %v room %q, want true %q", v.RoomJoin, v.Room, room)
	}
	// LiveKit reads an absent canPublish/canSubscribe as true: both must be
	// present.
	if v.CanPublish == nil || *v.CanPublish != canPublish || v.CanSubscribe == nil || *v.CanSubscribe != canSubscribe {
		t.Errorf("video grant: canPublish %v canSubscribe %v, want %v %v (explicit)", v.CanPublish, v.CanSubscribe, canPublish, canSubscribe)
	}
	if res.URL != voiceURL || res.Room != room || res.Identity != identity {
		t.Errorf("result: url %q room %q identity %q, want %q %q %q", res.URL, res.Room, res.Identity, voiceURL, room, identity)
	}
}

func TestVoiceToken(t *testing.T) {
	m := startServer(t, voiceConfig)
	phone := login(t, m, newKey(t), "phone")
	identity := phone.AccountID + ":" + phone.DeviceID

	var res protocol.VoiceToken
	apiJSON(t, m, phone.AccessToken, "POST", "/api/v1/voice/token", map[string]any{"room": "family"}, 200, &res)
	verifyVoiceToken(t, res, "family", identity, "test phone", true, true, time.Hour)

	apiJSON(t, m, phone.AccessToken, "POST", "/api/v1/voice/token", map[string]any{"room": "family", "canPublish": false, "ttl": 600}, 200, &res)
	verifyVoiceToken(t, res, "family", identity, "test phone", false, true, 10*time.Minute)

	// The same operation over the WebSocket.
	c := dialToken(t, m, phone.AccessToken)
	if err := call(t, c, "voice.token", map[string]any{"room": "radio", "canSubscribe": false}, &res); err != nil {
		t.Fatal(err)
	}
	verifyVoiceToken(t, res, "radio", identity, "test phone", true, false, time.Hour)

	for _, tc := range []struct {
		name   string
		token  string
		body   any
		status int
		code   string
	}{
		{"no room", phone.AccessToken, map[string]any{}, 400, "bad_request"},
		{"ttl over max_ttl", phone.AccessToken, map[string]any{"room": "a", "ttl": 7201}, 400, "bad_request"},
		{"negative ttl", phone.AccessToken, map[string]any{"room": "a", "ttl": -1}, 400, "bad_request"},
		{"a session's room", phone.AccessToken, map[string]any{"room": "session-x"}, 400, "bad_request"},
		{"unknown member", phone.AccessToken, map[string]any{"room": "a", "admin": true}, 400, "bad_request"},
		{"no credential", "", map[string]any{"room": "a"}, 401, "unauthorized"},
		{"read scope only", mintToken(t, m, phone.AccountID, phone.DeviceID, "phone", "read"), map[string]any{"room": "a"}, 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := apiCall(t, m, tc.token, "POST", "/api/v1/voice/token", tc.body)
			if e := decodeAPIError(t, raw); status != tc.status || e.Error.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s", status, raw, tc.status, tc.code)
			}
		})
	}
}

func TestVoiceNotConfigured(t *testing.T) {
	m := startServer(t, nil)
	phone := login(t, m, newKey(t), "phone")
	for path, body := range map[string]any{"/api/v1/voice/token": map[string]any{"room": "a"}, "/api/v1/voice/session": map[string]any{"sessionId": "s"}} {
		status, raw := apiCall(t, m, phone.AccessToken, "POST", path, body)
		e := decodeAPIError(t, raw)
		if status != 404 || e.Error.Code != "not_found" || e.Error.Details["reason"] != "not_configured" {
			t.Errorf("%s: got %d %s, want 404 not_found with reason not_configured", path, status, raw)
		}
	}
}

func TestVoiceSession(t *testing.T) {
	m := startServer(t, voiceConfig)
	key := newKey(t)
	phone := login(t, m, key, "phone")
	laptop := login(t, m, key, "browser")
	other := login(t, m, newKey(t), "phone")

	// The account's other device follows user:{accountId}.
	watcher := dialToken(t, m, laptop.AccessToken)
	got := make(chan protocol.UpdatePublication, 16)
	if _, err := watcher.Subscribe(context.Background(), "user:"+phone.AccountID, func(p client.Publication) {
		var up protocol.UpdatePublication
		if err := json.Unmarshal(p.Data, &up); err == nil {
			got <- up
		}
	}); err != nil {
		t.Fatal(err)
	}

	var s protocol.Session
	apiJSON(t, m, phone.AccessToken, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte("m"))}, 201, &s)

	var res protocol.VoiceToken
	apiJSON(t, m, phone.AccessToken, "POST", "/api/v1/voice/session", map[string]any{"sessionId": s.ID}, 200, &res)
	room := "session-" + s.ID
	verifyVoiceToken(t, res, room, phone.AccountID+":"+phone.DeviceID, "test phone", true, true, time.Hour)

	// Announced on the account's channel, and kept in the update log.
	deadline := time.After(10 * time.Second)
	for found := false; !found; {
		select {
		case up := <-got:
			if up.Update.Kind != "session.voice" {
				continue
			}
			var body protocol.VoiceSessionBody
			if err := json.Unmarshal(up.Update.Body, &body); err != nil || body != (protocol.VoiceSessionBody{ID: s.ID, Room: room, URL: voiceURL}) {
				t.Fatalf("session.voice body %s (%v), want id %s room %s url %s", up.Update.Body, err, s.ID, room, voiceURL)
			}
			if up.Update.ID != s.ID {
				t.Fatalf("session.voice id %q, want %q", up.Update.ID, s.ID)
			}
			found = true
		case <-deadline:
			t.Fatal("no session.voice update on user:{accountId}")
		}
	}
	var ups protocol.Updates
	apiJSON(t, m, laptop.AccessToken, "GET", "/api/v1/updates?since=0", nil, 200, &ups)
	if last := ups.Updates[len(ups.Updates)-1]; last.Kind != "session.voice" || last.ID != s.ID {
		t.Fatalf("last update %+v, want session.voice of %s", last, s.ID)
	}

	// Only the session's owner: another account gets not_found, as for any
	// object it does not own, and no token; nor does the room's name get
	// one through voice.token.
	status, raw := apiCall(t, m, other.AccessToken, "POST", "/api/v1/voice/session", map[string]any{"sessionId": s.ID})
	if e := decodeAPIError(t, raw); status != 404 || e.Error.Code != "not_found" || strings.Contains(string(raw), "token\"") {
		t.Fatalf("another account: got %d %s, want 404 not_found", status, raw)
	}
	status, raw = apiCall(t, m, other.AccessToken, "POST", "/api/v1/voice/token", map[string]any{"room": room})
	if status != 400 {
		t.Fatalf("another account asks voice.token for the session's room: got %d %s, want 400", status, raw)
	}
	// The owner's other device may join: it is the same account.
	apiJSON(t, m, laptop.AccessToken, "POST", "/api/v1/voice/session", map[string]any{"sessionId": s.ID, "canPublish": false}, 200, &res)
	verifyVoiceToken(t, res, room, laptop.AccountID+":"+laptop.DeviceID, "test browser", false, true, time.Hour)
}
