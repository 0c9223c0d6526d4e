package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

// Helpers of the account API tests: raw HTTP, so the tests see exactly the
// wire format.

var b64 = base64.StdEncoding.EncodeToString

// apiCall sends a JSON request and returns the status and the raw body. body
// may be nil, a string/[]byte (sent as is) or a value to encode. headers are
// name, value pairs.
func apiCall(t testing.TB, m *Main, token, method, path string, body any, headers ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, m.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// apiJSON is apiCall that wants status and decodes the body into out.
func apiJSON(t testing.TB, m *Main, token, method, path string, body any, want int, out any, headers ...string) {
	t.Helper()
	status, raw := apiCall(t, m, token, method, path, body, headers...)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// apiError is the JSON error body.
type apiError struct {
	Error struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
}

func decodeAPIError(t testing.TB, raw []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("error body %s: %v", raw, err)
	}
	return e
}

// newKey returns a fresh ed25519 key pair.
func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// challenge asks for a login nonce for priv's public key.
func challenge(t testing.TB, m *Main, priv ed25519.PrivateKey) []byte {
	t.Helper()
	var ch protocol.Challenge
	apiJSON(t, m, "", "POST", "/api/v1/auth/challenge", map[string]string{"publicKey": b64(priv.Public().(ed25519.PublicKey))}, 200, &ch)
	nonce, err := base64.StdEncoding.DecodeString(ch.Nonce)
	if err != nil {
		t.Fatalf("nonce %q: %v", ch.Nonce, err)
	}
	return nonce
}

// login signs in with priv (a new account on first use) as a new device.
func login(t testing.TB, m *Main, priv ed25519.PrivateKey, kind string) protocol.Tokens {
	t.Helper()
	nonce := challenge(t, m, priv)
	var res protocol.Tokens
	apiJSON(t, m, "", "POST", "/api/v1/auth/login", map[string]any{
		"publicKey": b64(priv.Public().(ed25519.PublicKey)),
		"nonce":     b64(nonce),
		"signature": b64(ed25519.Sign(priv, nonce)),
		"device":    map[string]string{"name": "test " + kind, "kind": kind},
	}, 200, &res)
	return res
}

// dialToken connects the Go SDK with an access token.
func dialToken(t testing.TB, m *Main, token string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", Token: token}))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// call makes a WebSocket call with a generous timeout.
func call(t testing.TB, c *client.Client, method string, params, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Call(ctx, method, params, out)
}

// asProtocolError returns the *protocol.Error in err's chain, or nil.
func asProtocolError(err error) *protocol.Error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }
