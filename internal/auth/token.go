package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/junctionhq/junction/internal/jsonscan"
)

// Token signing algorithms accepted in TokenConfig.Alg.
const (
	AlgHS256 = "HS256"
	AlgEdDSA = "EdDSA"
)

// Token defaults and limits.
const (
	// DefaultIssuer is the "iss" claim when TokenConfig.Issuer is empty.
	DefaultIssuer = "junction"
	// DefaultLeeway is the clock skew tolerated when TokenConfig.Leeway is zero.
	DefaultLeeway = 30 * time.Second
	// MinSecretBytes is the shortest HS256 secret NewTokens accepts.
	MinSecretBytes = 32
	// MaxTokenBytes bounds the size of a token Verify will parse; longer
	// strings are refused as malformed before any decoding.
	MaxTokenBytes = 8 << 10
)

// TokenConfig configures access tokens. The zero value of every field but the
// key material is a usable default.
type TokenConfig struct {
	// Issuer is the "iss" claim written and required; default DefaultIssuer.
	Issuer string
	// Audience, when set, is the "aud" claim Issue writes. A token that
	// carries "aud" is accepted only when it names Audience (with no
	// Audience, a token carrying any "aud" is refused as meant for another
	// service); a token without "aud" is accepted.
	Audience string
	// Alg is the signing algorithm, AlgHS256 (default) or AlgEdDSA. Verify
	// accepts only this algorithm.
	Alg string
	// Secret is the HS256 key, at least MinSecretBytes long.
	Secret []byte
	// PrivateKey signs EdDSA tokens; it may be nil on a node that only
	// verifies.
	PrivateKey ed25519.PrivateKey
	// PublicKey verifies EdDSA tokens; when nil it is derived from PrivateKey.
	PublicKey ed25519.PublicKey
	// Leeway is the clock skew tolerated on exp and iat; default
	// DefaultLeeway. It must not be negative.
	Leeway time.Duration
	// Now is the clock; default time.Now. Tests inject a fake one.
	Now func() time.Time
}

// Claims are what an access token asserts. UserID and a valid Kind are
// required; DeviceID and SessionID are optional.
type Claims struct {
	UserID    string
	DeviceID  string
	Kind      string
	SessionID string
	Scopes    []string
}

// Tokens issues and verifies access tokens (JWT). It is safe for concurrent
// use; all fields are set once by NewTokens.
type Tokens struct {
	issuer   string
	audience string
	alg      string
	method   jwt.SigningMethod
	signKey  any // []byte or ed25519.PrivateKey; nil when this node only verifies
	verKey   any // []byte or ed25519.PublicKey
	leeway   time.Duration
	now      func() time.Time
	parser   *jwt.Parser
	// validator checks registered claims as parser does; header is the
	// base64url JOSE header Issue writes (see verifyIssued).
	validator *jwt.Validator
	header    string
	hs256     *hs256Verifier // HS256 only: verifyIssued's signature check
}

// NewTokens validates cfg and returns Tokens for it.
func NewTokens(cfg TokenConfig) (*Tokens, error) {
	t := &Tokens{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		alg:      cfg.Alg,
		leeway:   cfg.Leeway,
		now:      cfg.Now,
	}
	if t.issuer == "" {
		t.issuer = DefaultIssuer
	}
	if t.alg == "" {
		t.alg = AlgHS256
	}
	if t.leeway < 0 {
		return nil, fmt.Errorf("tokens: leeway %v is negative", cfg.Leeway)
	}
	if t.leeway == 0 {
		t.leeway = DefaultLeeway
	}
	if t.now == nil {
		t.now = time.Now
	}
	switch t.alg {
	case AlgHS256:
		if len(cfg.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("tokens: HS256 secret is %d bytes, need at least %d", len(cfg.Secret), MinSecretBytes)
		}
		key := bytes.Clone(cfg.Secret)
		t.method, t.signKey, t.verKey = jwt.SigningMethodHS256, key, key
		t.hs256 = newHS256Verifier(key)
	case AlgEdDSA:
		pub := cfg.PublicKey
		if cfg.PrivateKey != nil {
			if len(cfg.PrivateKey) != ed25519.PrivateKeySize {
				return nil, fmt.Errorf("tokens: ed25519 private key is %d bytes, want %d", len(cfg.PrivateKey), ed25519.PrivateKeySize)
			}
			derived := cfg.PrivateKey.Public().(ed25519.PublicKey)
			if pub != nil && !derived.Equal(pub) {
				return nil, errors.New("tokens: ed25519 public key does not match the private key")
			}
			pub = derived
			t.signKey = cfg.PrivateKey
		}
		if pub == nil {
			return nil, errors.New("tokens: EdDSA needs a public or private key")
		}
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("tokens: ed25519 public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
		}
		t.method, t.verKey = jwt.SigningMethodEdDSA, pub
	default:
		return nil, fmt.Errorf("tokens: unsupported algorithm %q (want %s or %s)", cfg.Alg, AlgHS256, AlgEdDSA)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{t.alg}),
		jwt.WithIssuer(t.issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(t.leeway),
		jwt.WithTimeFunc(t.now),
		// Strict base64 makes the encoding of a token unique, so a token
		// cannot be altered into another string that still verifies.
		jwt.WithStrictDecoding(),
	}
	t.parser = jwt.NewParser(opts...)
	t.validator = jwt.NewValidator(opts...)
	signing, err := jwt.NewWithClaims(t.method, jwt.MapClaims{}).SigningString()
	if err != nil {
		return nil, fmt.Errorf("tokens: header: %w", err)
	}
	t.header, _, _ = strings.Cut(signing, ".")
	return t, nil
}

