package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVoiceToken(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 5, 1, 10, 0, 0, 500, time.UTC)
	grant := VoiceGrant{RoomJoin: true, Room: "r", CanSubscribe: true}
	tok, err := VoiceToken("APIkey", secret, "u:d", "Phone", grant, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var c VoiceClaims
	if _, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(func() time.Time { return now })); err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "APIkey" || c.Subject != "u:d" || c.Name != "Phone" || c.Video != grant ||
		!c.NotBefore.Equal(now.Truncate(time.Second)) || !c.ExpiresAt.Equal(now.Truncate(time.Second).Add(time.Hour)) {
		t.Fatalf("claims %+v", c)
	}
	// False grants are written, not omitted: LiveKit reads absent as true.
	payload, _ := jwt.NewParser().DecodeSegment(strings.Split(tok, ".")[1])
	if !strings.Contains(string(payload), `"canPublish":false`) || !strings.Contains(string(payload), `"canPublishData":false`) {
		t.Fatalf("payload %s: want explicit false grants", payload)
	}
	for _, tc := range []struct {
		name           string
		key            string
		secret         []byte
		identity, room string
		ttl            time.Duration
	}{
		{"no key", "", secret, "u", "r", time.Hour},
		{"short secret", "k", secret[:31], "u", "r", time.Hour},
		{"no identity", "k", secret, "", "r", time.Hour},
		{"no room", "k", secret, "u", "", time.Hour},
		{"no ttl", "k", secret, "u", "r", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := VoiceToken(tc.key, tc.secret, tc.identity, "", VoiceGrant{RoomJoin: true, Room: tc.room}, now, tc.ttl); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}
