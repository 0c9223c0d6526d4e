package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// LiveKit access tokens: the credential a voice client presents to a
// LiveKit-compatible media server (https://docs.livekit.io/home/get-started/authentication/).
// The server trusts any HS256 token signed with one of its API secrets
// whose "iss" is that secret's API key. Junction mints them; it never
// talks to the media server.

// VoiceGrant is the "video" claim of a LiveKit access token: what the
// holder may do in one room. Every member is written explicitly: LiveKit
// reads an absent canPublish or canSubscribe as true.
type VoiceGrant struct {
	RoomJoin     bool   `json:"roomJoin"`
	Room         string `json:"room"`
	CanPublish   bool   `json:"canPublish"`
	CanSubscribe bool   `json:"canSubscribe"`
	// CanPublishData follows CanPublish (data messages are publications).
	CanPublishData bool `json:"canPublishData"`
}

// VoiceClaims are the claims of a LiveKit access token: iss (the API key),
// sub (the participant's identity), name, nbf, exp, iat, jti and the video
// grant.
type VoiceClaims struct {
	jwt.RegisteredClaims
	Name  string     `json:"name,omitempty"`
	Video VoiceGrant `json:"video"`
}

// MinVoiceSecretBytes is the shortest LiveKit API secret accepted (LiveKit
// generates 32-byte and longer secrets; a short one is guessable).
const MinVoiceSecretBytes = 32

// VoiceToken mints a LiveKit access token signed with HS256 by secret,
// issued by apiKey for identity (shown as name) with grant, valid from now
// until now+ttl. Identity and room must not be empty; ttl must be positive.
func VoiceToken(apiKey string, secret []byte, identity, name string, grant VoiceGrant, now time.Time, ttl time.Duration) (string, error) {
	switch {
	case apiKey == "":
		return "", errors.New("voice token: empty API key")
	case len(secret) < MinVoiceSecretBytes:
		return "", fmt.Errorf("voice token: API secret shorter than %d bytes", MinVoiceSecretBytes)
	case identity == "":
		return "", errors.New("voice token: empty identity")
	case grant.Room == "":
		return "", errors.New("voice token: empty room")
	case ttl <= 0:
		return "", errors.New("voice token: ttl must be positive")
	}
	now = now.Truncate(time.Second)
	claims := VoiceClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    apiKey,
			Subject:   identity,
			ID:        identity, // as LiveKit's own SDKs write it
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Name:  name,
		Video: grant,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("voice token: sign: %w", err)
	}
	return s, nil
}