// verifyIssued verifies a token whose header is exactly the one Issue
// writes, with the library's pieces (strict base64, the signing method, the
// claims validator) but without decoding that known header into a map: it
// reports true only when the token is valid, in which case
// ParseWithClaims would accept it too and decode the same claims. Any
// failure, and any other header, goes to ParseWithClaims for its verdict.
func (t *Tokens) verifyIssued(token string, claims *verifyClaims) bool {
	header, rest, ok := strings.Cut(token, ".")
	if !ok || header != t.header {
		return false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(sig, '.') >= 0 {
		return false
	}
	claimBytes, err := t.parser.DecodeSegment(payload)
	if err != nil || claims.UnmarshalJSON(claimBytes) != nil {
		return false
	}
	signing := token[:len(header)+1+len(payload)]
	if t.hs256 != nil {
		if !t.hs256.verify(signing, sig) {
			return false
		}
	} else if sigBytes, err := t.parser.DecodeSegment(sig); err != nil || t.method.Verify(signing, sigBytes, t.verKey) != nil {
		return false
	}
	return t.validator.Validate(claims) == nil
}

// wireClaims is the JSON payload of an access token.
type wireClaims struct {
	jwt.RegisteredClaims
	Dev   string   `json:"dev,omitempty"`
	Kind  string   `json:"kind"`
	Sid   string   `json:"sid,omitempty"`
	Scope []string `json:"scope"`
}

// Issue signs an access token for c valid for ttl, and returns it with its
// expiry (truncated to the second, as in the token). It fails when c lacks a
// user id or a valid kind, when ttl is not positive, or when this node has no
// signing key.
func (t *Tokens) Issue(c Claims, ttl time.Duration) (token string, expiresAt time.Time, err error) {
	switch {
	case t.signKey == nil:
		return "", time.Time{}, errors.New("issue token: no signing key configured")
	case c.UserID == "":
		return "", time.Time{}, errors.New("issue token: empty user id")
	case !ValidKind(c.Kind):
		return "", time.Time{}, fmt.Errorf("issue token: invalid kind %q", c.Kind)
	case ttl <= 0:
		return "", time.Time{}, fmt.Errorf("issue token: ttl %v is not positive", ttl)
	}
	for _, s := range c.Scopes {
		if s == "" {
			return "", time.Time{}, errors.New("issue token: empty scope")
		}
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: random id: %w", err)
	}
	now := t.now().Truncate(time.Second)
	expiresAt = now.Add(ttl).Truncate(time.Second)
	if !expiresAt.After(now) {
		expiresAt = now.Add(time.Second)
	}
	var aud jwt.ClaimStrings
	if t.audience != "" {
		aud = jwt.ClaimStrings{t.audience}
	}
	claims := wireClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Audience:  aud,
			Subject:   c.UserID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(expiresAt),
			ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		},
		Dev:   c.DeviceID,
		Kind:  c.Kind,
		Sid:   c.SessionID,
		Scope: append([]string{}, c.Scopes...),
	}
	token, err = jwt.NewWithClaims(t.method, claims).SignedString(t.signKey)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue token: sign: %w", err)
	}
	return token, expiresAt, nil
}

