package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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
//
// A key is stored as its MAC: HMAC-SHA256 keyed with the server's pepper
// (MinPepperBytes or more, PepperFileName in the data directory) over the
// id, a NUL byte and the secret. A copy of the database alone does not let
// anyone test guesses offline, and the id binds the MAC to its row.
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
	// MinPepperBytes is the shortest pepper APIKeyMAC accepts.
	MinPepperBytes = 32
)

// Errors an APIKeyStore returns (wrapped or not) for the outcomes that are
// authentication failures rather than faults.
var (
	// ErrUnknownAPIKey: no key has this id.
	ErrUnknownAPIKey = errors.New("unknown api key")
	// ErrRevoked: the credential existed but was revoked.
	ErrRevoked = errors.New("credential revoked")
	// ErrNotInstalled: the user has not installed the app (Installations).
	ErrNotInstalled = errors.New("app not installed by the user")
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

// NewAPIKey generates an API key under pepper. It returns the full key
// (shown to its owner once and never stored), its public id, and its MAC
// (APIKeyMAC), which is what gets stored.
func NewAPIKey(pepper []byte) (key string, id string, mac []byte, err error) {
	if len(pepper) < MinPepperBytes {
		return "", "", nil, fmt.Errorf("new api key: pepper is %d bytes, need at least %d", len(pepper), MinPepperBytes)
	}
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
	return key, id, APIKeyMAC(pepper, id, secret[:]), nil
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

// APIKeyMAC returns the MAC under which the key (id, secret) is stored:
// HMAC-SHA256(pepper, id || 0x00 || secret).
func APIKeyMAC(pepper []byte, id string, secret []byte) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write(secret)
	return m.Sum(nil)
}

// CheckAPIKey reports whether (id, secret) matches the stored mac under
// pepper, in constant time. An empty or short pepper matches nothing.
func CheckAPIKey(pepper []byte, id string, secret, mac []byte) bool {
	if len(pepper) < MinPepperBytes || len(mac) != sha256.Size {
		return false
	}
	return hmac.Equal(APIKeyMAC(pepper, id, secret), mac)
}

// APIKeyStore looks up API keys by their public id. It is implemented by
// the apps platform (internal/apps, over the store).
type APIKeyStore interface {
	// LookupAPIKey returns the stored MAC of the key (APIKeyMAC) and the
	// principal the key authenticates as (AppID set, ExpiresAt the key's
	// expiry). When no key has the id it returns an error wrapping
	// ErrUnknownAPIKey; for a revoked key, one wrapping ErrRevoked (or
	// ErrUnknownAPIKey). Any other error is a fault (the store is
	// unreachable) and is passed through unchanged.
	LookupAPIKey(ctx context.Context, id string) (mac []byte, p *Principal, err error)
	// APIKeyUsed records that the key authenticated a request at t. It is
	// called on every success and must not block: implementations coalesce
	// the writes.
	APIKeyUsed(id string, t time.Time)
}

// Installations tells what a user let an app do for them. It is
// implemented by the apps platform.
type Installations interface {
	// InstalledScopes returns the scopes userID granted appID when
	// installing it, or an error wrapping ErrNotInstalled. Any other error
	// is a fault.
	InstalledScopes(ctx context.Context, appID, userID string) ([]string, error)
}

// Authenticator turns a credential into a principal. Credentials starting
// with APIKeyPrefix go to APIKeys when it is set; every other credential is
// verified as an access token by Tokens, then checked against Revocations
// when it is set. The fields are set once before use.
type Authenticator struct {
	Tokens  *Tokens
	APIKeys APIKeyStore // optional
	// APIKeyPepper keys the MACs of API keys (APIKeyMAC); required with
	// APIKeys.
	APIKeyPepper []byte
	// Installs, when set, lets an app key act for a user who installed the
	// app (ForUser).
	Installs Installations
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
	mac, p, err := a.APIKeys.LookupAPIKey(ctx, id)
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
	if len(a.APIKeyPepper) < MinPepperBytes {
		return nil, fmt.Errorf("authenticate: api key %s: no pepper configured", id)
	}
	if !CheckAPIKey(a.APIKeyPepper, id, secret, mac) {
		return nil, fail(ReasonSignature, fmt.Errorf("authenticate: api key %s: secret does not match", id))
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	at := now()
	if p.Expired(at) {
		return nil, fail(ReasonExpired, fmt.Errorf("authenticate: api key %s expired at %v", id, p.ExpiresAt()))
	}
	a.APIKeys.APIKeyUsed(id, at)
	out := *p
	out.Scopes = append([]string(nil), p.Scopes...)
	if out.TokenID == "" {
		out.TokenID = id
	}
	return &out, nil
}

// ForUser returns the principal of app principal p acting for userID: the
// same app and key, the user, and only the scopes both the app holds and
// the user granted at installation. It refuses (ReasonNotInstalled) a user
// who has not installed the app, and (ReasonMalformed) a principal that is
// not an app's own (a token, or an app already acting for a user). A fault
// of Installs is returned unchanged.
func (a *Authenticator) ForUser(ctx context.Context, p *Principal, userID string) (*Principal, error) {
	if p == nil || p.AppID == "" || p.UserID != "" {
		return nil, fail(ReasonMalformed, errors.New("act for user: only an app key may act for a user"))
	}
	if userID == "" || len(userID) > maxUserIDLen {
		return nil, fail(ReasonMalformed, fmt.Errorf("act for user: user id length %d out of range 1..%d", len(userID), maxUserIDLen))
	}
	if a.Installs == nil {
		return nil, fail(ReasonNotInstalled, errors.New("act for user: installations are not configured"))
	}
	granted, err := a.Installs.InstalledScopes(ctx, p.AppID, userID)
	switch {
	case errors.Is(err, ErrNotInstalled):
		return nil, fail(ReasonNotInstalled, fmt.Errorf("act for user: app %s: %w", p.AppID, err))
	case err != nil:
		return nil, fmt.Errorf("act for user: app %s: %w", p.AppID, err)
	}
	out := *p
	out.UserID = userID
	out.Scopes = IntersectScopes(p.Scopes, granted)
	return &out, nil
}

// maxUserIDLen bounds a user id named by an app (ids the store gives out are
// far shorter).
const maxUserIDLen = 128

// IntersectScopes returns the scopes of have that want also lists, in
// have's order (literal matches; HasScope's implications, such as write
// implying read, then apply to the result as to any principal).
func IntersectScopes(have, want []string) []string {
	out := []string{}
	for _, s := range have {
		for _, w := range want {
			if s == w {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// UserHeader names the user an app key acts for on a REST request or at
// the WebSocket upgrade (ForUser).
const UserHeader = "Junction-User"
