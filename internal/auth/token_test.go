package auth

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes

// testClock is a settable clock for tests.
type testClock struct{ t time.Time }

func (c *testClock) Now() time.Time          { return c.t }
func (c *testClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *testClock { return &testClock{t: time.Unix(1_800_000_000, 0)} }

func newHS(t *testing.T, clock *testClock) *Tokens {
	t.Helper()
	tok, err := NewTokens(TokenConfig{Secret: testSecret, Now: clock.Now})
	if err != nil {
		t.Fatalf("NewTokens(HS256): %v", err)
	}
	return tok
}

func newEd(t *testing.T, clock *testClock) (*Tokens, ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	tok, err := NewTokens(TokenConfig{Alg: AlgEdDSA, PrivateKey: priv, Now: clock.Now})
	if err != nil {
		t.Fatalf("NewTokens(EdDSA): %v", err)
	}
	return tok, pub, priv
}

// sign signs arbitrary claims with method and key, for crafting tokens.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// goodClaims returns valid wire claims at clock's time.
func goodClaims(clock *testClock) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   "junction",
		"sub":   "u1",
		"dev":   "d1",
		"kind":  "phone",
		"sid":   "s1",
		"scope": []string{"read"},
		"iat":   clock.Now().Unix(),
		"exp":   clock.Now().Add(time.Hour).Unix(),
		"jti":   "j1",
	}
}

// withNull returns m with key set to JSON null.
func withNull(m jwt.MapClaims, key string) jwt.MapClaims {
	out := with(m, key, nil)
	out[key] = nil
	return out
}

func with(m jwt.MapClaims, key string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, val := range m {
		out[k] = val
	}
	if v == nil {
		delete(out, key)
	} else {
		out[key] = v
	}
	return out
}

func assertReason(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want reason %q", want)
	}
	if got := FailureReason(err); got != want {
		t.Fatalf("got reason %q (%v), want %q", got, err, want)
	}
}

