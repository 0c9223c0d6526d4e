package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// EdKeyFileName is the name of the EdDSA signing key inside a data
// directory (PKCS#8 PEM, mode 0600).
const EdKeyFileName = "ed25519.key"

// LoadTokens builds the Tokens of tc with the key material for tc.Alg taken
// from dataDir: the EdDSA private key in dataDir/ed25519.key (LoadEdKey,
// which must exist), or the HS256 secret in dataDir/secret.key
// (LoadOrCreateSecret, created on first start; created reports that it
// was). Key fields already set in tc are replaced.
func LoadTokens(dataDir string, tc TokenConfig) (t *Tokens, created bool, err error) {
	switch tc.Alg {
	case AlgEdDSA:
		key, err := LoadEdKey(dataDir)
		if err != nil {
			return nil, false, err
		}
		tc.PrivateKey, tc.PublicKey = key, nil
	default:
		secret, c, err := LoadOrCreateSecret(dataDir)
		if err != nil {
			return nil, false, fmt.Errorf("signing secret: %w", err)
		}
		tc.Secret, created = secret, c
	}
	t, err = NewTokens(tc)
	if err != nil {
		return nil, false, fmt.Errorf("token config: %w", err)
	}
	return t, created, nil
}

// LoadEdKey reads the EdDSA signing key dataDir/ed25519.key. It refuses a
// missing file (naming the command that creates it), a file group or others
// may access (except on Windows, whose modes do not say), and anything but a
// PEM "PRIVATE KEY" block holding a PKCS#8 ed25519 key.
func LoadEdKey(dataDir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, EdKeyFileName)
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("auth.alg is EdDSA but %s does not exist: run 'junction keygen --data %s'", path, dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s is readable by others (mode %o); chmod 600 it", path, st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s is not an ed25519 key", path)
	}
	return ek, nil
}

// CreateEdKey generates an EdDSA signing key and writes it to
// dataDir/ed25519.key (PKCS#8 PEM, mode 0600), creating dataDir (mode 0700)
// when missing. It never replaces an existing key: every token signed with
// it would stop verifying. It returns the public key, which verifying nodes
// and token consumers need.
func CreateEdKey(dataDir string) (ed25519.PublicKey, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, EdKeyFileName)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("%s already exists; remove it first to replace the key (every token signed with it stops verifying)", path)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	// O_EXCL: a key created concurrently since the Stat is not replaced.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	return pub, nil
}
