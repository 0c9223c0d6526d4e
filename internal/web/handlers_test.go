package web

// The edge's handlers, tested by the package itself (not only through the
// end-to-end suite of cmd/junction): a real Server over a real hub, account
// application and SQLite store, behind the front door on a loopback port,
// driven with plain HTTP requests and real WebSocket clients.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// edge is a Server with everything behind it, served on a loopback port.
type edge struct {
	hub     *hub.Hub
	tokens  *auth.Tokens
	network *auth.NetworkPolicy
	db      *store.DB
	srv     *Server
	reg     *prometheus.Registry
	addr    string
	logs    *lockedBuffer
	notOK   atomic.Pointer[error] // what the readiness check "store" reports, when set
}

// startEdge starts an edge with cfg and hcfg; configure, when set, runs on
// the server before it serves (a clock for its limiters).
func startEdge(t *testing.T, cfg Config, hcfg hub.Config, configure func(*Server)) *edge {
	t.Helper()
	ctx := context.Background()
	e := &edge{reg: prometheus.NewRegistry(), logs: &lockedBuffer{}}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	secret := make([]byte, auth.MinSecretBytes)
	_, _ = rand.Read(secret)
	if e.tokens, err = auth.NewTokens(auth.TokenConfig{Secret: secret}); err != nil {
		t.Fatal(err)
	}
	authn := &auth.Authenticator{Tokens: e.tokens}
	var proxies []netip.Prefix
	for _, p := range cfg.TrustedProxies {
		proxies = append(proxies, netip.MustParsePrefix(p))
	}
	e.network = auth.NewNetworkPolicy(cfg.Lockdown, proxies)
	origins, err := auth.NewOriginPolicy(cfg.AllowedOrigins)
	if err != nil {
		t.Fatal(err)
	}
	if e.db, err = store.Open(ctx, filepath.Join(t.TempDir(), "junction.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if e.hub, err = hub.New(hcfg, hub.Deps{Logger: log, Registerer: e.reg, Authenticator: authn}); err != nil {
		t.Fatal(err)
	}
	acct, err := account.New(account.Config{}, account.Deps{Store: e.db, Hub: e.hub, Tokens: e.tokens, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	acct.Register(e.hub)
	e.srv, err = New(cfg, Deps{Hub: e.hub, Authenticator: authn, Network: e.network, Origins: origins, Logger: log,
		Registerer: e.reg, Gatherer: e.reg, Account: acct,
		Ready: []ReadyCheck{{Name: "store", Check: func(ctx context.Context) error {
			if err := e.notOK.Load(); err != nil {
				return *err
			}
			return e.db.Ping(ctx)
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	if configure != nil {
		configure(e.srv)
	}
	if err := e.hub.Start(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	f := NewFront(e.srv, &http.Server{Handler: e.srv, ReadHeaderTimeout: 10 * time.Second}, log)
	served := make(chan error, 1)
	go func() { served <- f.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = f.Shutdown(ctx)
		<-served
		_ = e.hub.Close()
		_ = e.db.Close()
	})
	return e
}

// token mints an access token for user's device with scopes.
func (e *edge) token(t *testing.T, user, device string, scopes ...string) string {
	t.Helper()
	tok, _, err := e.tokens.Issue(auth.Claims{UserID: user, DeviceID: device, Kind: "phone", Scopes: scopes}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// reply is an HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// errorCode returns the code of a JSON error body ("" when it is not one).
func (r reply) errorCode() protocol.Code {
	var b struct {
		Error *protocol.Error `json:"error"`
	}
	if json.Unmarshal(r.body, &b) != nil || b.Error == nil {
		return ""
	}
	return b.Error.Code
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends one request on a new connection. hdr is name, value pairs.
func (e *edge) do(t *testing.T, method, path, token, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+e.addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// expect checks a reply's status and, when code is set, its error code.
func expect(t *testing.T, what string, r reply, status int, code protocol.Code) {
	t.Helper()
	if r.status != status || (code != "" && r.errorCode() != code) {
		t.Fatalf("%s: got %d %s, want %d %s", what, r.status, r.body, status, code)
	}
}

// dialWS opens a WebSocket; it returns the connection, or the refusal's
// status and body.
func (e *edge) dialWS(t *testing.T, path string, hdr http.Header, protocols ...string) (net.Conn, int, []byte) {
	t.Helper()
	var status int
	var body []byte
	d := gws.Dialer{Header: gws.HandshakeHeaderHTTP(hdr), Protocols: protocols, Timeout: 20 * time.Second,
		OnStatusError: func(st int, _ []byte, resp io.Reader) {
			status = st
			body, _ = io.ReadAll(io.LimitReader(resp, 4096))
		}}
	nc, br, _, err := d.Dial(context.Background(), "ws://"+e.addr+path)
	if err != nil {
		if status == 0 {
			t.Fatalf("dial %s: %v", path, err)
		}
		return nil, status, body
	}
	t.Cleanup(func() { nc.Close() })
	if br != nil {
		// The welcome may have come with the 101, into the dialer's buffer.
		return &bufferedConn{Conn: nc, r: io.MultiReader(br, nc)}, http.StatusSwitchingProtocols, nil
	}
	return nc, http.StatusSwitchingProtocols, nil
}

// bufferedConn reads what the dialer buffered first.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// readEvent reads text frames until one carries event name.
func readEvent(t *testing.T, nc net.Conn, name string) *protocol.Frame {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		b, err := wsutil.ReadServerText(nc)
		if err != nil {
			t.Fatalf("waiting for %s: %v", name, err)
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			var f protocol.Frame
			if json.Unmarshal(line, &f) == nil && f.Event == name {
				return &f
			}
		}
	}
}

// readClose reads frames until a close frame and returns its code.
func readCloseCode(t *testing.T, nc net.Conn) int {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		f, err := gws.ReadFrame(nc)
		if err != nil {
			t.Fatalf("waiting for a close frame: %v", err)
		}
		if f.Header.OpCode == gws.OpClose {
			if f.Header.Masked {
				gws.Cipher(f.Payload, f.Header.Mask, 0)
			}
			code, _ := gws.ParseCloseFrameData(f.Payload)
			return int(code)
		}
	}
}

// counter returns a counter's value with the given label value.
func (e *edge) counter(t *testing.T, name, label, value string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestHandlersPublic: health, readiness (each check, and a draining hub),
// info, the API's 404, the console (files, client-side routes, methods),
// metrics and the two contract documents.
func TestHandlersPublic(t *testing.T) {
	e := startEdge(t, Config{}, hub.Config{NodeID: "node-7"}, nil)

	r := e.do(t, "GET", "/healthz", "", "")
	expect(t, "healthz", r, 200, "")
	if strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Fatalf("healthz body %s", r.body)
	}

	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	r = e.do(t, "GET", "/readyz", "", "")
	expect(t, "readyz", r, 200, "")
	r.decode(t, &ready)
	if ready.Status != "ready" || ready.Checks["hub"] != "ok" || ready.Checks["store"] != "ok" {
		t.Fatalf("readyz: %s", r.body)
	}
	down := errors.New("database gone")
	e.notOK.Store(&down)
	r = e.do(t, "GET", "/readyz", "", "")
	expect(t, "readyz with the store down", r, 503, "")
	r.decode(t, &ready)
	if ready.Status != "not ready" || ready.Checks["store"] != "unavailable" || ready.Checks["hub"] != "ok" {
		t.Fatalf("readyz with the store down: %s", r.body)
	}
	if !strings.Contains(e.logs.String(), "database gone") {
		t.Fatalf("the failed readiness check was not logged")
	}
	e.notOK.Store(nil)

	var info protocol.ServerInfo
	r = e.do(t, "GET", "/api/v1/info", "", "")
	expect(t, "info", r, 200, "")
	r.decode(t, &info)
	if info.Name != "junction" || info.NodeID != "node-7" || info.WS != "/ws" || info.WSIoT != "/ws/iot" || info.Protocol != protocol.Version || info.Lockdown {
		t.Fatalf("info: %+v", info)
	}

	expect(t, "unknown API path", e.do(t, "GET", "/api/v1/nothing/here", "", ""), 404, protocol.CodeNotFound)

	for _, path := range []string{"/", "/index.html", "/some/client/route"} {
		r = e.do(t, "GET", path, "", "")
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || r.header.Get("X-Content-Type-Options") != "nosniff" || !bytes.Contains(r.body, []byte("<")) {
			t.Fatalf("console %s: %d %v %.80q", path, r.status, r.header, r.body)
		}
	}
	r = e.do(t, "HEAD", "/", "", "")
	if r.status != 200 || len(r.body) != 0 {
		t.Fatalf("HEAD /: %d, %d bytes", r.status, len(r.body))
	}
	r = e.do(t, "POST", "/", "", "{}")
	expect(t, "POST to the console", r, 405, protocol.CodeBadRequest)
	if r.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /: Allow %q", r.header.Get("Allow"))
	}

	r = e.do(t, "GET", "/metrics", "", "")
	if r.status != 200 || !bytes.Contains(r.body, []byte("junction_limit_refusals_total")) {
		t.Fatalf("metrics: %d %.200s", r.status, r.body)
	}

	for path, key := range map[string]string{"/api/v1/openapi.json": "openapi", "/api/v1/asyncapi.json": "asyncapi"} {
		r = e.do(t, "GET", path, "", "")
		var doc map[string]any
		expect(t, path, r, 200, "")
		r.decode(t, &doc)
		if doc[key] == nil {
			t.Fatalf("%s has no %q member", path, key)
		}
	}
	var openapi struct {
		Paths map[string]any `json:"paths"`
	}
	e.do(t, "GET", "/api/v1/openapi.json", "", "").decode(t, &openapi)
	for _, p := range []string{"/api/v1/sessions", "/api/v1/channels/{topic}/publish", "/api/v1/info"} {
		if openapi.Paths[p] == nil {
			t.Errorf("OpenAPI lacks %s", p)
		}
	}
	if len(e.srv.Routes()) == 0 {
		t.Fatalf("Routes() is empty")
	}

	// A draining hub: not ready, and new WebSockets are refused with a hint.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.hub.Shutdown(ctx)
	r = e.do(t, "GET", "/readyz", "", "")
	expect(t, "readyz while draining", r, 503, "")
	r.decode(t, &ready)
	if ready.Checks["hub"] != "draining" {
		t.Fatalf("readyz while draining: %s", r.body)
	}
	_, status, body := e.dialWS(t, "/ws", http.Header{"Authorization": {"Bearer " + e.token(t, "u1", "d1")}})
	if status != 503 || !bytes.Contains(body, []byte("unavailable")) {
		t.Fatalf("a handshake while draining: %d %s, want 503 unavailable", status, body)
	}
}

// TestHandlersPrincipal: REST authentication (missing, in the query,
// invalid: counted by reason), scopes, and the strict JSON body decoding
// (empty, unknown member, missing field, too large) on the admin lockdown
// endpoint.
func TestHandlersPrincipal(t *testing.T) {
	e := startEdge(t, Config{MaxBodyBytes: 256}, hub.Config{}, nil)
	user := e.token(t, "u1", "d1", auth.ScopeRead, auth.ScopeWrite)
	admin := e.token(t, "ops", "backend", auth.ScopeAdmin)

	r := e.do(t, "GET", "/api/v1/admin/lockdown", "", "")
	expect(t, "no credential", r, 401, protocol.CodeUnauthorized)
	expect(t, "a token in the query, on REST", e.do(t, "GET", "/api/v1/admin/lockdown?token="+admin, "", ""), 401, protocol.CodeUnauthorized)
	before := e.counter(t, "junction_auth_failures_total", "reason", "malformed")
	r = e.do(t, "GET", "/api/v1/admin/lockdown", "not-a-token", "")
	expect(t, "a malformed token", r, 401, protocol.CodeUnauthorized)
	if !bytes.Contains(r.body, []byte("invalid credential")) {
		t.Fatalf("a malformed token: %s", r.body)
	}
	if got := e.counter(t, "junction_auth_failures_total", "reason", "malformed"); got != before+1 {
		t.Fatalf("auth failures (malformed) %v, want %v", got, before+1)
	}
	expect(t, "without scope admin", e.do(t, "GET", "/api/v1/admin/lockdown", user, ""), 403, protocol.CodeForbidden)

	var ld protocol.Lockdown
	r = e.do(t, "GET", "/api/v1/admin/lockdown", admin, "")
	expect(t, "lockdown get", r, 200, "")
	r.decode(t, &ld)
	if ld.Enabled == nil || *ld.Enabled {
		t.Fatalf("lockdown get: %s", r.body)
	}

	for _, tc := range []struct {
		name, body string
		status     int
		code       protocol.Code
		contains   string
	}{
		{"empty body", "", 400, protocol.CodeBadRequest, "a JSON body is required"},
		{"blank body", "  ", 400, protocol.CodeBadRequest, "a JSON body is required"},
		{"enabled missing", "{}", 400, protocol.CodeBadRequest, "enabled"},
		{"unknown member", `{"enabled":false,"extra":1}`, 400, protocol.CodeBadRequest, "extra"},
		{"wrong type", `{"enabled":"yes"}`, 400, protocol.CodeBadRequest, "enabled"},
		{"too large", `{"enabled":false,"pad":"` + strings.Repeat("x", 300) + `"}`, 413, protocol.CodeTooLarge, "256"},
	} {
		r := e.do(t, "POST", "/api/v1/admin/lockdown", admin, tc.body)
		expect(t, tc.name, r, tc.status, tc.code)
		if !bytes.Contains(r.body, []byte(tc.contains)) {
			t.Fatalf("%s: %s, want it to mention %q", tc.name, r.body, tc.contains)
		}
	}
	if e.network.Lockdown() {
		t.Fatalf("a refused request turned lockdown on")
	}
}

// TestHandlersLockdown: the admin kill switch closes the WebSockets of
// clients outside local networks (4010) and keeps local ones; while on,
// ServeHTTP refuses such clients on every path (503) and local ones pass;
// turned off, they pass again. The client address is the one the trusted
// proxy forwards.
func TestHandlersLockdown(t *testing.T) {
	e := startEdge(t, Config{TrustedProxies: []string{"127.0.0.0/8"}}, hub.Config{}, nil)
	admin := e.token(t, "ops", "backend", auth.ScopeAdmin)
	const remote = "203.0.113.9"
	far, status, body := e.dialWS(t, "/ws", http.Header{"Authorization": {"Bearer " + e.token(t, "u1", "far")}, "X-Forwarded-For": {remote}})
	if far == nil {
		t.Fatalf("remote handshake: %d %s", status, body)
	}
	readEvent(t, far, protocol.EventWelcome)
	near, status, body := e.dialWS(t, "/ws", http.Header{"Authorization": {"Bearer " + e.token(t, "u1", "near")}})
	if near == nil {
		t.Fatalf("local handshake: %d %s", status, body)
	}
	readEvent(t, near, protocol.EventWelcome)

	r := e.do(t, "POST", "/api/v1/admin/lockdown", admin, `{"enabled":true}`)
	expect(t, "lockdown on", r, 200, "")
	if !e.network.Lockdown() {
		t.Fatalf("lockdown is off after turning it on")
	}
	if code := readCloseCode(t, far); code != protocol.CloseLockdown {
		t.Fatalf("the remote WebSocket got close %d, want %d", code, protocol.CloseLockdown)
	}
	r = e.do(t, "GET", "/healthz", "", "", "X-Forwarded-For", remote)
	expect(t, "a remote client in lockdown", r, 503, protocol.CodeUnavailable)
	// A keep-alive request: the refusal still ends the connection.
	if raw := rawExchange(t, e.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: "+remote+"\r\n\r\n"); !strings.HasPrefix(raw, "HTTP/1.1 503") || !strings.Contains(raw, "Connection: close") {
		t.Fatalf("a lockdown refusal of a keep-alive request: %q, want 503 with Connection: close", raw)
	}
	_, status, _ = e.dialWS(t, "/ws", http.Header{"Authorization": {"Bearer " + e.token(t, "u1", "far2")}, "X-Forwarded-For": {remote}})
	if status != 503 {
		t.Fatalf("a remote handshake in lockdown: %d, want 503", status)
	}
	var info protocol.ServerInfo
	e.do(t, "GET", "/api/v1/info", "", "").decode(t, &info)
	if !info.Lockdown {
		t.Fatalf("info does not report the lockdown")
	}
	// The local WebSocket is still served: it answers a ping.
	if err := wsutil.WriteClientText(near, []byte(`{"type":"req","id":"1","method":"sys.ping"}`)); err != nil {
		t.Fatalf("write to the local WebSocket: %v", err)
	}
	_ = near.SetReadDeadline(time.Now().Add(20 * time.Second))
	if b, err := wsutil.ReadServerText(near); err != nil || !bytes.Contains(b, []byte(`"id":"1"`)) {
		t.Fatalf("the local WebSocket after lockdown: %s, %v", b, err)
	}

	expect(t, "lockdown off", e.do(t, "POST", "/api/v1/admin/lockdown", admin, `{"enabled":false}`), 200, "")
	expect(t, "a remote client after lockdown", e.do(t, "GET", "/healthz", "", "", "X-Forwarded-For", remote), 200, "")
	if got := e.counter(t, "junction_auth_failures_total", "reason", "lockdown"); got < 2 {
		t.Fatalf("lockdown refusals counted %v, want at least 2", got)
	}
}

// TestRefusedHandshakeCloses: a refused GET /ws answers Connection: close
// whichever way it was served: through the front door (which closes every
// connection it does not upgrade) and through net/http's ResponseWriter
// (told by upgradeWS).
func TestRefusedHandshakeCloses(t *testing.T) {
	e := startEdge(t, Config{}, hub.Config{}, nil)
	req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n"
	raw := rawExchange(t, e.addr, req)
	front, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("front door: %v in %q", err, raw)
	}
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(req)))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, r)
	for _, tc := range []struct {
		name   string
		status int
		close  bool
	}{
		{"front door", front.StatusCode, front.Close}, // ReadResponse moves Connection: close to Close
		{"net/http", rec.Code, rec.Header().Get("Connection") == "close"},
	} {
		if tc.status != http.StatusUnauthorized || !tc.close {
			t.Errorf("%s: got %d, Connection: close %v; want 401, true", tc.name, tc.status, tc.close)
		}
	}
}

// TestHandlersWebSocket: each refusal of GET /ws answers its status and
// code before any upgrade; each way of presenting a credential upgrades.
func TestHandlersWebSocket(t *testing.T) {
	e := startEdge(t, Config{AllowedOrigins: []string{"https://app.example.com"}}, hub.Config{MaxConnectionsPerUser: 1}, nil)
	strict := startEdge(t, Config{DisableQueryToken: true}, hub.Config{}, nil)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	for _, tc := range []struct {
		name   string
		e      *edge
		path   string
		hdr    http.Header
		status int
		code   string
	}{
		{"origin not allowed", e, "/ws", http.Header{"Authorization": {"Bearer " + e.token(t, "u", "d")}, "Origin": {"https://evil.example"}}, 403, "forbidden"},
		{"no credential", e, "/ws", nil, 401, "unauthorized"},
		{"malformed token", e, "/ws", bearer("garbage"), 401, "unauthorized"},
		{"token of another server", e, "/ws", bearer(strict.token(t, "u", "d")), 401, "unauthorized"},
		{"query token refused by config", strict, "/ws?token=" + strict.token(t, "u", "d"), nil, 401, "unauthorized"},
	} {
		_, status, body := tc.e.dialWS(t, tc.path, tc.hdr)
		if status != tc.status || !bytes.Contains(body, []byte(`"code":"`+tc.code+`"`)) {
			t.Fatalf("%s: %d %s, want %d %s", tc.name, status, body, tc.status, tc.code)
		}
	}
	if e.hub.Len() != 0 {
		t.Fatalf("refused handshakes left %d connections", e.hub.Len())
	}

	// Accepted: header, subprotocol pair (answered with junction.v1), query;
	// an allowed origin.
	tok := func(dev string) string { return e.token(t, "user-"+dev, dev) }
	for _, tc := range []struct {
		name      string
		path      string
		hdr       http.Header
		protocols []string
	}{
		{"header", "/ws", bearer(tok("h")), nil},
		{"subprotocol", "/ws", nil, []string{protocol.Subprotocol, "junction.bearer." + tok("s")}},
		{"query", "/ws?token=" + tok("q"), nil, nil},
		{"allowed origin", "/ws", http.Header{"Authorization": {"Bearer " + tok("o")}, "Origin": {"https://app.example.com"}}, nil},
	} {
		nc, status, body := e.dialWS(t, tc.path, tc.hdr, tc.protocols...)
		if nc == nil {
			t.Fatalf("%s: %d %s, want an upgrade", tc.name, status, body)
		}
		w := readEvent(t, nc, protocol.EventWelcome)
		var welcome protocol.Welcome
		if err := json.Unmarshal(w.Data, &welcome); err != nil || welcome.Principal.DeviceID == "" {
			t.Fatalf("%s: welcome %s: %v", tc.name, w.Data, err)
		}
	}

	// hub.max_connections_per_user: the second connection of one user is
	// refused before the upgrade, and counted.
	first, status, _ := e.dialWS(t, "/ws", bearer(e.token(t, "solo", "a")))
	if first == nil {
		t.Fatalf("first connection of solo: %d", status)
	}
	readEvent(t, first, protocol.EventWelcome)
	_, status, body := e.dialWS(t, "/ws", bearer(e.token(t, "solo", "b")))
	if status != 429 || !bytes.Contains(body, []byte("rate_limited")) {
		t.Fatalf("second connection of solo: %d %s, want 429 rate_limited", status, body)
	}
	if got := e.counter(t, "junction_limit_refusals_total", "reason", limitUserConnections); got != 1 {
		t.Fatalf("user connection refusals counted %v, want 1", got)
	}
}

// frozenClock is a limiter clock that moves only when told.
type frozenClock struct{ ns atomic.Int64 }

func (c *frozenClock) now() time.Time { return time.Unix(0, c.ns.Load()) }

// TestHandlersRateLimits: per client address (as forwarded by a trusted
// proxy; loopback itself is not limited), REST, auth endpoints and
// handshakes answer 429 with Retry-After over their burst, per address;
// per principal, authenticated REST requests do, except for admin. The
// limiters run on a frozen clock: the burst is all there is.
func TestHandlersRateLimits(t *testing.T) {
	clk := &frozenClock{}
	clk.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	e := startEdge(t, Config{TrustedProxies: []string{"127.0.0.0/8"},
		RESTRate: 1, RESTBurst: 3, AuthRate: 1, AuthBurst: 1, HandshakeRate: 1, HandshakeBurst: 1, PrincipalRate: 1, PrincipalBurst: 2},
		hub.Config{}, func(s *Server) {
			for _, l := range []*auth.Limiter{s.limits.rest, s.limits.auth, s.limits.handshake, s.limits.principal} {
				l.Now = clk.now
			}
		})
	from := func(addr string) []string { return []string{"X-Forwarded-For", addr} }

	// REST per address: three requests, then 429; another address and
	// loopback itself are not affected; non-API paths are not limited.
	for i := range 3 {
		expect(t, "REST within the burst", e.do(t, "GET", "/api/v1/info", "", "", from("198.51.100.1")...), 200, "")
		_ = i
	}
	r := e.do(t, "GET", "/api/v1/info", "", "", from("198.51.100.1")...)
	expect(t, "REST over the burst", r, 429, protocol.CodeRateLimited)
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("a 429 without Retry-After: %v", r.header)
	}
	expect(t, "another address", e.do(t, "GET", "/api/v1/info", "", "", from("198.51.100.2")...), 200, "")
	expect(t, "loopback", e.do(t, "GET", "/api/v1/info", "", ""), 200, "")
	expect(t, "a non-API path", e.do(t, "GET", "/healthz", "", "", from("198.51.100.1")...), 200, "")

	// Auth endpoints: one, then 429 (on top of the REST limit).
	r = e.do(t, "POST", "/api/v1/auth/challenge", "", `{}`, from("198.51.100.3")...)
	if r.status == 429 {
		t.Fatalf("the first auth request was limited: %s", r.body)
	}
	expect(t, "auth over the burst", e.do(t, "POST", "/api/v1/auth/challenge", "", `{}`, from("198.51.100.3")...), 429, protocol.CodeRateLimited)

	// Handshakes: one, then 429 before the credential is even looked at.
	hdr := http.Header{"Authorization": {"Bearer " + e.token(t, "u1", "d1")}, "X-Forwarded-For": {"198.51.100.4"}}
	if nc, status, body := e.dialWS(t, "/ws", hdr); nc == nil {
		t.Fatalf("the first handshake: %d %s", status, body)
	}
	_, status, body := e.dialWS(t, "/ws", http.Header{"X-Forwarded-For": {"198.51.100.4"}})
	if status != 429 || !bytes.Contains(body, []byte("rate_limited")) {
		t.Fatalf("a handshake over the burst: %d %s, want 429", status, body)
	}

	// Per principal: two, then 429, from loopback (no address limit);
	// admin is not limited.
	user := e.token(t, "busy", "d1", auth.ScopeRead)
	for range 2 {
		expect(t, "principal within the burst", e.do(t, "GET", "/api/v1/channels/public:x/history", user, ""), 200, "")
	}
	expect(t, "principal over the burst", e.do(t, "GET", "/api/v1/channels/public:x/history", user, ""), 429, protocol.CodeRateLimited)
	admin := e.token(t, "ops", "backend", auth.ScopeAdmin)
	for range 4 {
		expect(t, "admin", e.do(t, "GET", "/api/v1/admin/lockdown", admin, ""), 200, "")
	}
	for reason, want := range map[string]float64{limitRESTRate: 1, limitAuthRate: 1, limitHandshakeRate: 1, limitPrincipalRate: 1} {
		if got := e.counter(t, "junction_limit_refusals_total", "reason", reason); got != want {
			t.Errorf("refusals %s: %v, want %v", reason, got, want)
		}
	}
	// Time passes: the address may make a request again.
	clk.ns.Add(int64(time.Second))
	expect(t, "REST after a second", e.do(t, "GET", "/api/v1/info", "", "", from("198.51.100.1")...), 200, "")
}

// TestHandlersChannels: publish (with and without Idempotency-Key),
// history (since and limit, and their refusals), presence, and the errors
// the hub gives, with their statuses.
func TestHandlersChannels(t *testing.T) {
	e := startEdge(t, Config{}, hub.Config{Namespaces: []hub.NamespaceConfig{
		{Pattern: "room:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, Presence: true, HistorySize: 10},
	}}, nil)
	writer := e.token(t, "u1", "d1", auth.ScopeRead, auth.ScopeWrite)
	reader := e.token(t, "u2", "d2", auth.ScopeRead)

	var pub protocol.PublishResult
	r := e.do(t, "POST", "/api/v1/channels/room:1/publish", writer, `{"data":{"n":1}}`)
	expect(t, "publish", r, 200, "")
	r.decode(t, &pub)
	if pub.Epoch == "" || pub.Offset != 1 {
		t.Fatalf("publish: %s", r.body)
	}
	var again protocol.PublishResult
	for i := range 2 {
		r = e.do(t, "POST", "/api/v1/channels/room:1/publish", writer, `{"data":{"n":2}}`, IdempotencyHeader, "k-1")
		expect(t, "idempotent publish", r, 200, "")
		var p protocol.PublishResult
		r.decode(t, &p)
		if i == 0 {
			again = p
		} else if p != again || p.Offset != 2 {
			t.Fatalf("a repeated Idempotency-Key: %+v then %+v, want the same offset 2", again, p)
		}
	}
	for _, tc := range []struct {
		name, topic, tok, body string
		hdr                    []string
		status                 int
		code                   protocol.Code
	}{
		{"without scope write", "room:1", reader, `{"data":1}`, nil, 403, protocol.CodeForbidden},
		{"data missing", "room:1", writer, `{}`, nil, 400, protocol.CodeBadRequest},
		{"data null", "room:1", writer, `{"data":null}`, nil, 400, protocol.CodeBadRequest},
		{"unknown member", "room:1", writer, `{"data":1,"x":2}`, nil, 400, protocol.CodeBadRequest},
		{"topic in no namespace", "nowhere:1", writer, `{"data":1}`, nil, 0, ""},
		{"key too long", "room:1", writer, `{"data":1}`, []string{IdempotencyHeader, strings.Repeat("k", 201)}, 400, protocol.CodeBadRequest},
		{"no credential", "room:1", "", `{"data":1}`, nil, 401, protocol.CodeUnauthorized},
	} {
		r := e.do(t, "POST", "/api/v1/channels/"+tc.topic+"/publish", tc.tok, tc.body, tc.hdr...)
		if tc.status == 0 {
			if r.status < 400 || r.status >= 500 || r.errorCode() == "" {
				t.Fatalf("%s: %d %s, want a client error", tc.name, r.status, r.body)
			}
			continue
		}
		expect(t, tc.name, r, tc.status, tc.code)
	}

	var hist protocol.HistoryResult
	r = e.do(t, "GET", "/api/v1/channels/room:1/history", reader, "")
	expect(t, "history", r, 200, "")
	r.decode(t, &hist)
	if len(hist.Publications) != 2 || hist.Offset != 2 || hist.Epoch != pub.Epoch {
		t.Fatalf("history: %s", r.body)
	}
	r = e.do(t, "GET", "/api/v1/channels/room:1/history?since_epoch="+pub.Epoch+"&since_offset=1&limit=5", reader, "")
	expect(t, "history since 1", r, 200, "")
	r.decode(t, &hist)
	if len(hist.Publications) != 1 || hist.Publications[0].Offset != 2 {
		t.Fatalf("history since 1: %s", r.body)
	}
	for _, q := range []string{"since_offset=x&since_epoch=e", "since_offset=1", "limit=-1", "limit=many"} {
		expect(t, "history?"+q, e.do(t, "GET", "/api/v1/channels/room:1/history?"+q, reader, ""), 400, protocol.CodeBadRequest)
	}

	// Presence lists a subscriber connected over a WebSocket.
	nc, status, body := e.dialWS(t, "/ws", http.Header{"Authorization": {"Bearer " + e.token(t, "u3", "d3", auth.ScopeRead)}})
	if nc == nil {
		t.Fatalf("handshake: %d %s", status, body)
	}
	readEvent(t, nc, protocol.EventWelcome)
	if err := wsutil.WriteClientText(nc, []byte(`{"type":"req","id":"s","method":"channel.subscribe","params":{"topic":"room:1"}}`)); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		b, err := wsutil.ReadServerText(nc)
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		if bytes.Contains(b, []byte(`"id":"s"`)) {
			if !bytes.Contains(b, []byte(`"ok":true`)) {
				t.Fatalf("subscribe: %s", b)
			}
			break
		}
	}
	var pres protocol.PresenceResult
	r = e.do(t, "GET", "/api/v1/channels/room:1/presence", reader, "")
	expect(t, "presence", r, 200, "")
	r.decode(t, &pres)
	if len(pres.Clients) != 1 {
		t.Fatalf("presence: %s, want the one subscriber", r.body)
	}
	for _, c := range pres.Clients {
		if c.UserID != "u3" || c.DeviceID != "d3" {
			t.Fatalf("presence: %s, want u3/d3", r.body)
		}
	}
	r = e.do(t, "GET", "/api/v1/channels/public:x/presence", reader, "")
	if r.status < 400 || r.status >= 500 || r.errorCode() == "" {
		t.Fatalf("presence of a namespace without presence: %d %s, want a client error", r.status, r.body)
	}
}

// TestHandlersAccountREST: the generic REST adapter of the account
// operations: a body, path values, query parameters and the
// Idempotency-Key reach the operation; a body member contradicting the
// path is refused; results and errors come back with their statuses.
func TestHandlersAccountREST(t *testing.T) {
	e := startEdge(t, Config{}, hub.Config{}, nil)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := e.db.CreateAccount(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	tok := e.token(t, acct.ID, "d1", auth.ScopeRead, auth.ScopeWrite)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	type session struct {
		ID       string `json:"id"`
		Metadata struct {
			Value   string `json:"value"`
			Version int64  `json:"version"`
		} `json:"metadata"`
	}
	var s, s2 session
	r := e.do(t, "POST", "/api/v1/sessions", tok, `{"metadata":"`+b64("m1")+`"}`, IdempotencyHeader, "create-1")
	expect(t, "create session", r, 201, "")
	r.decode(t, &s)
	if s.ID == "" {
		t.Fatalf("create session: %s", r.body)
	}
	r = e.do(t, "POST", "/api/v1/sessions", tok, `{"metadata":"`+b64("m1")+`"}`, IdempotencyHeader, "create-1")
	expect(t, "create session again with the key", r, 201, "")
	r.decode(t, &s2)
	if s2.ID != s.ID {
		t.Fatalf("a repeated Idempotency-Key created %s after %s", s2.ID, s.ID)
	}

	r = e.do(t, "GET", "/api/v1/sessions/"+s.ID, tok, "")
	expect(t, "get session", r, 200, "")
	r.decode(t, &s2)
	if s2.ID != s.ID || s2.Metadata.Value != b64("m1") {
		t.Fatalf("get session: %s", r.body)
	}
	r = e.do(t, "PUT", "/api/v1/sessions/"+s.ID+"/metadata", tok, `{"value":"`+b64("m2")+`","expectedVersion":`+itoa(s2.Metadata.Version)+`}`)
	expect(t, "update metadata", r, 200, "")
	expect(t, "update metadata with a stale version", e.do(t, "PUT", "/api/v1/sessions/"+s.ID+"/metadata", tok, `{"value":"`+b64("m3")+`","expectedVersion":`+itoa(s2.Metadata.Version)+`}`), 409, protocol.CodeConflict)
	r = e.do(t, "PUT", "/api/v1/sessions/"+s.ID+"/metadata", tok, `{"id":"other","value":"`+b64("m3")+`","expectedVersion":1}`)
	expect(t, "a body id contradicting the path", r, 400, protocol.CodeBadRequest)
	if !bytes.Contains(r.body, []byte("the path names it")) {
		t.Fatalf("a body id contradicting the path: %s", r.body)
	}

	r = e.do(t, "GET", "/api/v1/sessions?limit=1", tok, "")
	expect(t, "list sessions", r, 200, "")
	if !bytes.Contains(r.body, []byte(s.ID)) {
		t.Fatalf("list sessions: %s, want %s", r.body, s.ID)
	}
	expect(t, "list with a bad limit", e.do(t, "GET", "/api/v1/sessions?limit=-5", tok, ""), 400, protocol.CodeBadRequest)
	expect(t, "list with a limit not a number", e.do(t, "GET", "/api/v1/sessions?limit=lots", tok, ""), 400, protocol.CodeBadRequest)
	expect(t, "create with an unknown member", e.do(t, "POST", "/api/v1/sessions", tok, `{"nope":1}`), 400, protocol.CodeBadRequest)
	expect(t, "create without a credential", e.do(t, "POST", "/api/v1/sessions", "", `{}`), 401, protocol.CodeUnauthorized)
	expect(t, "create with scope read only", e.do(t, "POST", "/api/v1/sessions", e.token(t, acct.ID, "d2", auth.ScopeRead), `{}`), 403, protocol.CodeForbidden)
	expect(t, "another account's session", e.do(t, "GET", "/api/v1/sessions/"+s.ID, e.token(t, "someone-else", "d9", auth.ScopeRead), ""), 404, protocol.CodeNotFound)

	expect(t, "delete session", e.do(t, "DELETE", "/api/v1/sessions/"+s.ID, tok, ""), 200, "")
	expect(t, "get a deleted session", e.do(t, "GET", "/api/v1/sessions/"+s.ID, tok, ""), 404, protocol.CodeNotFound)
}

// TestHandlersPanic: a handler that panics drops its connection, is
// logged, and the server goes on serving.
func TestHandlersPanic(t *testing.T) {
	e := startEdge(t, Config{}, hub.Config{}, nil)
	e.srv.Handle("GET /api/v1/test/panic", func(http.ResponseWriter, *http.Request) { panic("handler bug") })
	req, _ := http.NewRequest("GET", "http://"+e.addr+"/api/v1/test/panic", nil)
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	if resp, err := cl.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a panicking handler answered %d, want the connection dropped", resp.StatusCode)
	}
	expect(t, "after the panic", e.do(t, "GET", "/healthz", "", ""), 200, "")
	if !strings.Contains(e.logs.String(), "handler bug") {
		t.Fatalf("the panic was not logged:\n%s", e.logs.String())
	}
}

// TestStatus: every protocol error code maps to its documented status.
func TestStatus(t *testing.T) {
	for code, want := range map[protocol.Code]int{
		protocol.CodeBadRequest: 400, protocol.CodeInvalidFrame: 400, protocol.CodeUnauthorized: 401,
		protocol.CodeForbidden: 403, protocol.CodeNotFound: 404, protocol.CodeUnknownMethod: 404,
		protocol.CodeConflict: 409, protocol.CodeTooLarge: 413, protocol.CodeRateLimited: 429,
		protocol.CodeTimeout: 504, protocol.CodeUnavailable: 503, protocol.CodeInternal: 500,
	} {
		if got := Status(code); got != want {
			t.Errorf("Status(%s) = %d, want %d", code, got, want)
		}
	}
}
