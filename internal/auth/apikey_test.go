package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestAPIKeyRoundTrip(t *testing.T) {
	key, id, hash, err := NewAPIKey()
	if err != nil {
		t.Fatalf("NewAPIKey: %v", err)
	}
	if !strings.HasPrefix(key, "jk_"+id+"_") {
		t.Fatalf("got key %q, want prefix jk_%s_", key, id)
	}
	gotID, secret, err := ParseAPIKey(key)
	if err != nil {
		t.Fatalf("ParseAPIKey: %v", err)
	}
	if gotID != id {
		t.Fatalf("got id %q, want %q", gotID, id)
	}
	if len(secret) != APIKeySecretBytes {
		t.Fatalf("got secret of %d bytes, want %d", len(secret), APIKeySecretBytes)
	}
	if !CheckAPIKey(secret, hash) {
		t.Fatal("CheckAPIKey(right secret): got false, want true")
	}
	if !bytes.Equal(HashAPIKeySecret(secret), hash) {
		t.Fatal("HashAPIKeySecret: got a different hash, want the stored one")
	}
	wrong := bytes.Clone(secret)
	wrong[0] ^= 1
	if CheckAPIKey(wrong, hash) {
		t.Fatal("CheckAPIKey(wrong secret): got true, want false")
	}
	if CheckAPIKey(secret, hash[:31]) {
		t.Fatal("CheckAPIKey(short hash): got true, want false")
	}
	if CheckAPIKey(secret, nil) {
		t.Fatal("CheckAPIKey(nil hash): got true, want false")
	}
	key2, id2, _, _ := NewAPIKey()
	if key2 == key || id2 == id {
		t.Fatal("NewAPIKey: got the same key twice, want random")
	}
}

func TestParseAPIKeyMalformed(t *testing.T) {
	good := strings.Repeat("A", 43)
	tests := []struct {
		name string
		key  string
	}{
		{"empty", ""},
		{"no prefix", "0123abcd_" + good},
		{"wrong prefix", "jx_0123abcd_" + good},
		{"no secret", "jk_0123abcd"},
		{"empty id", "jk__" + good},
		{"uppercase id", "jk_ABCD_" + good},
		{"id with dash", "jk_ab-cd_" + good},
		{"long id", "jk_" + strings.Repeat("a", 65) + "_" + good},
		{"short secret", "jk_0123abcd_" + good[:42]},
		{"long secret", "jk_0123abcd_" + good + "A"},
		{"padded secret", "jk_0123abcd_" + good[:42] + "="},
		{"std base64 chars", "jk_0123abcd_" + good[:42] + "+"},
		{"non-canonical trailing bits", "jk_0123abcd_" + good[:42] + "B"},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.e30.sig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, secret, err := ParseAPIKey(tt.key)
			if err == nil {
				t.Fatalf("got (%q, %x), want error", id, secret)
			}
			if len(tt.key) > 20 && strings.Contains(err.Error(), tt.key[len(tt.key)-20:]) {
				t.Fatalf("got error %q containing the secret, want it redacted", err)
			}
		})
	}
	// The secret may contain '_'; only the first one after the id separates.
	underscored := "jk_0123abcd_" + strings.Repeat("_", 42) + "w"
	if id, _, err := ParseAPIKey(underscored); err != nil || id != "0123abcd" {
		t.Fatalf("secret with underscores: got (%q, %v), want (0123abcd, nil)", id, err)
	}
}

func TestAPIKeyRedacted(t *testing.T) {
	key, id, _, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	k := APIKey(key)
	secretPart := key[len("jk_"+id+"_"):]
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", k)
	for _, s := range []string{k.String(), fmt.Sprint(k), fmt.Sprintf("%v %s %#v", k, k, k), buf.String()} {
		if strings.Contains(s, secretPart) {
			t.Fatalf("got %q, want the secret redacted", s)
		}
		if !strings.Contains(s, id) {
			t.Fatalf("got %q, want the public id %q shown", s, id)
		}
	}
}

// memKeys is an in-memory APIKeyStore.
type memKeys struct {
	hashes map[string][]byte
	ps     map[string]*Principal
	err    error
}

