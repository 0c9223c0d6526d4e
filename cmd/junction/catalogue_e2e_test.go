package main

import (
	"bufio"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// The hostile catalogue's shared server and its WebSocket frame cases
// (docs/SECURITY.md, issue 10 item 11). One server per transport serves
// every case that needs no configuration of its own; its fixtures are two
// accounts (A, the attacker, and B, the victim) with objects, and tokens of
// every shape a hostile client might present.

// hostileEnv is a transport's shared server and its fixtures.
type hostileEnv struct {
	m      *Main
	secret []byte
	vars   map[string]string // {name} in a case's path, header, body or frame
}

// fill replaces every {name} of e.vars in s.
func (e *hostileEnv) fill(s string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	pairs := make([]string, 0, 2*len(e.vars))
	for k, v := range e.vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// hostileSessionNS is the shared server's session namespace (owner rule,
// history for since-position cases).
var hostileSessionNS = hub.NamespaceConfig{Pattern: "session:{sessionId}", Subscribe: []string{"owner"},
	Publish: []string{"owner & scope=write"}, HistorySize: 10, Owner: "session"}

func newHostileEnv(t *testing.T, transport string) *hostileEnv {
	t.Helper()
	var data string
	m := startServer(t, func(c *Config) {
		data = c.Data
		c.Hub.Transport = transport
		c.Hub.Namespaces = []hub.NamespaceConfig{hostileSessionNS}
		c.Hub.MaxSubscriptions = 4
		c.Web.DisableQueryToken = true
		c.Web.MaxBodyBytes = 2 << 20 // room for a value over the store's 1 MiB
	})
	secret, _, err := auth.LoadOrCreateSecret(data)
	if err != nil {
		t.Fatal(err)
	}
	e := &hostileEnv{m: m, secret: secret, vars: map[string]string{}}
	_, port, _ := net.SplitHostPort(m.Addr().String())
	e.vars["port"] = port
	e.vars["token"] = mintToken(t, m, "u-hostile", "d-hostile", "phone")
	e.vars["read"] = mintToken(t, m, "u-hostile", "d-read", "phone", auth.ScopeRead)

	a, b := login(t, m, newKey(t), "phone"), login(t, m, newKey(t), "phone")
	e.vars["a"], e.vars["a-id"], e.vars["a-device"], e.vars["a-refresh"] = a.AccessToken, a.AccountID, a.DeviceID, a.RefreshToken
	e.vars["b"], e.vars["b-id"], e.vars["b-device"] = b.AccessToken, b.AccountID, b.DeviceID
	e.vars["a-read"] = mintToken(t, m, a.AccountID, a.DeviceID, "phone", auth.ScopeRead)
	e.vars["a-mac"] = mintToken(t, m, a.AccountID, "d-a-mac", "machine")
	e.vars["b-mac"] = mintToken(t, m, b.AccountID, "d-b-mac", "machine")
	create := func(tok, base string, body any) string {
		var obj struct {
			ID string `json:"id"`
		}
		apiJSON(t, m, tok, "POST", base, body, 201, &obj)
		return obj.ID
	}
	e.vars["b-session"] = create(b.AccessToken, "/api/v1/sessions", map[string]any{})
	e.vars["b-machine"] = create(b.AccessToken, "/api/v1/machines", map[string]any{})
	e.vars["b-artifact"] = create(b.AccessToken, "/api/v1/artifacts", map[string]any{})
	e.vars["a-session"] = create(a.AccessToken, "/api/v1/sessions", map[string]any{})
	apiJSON(t, m, a.AccessToken, "PUT", "/api/v1/sessions/"+e.vars["a-session"]+"/metadata",
		map[string]any{"value": b64([]byte("v2")), "expectedVersion": 1}, 200, nil)
	apiJSON(t, m, a.AccessToken, "POST", "/api/v1/channels/session:"+e.vars["a-session"]+"/publish", map[string]any{"data": 1}, 200, nil)

	// Tokens of every hostile shape, for u-hostile.
	now := time.Now()
	claims := func(set map[string]any, drop ...string) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "junction", "sub": "u-hostile", "dev": "d-hostile", "kind": "phone", "scope": []string{"read", "write"},
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "j-hostile"}
		for k, v := range set {
			c[k] = v
		}
		for _, k := range drop {
			delete(c, k)
		}
		return c
	}
	sign := func(method jwt.SigningMethod, key any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, edKey, _ := ed25519.GenerateKey(nil)
	good := sign(jwt.SigningMethodHS256, secret, claims(nil))
	head, rest, _ := strings.Cut(good, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	e.vars["tok-good"] = good
	e.vars["tok-expired"] = sign(jwt.SigningMethodHS256, secret, claims(map[string]any{"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()}))
	e.vars["tok-badsig"] = sign(jwt.SigningMethodHS256, []byte("not the server's secret, 32 bytes"), claims(nil))
	e.vars["tok-none"] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + payload + "."
	e.vars["tok-eddsa"] = sign(jwt.SigningMethodEdDSA, edKey, claims(nil))
	e.vars["tok-hs512"] = sign(jwt.SigningMethodHS512, secret, claims(nil))
	e.vars["tok-nosub"] = sign(jwt.SigningMethodHS256, secret, claims(nil, "sub"))
	e.vars["tok-noexp"] = sign(jwt.SigningMethodHS256, secret, claims(nil, "exp"))
	e.vars["tok-noiss"] = sign(jwt.SigningMethodHS256, secret, claims(nil, "iss"))
	e.vars["tok-iss"] = sign(jwt.SigningMethodHS256, secret, claims(map[string]any{"iss": "someone-else"}))
	e.vars["tok-future"] = sign(jwt.SigningMethodHS256, secret, claims(map[string]any{"iat": now.Add(time.Hour).Unix()}))
	e.vars["tok-scope-string"] = sign(jwt.SigningMethodHS256, secret, claims(map[string]any{"scope": "admin"}))
	// The genuine token's header and signature around a payload naming
	// another user.
	forged, _ := json.Marshal(claims(map[string]any{"sub": "u-victim"}))
	e.vars["tok-sigswap"] = head + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + sig
	e.vars["tok-huge"] = good + strings.Repeat("A", auth.MaxTokenBytes)
	// In-band refresh candidates for u-hostile/d-hostile/phone.
	e.vars["tok-other-kind"] = mintToken(t, m, "u-hostile", "d-hostile", "machine")
	e.vars["tok-other-user"] = mintToken(t, m, "u-victim", "d-hostile", "phone")
	e.vars["big-header"] = strings.Repeat("x", 70<<10) // over the 64 KiB head limit
	e.vars["big-value"] = b64(make([]byte, 1<<20+1))
	e.vars["big-body"] = strings.Repeat(" ", 2<<20+1)
	e.vars["big-topic"] = "public:" + strings.Repeat("t", 512)
	e.vars["huge-id"] = strings.Repeat("i", 129)
	e.vars["huge-idem"] = strings.Repeat("k", 257)
	e.vars["huge-method"] = strings.Repeat("m", 60) + "." + strings.Repeat("m", 70)
	e.vars["deep"] = strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	return e
}

// wsProbe is a WebSocket frame case: a connection as user as (a name of
// hostileEnv.vars; "token" when empty), an optional setup on it, then one
// hostile message (frame, filled, as a text message; or write's bytes)
// and the documented refusal: a close code, or an error answer (a failed
// response or an error event) with code and details.field. Without either
// the documented behaviour is silence: the hostile message is dropped and
// nothing is answered. Unless closed, the connection must serve a request
// afterwards.
type wsProbe struct {
	as    string
	setup func(t *testing.T, e *hostileEnv, c *rawConn)
	frame string
	write func(t *testing.T, e *hostileEnv, c *rawConn)

	close int
	code  protocol.Code
	field string
}

func (e *hostileEnv) probe(t *testing.T, tc hostileCase) {
	p := tc.ws
	as := p.as
	if as == "" {
		as = "token"
	}
	c, resp, err := dialRaw(t, e.m, bearer(e.vars[as]), "")
	if err != nil {
		t.Fatalf("%s: dial: %v (%v)", tc.name, err, resp)
	}
	if f := c.mustNext(); f.Event != "welcome" {
		t.Fatalf("%s: first frame %+v, want welcome", tc.name, f)
	}
	if p.setup != nil {
		p.setup(t, e, c)
	}
	if p.write != nil {
		p.write(t, e, c)
	} else {
		c.send(e.fill(p.frame))
	}
	switch {
	case p.close != 0:
		for range 8 {
			f, code := c.next()
			if f == nil {
				if code != p.close {
					t.Fatalf("%s: closed with %d, want %d", tc.name, code, p.close)
				}
				return
			}
		}
		t.Fatalf("%s: not closed, want close %d", tc.name, p.close)
	case p.code != "":
		for range 8 {
			f, code := c.next()
			if f == nil {
				t.Fatalf("%s: closed with %d, want a %s answer", tc.name, code, p.code)
			}
			var pe *protocol.Error
			switch {
			case f.Type == protocol.TypeResponse && !f.OK:
				pe = f.Error
			case f.Type == protocol.TypeEvent && f.Event == "error":
				pe = new(protocol.Error)
				if err := json.Unmarshal(f.Data, pe); err != nil {
					t.Fatalf("%s: error event %s: %v", tc.name, f.Data, err)
				}
			case f.Type == protocol.TypeResponse:
				t.Fatalf("%s: accepted: %s, want %s", tc.name, f.Result, p.code)
			default:
				continue // an event of the setup, say
			}
			if pe.Code != p.code {
				t.Fatalf("%s: error %+v, want %s", tc.name, pe, p.code)
			}
			if p.field != "" && pe.Details["field"] != p.field {
				t.Fatalf("%s: error %+v, want details.field %q", tc.name, pe, p.field)
			}
			goto alive
		}
		t.Fatalf("%s: no %s answer", tc.name, p.code)
	}
alive:
	c.send(`{"type":"req","id":"alive","method":"sys.ping"}`)
	for range 8 {
		f := c.mustNext()
		if f.Type == protocol.TypeEvent && f.Event != "error" {
			continue
		}
		if f.Type != protocol.TypeResponse || f.ID != "alive" || !f.OK {
			t.Fatalf("%s: after the hostile message, got %+v (error %+v), want the ping's answer and nothing else", tc.name, f, f.Error)
		}
		return
	}
}

// writeFrame writes one WebSocket frame as is (masked when mask).
func writeFrame(t *testing.T, c *rawConn, f ws.Frame, mask bool) {
	t.Helper()
	if mask {
		f.Header.Masked = true
		f.Header.Mask = ws.NewMask()
		ws.Cipher(f.Payload, f.Header.Mask, 0)
	}
	if err := ws.WriteFrame(c.nc, f); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

// frameWriter is a wsProbe.write that sends f (masked unless unmasked).
func frameWriter(op ws.OpCode, fin bool, payload string, unmasked bool, rsv byte) func(*testing.T, *hostileEnv, *rawConn) {
	return func(t *testing.T, e *hostileEnv, c *rawConn) {
		f := ws.NewFrame(op, fin, []byte(e.fill(payload)))
		f.Header.Rsv = rsv
		writeFrame(t, c, f, !unmasked)
	}
}

// req is a request frame.
func req(id, method, params string) string {
	if params == "" {
		return `{"type":"req","id":"` + id + `","method":"` + method + `"}`
	}
	return `{"type":"req","id":"` + id + `","method":"` + method + `","params":` + params + `}`
}

// answered sends a request on c and waits for its successful response.
func answered(t *testing.T, c *rawConn, id, method, params string) *protocol.Frame {
	t.Helper()
	c.send(req(id, method, params))
	for range 8 {
		f := c.mustNext()
		if f.Type == protocol.TypeResponse && f.ID == id {
			if !f.OK {
				t.Fatalf("%s: %+v", method, f.Error)
			}
			return f
		}
	}
	t.Fatalf("%s: no answer", method)
	return nil
}

func init() {
	hostileCases = append(hostileCases, catalogueCases...)
}

var catalogueCases = []hostileCase{
	// Tokens, on the upgrade and on REST.
	{id: "TOK-EXPIRED-WS", name: "an expired token on the upgrade", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-expired}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-EXPIRED-REST", name: "an expired token on REST", method: "GET", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {tok-expired}"}, status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-SIGNATURE-WS", name: "a token signed with another key, on the upgrade", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-badsig}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-SIGNATURE-REST", name: "a token signed with another key, on REST", method: "GET", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {tok-badsig}"}, status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-SIGNATURE-SWAP", name: "a forged payload with a genuine token's signature", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-sigswap}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-ALG-NONE-WS", name: "alg none on the upgrade", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-none}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-ALG-NONE-REST", name: "alg none on REST", method: "GET", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {tok-none}"}, status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-ALG-EDDSA", name: "alg confusion: an EdDSA token to an HS256 server", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-eddsa}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-ALG-HS512", name: "HS512 with the server's own secret", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-hs512}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-NO-SUB", name: "a token without sub", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-nosub}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-NO-EXP", name: "a token without exp", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-noexp}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-NO-ISS", name: "a token without iss", method: "GET", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {tok-noiss}"}, status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-WRONG-ISS", name: "a token of another issuer", method: "GET", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {tok-iss}"}, status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-FUTURE-IAT", name: "a token issued an hour in the future", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-future}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-SCOPE-TYPE", name: `a token with "scope":"admin" (a string, not a list)`, method: "GET", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {tok-scope-string}"}, status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-OVERSIZED", name: "a token over 8 KiB", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {tok-huge}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-REFRESH-AS-ACCESS", name: "a refresh token as the bearer credential", method: "GET", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {a-refresh}"}, status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-ACCESS-AS-REFRESH", name: "an access token to POST /auth/refresh", method: "POST", path: "/api/v1/auth/refresh",
		header: []string{"Content-Type: application/json"}, body: `{"refreshToken":"{a}"}`, status: 400, code: protocol.CodeBadRequest, contains: "refreshToken"},
	{id: "TOK-QUERY-DISABLED", name: "?token= with web.disable_query_token", method: "GET", path: "/ws?token={token}",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ=="), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-BEARER-SUBPROTOCOL-ALONE", name: "a bearer subprotocol without junction.v1", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: junction.bearer.{token}"), status: 401, code: protocol.CodeUnauthorized},
	{id: "TOK-REFRESH-OTHER-KIND", name: "in-band auth.refresh with a token of another kind", ws: &wsProbe{
		frame: req("r", "auth.refresh", `{"token":"{tok-other-kind}"}`), code: protocol.CodeForbidden}},
	{id: "TOK-REFRESH-OTHER-USER", name: "in-band auth.refresh with another user's token", ws: &wsProbe{
		frame: req("r", "auth.refresh", `{"token":"{tok-other-user}"}`), code: protocol.CodeForbidden}},
	{id: "TOK-REFRESH-EXPIRED", name: "in-band auth.refresh with an expired token", ws: &wsProbe{
		frame: req("r", "auth.refresh", `{"token":"{tok-expired}"}`), code: protocol.CodeUnauthorized}},

	// Handshakes.
	{id: "HS-NO-UPGRADE", name: "GET /ws without Upgrade", method: "GET", path: "/ws",
		header: []string{"Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {token}"}, status: 400},
	{id: "HS-UPGRADE-TWO", name: "two Upgrade headers", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Upgrade: h2c", "Authorization: Bearer {token}"), status: 101},
	{id: "HS-UPGRADE-OTHER", name: "Upgrade: h2c", method: "GET", path: "/ws",
		header: []string{"Upgrade: h2c", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {token}"}, status: 400},
	{id: "HS-NO-CONNECTION", name: "Upgrade without Connection: Upgrade", method: "GET", path: "/ws",
		header: []string{"Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {token}"}, status: 400},
	{id: "HS-NO-KEY", name: "a handshake without Sec-WebSocket-Key", method: "GET", path: "/ws",
		header: []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13", "Authorization: Bearer {token}"}, status: 400, contains: "Sec-WebSocket-Key"},
	{id: "HS-NO-VERSION", name: "a handshake without Sec-WebSocket-Version", method: "GET", path: "/ws",
		header: []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {token}"}, status: 426, contains: "Sec-WebSocket-Version"},
	{id: "HS-VERSION-TWO", name: "two Sec-WebSocket-Version headers", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 8", "Authorization: Bearer {token}"), status: 426, contains: "Sec-WebSocket-Version"},
	{id: "HS-POST", name: "POST /ws with handshake headers", method: "POST", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer {token}"), status: 405},
	{id: "HS-HTTP10", name: "a handshake in HTTP/1.0", on: testHandshakeHTTP10},
	{id: "HS-SUBPROTOCOL-FOREIGN", name: "only a foreign subprotocol offered", on: testForeignSubprotocol},
	{id: "HS-HEAD-OVERSIZED", name: "a 70 KiB request head on /ws (over the 64 KiB limit)", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "X-Big: {big-header}", "Authorization: Bearer {token}"), status: 431},
	{id: "HS-HEAD-OVERSIZED-REST", name: "a 70 KiB request head on REST (over the limit)", method: "GET", path: "/api/v1/info",
		header: []string{"X-Big: {big-header}"}, status: 431},
	{id: "ORIGIN-GARBAGE", name: "an Origin that is not a URL", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Origin: ::not a url::", "Authorization: Bearer {token}"),
		status: 403, code: protocol.CodeForbidden, contains: "origin"},
	{id: "ORIGIN-SUFFIX", name: "an Origin that only ends like the server's host", method: "GET", path: "/ws",
		header: wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Origin: http://evil127.0.0.1:{port}", "Authorization: Bearer {token}"),
		status: 403, code: protocol.CodeForbidden, contains: "origin"},

	// Frames.
	{id: "FR-BINARY", name: "a binary message", ws: &wsProbe{write: frameWriter(ws.OpBinary, true, `{"type":"req","id":"1","method":"sys.ping"}`, false, 0), close: protocol.CloseUnsupportedData}},
	{id: "FR-TOO-BIG", name: "a text message over maxFrameBytes", ws: &wsProbe{frame: req("1", "sys.ping", `{"pad":"`+strings.Repeat("x", 70<<10)+`"}`), close: protocol.CloseTooBig}},
	{id: "FR-UNMASKED", name: "an unmasked client frame", ws: &wsProbe{write: frameWriter(ws.OpText, true, req("1", "sys.ping", ""), true, 0), close: protocol.CloseProtocolError}},
	{id: "FR-CONTROL-FRAGMENTED", name: "a fragmented ping", ws: &wsProbe{write: frameWriter(ws.OpPing, false, "x", false, 0), close: protocol.CloseProtocolError}},
	{id: "FR-CONTROL-LONG", name: "a ping with a 126-byte payload", ws: &wsProbe{write: frameWriter(ws.OpPing, true, strings.Repeat("p", 126), false, 0), close: protocol.CloseProtocolError}},
	{id: "FR-RSV", name: "a text frame with RSV1 set (no extension negotiated)", ws: &wsProbe{write: frameWriter(ws.OpText, true, req("1", "sys.ping", ""), false, 4), close: protocol.CloseProtocolError}},
	{id: "FR-OPCODE-RESERVED", name: "a frame with reserved opcode 3", ws: &wsProbe{write: frameWriter(ws.OpCode(3), true, "x", false, 0), close: protocol.CloseProtocolError}},
	{id: "FR-CONTINUATION-FIRST", name: "a continuation frame with no message started", ws: &wsProbe{write: frameWriter(ws.OpContinuation, true, req("1", "sys.ping", ""), false, 0), close: protocol.CloseProtocolError}},
	{id: "FR-UTF8", name: "a text message that is not UTF-8", ws: &wsProbe{write: frameWriter(ws.OpText, true, `{"type":"req","id":"1","method":"sys.ping","params":{"x":"`+"\xff\xfe"+`"}}`, false, 0), code: protocol.CodeInvalidFrame}},
	{id: "FR-JSON", name: "a frame that is not JSON", ws: &wsProbe{frame: `{"type":"req",`, code: protocol.CodeInvalidFrame}},
	{id: "FR-NOT-OBJECT", name: "a JSON array as a frame", ws: &wsProbe{frame: `[1,2,3]`, code: protocol.CodeInvalidFrame}},
	{id: "FR-TRAILING", name: "a frame with trailing data", ws: &wsProbe{frame: req("1", "sys.ping", "") + ` x`, code: protocol.CodeInvalidFrame}},
	{id: "FR-TYPE-WRONG", name: `"type": 5`, ws: &wsProbe{frame: `{"type":5,"id":"1","method":"sys.ping"}`, code: protocol.CodeInvalidFrame}},
	{id: "FR-TYPE-UNKNOWN", name: `"type": "cmd"`, ws: &wsProbe{frame: `{"type":"cmd","id":"1","method":"sys.ping"}`, code: protocol.CodeInvalidFrame}},
	{id: "FR-ID-MISSING", name: "a request without id", ws: &wsProbe{frame: `{"type":"req","method":"sys.ping"}`, code: protocol.CodeInvalidFrame}},
	{id: "FR-ID-NUMBER", name: "a request whose id is a number", ws: &wsProbe{frame: `{"type":"req","id":1,"method":"sys.ping"}`, code: protocol.CodeInvalidFrame}},
	{id: "FR-ID-HUGE", name: "a request id of 129 bytes", ws: &wsProbe{frame: req("{huge-id}", "sys.ping", ""), code: protocol.CodeInvalidFrame}},
	{id: "FR-METHOD-HUGE", name: "a method name of 131 bytes", ws: &wsProbe{frame: req("1", "{huge-method}", ""), code: protocol.CodeInvalidFrame}},
	{id: "FR-METHOD-MISSING", name: "a request without method", ws: &wsProbe{frame: `{"type":"req","id":"1"}`, code: protocol.CodeInvalidFrame}},
	{id: "FR-ID-DUPLICATE", name: "a request reusing the id of one in flight", ws: &wsProbe{as: "a", setup: func(t *testing.T, e *hostileEnv, c *rawConn) {
		// A call to an offline device of the same account waits.
		c.send(req("dup", "rpc.call", `{"target":{"deviceId":"d-a-offline"},"method":"x.y","timeoutMs":5000}`))
	}, frame: req("dup", "sys.ping", ""), code: protocol.CodeInvalidFrame},
		gap: "a request reusing the id of one in flight is served, not refused; two rpc.call with one id: rpc.cancel reaches at most one (the other ends at its timeout)"},
	{id: "FR-NESTED", name: "params nested 100,000 arrays deep", ws: &wsProbe{frame: req("1", "channel.publish", `{"topic":"public:x","data":{deep}}`), close: protocol.CloseTooBig}},
	{id: "FR-NESTED-FIT", name: "params nested 10,000 arrays deep, within maxFrameBytes", ws: &wsProbe{
		frame: req("1", "channel.publish", `{"topic":"public:x","data":`+strings.Repeat("[", 10000)+strings.Repeat("]", 10000)+`}`), code: protocol.CodeInvalidFrame}},
	{id: "FR-IDEM-HUGE", name: "an idem key of 257 bytes", ws: &wsProbe{
		frame: `{"type":"req","id":"1","method":"channel.publish","params":{"topic":"public:x","data":1},"idem":"{huge-idem}"}`, code: protocol.CodeInvalidFrame}},
	{id: "FR-EVENT-UNEXPECTED", name: "an event the server does not expect", ws: &wsProbe{frame: `{"type":"event","event":"welcome","data":{}}`, code: protocol.CodeBadRequest}},
	{id: "FR-RESPONSE-UNSOLICITED", name: "a response to a request the server never sent", ws: &wsProbe{frame: `{"type":"res","id":"s999","ok":true,"result":{}}`}},

	// Methods.
	{id: "M-UNKNOWN", name: "an unknown method", ws: &wsProbe{frame: req("1", "no.such", ""), code: protocol.CodeUnknownMethod}},
	{id: "M-SCOPE", name: "a write method with scope read", ws: &wsProbe{as: "read", frame: req("1", "channel.publish", `{"topic":"public:x","data":1}`), code: protocol.CodeForbidden}},
	{id: "M-SCOPE-DATA", name: "session.create with scope read", ws: &wsProbe{as: "a-read", frame: req("1", "session.create", `{}`), code: protocol.CodeForbidden}},
	{id: "M-PARAMS-TYPE", name: `session.list {"limit":"10"}`, ws: &wsProbe{as: "a", frame: req("1", "session.list", `{"limit":"10"}`), code: protocol.CodeBadRequest, field: "limit"}},
	{id: "M-PARAMS-NOT-OBJECT", name: "params as an array", ws: &wsProbe{as: "a", frame: req("1", "session.list", `[1]`), code: protocol.CodeInvalidFrame}},
	{id: "M-UNKNOWN-MEMBER", name: "an unknown params member", ws: &wsProbe{as: "a", frame: req("1", "session.list", `{"limit":10,"owner":"x"}`), code: protocol.CodeBadRequest, field: "owner"}},
	{id: "M-EXPECTED-VERSION-TYPE", name: `session.update with "expectedVersion":"1"`, ws: &wsProbe{as: "a",
		frame: req("1", "session.update", `{"id":"{a-session}","field":"metadata","value":"AA==","expectedVersion":"1"}`), code: protocol.CodeBadRequest, field: "expectedVersion"}},
	{id: "M-NO-ACCOUNT", name: "session.get with a token whose user has no account", ws: &wsProbe{frame: req("1", "session.get", `{"id":"{b-session}"}`), code: protocol.CodeNotFound}},
	{id: "M-NO-ACCOUNT-LIST", name: "session.list with a token whose user has no account", ws: &wsProbe{frame: req("1", "session.list", `{}`), code: protocol.CodeNotFound}},

	// Channels.
	{id: "CH-TOPIC-SLASH", name: "a topic with /", ws: &wsProbe{frame: req("1", "channel.subscribe", `{"topic":"public:a/b"}`), code: protocol.CodeBadRequest, field: "topic"}},
	{id: "CH-TOPIC-SPACE", name: "a topic with a space", ws: &wsProbe{frame: req("1", "channel.subscribe", `{"topic":"public:a b"}`), code: protocol.CodeBadRequest, field: "topic"}},
	{id: "CH-TOPIC-UNICODE", name: "a topic with a non-ASCII letter", ws: &wsProbe{frame: req("1", "channel.publish", `{"topic":"public:é","data":1}`), code: protocol.CodeBadRequest, field: "topic"}},
	{id: "CH-TOPIC-DOLLAR", name: "a $ topic", ws: &wsProbe{frame: req("1", "channel.subscribe", `{"topic":"$sys:nodes"}`), code: protocol.CodeBadRequest, field: "topic"}},
	{id: "CH-TOPIC-EMPTY", name: "an empty topic", ws: &wsProbe{frame: req("1", "channel.subscribe", `{"topic":""}`), code: protocol.CodeBadRequest, field: "topic"}},
	{id: "CH-TOPIC-LONG", name: "a topic of 519 bytes", ws: &wsProbe{frame: req("1", "channel.subscribe", `{"topic":"{big-topic}"}`), code: protocol.CodeBadRequest, field: "topic"}},
	{id: "CH-NAMESPACE-UNKNOWN", name: "a topic in no namespace", ws: &wsProbe{frame: req("1", "channel.subscribe", `{"topic":"secret:x"}`), code: protocol.CodeNotFound}},
	{id: "CH-USER-OTHER", name: "subscribe to another user's user:{id}", ws: &wsProbe{as: "a", frame: req("1", "channel.subscribe", `{"topic":"user:{b-id}"}`), code: protocol.CodeForbidden}},
	{id: "CH-USER-OTHER-PUBLISH", name: "publish on another user's user:{id}", ws: &wsProbe{as: "a", frame: req("1", "channel.publish", `{"topic":"user:{b-id}","data":1}`), code: protocol.CodeForbidden}},
	{id: "CH-USER-OTHER-HISTORY", name: "history of another user's user:{id}", ws: &wsProbe{as: "a", frame: req("1", "channel.history", `{"topic":"user:{b-id}"}`), code: protocol.CodeForbidden}},
	{id: "CH-DEVICE-OTHER", name: "subscribe to another account's device:{id}", ws: &wsProbe{as: "a", frame: req("1", "channel.subscribe", `{"topic":"device:{b-device}"}`), code: protocol.CodeForbidden}},
	{id: "CH-DEVICE-OTHER-PUBLISH", name: "publish on another account's device:{id}", ws: &wsProbe{as: "a", frame: req("1", "channel.publish", `{"topic":"device:{b-device}","data":1}`), code: protocol.CodeForbidden}},
	{id: "CH-SESSION-OTHER", name: "subscribe to another account's session:{id}", ws: &wsProbe{as: "a", frame: req("1", "channel.subscribe", `{"topic":"session:{b-session}"}`), code: protocol.CodeForbidden}},
	{id: "CH-SESSION-OTHER-PUBLISH", name: "publish on another account's session:{id}", ws: &wsProbe{as: "a", frame: req("1", "channel.publish", `{"topic":"session:{b-session}","data":1}`), code: protocol.CodeForbidden}},
	{id: "CH-PUBLISH-READ", name: "publish on its own user:{id} with scope read", ws: &wsProbe{as: "a-read", frame: req("1", "channel.publish", `{"topic":"user:{a-id}","data":1}`), code: protocol.CodeForbidden}},
	{id: "CH-PUBLISH-NO-DATA", name: "publish without data", ws: &wsProbe{frame: req("1", "channel.publish", `{"topic":"public:x"}`), code: protocol.CodeBadRequest, field: "data"}},
	{id: "CH-HISTORY-OTHER-EPOCH", name: "history since another epoch", ws: &wsProbe{as: "a",
		frame: req("1", "channel.history", `{"topic":"session:{a-session}","since":{"epoch":"not-this-epoch","offset":1}}`), code: protocol.CodeConflict}},
	{id: "CH-SUBSCRIBE-TWICE", name: "a second subscription to the same topic", ws: &wsProbe{setup: func(t *testing.T, e *hostileEnv, c *rawConn) {
		answered(t, c, "s", "channel.subscribe", `{"topic":"public:twice"}`)
	}, frame: req("1", "channel.subscribe", `{"topic":"public:twice"}`), code: protocol.CodeConflict}},
	{id: "CH-SUBSCRIPTIONS-MAX", name: "a fifth subscription with hub.max_subscriptions 4", ws: &wsProbe{setup: func(t *testing.T, e *hostileEnv, c *rawConn) {
		for i := range 4 {
			answered(t, c, "s"+strconv.Itoa(i), "channel.subscribe", `{"topic":"public:many-`+strconv.Itoa(i)+`"}`)
		}
	}, frame: req("1", "channel.subscribe", `{"topic":"public:many-x"}`), code: protocol.CodeTooLarge}},
	{id: "CH-REST-PUBLISH-OTHER", name: "REST publish on another user's user:{id}", method: "POST", path: "/api/v1/channels/user:{b-id}/publish",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"data":1}`, status: 403, code: protocol.CodeForbidden},
	{id: "CH-REST-HISTORY-OTHER", name: "REST history of another account's session:{id}", method: "GET", path: "/api/v1/channels/session:{b-session}/history",
		header: []string{"Authorization: Bearer {a}"}, status: 403, code: protocol.CodeForbidden},
	{id: "CH-REST-TOPIC-DOLLAR", name: "REST publish on a $ topic", method: "POST", path: "/api/v1/channels/$sys:x/publish",
		header: []string{"Authorization: Bearer {token}", "Content-Type: application/json"}, body: `{"data":1}`, status: 400, code: protocol.CodeBadRequest, contains: "topic"},

	// RPC.
	{id: "RPC-OTHER-ACCOUNT", name: "call an online device of another account", on: testRPCOtherAccount},
	{id: "RPC-OTHER-ACCOUNT-OFFLINE", name: "call an offline device of another account", ws: &wsProbe{as: "a",
		frame: req("1", "rpc.call", `{"target":{"deviceId":"{b-device}"},"method":"files.read"}`), code: protocol.CodeForbidden}},
	{id: "RPC-UNREGISTERED", name: "call a method the online target did not register", on: testRPCUnregistered},
	{id: "RPC-REGISTER-SCOPE", name: "rpc.register by a phone without rpc.serve", ws: &wsProbe{as: "a", frame: req("1", "rpc.register", `{"methods":["files.read"]}`), code: protocol.CodeForbidden}},
	{id: "RPC-REGISTER-NAME", name: "rpc.register of a bad method name", ws: &wsProbe{as: "a-mac", frame: req("1", "rpc.register", `{"methods":["files.read","../x"]}`), code: protocol.CodeBadRequest, field: "methods[1]"}},
	{id: "RPC-CANCEL-NOT-YOURS", name: "rpc.cancel of an id not in flight on this connection", ws: &wsProbe{as: "a", frame: req("1", "rpc.cancel", `{"id":"7"}`), code: protocol.CodeNotFound}},
	{id: "RPC-PROGRESS-NOT-YOURS", name: "rpc.progress for a call not relayed to this connection", ws: &wsProbe{as: "a-mac",
		frame: `{"type":"event","event":"rpc.progress","data":{"id":"s1","data":{"line":"forged"}}}`}},
	{id: "RPC-TARGET-MISSING", name: "rpc.call without target", ws: &wsProbe{as: "a", frame: req("1", "rpc.call", `{"method":"files.read"}`), code: protocol.CodeBadRequest, field: "target"}},
	{id: "RPC-TIMEOUT-NEGATIVE", name: "rpc.call with timeoutMs -1", ws: &wsProbe{as: "a",
		frame: req("1", "rpc.call", `{"target":{"deviceId":"d-a-mac"},"method":"files.read","timeoutMs":-1}`), code: protocol.CodeBadRequest, field: "timeoutMs"}},

	// REST data.
	{id: "D-SESSION-OTHER", name: "GET another account's session by id", method: "GET", path: "/api/v1/sessions/{b-session}",
		header: []string{"Authorization: Bearer {a}"}, status: 404, code: protocol.CodeNotFound},
	{id: "D-MACHINE-OTHER", name: "GET another account's machine by id", method: "GET", path: "/api/v1/machines/{b-machine}",
		header: []string{"Authorization: Bearer {a}"}, status: 404, code: protocol.CodeNotFound},
	{id: "D-ARTIFACT-OTHER", name: "GET another account's artifact by id", method: "GET", path: "/api/v1/artifacts/{b-artifact}",
		header: []string{"Authorization: Bearer {a}"}, status: 404, code: protocol.CodeNotFound},
	{id: "D-SESSION-OTHER-UPDATE", name: "PUT another account's session field", method: "PUT", path: "/api/v1/sessions/{b-session}/metadata",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"value":"AA==","expectedVersion":1}`, status: 404, code: protocol.CodeNotFound},
	{id: "D-SESSION-OTHER-DELETE", name: "DELETE another account's session", method: "DELETE", path: "/api/v1/sessions/{b-session}",
		header: []string{"Authorization: Bearer {a}"}, status: 404, code: protocol.CodeNotFound},
	{id: "D-MESSAGES-OTHER", name: "append messages to another account's session", method: "POST", path: "/api/v1/sessions/{b-session}/messages",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"messages":[{"body":"AA=="}]}`, status: 404, code: protocol.CodeNotFound},
	{id: "D-MESSAGES-OTHER-LIST", name: "list another account's session's messages", method: "GET", path: "/api/v1/sessions/{b-session}/messages",
		header: []string{"Authorization: Bearer {a}"}, status: 404, code: protocol.CodeNotFound},
	{id: "D-DEVICE-OTHER", name: "GET another account's device", method: "GET", path: "/api/v1/devices/{b-device}",
		header: []string{"Authorization: Bearer {a}"}, status: 404, code: protocol.CodeNotFound},
	{id: "D-DEVICE-OTHER-REVOKE", name: "DELETE (revoke) another account's device", method: "DELETE", path: "/api/v1/devices/{b-device}",
		header: []string{"Authorization: Bearer {a}"}, status: 404, code: protocol.CodeNotFound},
	{id: "D-WS-SESSION-OTHER", name: "session.get of another account's session over the WebSocket", ws: &wsProbe{as: "a",
		frame: req("1", "session.get", `{"id":"{b-session}"}`), code: protocol.CodeNotFound}},
	{id: "D-STALE-VERSION", name: "an update with a stale expectedVersion", method: "PUT", path: "/api/v1/sessions/{a-session}/metadata",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"value":"AA==","expectedVersion":1}`, status: 409, code: protocol.CodeConflict},
	{id: "D-VALUE-TOO-LARGE", name: "a value over the store's 1 MiB", method: "PUT", path: "/api/v1/sessions/{a-session}/agent-state",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"value":"{big-value}","expectedVersion":1}`, status: 413, code: protocol.CodeTooLarge},
	{id: "D-BODY-TOO-LARGE", name: "a body over web.max_body_bytes", method: "POST", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{}{big-body}`, status: 413, code: protocol.CodeTooLarge},
	{id: "D-JSON", name: "a body that is not JSON", method: "POST", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"metadata":`, status: 400, code: protocol.CodeBadRequest},
	{id: "D-TRAILING", name: "a body with trailing data", method: "POST", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{} {}`, status: 400, code: protocol.CodeBadRequest},
	{id: "D-UNKNOWN-MEMBER", name: "a body with an unknown member", method: "POST", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"accountId":"{b-id}"}`, status: 400, code: protocol.CodeBadRequest, contains: "accountId"},
	{id: "D-WRONG-TYPE", name: "expectedVersion as a string", method: "PUT", path: "/api/v1/sessions/{a-session}/metadata",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"value":"AA==","expectedVersion":"2"}`, status: 400, code: protocol.CodeBadRequest, contains: "expectedVersion"},
	{id: "D-ID-MISMATCH", name: "a body id other than the path's", method: "PUT", path: "/api/v1/sessions/{a-session}/metadata",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"id":"{b-session}","value":"AA==","expectedVersion":2}`, status: 400, code: protocol.CodeBadRequest, contains: "id"},
	{id: "D-CURSOR", name: "a cursor that is not one", method: "GET", path: "/api/v1/sessions?cursor=!!not-a-cursor!!",
		header: []string{"Authorization: Bearer {a}"}, status: 400, code: protocol.CodeBadRequest, contains: "cursor"},
	{id: "D-BASE64", name: "a value that is not base64", method: "PUT", path: "/api/v1/sessions/{a-session}/metadata",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"value":"not base64!","expectedVersion":2}`, status: 400, code: protocol.CodeBadRequest, contains: "value"},
	{id: "D-BASE64-URL", name: "a value in base64url instead of standard base64", method: "PUT", path: "/api/v1/sessions/{a-session}/metadata",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"value":"-_-_","expectedVersion":2}`, status: 400, code: protocol.CodeBadRequest, contains: "value"},
	{id: "D-MESSAGES-EMPTY", name: "a message batch of 0", method: "POST", path: "/api/v1/sessions/{a-session}/messages",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"messages":[]}`, status: 400, code: protocol.CodeBadRequest, contains: "messages"},
	{id: "D-MESSAGES-101", name: "a message batch of 101", method: "POST", path: "/api/v1/sessions/{a-session}/messages",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json"}, body: `{"messages":[` + strings.Repeat(`{"body":"AA=="},`, 100) + `{"body":"AA=="}]}`, status: 400, code: protocol.CodeBadRequest, contains: "messages"},
	{id: "D-NO-ACCOUNT", name: "GET a session with a token whose user has no account", method: "GET", path: "/api/v1/sessions/{b-session}",
		header: []string{"Authorization: Bearer {token}"}, status: 404, code: protocol.CodeNotFound, contains: "no_account"},
	{id: "D-NO-ACCOUNT-LIST", name: "list sessions with a token whose user has no account", method: "GET", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {token}"}, status: 404, code: protocol.CodeNotFound, contains: "no_account"},
	{id: "D-IDEM-HUGE", name: "an Idempotency-Key of 201 bytes", method: "POST", path: "/api/v1/sessions",
		header: []string{"Authorization: Bearer {a}", "Content-Type: application/json", "Idempotency-Key: " + strings.Repeat("k", 201)}, body: `{}`, status: 400, code: protocol.CodeBadRequest},

	// Key login.
	{id: "A-LOGIN-NONCE-UNKNOWN", name: "a login with a nonce never issued", on: testLoginUnknownNonce},
	{id: "A-REFRESH-GARBAGE", name: "a refresh token that is not one", method: "POST", path: "/api/v1/auth/refresh",
		header: []string{"Content-Type: application/json"}, body: `{"refreshToken":"garbage"}`, status: 401, code: protocol.CodeUnauthorized},
	{id: "A-CHALLENGE-KEY-SIZE", name: "a challenge for a 31-byte public key", method: "POST", path: "/api/v1/auth/challenge",
		header: []string{"Content-Type: application/json"}, body: `{"publicKey":"` + b64(make([]byte, 31)) + `"}`, status: 400, code: protocol.CodeBadRequest, contains: "publicKey"},

	// Floods bounded in count.
	{id: "FL-REQUESTS", name: "50 requests in one message over the request burst", run: testRequestFlood},
}

// testHandshakeHTTP10: a handshake in HTTP/1.0 is not upgraded (RFC 6455
// §4.1 requires HTTP/1.1).
func testHandshakeHTTP10(t *testing.T, e *hostileEnv) {
	nc, err := net.Dial("tcp", e.m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /ws HTTP/1.0\r\nHost: " + e.m.Addr().String() + "\r\n" + strings.Join(wsHeader("dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer "+e.vars["token"]), "\r\n") + "\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := nc.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.") || strings.Contains(string(buf[:n]), " 101 ") {
		t.Fatalf("HTTP/1.0 handshake: %q, want a refusal", buf[:n])
	}
	if !strings.Contains(string(buf[:n]), " 400 ") {
		t.Fatalf("HTTP/1.0 handshake: %q, want 400", buf[:n])
	}
}

// testForeignSubprotocol: a client offering only a subprotocol the server
// does not speak is upgraded without one (RFC 6455 §4.2.2), never with the
// offered one; with a bearer entry but no junction.v1 the credential is not
// honoured (TOK-BEARER-SUBPROTOCOL-ALONE).
func testForeignSubprotocol(t *testing.T, e *hostileEnv) {
	nc, err := net.Dial("tcp", e.m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /ws HTTP/1.1\r\nHost: " + e.m.Addr().String() + "\r\n" + strings.Join(wsHeader("dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Protocol: mqtt", "Authorization: Bearer "+e.vars["token"]), "\r\n") + "\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Protocol") != "" {
		t.Fatalf("offering only mqtt: %d with Sec-WebSocket-Protocol %q, want 101 without one", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Protocol"))
	}
}

// testRPCUnregistered: the target is online and serves files.read; a call
// of files.write answers unknown_method and the target is not bothered.
func testRPCUnregistered(t *testing.T, e *hostileEnv) {
	mac, _, err := dialRaw(t, e.m, bearer(e.vars["a-mac"]), "")
	if err != nil {
		t.Fatal(err)
	}
	mac.mustNext()
	answered(t, mac, "r", "rpc.register", `{"methods":["files.read"]}`)
	e.probe(t, hostileCase{name: "call an unregistered method", ws: &wsProbe{as: "a",
		frame: req("1", "rpc.call", `{"target":{"deviceId":"d-a-mac"},"method":"files.write","timeoutMs":5000}`), code: protocol.CodeUnknownMethod}})
	// Not bothered: the next thing the target sees is its own ping's answer.
	mac.send(req("p", "sys.ping", ""))
	if f := mac.mustNext(); f.Type != protocol.TypeResponse || f.ID != "p" {
		t.Fatalf("target got %+v, want only its ping's answer", f)
	}
}

// testRPCOtherAccount: B's machine is online serving files.read; A's call
// of it answers forbidden and B is not bothered.
func testRPCOtherAccount(t *testing.T, e *hostileEnv) {
	mac, _, err := dialRaw(t, e.m, bearer(e.vars["b-mac"]), "")
	if err != nil {
		t.Fatal(err)
	}
	mac.mustNext()
	answered(t, mac, "r", "rpc.register", `{"methods":["files.read"]}`)
	e.probe(t, hostileCase{name: "call another account's device", ws: &wsProbe{as: "a",
		frame: req("1", "rpc.call", `{"target":{"deviceId":"d-b-mac"},"method":"files.read","timeoutMs":5000}`), code: protocol.CodeForbidden}})
	mac.send(req("p", "sys.ping", ""))
	if f := mac.mustNext(); f.Type != protocol.TypeResponse || f.ID != "p" {
		t.Fatalf("target got %+v, want only its ping's answer", f)
	}
}

// testLoginUnknownNonce: a correctly signed login over a nonce the server
// never issued is 401.
func testLoginUnknownNonce(t *testing.T, e *hostileEnv) {
	key := newKey(t)
	nonce := make([]byte, 32)
	status, raw := apiCall(t, e.m, "", "POST", "/api/v1/auth/login", map[string]any{
		"publicKey": b64(key.Public().(ed25519.PublicKey)), "nonce": b64(nonce), "signature": b64(ed25519.Sign(key, nonce)),
	})
	if status != 401 || decodeAPIError(t, raw).Error.Code != string(protocol.CodeUnauthorized) {
		t.Fatalf("login over an unissued nonce: %d %s, want 401 unauthorized", status, raw)
	}
}

// testRequestFlood: with hub.requests_per_second 1 and hub.request_burst
// 10, 50 pings in one message get 10 answers and 40 rate_limited ones with
// retryAfterMs, and the connection stays open.
func testRequestFlood(t *testing.T, transport string) {
	m := startServer(t, func(c *Config) {
		c.Hub.Transport = transport
		c.Hub.RequestsPerSecond, c.Hub.RequestBurst = 1, 10
	})
	c, _, err := dialRaw(t, m, bearer(mintToken(t, m, "u-flood", "d-flood", "phone")), "")
	if err != nil {
		t.Fatal(err)
	}
	c.mustNext()
	var b strings.Builder
	for i := range 50 {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(req("f"+strconv.Itoa(i), "sys.ping", ""))
	}
	c.send(b.String())
	ok, limited := 0, 0
	for ok+limited < 50 {
		f := c.mustNext()
		switch {
		case f.Type == protocol.TypeResponse && f.OK:
			ok++
		case f.Type == protocol.TypeResponse && f.Error != nil && f.Error.Code == protocol.CodeRateLimited && f.Error.RetryAfterMs > 0:
			limited++
		default:
			t.Fatalf("flood: got %+v (error %+v)", f, f.Error)
		}
	}
	if ok > 11 || limited < 39 {
		t.Fatalf("flood of 50 with burst 10: %d answered, %d rate_limited", ok, limited)
	}
}
