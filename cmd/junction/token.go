package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/bench"
)

// tokenConfig is the token configuration of cfg, before key material.
func tokenConfig(cfg *Config) auth.TokenConfig {
	return auth.TokenConfig{Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience, Alg: cfg.Auth.Alg}
}

// runKeygen creates DATA/ed25519.key for EdDSA access tokens and prints the
// public key (base64), which verifying nodes and token consumers need.
func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	data := fs.String("data", "./data", "data directory")
	if err := parseFlags(fs, "keygen", args, stderr); err != nil {
		return err
	}
	pub, err := auth.CreateEdKey(*data)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(pub))
	return nil
}

// runToken mints an access token and prints only the token, so scripts can
// capture it.
func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	data := fs.String("data", "./data", "data directory holding the signing key")
	alg := fs.String("alg", "HS256", "HS256 (DATA/secret.key) or EdDSA (DATA/ed25519.key); must match the server's auth.alg")
	user := fs.String("user", "", "user id (sub claim), required")
	device := fs.String("device", "", "device id (dev claim)")
	kind := fs.String("kind", "browser", "device kind: "+strings.Join(auth.Kinds, ", "))
	scope := fs.String("scope", "read,write", "comma-separated scopes (admin, write, read, rpc.serve, ...)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	if err := parseFlags(fs, "token", args, stderr); err != nil {
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
	tokens, _, err := auth.LoadTokens(cfg.Data, tokenConfig(cfg))
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
	tokens, _, err := auth.LoadTokens(cfg.Data, tokenConfig(cfg))
	if err != nil {
		return nil, err
	}
	return func(c bench.Claims) (string, error) {
		tok, _, err := tokens.Issue(auth.Claims{UserID: c.User, DeviceID: c.Device, Kind: c.Kind, Scopes: c.Scopes}, 2*time.Hour)
		return tok, err
	}, nil
}