func TestNewTokensConfig(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		cfg     TokenConfig
		wantErr bool
	}{
		{"hs256 default", TokenConfig{Secret: testSecret}, false},
		{"hs256 short secret", TokenConfig{Secret: testSecret[:31]}, true},
		{"hs256 no secret", TokenConfig{}, true},
		{"eddsa private only", TokenConfig{Alg: AlgEdDSA, PrivateKey: priv}, false},
		{"eddsa public only", TokenConfig{Alg: AlgEdDSA, PublicKey: pub}, false},
		{"eddsa matching pair", TokenConfig{Alg: AlgEdDSA, PrivateKey: priv, PublicKey: pub}, false},
		{"eddsa mismatched pair", TokenConfig{Alg: AlgEdDSA, PrivateKey: priv, PublicKey: otherPub}, true},
		{"eddsa no key", TokenConfig{Alg: AlgEdDSA, Secret: testSecret}, true},
		{"eddsa short public key", TokenConfig{Alg: AlgEdDSA, PublicKey: pub[:31]}, true},
		{"eddsa short private key", TokenConfig{Alg: AlgEdDSA, PrivateKey: priv[:63]}, true},
		{"unknown alg", TokenConfig{Alg: "RS256", Secret: testSecret}, true},
		{"none alg", TokenConfig{Alg: "none", Secret: testSecret}, true},
		{"negative leeway", TokenConfig{Secret: testSecret, Leeway: -time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTokens(tt.cfg)
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("NewTokens: got error %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	clock := newClock()
	hs := newHS(t, clock)
	ed, _, _ := newEd(t, clock)
	for _, tc := range []struct {
		name   string
		tokens *Tokens
		alg    string
	}{
		{"HS256", hs, "HS256"},
		{"EdDSA", ed, "EdDSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Claims{UserID: "user-1", DeviceID: "dev-1", Kind: "machine", SessionID: "sess-1", Scopes: []string{ScopeWrite, ScopeRPCServe}}
			token, exp, err := tc.tokens.Issue(c, 15*time.Minute)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if want := clock.Now().Add(15 * time.Minute); !exp.Equal(want) {
				t.Errorf("got expiresAt %v, want %v", exp, want)
			}
			header, payload := decodeParts(t, token)
			if header["alg"] != tc.alg {
				t.Errorf("got alg %v, want %s", header["alg"], tc.alg)
			}
			for _, k := range []string{"sub", "dev", "kind", "sid", "scope", "iss", "iat", "exp", "jti"} {
				if _, ok := payload[k]; !ok {
					t.Errorf("got claims %v, want claim %q", payload, k)
				}
			}
			if _, ok := payload["scope"].([]any); !ok {
				t.Errorf("got scope %T, want a JSON array", payload["scope"])
			}
			p, err := tc.tokens.Verify(token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.UserID != c.UserID || p.DeviceID != c.DeviceID || p.Kind != c.Kind || p.SessionID != c.SessionID {
				t.Errorf("got principal %+v, want claims %+v", p, c)
			}
			if !slices.Equal(p.Scopes, c.Scopes) {
				t.Errorf("got scopes %v, want %v", p.Scopes, c.Scopes)
			}
			if !p.ExpiresAt().Equal(exp) {
				t.Errorf("got ExpiresAt %v, want %v", p.ExpiresAt(), exp)
			}
			if p.TokenID == "" || p.TokenID != payload["jti"] {
				t.Errorf("got TokenID %q, want jti %v", p.TokenID, payload["jti"])
			}
			token2, _, _ := tc.tokens.Issue(c, time.Minute)
			_, payload2 := decodeParts(t, token2)
			if payload2["jti"] == payload["jti"] {
				t.Errorf("got the same jti %v twice, want random", payload["jti"])
			}
		})
	}
}

func decodeParts(t *testing.T, token string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("got %d token parts, want 3", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("decode part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("unmarshal part %d: %v", i, err)
		}
	}
	return header, payload
}

func TestIssueRejects(t *testing.T) {
	clock := newClock()
	hs := newHS(t, clock)
	_, pub, _ := newEd(t, clock)
	verifyOnly, err := NewTokens(TokenConfig{Alg: AlgEdDSA, PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tokens *Tokens
		c      Claims
		ttl    time.Duration
	}{
		{"no user", hs, Claims{Kind: "phone"}, time.Minute},
		{"bad kind", hs, Claims{UserID: "u", Kind: "toaster"}, time.Minute},
		{"no kind", hs, Claims{UserID: "u"}, time.Minute},
		{"zero ttl", hs, Claims{UserID: "u", Kind: "phone"}, 0},
		{"empty scope", hs, Claims{UserID: "u", Kind: "phone", Scopes: []string{""}}, time.Minute},
		{"verify only", verifyOnly, Claims{UserID: "u", Kind: "phone"}, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, _, err := tt.tokens.Issue(tt.c, tt.ttl); err == nil {
				t.Fatalf("Issue: got token %q, want error", tok)
			}
		})
	}
}

func TestVerifyExpiry(t *testing.T) {
	tests := []struct {
		name       string
		advance    time.Duration
		wantReason string // "" for success
	}{
		{"fresh", 0, ""},
		{"just before exp", time.Minute - time.Second, ""},
		{"past exp within leeway", time.Minute + 29*time.Second, ""},
		{"at exp plus leeway", time.Minute + 30*time.Second, ReasonExpired},
		{"long expired", time.Hour, ReasonExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			hs := newHS(t, clock)
			token, _, err := hs.Issue(Claims{UserID: "u", Kind: "phone"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.advance)
			p, err := hs.Verify(token)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Verify: got %v, want success", err)
				}
				if p.UserID != "u" {
					t.Fatalf("got user %q, want u", p.UserID)
				}
				return
			}
			assertReason(t, err, tt.wantReason)
			if p != nil {
				t.Fatalf("got principal %+v with error, want nil", p)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	clock := newClock()
	hs := newHS(t, clock)
	hsAud, err := NewTokens(TokenConfig{Secret: testSecret, Audience: "junction-test", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ed, pub, priv := newEd(t, clock)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	good := goodClaims(clock)
	hsGood := sign(t, jwt.SigningMethodHS256, testSecret, good)
	edGood := sign(t, jwt.SigningMethodEdDSA, priv, good)
	noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good)
	b64 := base64.RawURLEncoding.EncodeToString

	tests := []struct {
		name       string
		tokens     *Tokens
		token      string
		wantReason string
	}{
		{"hs sanity", hs, hsGood, ""},
		{"ed sanity", ed, edGood, ""},
		{"empty", hs, "", ReasonMissing},
		{"garbage", hs, "not a token", ReasonMalformed},
		{"two parts", hs, "a.b", ReasonMalformed},
		{"bad base64 payload", hs, "eyJhbGciOiJIUzI1NiJ9.!!!.sig", ReasonMalformed},
		{"oversized", hs, strings.Repeat("a", MaxTokenBytes+1), ReasonMalformed},
		{"wrong hs secret", hs, sign(t, jwt.SigningMethodHS256, []byte("another secret of at least 32 bytes!!"), good), ReasonSignature},
		{"wrong ed key", ed, sign(t, jwt.SigningMethodEdDSA, otherPriv, good), ReasonSignature},
		{"tampered payload", hs, tamper(hsGood), ReasonSignature},
		{"alg none on hs", hs, noneTok, ReasonSignature},
		{"alg none on ed", ed, noneTok, ReasonSignature},
		{"alg none handmade", hs, b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + strings.Split(hsGood, ".")[1] + ".", ReasonSignature},
		{"alg None capitalised", hs, b64([]byte(`{"alg":"None"}`)) + "." + strings.Split(hsGood, ".")[1] + ".", ReasonSignature},
		{"unknown alg", hs, b64([]byte(`{"alg":"XY999"}`)) + "." + strings.Split(hsGood, ".")[1] + ".c2ln", ReasonSignature},
		{"alg confusion: hs256 keyed with ed public key on ed verifier", ed, sign(t, jwt.SigningMethodHS256, []byte(pub), good), ReasonSignature},
		{"alg confusion: eddsa token on hs verifier", hs, edGood, ReasonSignature},
		{"hs384 on hs256 verifier", hs, sign(t, jwt.SigningMethodHS384, testSecret, good), ReasonSignature},
		{"wrong issuer", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iss", "other")), ReasonInvalidClaims},
		{"no issuer", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iss", nil)), ReasonInvalidClaims},
		{"no exp", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", nil)), ReasonInvalidClaims},
		{"exp string", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", "tomorrow")), ReasonInvalidClaims},
		{"iat in future", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iat", clock.Now().Add(time.Hour).Unix())), ReasonInvalidClaims},
		{"nbf in future", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "nbf", clock.Now().Add(time.Hour).Unix())), ReasonInvalidClaims},
		{"no sub", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "sub", nil)), ReasonInvalidClaims},
		{"empty sub", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "sub", "")), ReasonInvalidClaims},
		{"sub number", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "sub", 42)), ReasonInvalidClaims},
		{"bad kind", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "kind", "toaster")), ReasonInvalidClaims},
		{"no kind", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "kind", nil)), ReasonInvalidClaims},
		{"dev not string", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "dev", []string{"d"})), ReasonInvalidClaims},
		{"sid not string", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "sid", true)), ReasonInvalidClaims},
		{"scope string", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "scope", "read write")), ReasonInvalidClaims},
		{"scope object", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "scope", map[string]any{"read": true})), ReasonInvalidClaims},
		{"scope with number", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "scope", []any{"read", 1})), ReasonInvalidClaims},
		{"scope with empty string", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "scope", []any{""})), ReasonInvalidClaims},
		{"no scope", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "scope", nil)), ReasonInvalidClaims},
		{"empty scope list", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "scope", []string{})), ""},
		// Issue 10: NumericDates are integers, a present aud names us.
		{"exp numeric string", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", strconv.FormatInt(clock.Now().Add(time.Hour).Unix(), 10))), ReasonInvalidClaims},
		{"iat numeric string", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iat", strconv.FormatInt(clock.Now().Unix(), 10))), ReasonInvalidClaims},
		{"nbf numeric string", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "nbf", "0")), ReasonInvalidClaims},
		{"exp fractional", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", float64(clock.Now().Add(time.Hour).Unix())+0.5)), ReasonInvalidClaims},
		{"iat fractional", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iat", float64(clock.Now().Unix())-0.5)), ReasonInvalidClaims},
		{"exp exponent", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", 1e300)), ReasonInvalidClaims},
		{"exp beyond 2^53", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", int64(1)<<53+1)), ReasonInvalidClaims},
		{"nbf integer in the past", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "nbf", clock.Now().Add(-time.Hour).Unix())), ""},
		{"foreign aud, none configured", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", "https://other.example")), ReasonInvalidClaims},
		{"foreign aud list, none configured", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", []string{"a", "b"})), ReasonInvalidClaims},
		{"empty aud list, none configured", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", []string{})), ReasonInvalidClaims},
		{"null aud, none configured", hs, sign(t, jwt.SigningMethodHS256, testSecret, withNull(good, "aud")), ""},
		{"foreign aud", hsAud, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", "https://other.example")), ReasonInvalidClaims},
		{"foreign aud list", hsAud, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", []string{"https://other.example"})), ReasonInvalidClaims},
		{"empty aud string", hsAud, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", "")), ReasonInvalidClaims},
		{"aud not strings", hsAud, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", []any{1})), ReasonInvalidClaims},
		{"our aud", hsAud, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", "junction-test")), ""},
		{"our aud in a list", hsAud, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", []string{"x", "junction-test"})), ""},
		{"no aud, audience configured", hsAud, hsGood, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.tokens.Verify(tt.token)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Verify: got %v, want success", err)
				}
				if p == nil || p.UserID != "u1" {
					t.Fatalf("got principal %+v, want user u1", p)
				}
				return
			}
			if p != nil {
				t.Fatalf("got principal %+v, want none", p)
			}
			assertReason(t, err, tt.wantReason)
		})
	}
}

// tamper changes the payload's last character so that the signature no
// longer matches while the payload still decodes.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["sub"] = "admin"
	b, _ = json.Marshal(m)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestVerifyOnlyEdDSA(t *testing.T) {
	clock := newClock()
	signer, pub, _ := newEd(t, clock)
	verifier, err := NewTokens(TokenConfig{Alg: AlgEdDSA, PublicKey: pub, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := signer.Issue(Claims{UserID: "u", Kind: "tv", Scopes: []string{"read"}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p, err := verifier.Verify(token)
	if err != nil {
		t.Fatalf("Verify: got %v, want success", err)
	}
	if p.Kind != "tv" {
		t.Fatalf("got kind %q, want tv", p.Kind)
	}
}

func TestIssuerAndLeewayConfig(t *testing.T) {
	clock := newClock()
	a, _ := NewTokens(TokenConfig{Secret: testSecret, Issuer: "a", Leeway: time.Second, Now: clock.Now})
	b, _ := NewTokens(TokenConfig{Secret: testSecret, Issuer: "b", Now: clock.Now})
	token, _, err := a.Issue(Claims{UserID: "u", Kind: "phone"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Verify(token)
	assertReason(t, err, ReasonInvalidClaims)
	clock.Advance(time.Minute + 2*time.Second)
	_, err = a.Verify(token)
	assertReason(t, err, ReasonExpired)
}

// BenchmarkVerify measures the verification every WebSocket connect pays.
func BenchmarkVerify(b *testing.B) {
	tk, err := NewTokens(TokenConfig{Secret: testSecret})
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := tk.Issue(Claims{UserID: "user-1", DeviceID: "device-1", Kind: "phone", Scopes: []string{"read", "write"}}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyIssuedFastPath: a token as Issue writes it is verified without
// the library's header decoding; another header that the library accepts
// still verifies, through the library.
func TestVerifyIssuedFastPath(t *testing.T) {
	tk, err := NewTokens(TokenConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := tk.Issue(Claims{UserID: "u", DeviceID: "d", Kind: "phone", Scopes: []string{"read"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var c verifyClaims
	if !tk.verifyIssued(tok, &c) || c.Subject != "u" {
		t.Fatalf("issued token not verified on the fast path: %+v", c)
	}
	// The same claims under a header with its members the other way round.
	_, payload, _ := strings.Cut(tok, ".")
	payload, _, _ = strings.Cut(payload, ".")
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"HS256"}`))
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte(head + "." + payload))
	other := head + "." + payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	if tk.verifyIssued(other, &verifyClaims{}) {
		t.Fatal("a token with another header took the fast path")
	}
	if p, err := tk.Verify(other); err != nil || p.UserID != "u" {
		t.Fatalf("Verify(other header) = %+v, %v", p, err)
	}
	// A bad signature on the issued header fails on both paths.
	i, ch := len(tok)-10, byte('A')
	if tok[i] == 'A' {
		ch = 'B'
	}
	bad := tok[:i] + string(ch) + tok[i+1:]
	if tk.verifyIssued(bad, &verifyClaims{}) {
		t.Fatal("bad signature accepted on the fast path")
	}
	_, err = tk.Verify(bad)
	assertReason(t, err, ReasonSignature)
}