// Verify checks token's signature (only the configured algorithm is
// accepted), issuer, audience, expiry and claims, and returns the principal
// it asserts. Times (exp, iat, nbf) must be JSON integers. Every failure is
// a *Failure.
func (t *Tokens) Verify(token string) (*Principal, error) {
	if token == "" {
		return nil, fail(ReasonMissing, errors.New("verify token: empty token"))
	}
	if len(token) > MaxTokenBytes {
		return nil, fail(ReasonMalformed, fmt.Errorf("verify token: %d bytes, over the %d-byte limit", len(token), MaxTokenBytes))
	}
	// Go's base64 decoders skip '\r' and '\n', so without this check a
	// genuine token with line breaks inserted would verify as well: a token
	// is its compact serialization, byte for byte.
	if i := strings.IndexFunc(token, notCompactJWS); i >= 0 {
		return nil, fail(ReasonMalformed, fmt.Errorf("verify token: byte %d (%q) is not base64url or '.'", i, token[i]))
	}
	var claims verifyClaims
	var err error
	if !t.verifyIssued(token, &claims) {
		claims = verifyClaims{}
		_, err = t.parser.ParseWithClaims(token, &claims, t.keyFunc)
	}
	if err != nil {
		reason := jwtReason(err)
		if reason == ReasonMalformed && payloadIsJSON(token) {
			// Well-formed JSON with a claim of the wrong type: decoding
			// into verifyClaims fails before the claims are looked at.
			reason = ReasonInvalidClaims
		}
		return nil, fail(reason, fmt.Errorf("verify token: %w", err))
	}
	p, err := principalFromClaims(&claims, t.audience)
	if err != nil {
		return nil, fail(ReasonInvalidClaims, fmt.Errorf("verify token: %w", err))
	}
	return p, nil
}

// notCompactJWS reports whether r may not appear in a JWS compact
// serialization (base64url without padding, parts joined by '.').
func notCompactJWS(r rune) bool {
	switch {
	case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		return false
	}
	return true
}

// keyFunc returns the verification key. The parser has already refused any
// algorithm but t.alg; checking again keeps a key from ever being used with
// another algorithm should that option be lost.
func (t *Tokens) keyFunc(tok *jwt.Token) (any, error) {
	if tok.Method.Alg() != t.alg {
		return nil, fmt.Errorf("unexpected algorithm %q", tok.Method.Alg())
	}
	return t.verKey, nil
}

// jwtReason maps a jwt parse error to a Failure reason.
func jwtReason(err error) string {
	switch {
	// Expiry first: an expired token's error also wraps ErrTokenInvalidClaims.
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return ReasonSignature
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	default:
		return ReasonInvalidClaims
	}
}