func (m *memKeys) LookupAPIKey(_ context.Context, id string) ([]byte, *Principal, error) {
	if m.err != nil {
		return nil, nil, m.err
	}
	h, ok := m.hashes[id]
	if !ok {
		return nil, nil, fmt.Errorf("lookup %s: %w", id, ErrUnknownAPIKey)
	}
	return h, m.ps[id], nil
}

func TestAuthenticator(t *testing.T) {
	clock := newClock()
	hs := newHS(t, clock)
	token, _, err := hs.Issue(Claims{UserID: "u1", Kind: "browser", Scopes: []string{"read"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, id, hash, _ := NewAPIKey()
	expiredKey, expiredID, expiredHash, _ := NewAPIKey()
	revokedKey, revokedID, revokedHash, _ := NewAPIKey()
	store := &memKeys{
		hashes: map[string][]byte{id: hash, expiredID: expiredHash, revokedID: revokedHash},
		ps: map[string]*Principal{
			id:        {AppID: "app1", UserID: "u1", Scopes: []string{"read"}},
			expiredID: {AppID: "app2", ExpiresAt: clock.Now().Add(-time.Second)},
		},
	}
	revokedStore := &memKeys{err: fmt.Errorf("lookup: %w", ErrRevoked)}
	downStore := &memKeys{err: errors.New("database is down")}
	unknownKey, _, _, _ := NewAPIKey()
	wrongSecret := key[:len(key)-2] + "AA"
	if wrongSecret == key {
		wrongSecret = key[:len(key)-2] + "BA"
	}

	tests := []struct {
		name       string
		a          *Authenticator
		credential string
		wantUser   string
		wantApp    string
		wantReason string // "" success; ReasonOther for a non-Failure error
	}{
		{"jwt", &Authenticator{Tokens: hs, APIKeys: store, Now: clock.Now}, token, "u1", "", ""},
		{"api key", &Authenticator{Tokens: hs, APIKeys: store, Now: clock.Now}, key, "u1", "app1", ""},
		{"empty", &Authenticator{Tokens: hs}, "", "", "", ReasonMissing},
		{"garbage", &Authenticator{Tokens: hs}, "garbage", "", "", ReasonMalformed},
		{"api key without store is not a jwt", &Authenticator{Tokens: hs}, key, "", "", ReasonMalformed},
		{"malformed api key", &Authenticator{Tokens: hs, APIKeys: store}, "jk_nope", "", "", ReasonMalformed},
		{"unknown api key", &Authenticator{Tokens: hs, APIKeys: store}, unknownKey, "", "", ReasonUnknownKey},
		{"wrong secret", &Authenticator{Tokens: hs, APIKeys: store}, wrongSecret, "", "", ReasonSignature},
		{"expired api key", &Authenticator{Tokens: hs, APIKeys: store, Now: clock.Now}, expiredKey, "", "", ReasonExpired},
		{"revoked api key", &Authenticator{Tokens: hs, APIKeys: revokedStore}, revokedKey, "", "", ReasonRevoked},
		{"store down is a fault", &Authenticator{Tokens: hs, APIKeys: downStore}, key, "", "", ReasonOther},
		{"no verifier is a fault", &Authenticator{}, token, "", "", ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.a.Authenticate(context.Background(), tt.credential)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Authenticate: got %v, want success", err)
				}
				if p.UserID != tt.wantUser || p.AppID != tt.wantApp {
					t.Fatalf("got principal %+v, want user %q app %q", p, tt.wantUser, tt.wantApp)
				}
				return
			}
			if p != nil {
				t.Fatalf("got principal %+v, want none", p)
			}
			assertReason(t, err, tt.wantReason)
		})
	}

	// The returned principal is a copy: changing it leaves the store's alone.
	a := &Authenticator{APIKeys: store, Now: clock.Now}
	p, err := a.Authenticate(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if p.TokenID != id {
		t.Fatalf("got TokenID %q, want key id %q", p.TokenID, id)
	}
	p.Scopes[0] = "admin"
	if store.ps[id].Scopes[0] != "read" {
		t.Fatal("got the store's principal modified through the result, want a copy")
	}
}
