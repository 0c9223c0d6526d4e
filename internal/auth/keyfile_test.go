package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateEdKeyThenLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	pub, err := CreateEdKey(dir)
	if err != nil {
		t.Fatalf("CreateEdKey: %v", err)
	}
	path := filepath.Join(dir, EdKeyFileName)
	assertMode(t, path, 0o600)
	assertMode(t, dir, 0o700)
	key, err := LoadEdKey(dir)
	if err != nil {
		t.Fatalf("LoadEdKey: %v", err)
	}
	if !pub.Equal(key.Public()) {
		t.Fatal("got a loaded key whose public key differs from the one CreateEdKey returned")
	}

	before, _ := os.ReadFile(path)
	if _, err := CreateEdKey(dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second CreateEdKey: got %v, want an 'already exists' error", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("second CreateEdKey replaced the key")
	}
}

func TestLoadEdKeyRefuses(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	tests := []struct {
		name    string
		content []byte // nil: no file
		mode    os.FileMode
		wantIn  string
	}{
		{"missing", nil, 0, "junction keygen --data"},
		{"group readable", pemOf("PRIVATE KEY", ecDER), 0o640, "readable by others"},
		{"not PEM", []byte("not a key"), 0o600, "not a PEM PRIVATE KEY"},
		{"wrong block", pemOf("PUBLIC KEY", ecDER), 0o600, "not a PEM PRIVATE KEY"},
		{"not PKCS#8", pemOf("PRIVATE KEY", []byte{1, 2, 3}), 0o600, "signing key"},
		{"not ed25519", pemOf("PRIVATE KEY", ecDER), 0o600, "not an ed25519 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.content != nil {
				path := filepath.Join(dir, EdKeyFileName)
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			key, err := LoadEdKey(dir)
			if err == nil {
				t.Fatalf("got key %x, want error", key)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("got error %q, want it to mention %q", err, tt.wantIn)
			}
		})
	}
}

func TestLoadTokens(t *testing.T) {
	claims := Claims{UserID: "alice", DeviceID: "d1", Kind: "phone", Scopes: []string{ScopeRead}}

	t.Run("HS256", func(t *testing.T) {
		dir := t.TempDir()
		first, created, err := LoadTokens(dir, TokenConfig{Issuer: "test"})
		if err != nil || !created {
			t.Fatalf("first LoadTokens: created %v, err %v; want a new secret", created, err)
		}
		tok, _, err := first.Issue(claims, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		again, created, err := LoadTokens(dir, TokenConfig{Issuer: "test"})
		if err != nil || created {
			t.Fatalf("second LoadTokens: created %v, err %v; want the existing secret", created, err)
		}
		if p, err := again.Verify(tok); err != nil || p.UserID != "alice" {
			t.Fatalf("verify with the reloaded secret: %+v, %v", p, err)
		}
	})

	t.Run("EdDSA", func(t *testing.T) {
		dir := t.TempDir()
		if _, _, err := LoadTokens(dir, TokenConfig{Alg: AlgEdDSA}); err == nil || !strings.Contains(err.Error(), "junction keygen") {
			t.Fatalf("LoadTokens without a key: got %v, want the keygen hint", err)
		}
		if _, err := CreateEdKey(dir); err != nil {
			t.Fatal(err)
		}
		tokens, created, err := LoadTokens(dir, TokenConfig{Alg: AlgEdDSA})
		if err != nil || created {
			t.Fatalf("LoadTokens: created %v, err %v", created, err)
		}
		tok, _, err := tokens.Issue(claims, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, SecretFileName)); err == nil {
			t.Error("EdDSA LoadTokens created an HS256 secret")
		}
		// A node holding an HS256 secret in the same directory refuses it.
		hs, _, err := LoadTokens(dir, TokenConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hs.Verify(tok); err == nil {
			t.Error("an HS256 node verified an EdDSA token")
		}
	})
}
