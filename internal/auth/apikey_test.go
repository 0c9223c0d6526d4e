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

// testPepper is a fixed pepper for the tests.
var testPepper = bytes.Repeat([]byte{7}, MinPepperBytes)

func TestAPIKeyRoundTrip(t *testing.T) {
	key, id, hash, err := NewAPIKey(testPepper)
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
	if !CheckAPIKey(testPepper, id, secret, hash) {
		t.Fatal("CheckAPIKey(right secret): got false, want true")
	}
	if !bytes.Equal(APIKeyMAC(testPepper, id, secret), hash) {
		t.Fatal("APIKeyMAC: got a different MAC, want the stored one")
	}
	wrong := bytes.Clone(secret)
	wrong[0] ^= 1
	if CheckAPIKey(testPepper, id, wrong, hash) {
		t.Fatal("CheckAPIKey(wrong secret): got true, want false")
	}
	otherPepper := bytes.Repeat([]byte{8}, MinPepperBytes)
	if CheckAPIKey(otherPepper, id, secret, hash) {
		t.Fatal("CheckAPIKey(other pepper): got true, want false (the MAC is keyed)")
	}
	if CheckAPIKey(testPepper, id+"0", secret, hash) {
		t.Fatal("CheckAPIKey(other id): got true, want false (the MAC binds the id)")
	}
	if CheckAPIKey(testPepper[:MinPepperBytes-1], id, secret, APIKeyMAC(testPepper[:MinPepperBytes-1], id, secret)) {
		t.Fatal("CheckAPIKey(short pepper): got true, want false")
	}
	if CheckAPIKey(testPepper, id, secret, hash[:31]) {
		t.Fatal("CheckAPIKey(short hash): got true, want false")
	}
	if CheckAPIKey(testPepper, id, secret, nil) {
		t.Fatal("CheckAPIKey(nil hash): got true, want false")
	}
	if _, _, _, err := NewAPIKey(nil); err == nil {
		t.Fatal("NewAPIKey(no pepper): got no error, want one")
	}
	key2, id2, _, _ := NewAPIKey(testPepper)
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
	key, id, _, err := NewAPIKey(testPepper)
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
	used   []string // ids passed to APIKeyUsed
}

func (m *memKeys) APIKeyUsed(id string, _ time.Time) { m.used = append(m.used, id) }

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
	key, id, hash, _ := NewAPIKey(testPepper)
	expiredKey, expiredID, expiredHash, _ := NewAPIKey(testPepper)
	revokedKey, revokedID, revokedHash, _ := NewAPIKey(testPepper)
	store := &memKeys{
		hashes: map[string][]byte{id: hash, expiredID: expiredHash, revokedID: revokedHash},
		ps: map[string]*Principal{
			id:        {AppID: "app1", UserID: "u1", Scopes: []string{"read"}},
			expiredID: {AppID: "app2", ExpiresAtMicros: ExpiryMicros(clock.Now().Add(-time.Second))},
		},
	}
	revokedStore := &memKeys{err: fmt.Errorf("lookup: %w", ErrRevoked)}
	downStore := &memKeys{err: errors.New("database is down")}
	unknownKey, _, _, _ := NewAPIKey(testPepper)
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
		{"jwt", &Authenticator{Tokens: hs, APIKeyPepper: testPepper, APIKeys: store, Now: clock.Now}, token, "u1", "", ""},
		{"api key", &Authenticator{Tokens: hs, APIKeyPepper: testPepper, APIKeys: store, Now: clock.Now}, key, "u1", "app1", ""},
		{"empty", &Authenticator{Tokens: hs}, "", "", "", ReasonMissing},
		{"garbage", &Authenticator{Tokens: hs}, "garbage", "", "", ReasonMalformed},
		{"api key without store is not a jwt", &Authenticator{Tokens: hs}, key, "", "", ReasonMalformed},
		{"malformed api key", &Authenticator{Tokens: hs, APIKeyPepper: testPepper, APIKeys: store}, "jk_nope", "", "", ReasonMalformed},
		{"unknown api key", &Authenticator{Tokens: hs, APIKeyPepper: testPepper, APIKeys: store}, unknownKey, "", "", ReasonUnknownKey},
		{"wrong secret", &Authenticator{Tokens: hs, APIKeyPepper: testPepper, APIKeys: store}, wrongSecret, "", "", ReasonSignature},
		{"expired api key", &Authenticator{Tokens: hs, APIKeyPepper: testPepper, APIKeys: store, Now: clock.Now}, expiredKey, "", "", ReasonExpired},
		{"revoked api key", &Authenticator{Tokens: hs, APIKeyPepper: testPepper, APIKeys: revokedStore}, revokedKey, "", "", ReasonRevoked},
		{"no pepper is a fault", &Authenticator{Tokens: hs, APIKeys: store, Now: clock.Now}, key, "", "", ReasonOther},
		{"store down is a fault", &Authenticator{Tokens: hs, APIKeyPepper: testPepper, APIKeys: downStore}, key, "", "", ReasonOther},
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
	a := &Authenticator{APIKeys: store, APIKeyPepper: testPepper, Now: clock.Now}
	store.used = nil
	p, err := a.Authenticate(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(store.used) != 1 || store.used[0] != id {
		t.Fatalf("APIKeyUsed calls = %v, want [%s] (one per success)", store.used, id)
	}
	if _, err := a.Authenticate(context.Background(), wrongSecret); err == nil || len(store.used) != 1 {
		t.Fatalf("wrong secret: err %v, APIKeyUsed calls %v; want a failure and no use recorded", err, store.used)
	}
	if p.TokenID != id {
		t.Fatalf("got TokenID %q, want key id %q", p.TokenID, id)
	}
	p.Scopes[0] = "admin"
	if store.ps[id].Scopes[0] != "read" {
		t.Fatal("got the store's principal modified through the result, want a copy")
	}
}