// payloadIsJSON reports whether the second part of a JWT is a JSON object
// in strict base64url.
func payloadIsJSON(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	return err == nil && len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// verifyClaims is what Verify decodes a token's payload into: the
// registered claims, which the parser validates, and the private claims.
// Decoding into a struct costs a fraction of a map of interfaces; a claim of
// the wrong JSON type fails the decoding (ReasonInvalidClaims).
//
// The times and the audience shadow RegisteredClaims' members of the same
// JSON names (which stay nil) with stricter types: jwt.NumericDate accepts
// a string holding a number and a fraction, numericDate only an integer.
type verifyClaims struct {
	jwt.RegisteredClaims                // iss, sub, jti
	Exp                  *numericDate   `json:"exp"`
	Iat                  *numericDate   `json:"iat"`
	Nbf                  *numericDate   `json:"nbf"`
	Aud                  *claimAudience `json:"aud"` // nil when missing or null
	Dev                  string         `json:"dev"`
	Kind                 string         `json:"kind"`
	Sid                  string         `json:"sid"`
	Scope                *[]string      `json:"scope"` // nil when missing or null
}

// GetExpirationTime implements jwt.Claims with the strict exp.
func (c verifyClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp.jwt(), nil }

// GetIssuedAt implements jwt.Claims with the strict iat.
func (c verifyClaims) GetIssuedAt() (*jwt.NumericDate, error) { return c.Iat.jwt(), nil }

// GetNotBefore implements jwt.Claims with the strict nbf.
func (c verifyClaims) GetNotBefore() (*jwt.NumericDate, error) { return c.Nbf.jwt(), nil }

// GetAudience implements jwt.Claims with the strict aud (Verify checks it).
func (c verifyClaims) GetAudience() (jwt.ClaimStrings, error) {
	if c.Aud == nil {
		return nil, nil
	}
	return jwt.ClaimStrings(*c.Aud), nil
}

// maxExactSeconds is 2^53, the largest integer every JSON decoder reads
// exactly; NumericDates beyond it (hundreds of millions of years) are
// refused.
const maxExactSeconds = 1 << 53

// errNumericDate is the decoding error of a time claim that is not an
// integer.
var errNumericDate = errors.New("NumericDate: want an integer number of seconds")

// numericDate is a NumericDate (RFC 7519 §2) that decodes only from a JSON
// integer within ±2^53: not from a string, a fraction or an exponent.
type numericDate jwt.NumericDate

// UnmarshalJSON implements json.Unmarshaler (null never reaches it: the
// field is a pointer).
func (d *numericDate) UnmarshalJSON(b []byte) error {
	n, end, ok := jsonscan.Int(b, 0)
	if !ok || end != len(b) || n > maxExactSeconds || n < -maxExactSeconds {
		return errNumericDate
	}
	*d = numericDate(*jwt.NewNumericDate(time.Unix(n, 0)))
	return nil
}

func (d *numericDate) jwt() *jwt.NumericDate { return (*jwt.NumericDate)(d) }

// claimAudience is the aud claim: one string, or an array of strings
// (possibly empty). A decoded audience is present, whatever it lists.
type claimAudience []string

// UnmarshalJSON implements json.Unmarshaler (null never reaches it: the
// field is a pointer).
func (a *claimAudience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = claimAudience{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	if list == nil {
		return errors.New("aud: want a string or an array of strings")
	}
	*a = list
	return nil
}

// principalFromClaims checks the audience and the private claims of a
// verified token and builds its principal. Registered claims (iss, exp, iat,
// nbf) have been validated by the parser.
func principalFromClaims(c *verifyClaims, audience string) (*Principal, error) {
	switch {
	case c.Aud != nil && (audience == "" || !slices.Contains(*c.Aud, audience)):
		return nil, fmt.Errorf("claim aud: %q does not name this service", []string(*c.Aud))
	case c.Subject == "":
		return nil, errors.New("claim sub: missing or empty")
	case c.Kind == "":
		return nil, errors.New("claim kind: missing or empty")
	case !ValidKind(c.Kind):
		return nil, fmt.Errorf("claim kind: unknown kind %q", c.Kind)
	case c.Scope == nil:
		return nil, errors.New("claim scope: missing")
	case c.Exp == nil:
		// Unreachable after parser validation with WithExpirationRequired.
		return nil, errors.New("claim exp: missing or invalid")
	}
	for i, s := range *c.Scope {
		if s == "" {
			return nil, fmt.Errorf("claim scope: element %d is empty", i)
		}
	}
	// The principal lives as long as its connection: its four ids are
	// cut from one string (one allocation, rounded up to a size class
	// once) rather than held as the decoder's three or four.
	ids := c.Subject + c.Dev + c.ID + c.Sid
	user, ids := ids[:len(c.Subject)], ids[len(c.Subject):]
	dev, ids := ids[:len(c.Dev)], ids[len(c.Dev):]
	jti, sid := ids[:len(c.ID)], ids[len(c.ID):]
	return &Principal{
		UserID:          user,
		Kind:            Kinds[slices.Index(Kinds, c.Kind)], // the shared copy
		DeviceID:        dev,
		SessionID:       sid,
		TokenID:         jti,
		Scopes:          internScopes(*c.Scope),
		ExpiresAtMicros: ExpiryMicros(c.Exp.Time),
	}, nil
}

// commonScopes are the scope lists most tokens carry. A principal lives as
// long as its connection, so the usual lists are shared rather than held
// once per connection (Principal is immutable).
var commonScopes = [][]string{
	{ScopeRead},
	{ScopeRead, ScopeWrite},
	{ScopeRead, ScopeWrite, ScopeRPCServe},
	{ScopeAdmin},
}

// internScopes returns a shared copy of a common scope list, or list
// a copy of exactly its length.
func internScopes(list []string) []string {
	for _, common := range commonScopes {
		if slices.Equal(list, common) {
			return common
		}
	}
	return slices.Clone(list)
}
