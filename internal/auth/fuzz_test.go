package auth

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// fuzzEdSeed is a fixed ed25519 seed so that fuzz seeds are reproducible.
var fuzzEdSeed = bytes.Repeat([]byte{0x42}, ed25519.SeedSize)

// FuzzVerifyToken feeds arbitrary strings to Verify on HS256 and EdDSA
// verifiers. It must never panic, and anything it accepts must be a token
// actually signed with the verifier's key (the seeds), never garbage.
func FuzzVerifyToken(f *testing.F) {
	clock := &testClock{t: time.Unix(1_800_000_000, 0)}
	hs, err := NewTokens(TokenConfig{Secret: testSecret, Now: clock.Now})
	if err != nil {
		f.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(fuzzEdSeed)
	ed, err := NewTokens(TokenConfig{Alg: AlgEdDSA, PrivateKey: priv, Now: clock.Now})
	if err != nil {
		f.Fatal(err)
	}

	// Real tokens, each accepted by one verifier, and near misses. Seeds must
	// be deterministic (fuzz workers rebuild them in their own process), so
	// they are signed here with fixed claims rather than by Issue, whose jti
	// is random.
	good := goodClaims(clock)
	// signed holds every seed that carries a genuine signature of one of the
	// verifiers' keys: the only strings Verify may ever accept.
	signed := map[string]bool{}
	genuine := func(s string) string { signed[s] = true; return s }
	hsTok := genuine(mustSign(f, jwt.SigningMethodHS256, testSecret, with(good, "scope", []string{"read", "write"})))
	edTok := genuine(mustSign(f, jwt.SigningMethodEdDSA, priv, with(with(good, "kind", "machine"), "dev", nil)))
	if _, err := hs.Verify(hsTok); err != nil {
		f.Fatalf("HS256 seed: got %v, want it accepted", err)
	}
	if _, err := ed.Verify(edTok); err != nil {
		f.Fatalf("EdDSA seed: got %v, want it accepted", err)
	}
	for _, s := range []string{
		hsTok,
		edTok,
		tamperFuzz(hsTok),
		hsTok + "x",
		// Line breaks that base64 decoders skip (found by this fuzzer).
		edTok[:len(edTok)-4] + "\n" + edTok[len(edTok)-4:],
		strings.Replace(hsTok, ".", ".\r\n", 1),
		strings.TrimSuffix(edTok, edTok[len(edTok)-4:]),
		mustSign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good),
		mustSign(f, jwt.SigningMethodHS256, []byte(priv.Public().(ed25519.PublicKey)), good),
		genuine(mustSign(f, jwt.SigningMethodHS256, testSecret, with(good, "scope", "read"))),
		genuine(mustSign(f, jwt.SigningMethodHS256, testSecret, with(good, "exp", 1e300))),
		genuine(mustSign(f, jwt.SigningMethodHS256, testSecret, with(good, "exp", -1))),
		genuine(mustSign(f, jwt.SigningMethodHS256, testSecret, with(good, "kind", "toaster"))),
		genuine(mustSign(f, jwt.SigningMethodEdDSA, priv, with(good, "sub", 7))),
		// Issue 10: lenient claims, all signed, all to be refused.
		genuine(mustSign(f, jwt.SigningMethodHS256, testSecret, with(good, "exp", strconv.FormatInt(clock.Now().Add(time.Hour).Unix(), 10)))),
		genuine(mustSign(f, jwt.SigningMethodHS256, testSecret, with(good, "iat", strconv.FormatInt(clock.Now().Unix(), 10)))),
		genuine(mustSign(f, jwt.SigningMethodHS256, testSecret, with(good, "exp", float64(clock.Now().Add(time.Hour).Unix())+0.5))),
		genuine(mustSign(f, jwt.SigningMethodEdDSA, priv, with(good, "nbf", float64(clock.Now().Unix())-0.25))),
		genuine(mustSign(f, jwt.SigningMethodHS256, testSecret, with(good, "aud", "https://other.example"))),
		genuine(mustSign(f, jwt.SigningMethodEdDSA, priv, with(good, "aud", []string{}))),
		"",
		".",
		"..",
		"a.b.c",
		"eyJhbGciOiJIUzI1NiJ9..",
		"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.",
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, token string) {
		for _, v := range []*Tokens{hs, ed} {
			p, err := v.Verify(token)
			if err != nil {
				if p != nil {
					t.Fatalf("got principal %+v with error %v", p, err)
				}
				if FailureReason(err) == ReasonOther {
					t.Fatalf("got error %v that is not a *Failure", err)
				}
				continue
			}
			// Success requires a genuine signature, which only signed seeds
			// carry: decoding is strict, so no other string encodes them.
			if !signed[token] {
				t.Fatalf("accepted token %q that was not issued by this verifier", token)
			}
			if p.UserID == "" || !ValidKind(p.Kind) || p.Scopes == nil || p.ExpiresAtMicros == 0 {
				t.Fatalf("accepted token %q with an incomplete principal %+v", token, p)
			}
			// Times are integers and there is no audience (none is
			// configured): anything else must have been refused.
			payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
			var claims map[string]json.RawMessage
			if err := json.Unmarshal(payload, &claims); err != nil {
				t.Fatalf("accepted token %q: payload %q: %v", token, payload, err)
			}
			if _, ok := claims["aud"]; ok && string(claims["aud"]) != "null" {
				t.Fatalf("accepted token %q with an audience %s", token, claims["aud"])
			}
			for _, k := range []string{"exp", "iat", "nbf"} {
				if v, ok := claims[k]; ok && string(v) != "null" {
					if _, err := strconv.ParseInt(string(v), 10, 64); err != nil {
						t.Fatalf("accepted token %q with %s %s, not an integer", token, k, v)
					}
				}
			}
		}
	})
}

