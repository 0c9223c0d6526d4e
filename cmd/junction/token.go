package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/bench"
)

// edKeyFile is the EdDSA signing key inside a data directory (PKCS#8 PEM, 0600).
const edKeyFile = "ed25519.key"

// openTokens loads the signing key for cfg.Auth.Alg from the data directory,
// creating the HS256 secret on first start.
func openTokens(cfg *Config) (*auth.Tokens, bool, error) {
	tc := auth.TokenConfig{Issuer: cfg.Auth.Issuer, Alg: cfg.Auth.Alg}
	created := false
	switch cfg.Auth.Alg {
	case auth.AlgEdDSA:
		key, err := loadEdKey(cfg.Data)
		if err != nil {
			return nil, false, err
		}
		tc.PrivateKey = key
	default:
		secret, c, err := auth.LoadOrCreateSecret(cfg.Data)
		if err != nil {
			return nil, false, fmt.Errorf("signing secret: %w", err)
		}
		tc.Secret, created = secret, c
	}
	t, err := auth.NewTokens(tc)
	if err != nil {
		return nil, false, fmt.Errorf("token config: %w", err)
	}
	return t, created, nil
}

func loadEdKey(dataDir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, edKeyFile)
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("auth.alg is EdDSA but %s does not exist: run 'junction keygen --data %s'", path, dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
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

// runKeygen creates DATA/ed25519.key for EdDSA access tokens and prints the
// public key (base64), which verifying nodes and token consumers need.
func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(*data, edKeyFile)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists; remove it first to replace the key (every token signed with it stops verifying)", path)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(pub))
	return nil
}

// runToken mints an access token and prints only the token, so scripts can
// capture it.
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory holding the signing key")
	alg := fs.String("alg", "HS256", "HS256 (DATA/secret.key) or EdDSA (DATA/ed25519.key); must match the server's auth.alg")
	user := fs.String("user", "", "user id (sub claim), required")
	device := fs.String("device", "", "device id (dev claim)")
	kind := fs.String("kind", "browser", "device kind: "+strings.Join(auth.Kinds, ", "))
	scope := fs.String("scope", "read,write", "comma-separated scopes (admin, write, read, rpc.serve, ...)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("token: --user is required")
	}
	if *ttl <= 0 {
		return errors.New("token: --ttl must be positive")
	}
	if _, err := os.Stat(*data); err != nil {
		return fmt.Errorf("token: data directory %s: %w (start the server once, or pass --data)", *data, err)
	}
	cfg := &Config{Data: *data, Auth: AuthConfig{Alg: *alg}}
	cfg.setDefaults()
	tokens, _, err := openTokens(cfg)
	if err != nil {
		return err
	}
	var scopes []string
	for _, s := range strings.Split(*scope, ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopes = append(scopes, s)
		}
	}
	tok, _, err := tokens.Issue(auth.Claims{UserID: *user, DeviceID: *device, Kind: *kind, Scopes: scopes}, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// benchMinter is the token Minter of 'junction bench': two-hour tokens signed
// with the data directory's key, as the server there verifies them.
func benchMinter(data, alg string) (func(bench.Claims) (string, error), error) {
	if _, err := os.Stat(data); err != nil {
		return nil, fmt.Errorf("bench: data directory %s: %w", data, err)
	}
	cfg := &Config{Data: data, Auth: AuthConfig{Alg: alg}}
	cfg.setDefaults()
	tokens, _, err := openTokens(cfg)
	if err != nil {
		return nil, err
	}
	return func(c bench.Claims) (string, error) {
		tok, _, err := tokens.Issue(auth.Claims{UserID: c.User, DeviceID: c.Device, Kind: c.Kind, Scopes: c.Scopes}, 2*time.Hour)
		return tok, err
	}, nil
}