// memInstalls is an in-memory Installations.
type memInstalls map[string][]string // "app/user" → granted scopes

func (m memInstalls) InstalledScopes(_ context.Context, app, user string) ([]string, error) {
	if s, ok := m[app+"/"+user]; ok {
		return s, nil
	}
	if user == "down" {
		return nil, errors.New("database is down")
	}
	return nil, fmt.Errorf("installs: %w", ErrNotInstalled)
}

func TestForUser(t *testing.T) {
	a := &Authenticator{Installs: memInstalls{"app1/u1": {"write", "read", "stream.audio"}, "app1/u2": {}}}
	app := &Principal{AppID: "app1", TokenID: "k1", Scopes: []string{"read", "write", "stream.transcript"}}
	tests := []struct {
		name       string
		a          *Authenticator
		p          *Principal
		user       string
		wantScopes []string
		wantReason string
	}{
		{"installed: the intersection, in the app's order", a, app, "u1", []string{"read", "write"}, ""},
		{"installed with nothing granted", a, app, "u2", []string{}, ""},
		{"not installed", a, app, "u3", nil, ReasonNotInstalled},
		{"another app", a, &Principal{AppID: "app2", Scopes: []string{"read"}}, "u1", nil, ReasonNotInstalled},
		{"a token cannot", a, &Principal{UserID: "u9", Scopes: []string{"read"}}, "u1", nil, ReasonMalformed},
		{"an app already acting for a user cannot switch", a, &Principal{AppID: "app1", UserID: "u2"}, "u1", nil, ReasonMalformed},
		{"empty user", a, app, "", nil, ReasonMalformed},
		{"long user", a, app, strings.Repeat("u", maxUserIDLen+1), nil, ReasonMalformed},
		{"no installations configured", &Authenticator{}, app, "u1", nil, ReasonNotInstalled},
		{"store down is a fault", a, app, "down", nil, ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.a.ForUser(context.Background(), tt.p, tt.user)
			if tt.wantReason != "" {
				if p != nil {
					t.Fatalf("got principal %+v, want none", p)
				}
				assertReason(t, err, tt.wantReason)
				return
			}
			if err != nil {
				t.Fatalf("ForUser: got %v, want success", err)
			}
			if p.UserID != tt.user || p.AppID != tt.p.AppID || p.TokenID != tt.p.TokenID || fmt.Sprint(p.Scopes) != fmt.Sprint(tt.wantScopes) || p.Scopes == nil {
				t.Fatalf("got %+v, want user %s app %s scopes %v", p, tt.user, tt.p.AppID, tt.wantScopes)
			}
		})
	}
	if fmt.Sprint(app.Scopes) != "[read write stream.transcript]" {
		t.Fatalf("ForUser modified the app's principal: %v", app.Scopes)
	}
}

