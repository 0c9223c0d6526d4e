package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// SecretFileName is the name of the signing secret inside a data directory.
const SecretFileName = "secret.key"

// maxSecretFileBytes bounds how much of a secret file is read.
const maxSecretFileBytes = 4 << 10

// LoadOrCreateSecret returns the HS256 signing secret kept in
// dataDir/secret.key, creating the directory (mode 0700) and the file
// (mode 0600, MinSecretBytes random bytes) when missing; created reports
// whether it did. It refuses an existing file that is not a regular file,
// that group or others may read or write, or that holds fewer than
// MinSecretBytes bytes. Concurrent first starts agree on one secret: the
// file is written completely before it appears under its name.
func LoadOrCreateSecret(dataDir string) (secret []byte, created bool, err error) {
	return loadOrCreateKeyFile(dataDir, SecretFileName)
}

// PepperFileName is the name of the API-key pepper inside a data directory.
const PepperFileName = "apikey-pepper.key"

// LoadOrCreatePepper returns the pepper that keys API-key MACs (APIKeyMAC),
// kept in dataDir/apikey-pepper.key and created like the signing secret
// (LoadOrCreateSecret: mode 0600, MinSecretBytes random bytes, the same
// checks). Losing or changing it invalidates every API key; the nodes of a
// cluster share one.
func LoadOrCreatePepper(dataDir string) (pepper []byte, created bool, err error) {
	return loadOrCreateKeyFile(dataDir, PepperFileName)
}

// WebhookKeyFileName is the name, inside a data directory, of the key that
// seals apps' webhook signing secrets at rest.
const WebhookKeyFileName = "webhook-seal.key"

// LoadOrCreateWebhookKey returns the key that seals apps' webhook secrets
// in the database (internal/apps), kept in dataDir/webhook-seal.key and
// created like the signing secret. Losing it makes every stored webhook
// secret unusable (rotate them); the nodes of a cluster share one.
func LoadOrCreateWebhookKey(dataDir string) (key []byte, created bool, err error) {
	return loadOrCreateKeyFile(dataDir, WebhookKeyFileName)
}

// ReadPepperFile reads a pepper kept elsewhere than the data directory,
// with the checks of LoadOrCreateSecret; it never creates one.
func ReadPepperFile(path string) ([]byte, error) { return readSecret(path) }

func loadOrCreateKeyFile(dataDir, name string) (secret []byte, created bool, err error) {
	if dataDir == "" {
		return nil, false, errors.New("load secret: empty data directory")
	}
	path := filepath.Join(dataDir, name)
	secret, err = readSecret(path)
	if err == nil {
		return secret, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create secret: make data directory: %w", err)
	}
	secret, err = createSecret(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it first; use theirs.
		secret, err = readSecret(path)
		return secret, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return secret, true, nil
}

// readSecret reads and checks an existing secret file.
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load secret: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load secret: stat %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("load secret: %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load secret: %s has mode %v, which lets group or others access it; run chmod 600 %s", path, info.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("load secret: read %s: %w", path, err)
	}
	switch {
	case len(b) < MinSecretBytes:
		return nil, fmt.Errorf("load secret: %s holds %d bytes, need at least %d (delete it to generate a new one; issued tokens become invalid)", path, len(b), MinSecretBytes)
	case len(b) > maxSecretFileBytes:
		return nil, fmt.Errorf("load secret: %s is over %d bytes", path, maxSecretFileBytes)
	}
	return b, nil
}

// createSecret writes a new secret to a temporary file and links it to
// path, which fails with fs.ErrExist when path already exists.
func createSecret(path string) ([]byte, error) {
	secret := make([]byte, MinSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("create secret: random: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secret-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return nil, fmt.Errorf("create secret: chmod: %w", err)
	}
	if _, err := tmp.Write(secret); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create secret: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create secret: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("create secret: close: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// The file system may not support hard links; fall back to an
		// exclusive create, which is atomic against other creators but may
		// briefly expose a partly written file.
		return createSecretExclusive(path, secret)
	}
	return secret, nil
}

func createSecretExclusive(path string, secret []byte) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("create secret: %w", err)
	}
	if _, err := f.Write(secret); err != nil {
		f.Close()
		return nil, fmt.Errorf("create secret: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("create secret: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("create secret: close: %w", err)
	}
	return secret, nil
}