func mustSign(f *testing.F, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	f.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		f.Fatalf("sign: %v", err)
	}
	return s
}

func tamperFuzz(token string) string {
	i := strings.IndexByte(token, '.') + 5
	b := []byte(token)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// FuzzParseAPIKey feeds arbitrary strings to ParseAPIKey: no panic, and any
// accepted key re-encodes to itself with a 32-byte secret and a valid id.
func FuzzParseAPIKey(f *testing.F) {
	key, _, _, err := NewAPIKey(bytes.Repeat([]byte{7}, MinPepperBytes))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		key,
		"jk_0123abcd_" + strings.Repeat("A", 43),
		"jk_0123abcd_" + strings.Repeat("_", 42) + "w",
		"jk_0123abcd_" + strings.Repeat("A", 42) + "B",
		"jk_0123abcd_" + strings.Repeat("A", 44),
		"jk__" + strings.Repeat("A", 43),
		"jk_",
		"jk_a_",
		"",
		"eyJhbGciOiJIUzI1NiJ9.e30.sig",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, err := ParseAPIKey(s)
		if err != nil {
			if id != "" || secret != nil {
				t.Fatalf("got (%q, %x) with error %v, want zero values", id, secret, err)
			}
			return
		}
		if len(secret) != APIKeySecretBytes {
			t.Fatalf("got secret of %d bytes, want %d", len(secret), APIKeySecretBytes)
		}
		if id == "" || strings.Contains(id, "_") {
			t.Fatalf("got id %q, want non-empty without '_'", id)
		}
		pepper := bytes.Repeat([]byte{7}, MinPepperBytes)
		if !CheckAPIKey(pepper, id, secret, APIKeyMAC(pepper, id, secret)) {
			t.Fatal("CheckAPIKey(secret, mac(secret)): got false, want true")
		}
		if re := APIKeyPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret); re != s {
			t.Fatalf("got re-encoding %q, want %q (parsing must be canonical)", re, s)
		}
	})
}