// TestCheckRevokedApp: after a connection registered, an app's principal is
// checked again: a key revoked or deleted meanwhile, an uninstall or a
// narrowed grant refuse it (ReasonRevoked); faults pass through.
func TestCheckRevokedApp(t *testing.T) {
	keys := &memKeys{hashes: map[string][]byte{"k1": nil, "k2": nil}, ps: map[string]*Principal{
		"k1": {AppID: "app1", Scopes: []string{"read", "write"}},
		"k2": {AppID: "app2", Scopes: []string{"read"}},
	}}
	installs := memInstalls{"app1/u1": {"read", "write"}, "app1/u2": {"read"}}
	a := &Authenticator{APIKeys: keys, Installs: installs}
	tests := []struct {
		name       string
		a          *Authenticator
		p          *Principal
		wantReason string // "" passes; ReasonOther for a fault
	}{
		{"app itself", a, &Principal{AppID: "app1", TokenID: "k1", Scopes: []string{"read", "write"}}, ""},
		{"acting for a user, grant unchanged", a, &Principal{AppID: "app1", TokenID: "k1", UserID: "u1", Scopes: []string{"read", "write"}}, ""},
		{"grant narrowed meanwhile", a, &Principal{AppID: "app1", TokenID: "k1", UserID: "u2", Scopes: []string{"read", "write"}}, ReasonRevoked},
		{"uninstalled meanwhile", a, &Principal{AppID: "app1", TokenID: "k1", UserID: "u3", Scopes: []string{"read"}}, ReasonRevoked},
		{"key deleted meanwhile", a, &Principal{AppID: "app1", TokenID: "k9"}, ReasonRevoked},
		{"key of another app", a, &Principal{AppID: "app1", TokenID: "k2"}, ReasonRevoked},
		{"key revoked meanwhile", &Authenticator{APIKeys: &memKeys{err: ErrRevoked}}, &Principal{AppID: "app1", TokenID: "k1"}, ReasonRevoked},
		{"key store down is a fault", &Authenticator{APIKeys: &memKeys{err: errors.New("down")}}, &Principal{AppID: "app1", TokenID: "k1"}, ReasonOther},
		{"installations down is a fault", a, &Principal{AppID: "app1", TokenID: "k1", UserID: "down"}, ReasonOther},
		{"no key store: passes", &Authenticator{}, &Principal{AppID: "app1", TokenID: "k1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.a.CheckRevoked(context.Background(), tt.p)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("got %v, want it to pass", err)
				}
				return
			}
			assertReason(t, err, tt.wantReason)
		})
	}
}

// TestCurrentApp: what a connection authenticated as an app's principal may
// act as now: itself when nothing changed, a narrowed copy when the user
// narrowed the grant (the caller's principal untouched), and the refusals
// and faults of CheckRevoked otherwise.
func TestCurrentApp(t *testing.T) {
	keys := &memKeys{hashes: map[string][]byte{"k1": nil}, ps: map[string]*Principal{
		"k1": {AppID: "app1", Scopes: []string{"read", "write"}},
	}}
	a := &Authenticator{APIKeys: keys, Installs: memInstalls{"app1/u1": {"read", "write"}, "app1/u2": {"read"}, "app1/u4": {}}}
	tests := []struct {
		name       string
		p          *Principal
		wantScopes string // "same": p itself
		wantReason string
	}{
		{"grant unchanged", &Principal{AppID: "app1", TokenID: "k1", UserID: "u1", Scopes: []string{"read", "write"}}, "same", ""},
		{"app itself", &Principal{AppID: "app1", TokenID: "k1", Scopes: []string{"read", "write"}}, "same", ""},
		{"grant narrowed", &Principal{AppID: "app1", TokenID: "k1", UserID: "u2", Scopes: []string{"read", "write"}}, "[read]", ""},
		{"grant emptied", &Principal{AppID: "app1", TokenID: "k1", UserID: "u4", Scopes: []string{"read", "write"}}, "[]", ""},
		{"uninstalled", &Principal{AppID: "app1", TokenID: "k1", UserID: "u3", Scopes: []string{"read"}}, "", ReasonRevoked},
		{"key deleted", &Principal{AppID: "app1", TokenID: "k9", UserID: "u1"}, "", ReasonRevoked},
		{"installations down is a fault", &Principal{AppID: "app1", TokenID: "k1", UserID: "down"}, "", ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fmt.Sprint(tt.p.Scopes)
			np, err := a.Current(context.Background(), tt.p)
			if tt.wantReason != "" {
				assertReason(t, err, tt.wantReason)
				return
			}
			switch {
			case err != nil:
				t.Fatalf("got %v, want it to pass", err)
			case tt.wantScopes == "same" && np != tt.p:
				t.Fatalf("got %+v, want the principal itself", np)
			case tt.wantScopes != "same" && (np == tt.p || fmt.Sprint(np.Scopes) != tt.wantScopes || np.UserID != tt.p.UserID || np.AppID != tt.p.AppID):
				t.Fatalf("got %+v, want a copy with scopes %s", np, tt.wantScopes)
			case fmt.Sprint(tt.p.Scopes) != before:
				t.Fatalf("Current changed the caller's principal: %v", tt.p.Scopes)
			}
		})
	}
}
