package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// API key format: "jk_<id>_<secret>", where id is public (lowercase hex, it
// never contains '_') and secret is APIKeySecretBytes random bytes in
// unpadded base64url (which may contain '_').
const (
	// APIKeyPrefix starts every API key; Authenticator routes credentials with
	// it to the APIKeyStore.
	APIKeyPrefix = "jk_"
	// APIKeySecretBytes is the length of an API key's secret.
	APIKeySecretBytes = 32
	// apiKeyIDBytes is the number of random bytes in a new key's id.
	apiKeyIDBytes = 8
	// maxAPIKeyIDLen bounds the id ParseAPIKey accepts.
	maxAPIKeyIDLen = 64
)

// Errors an APIKeyStore returns (wrapped or not) for the outcomes that are
// authentication failures rather than faults.
var (
	// ErrUnknownAPIKey: no key has this id.
	ErrUnknownAPIKey = errors.New("unknown api key")
	// ErrRevoked: the credential existed but was revoked.
	ErrRevoked = errors.New("credential revoked")
)

// APIKey is a full API key. Its String, GoString and LogValue redact the
// secret part, so that a key passed to a logger or fmt never leaks; convert
// it to string deliberately to show it (once, when it is created).
type APIKey string

// String implements fmt.Stringer, showing only the public id.
func (k APIKey) String() string {
	id, _, err := ParseAPIKey(string(k))
	if err != nil {
		return "jk_REDACTED"
	}
	return APIKeyPrefix + id + "_REDACTED"
}

// GoString implements fmt.GoStringer, so %#v redacts too.
func (k APIKey) GoString() string { return k.String() }

// LogValue implements slog.LogValuer.
func (k APIKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// NewAPIKey generates an API key. It returns the full key (shown to its
// owner once and never stored), its public id, and the SHA-256 hash of its
// secret, which is what gets stored.
func NewAPIKey() (key string, id string, hash []byte, err error) {
	var idb [apiKeyIDBytes]byte
	var secret [APIKeySecretBytes]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", nil, fmt.Errorf("new api key: random id: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", nil, fmt.Errorf("new api key: random secret: %w", err)
	}
	id = hex.EncodeToString(idb[:])
	key = APIKeyPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256(secret[:])
	return key, id, sum[:], nil
}

// ParseAPIKey splits key into its public id and its secret. The id must be
// 1 to 64 characters of [0-9a-z]; the secret must decode (strict unpadded
// base64url) to exactly APIKeySecretBytes bytes. Errors never include the
// secret.
func ParseAPIKey(key string) (id string, secret []byte, err error) {
	rest, ok := strings.CutPrefix(key, APIKeyPrefix)
	if !ok {
		return "", nil, errors.New("parse api key: missing jk_ prefix")
	}
	id, enc, ok := strings.Cut(rest, "_")
	if !ok {
		return "", nil, errors.New("parse api key: missing secret")
	}
	if len(id) == 0 || len(id) > maxAPIKeyIDLen {
		return "", nil, fmt.Errorf("parse api key: id length %d out of range 1..%d", len(id), maxAPIKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return "", nil, errors.New("parse api key: id has a character outside [0-9a-z]")
		}
	}
	if len(enc) != base64.RawURLEncoding.EncodedLen(APIKeySecretBytes) {
		return "", nil, fmt.Errorf("parse api key: secret is %d characters, want %d", len(enc), base64.RawURLEncoding.EncodedLen(APIKeySecretBytes))
	}
	secret, err = base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil || len(secret) != APIKeySecretBytes {
		return "", nil, errors.New("parse api key: secret is not base64url")
	}
	return id, secret, nil
}

// HashAPIKeySecret returns the SHA-256 hash under which a secret is stored.
func HashAPIKeySecret(secret []byte) []byte {
	sum := sha256.Sum256(secret)
	return sum[:]
}

// CheckAPIKey reports whether secret matches the stored hash, in constant
// time.
func CheckAPIKey(secret, hash []byte) bool {
	sum := sha256.Sum256(secret)
	return len(hash) == sha256.Size && subtle.ConstantTimeCompare(sum[:], hash) == 1
}

// APIKeyStore looks up API keys by their public id. It is implemented by the
// store.
type APIKeyStore interface {
	// LookupAPIKey returns the SHA-256 hash of the key's secret and the
	// principal the key authenticates as (AppID set). When no key has the id
	// it returns an error wrapping ErrUnknownAPIKey; for a revoked key, one
	// wrapping ErrRevoked (or ErrUnknownAPIKey). Any other error is a fault
	// (the store is unreachable) and is passed through unchanged.
	LookupAPIKey(ctx context.Context, id string) (hash []byte, p *Principal, err error)
}

// Authenticator turns a credential into a principal. Credentials starting
// with APIKeyPrefix go to APIKeys when it is set; every other credential is
// verified as an access token by Tokens, then checked against Revocations
// when it is set. The fields are set once before use.
type Authenticator struct {
	Tokens  *Tokens
	APIKeys APIKeyStore // optional
	// Revocations, when set, refuses tokens of revoked devices (CheckRevoked).
	Revocations Revocations
	// Now is the clock used to check API-key expiry; default time.Now.
	Now func() time.Time
}

// Authenticate returns the principal credential authenticates. An
// authentication failure is a *Failure; any other error is a fault of a
// dependency (such as the key store) that the caller should report as
// unavailable rather than unauthorized.
func (a *Authenticator) Authenticate(ctx context.Context, credential string) (*Principal, error) {
	if credential == "" {
		return nil, fail(ReasonMissing, errors.New("authenticate: no credential"))
	}
	if a.APIKeys != nil && strings.HasPrefix(credential, APIKeyPrefix) {
		return a.authenticateAPIKey(ctx, credential)
	}
	if a.Tokens == nil {
		return nil, errors.New("authenticate: no token verifier configured")
	}
	p, err := a.Tokens.Verify(credential)
	if err != nil {
		return nil, err
	}
	if err := a.CheckRevoked(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

func (a *Authenticator) authenticateAPIKey(ctx context.Context, key string) (*Principal, error) {
	id, secret, err := ParseAPIKey(key)
	if err != nil {
		return nil, fail(ReasonMalformed, fmt.Errorf("authenticate: %w", err))
	}
	hash, p, err := a.APIKeys.LookupAPIKey(ctx, id)
	switch {
	case errors.Is(err, ErrRevoked):
		return nil, fail(ReasonRevoked, fmt.Errorf("authenticate: api key %s: %w", id, err))
	case errors.Is(err, ErrUnknownAPIKey):
		return nil, fail(ReasonUnknownKey, fmt.Errorf("authenticate: api key %s: %w", id, err))
	case err != nil:
		return nil, fmt.Errorf("authenticate: look up api key %s: %w", id, err)
	case p == nil:
		return nil, fmt.Errorf("authenticate: look up api key %s: store returned no principal", id)
	}
	if !CheckAPIKey(secret, hash) {
		return nil, fail(ReasonSignature, fmt.Errorf("authenticate: api key %s: secret does not match", id))
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	if p.Expired(now()) {
		return nil, fail(ReasonExpired, fmt.Errorf("authenticate: api key %s expired at %v", id, p.ExpiresAt))
	}
	out := *p
	out.Scopes = append([]string(nil), p.Scopes...)
	if out.TokenID == "" {
		out.TokenID = id
	}
	return &out, nil
}
