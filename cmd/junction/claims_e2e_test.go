package main

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/junctionhq/junction/internal/auth"
)

// Issue 10, item 6, end to end: tokens signed with the server's own key but
// with lenient claims (times as strings or fractions, a foreign audience)
// are refused on REST and on the WebSocket upgrade.

func TestLenientClaimsRefused(t *testing.T) {
	var data string
	m := startServer(t, func(c *Config) { data = c.Data })
	secret, _, err := auth.LoadOrCreateSecret(data)
	if err != nil {
		t.Fatal(err)
	}
	acct := login(t, m, newKey(t), "phone")
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "junction", "sub": acct.AccountID, "dev": acct.DeviceID, "kind": "phone", "scope": []string{"read"},
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "j1"}
	}
	sign := func(set map[string]any) string {
		c := good()
		for k, v := range set {
			c[k] = v
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Sanity: the server's key signs tokens it accepts.
	wantTokenAccepted(t, m, "a strict token", sign(nil))
	for _, tc := range []struct {
		name string
		set  map[string]any
	}{
		{"exp as a string", map[string]any{"exp": strconv.FormatInt(now.Add(time.Hour).Unix(), 10)}},
		{"iat as a string", map[string]any{"iat": strconv.FormatInt(now.Unix(), 10)}},
		{"fractional exp", map[string]any{"exp": float64(now.Add(time.Hour).Unix()) + 0.5}},
		{"foreign aud", map[string]any{"aud": "https://other.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantTokenRefused(t, m, tc.name, sign(tc.set)) })
	}
}

func TestAudienceConfigured(t *testing.T) {
	var data string
	m := startServer(t, func(c *Config) { data = c.Data; c.Auth.Audience = "https://junction.example" })
	tok := login(t, m, newKey(t), "phone")
	parts := strings.Split(tok.AccessToken, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || !strings.Contains(string(payload), `"aud":["https://junction.example"]`) {
		t.Fatalf("issued token payload %s (%v): want aud", payload, err)
	}
	wantTokenAccepted(t, m, "the issued token", tok.AccessToken)
	_ = dialToken(t, m, tok.AccessToken)

	secret, _, err := auth.LoadOrCreateSecret(data)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "junction", "sub": tok.AccountID, "kind": "phone",
		"scope": []string{"read"}, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "aud": "https://other.example"}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	wantTokenRefused(t, m, "a token for another audience", foreign)
}
