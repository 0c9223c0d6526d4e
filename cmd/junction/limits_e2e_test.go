package main

import (
	"bytes"
	"crypto/ed25519"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// The limits of issue 10 items 9 and 10, as hostile-catalogue cases
// (docs/SECURITY.md): floods bounded in count, from loopback, with other
// client addresses given by X-Forwarded-For through a trusted proxy.

// handshake sends a WebSocket handshake that the server is expected to
// refuse and returns its status, Retry-After and error body, checked
// against the REST error schema (PROTOCOL.md §1).
func handshake(t *testing.T, m *Main, header http.Header) (status int, retryAfter string, e apiError) {
	t.Helper()
	req, err := http.NewRequest("GET", m.URL()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatalf("handshake upgraded, want it refused")
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	wireCheckOf(m).rest("GET", "/ws", resp.StatusCode, body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), decodeAPIError(t, body)
}

// wantRefusal checks a refusal's status, code and Retry-After.
func wantRefusal(t *testing.T, what string, status int, retryAfter string, e apiError, wantStatus int, wantCode protocol.Code) {
	t.Helper()
	if status != wantStatus || e.Error.Code != string(wantCode) {
		t.Fatalf("%s: %d %s, want %d %s", what, status, e.Error.Code, wantStatus, wantCode)
	}
	if s, err := strconv.Atoi(retryAfter); err != nil || s < 1 {
		t.Fatalf("%s: Retry-After %q, want a positive number of seconds", what, retryAfter)
	}
}

// refusals returns the server's junction_limit_refusals_total by reason.
func refusals(t *testing.T, m *Main) map[string]int {
	t.Helper()
	resp, err := http.Get(m.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]int{}
	for _, line := range strings.Split(string(raw), "\n") {
		rest, ok := strings.CutPrefix(line, `junction_limit_refusals_total{reason="`)
		if !ok {
			continue
		}
		reason, val, _ := strings.Cut(rest, `"} `)
		n, _ := strconv.Atoi(val)
		out[reason] = n
	}
	return out
}

// testConnMax: hub.max_connections=2; the third handshake is refused with
// 503 before the upgrade; a closed connection gives its slot back.
func testConnMax(t *testing.T, transport string) {
	m := startServer(t, func(c *Config) {
		c.Hub.Transport = transport
		c.Hub.MaxConnections = 2
	})
	before := refusals(t, m)
	for _, r := range []string{"connections", "user_connections", "handshake_rate", "rest_rate", "auth_rate", "principal_rate"} {
		if n, ok := before[r]; !ok || n != 0 {
			t.Fatalf("junction_limit_refusals_total{reason=%q} before any refusal: %d (exported %v), want 0", r, n, ok)
		}
	}
	a, _, err := dialRaw(t, m, bearer(mintToken(t, m, "u-1", "d-1", "phone")), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dialRaw(t, m, bearer(mintToken(t, m, "u-2", "d-2", "phone")), ""); err != nil {
		t.Fatal(err)
	}
	status, ra, e := handshake(t, m, bearer(mintToken(t, m, "u-3", "d-3", "phone")))
	wantRefusal(t, "third connection", status, ra, e, 503, protocol.CodeUnavailable)
	if n := refusals(t, m)["connections"]; n != 1 {
		t.Fatalf("junction_limit_refusals_total{reason=\"connections\"}: %d, want 1", n)
	}
	a.nc.Close()
	eventually(t, "a slot given back after a close", func() bool {
		c, _, err := dialRaw(t, m, bearer(mintToken(t, m, "u-3", "d-3", "phone")), "")
		if err == nil {
			c.nc.Close()
		}
		return err == nil
	})
}

// testConnPerUser: hub.max_connections_per_user=2; a user's third device is
// refused with 429; another user is not.
func testConnPerUser(t *testing.T, transport string) {
	m := startServer(t, func(c *Config) {
		c.Hub.Transport = transport
		c.Hub.MaxConnectionsPerUser = 2
	})
	a, _, err := dialRaw(t, m, bearer(mintToken(t, m, "u-many", "d-1", "phone")), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dialRaw(t, m, bearer(mintToken(t, m, "u-many", "d-2", "phone")), ""); err != nil {
		t.Fatal(err)
	}
	status, ra, e := handshake(t, m, bearer(mintToken(t, m, "u-many", "d-3", "phone")))
	wantRefusal(t, "a user's third connection", status, ra, e, 429, protocol.CodeRateLimited)
	if _, _, err := dialRaw(t, m, bearer(mintToken(t, m, "u-other", "d-9", "phone")), ""); err != nil {
		t.Fatalf("another user: %v", err)
	}
	if n := refusals(t, m)["user_connections"]; n != 1 {
		t.Fatalf("junction_limit_refusals_total{reason=\"user_connections\"}: %d, want 1", n)
	}
	a.nc.Close()
	eventually(t, "the user's slot given back after a close", func() bool {
		c, _, err := dialRaw(t, m, bearer(mintToken(t, m, "u-many", "d-3", "phone")), "")
		if err == nil {
			c.nc.Close()
		}
		return err == nil
	})
}

// testHandshakeRate: web.handshake_rate=1, burst 3; a client address's
// fourth handshake in a row is refused with 429 before its credential is
// looked at; another address is not limited.
func testHandshakeRate(t *testing.T, transport string) {
	m := startServer(t, func(c *Config) {
		c.Hub.Transport = transport
		c.Web.TrustedProxies = []string{"127.0.0.0/8"}
		c.Web.HandshakeRate, c.Web.HandshakeBurst = 1, 3
	})
	from := func(addr, device string) http.Header {
		h := bearer(mintToken(t, m, "u-rate", device, "phone"))
		h.Set("X-Forwarded-For", addr)
		return h
	}
	for i := range 3 {
		c, _, err := dialRaw(t, m, from("198.51.100.7", "d-"+strconv.Itoa(i)), "")
		if err != nil {
			t.Fatalf("handshake %d within the burst: %v", i, err)
		}
		c.nc.Close()
	}
	status, ra, e := handshake(t, m, from("198.51.100.7", "d-x"))
	wantRefusal(t, "handshake over the rate", status, ra, e, 429, protocol.CodeRateLimited)
	// Refused before authentication: no credential at all gets 429 too.
	h := http.Header{"X-Forwarded-For": {"198.51.100.7"}}
	status, ra, e = handshake(t, m, h)
	wantRefusal(t, "credential-less handshake over the rate", status, ra, e, 429, protocol.CodeRateLimited)
	if c, _, err := dialRaw(t, m, from("198.51.100.8", "d-y"), ""); err != nil {
		t.Fatalf("another address: %v", err)
	} else {
		c.nc.Close()
	}
	// IPv6 counts per /64: another address in the same /64 shares the bucket.
	for i := range 3 {
		c, _, err := dialRaw(t, m, from("2001:db8:1:1::"+strconv.Itoa(i+1), "d-v6-"+strconv.Itoa(i)), "")
		if err != nil {
			t.Fatalf("IPv6 handshake %d within the burst: %v", i, err)
		}
		c.nc.Close()
	}
	status, ra, e = handshake(t, m, from("2001:db8:1:1::ff", "d-v6-x"))
	wantRefusal(t, "handshake from the same /64 over the rate", status, ra, e, 429, protocol.CodeRateLimited)
	if n := refusals(t, m)["handshake_rate"]; n != 3 {
		t.Fatalf("junction_limit_refusals_total{reason=\"handshake_rate\"}: %d, want 3", n)
	}
}

// restFrom makes a REST request from a client address and returns its
// status, Retry-After and body.
func restFrom(t *testing.T, m *Main, addr, token, method, path, body string) (int, string, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, m.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if addr != "" {
		req.Header.Set("X-Forwarded-For", addr)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	wireCheckOf(m).rest(method, req.URL.Path, resp.StatusCode, raw)
	return resp.StatusCode, resp.Header.Get("Retry-After"), raw
}

// testRESTAddressRate: web.rest_rate=1, burst 5; an address's sixth REST
// request in a row is refused with 429; another address is not.
func testRESTAddressRate(t *testing.T, transport string) {
	m := startServer(t, func(c *Config) {
		c.Hub.Transport = transport
		c.Web.TrustedProxies = []string{"127.0.0.0/8"}
		c.Web.RESTRate, c.Web.RESTBurst = 1, 5
	})
	for i := range 5 {
		if status, _, raw := restFrom(t, m, "198.51.100.20", "", "GET", "/api/v1/info", ""); status != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, status, raw)
		}
	}
	status, ra, raw := restFrom(t, m, "198.51.100.20", "", "GET", "/api/v1/info", "")
	wantRefusal(t, "REST request over the address rate", status, ra, decodeAPIError(t, raw), 429, protocol.CodeRateLimited)
	if status, _, raw := restFrom(t, m, "198.51.100.21", "", "GET", "/api/v1/info", ""); status != 200 {
		t.Fatalf("another address: %d %s", status, raw)
	}
	// Loopback (the operator, or an undeclared local proxy) is not limited
	// by address.
	for i := range 7 {
		if status, _, raw := restFrom(t, m, "", "", "GET", "/api/v1/info", ""); status != 200 {
			t.Fatalf("loopback request %d: %d %s", i, status, raw)
		}
	}
	if n := refusals(t, m)["rest_rate"]; n != 1 {
		t.Fatalf("junction_limit_refusals_total{reason=\"rest_rate\"}: %d, want 1", n)
	}
}

// testRESTAuthRate: web.auth_rate=1, burst 3, under auth.challenges' own
// limit; the fourth auth request from an address is refused with 429,
// while the same address's other REST requests are not.
func testRESTAuthRate(t *testing.T, transport string) {
	m := startServer(t, func(c *Config) {
		c.Hub.Transport = transport
		c.Web.TrustedProxies = []string{"127.0.0.0/8"}
		c.Web.AuthRate, c.Web.AuthBurst = 1, 3
	})
	key := newKey(t)
	body := `{"publicKey":"` + b64(key.Public().(ed25519.PublicKey)) + `"}`
	for i := range 3 {
		if status, _, raw := restFrom(t, m, "198.51.100.30", "", "POST", "/api/v1/auth/challenge", body); status != 200 {
			t.Fatalf("challenge %d within the burst: %d %s", i, status, raw)
		}
	}
	status, ra, raw := restFrom(t, m, "198.51.100.30", "", "POST", "/api/v1/auth/login", `{"publicKey":"x","nonce":"x","signature":"x"}`)
	wantRefusal(t, "login over the auth rate", status, ra, decodeAPIError(t, raw), 429, protocol.CodeRateLimited)
	if !bytes.Contains(raw, []byte("authentication")) {
		t.Fatalf("login over the auth rate: %s, want the auth limit's message", raw)
	}
	if status, _, raw := restFrom(t, m, "198.51.100.30", "", "GET", "/api/v1/info", ""); status != 200 {
		t.Fatalf("a non-auth request from the same address: %d %s", status, raw)
	}
	if n := refusals(t, m)["auth_rate"]; n != 1 {
		t.Fatalf("junction_limit_refusals_total{reason=\"auth_rate\"}: %d, want 1", n)
	}
}

// testRESTPrincipalRate: web.principal_rate=1, burst 3; a user's fourth
// authenticated request in a row is refused with 429, from any address;
// another user is not.
func testRESTPrincipalRate(t *testing.T, transport string) {
	m := startServer(t, func(c *Config) {
		c.Hub.Transport = transport
		c.Web.PrincipalRate, c.Web.PrincipalBurst = 1, 3
	})
	a1, a2 := mintToken(t, m, "u-busy", "d-1", "phone"), mintToken(t, m, "u-busy", "d-2", "phone")
	for i, tok := range []string{a1, a2, a1} {
		if status, _, raw := restFrom(t, m, "", tok, "POST", "/api/v1/channels/user:u-busy/publish", `{"data":1}`); status != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, status, raw)
		}
	}
	status, ra, raw := restFrom(t, m, "", a2, "POST", "/api/v1/channels/user:u-busy/publish", `{"data":1}`)
	wantRefusal(t, "the user's request over its rate (another device)", status, ra, decodeAPIError(t, raw), 429, protocol.CodeRateLimited)
	if status, _, raw := restFrom(t, m, "", mintToken(t, m, "u-calm", "d-3", "phone"), "POST", "/api/v1/channels/user:u-calm/publish", `{"data":1}`); status != 200 {
		t.Fatalf("another user: %d %s", status, raw)
	}
	// A server backend (scope admin) is not limited per principal: it
	// publishes past the burst.
	backend := mintToken(t, m, "svc-backend", "", "machine", auth.ScopeAdmin)
	for i := range 6 {
		if status, _, raw := restFrom(t, m, "", backend, "POST", "/api/v1/channels/user:u-busy/publish", `{"data":1}`); status != 200 {
			t.Fatalf("admin request %d past the burst: %d %s", i, status, raw)
		}
	}
	if n := refusals(t, m)["principal_rate"]; n != 1 {
		t.Fatalf("junction_limit_refusals_total{reason=\"principal_rate\"}: %d, want 1", n)
	}
}

// TestLimitsConfigRefused: a negative burst is refused, naming its key; a
// negative rate is accepted (it disables the limit).
func TestLimitsConfigRefused(t *testing.T) {
	cfg := &Config{Addr: "127.0.0.1:0", Data: t.TempDir()}
	cfg.Web.AuthBurst = -1
	cfg.setDefaults()
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "web.auth_burst") {
		t.Fatalf("validate: got %v, want an error naming web.auth_burst", err)
	}
	cfg = &Config{Addr: "127.0.0.1:0", Data: t.TempDir()}
	cfg.Web.RESTRate, cfg.Web.HandshakeRate, cfg.Hub.MaxConnections = -1, -1, -1
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatalf("validate with limits disabled: %v", err)
	}
}
