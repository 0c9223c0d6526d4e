package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// rawConn is a bare WebSocket client for protocol-level tests: it sends
// exactly the bytes a test wants and reads frames one by one.
type rawConn struct {
	t  *testing.T
	cc *connCheck // the wire contract check of the server
	nc net.Conn
	r  io.Reader // nc, or the dialer's buffered reader when the server's first bytes came with the handshake
}

func dialRaw(t *testing.T, m *Main, header http.Header, query string, protocols ...string) (*rawConn, *http.Response, error) {
	t.Helper()
	var status int
	var body []byte
	d := ws.Dialer{
		Header: ws.HandshakeHeaderHTTP(header),
		OnStatusError: func(st int, reason []byte, resp io.Reader) {
			status = st
			body, _ = io.ReadAll(io.LimitReader(resp, 4096))
		},
		Timeout:   5 * time.Second,
		Protocols: protocols,
	}
	nc, br, _, err := d.Dial(context.Background(), m.WSURL()+"/ws"+query)
	if err != nil {
		if status != 0 {
			// the body starts after the headers
			if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
				body = body[i+4:]
			}
			if status == 401 || status == 403 || status == 429 || status == 503 {
				// A refused upgrade answers the REST error body (PROTOCOL.md §1).
				wireCheckOf(m).rest("GET", "/ws", status, body)
			}
			return nil, &http.Response{StatusCode: status, Body: io.NopCloser(bytes.NewReader(body))}, err
		}
		return nil, nil, err
	}
	rc := &rawConn{t: t, cc: wireCheckOf(m).conn(false), nc: nc, r: nc}
	if br != nil {
		rc.r = io.MultiReader(br, nc)
	}
	t.Cleanup(func() { nc.Close() })
	return rc, nil, nil
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func (c *rawConn) send(s string) {
	c.t.Helper()
	c.cc.message(true, []byte(s))
	if err := wsutil.WriteClientText(c.nc, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next reads the next protocol frame (answering pings); it returns a close
// code instead when the server closes.
func (c *rawConn) next() (*protocol.Frame, int) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			c.t.Fatalf("read header: %v", err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.r, payload); err != nil {
			c.t.Fatalf("read payload: %v", err)
		}
		switch h.OpCode {
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(payload)
			// Answer like a well-behaved client, so the server can finish closing.
			_ = wsutil.WriteClientMessage(c.nc, ws.OpClose, payload)
			return nil, int(code)
		case ws.OpPing:
			_ = wsutil.WriteClientMessage(c.nc, ws.OpPong, payload)
			continue
		case ws.OpText:
			c.cc.message(false, payload)
			var first []byte
			protocol.Split(payload, func(b []byte) {
				if first == nil {
					first = append([]byte(nil), b...)
				}
			})
			f, err := protocol.Decode(first)
			if err != nil {
				c.t.Fatalf("server sent an invalid frame %s: %v", payload, err)
			}
			return f, 0
		}
	}
}

func (c *rawConn) mustNext() *protocol.Frame {
	c.t.Helper()
	f, code := c.next()
	if f == nil {
		c.t.Fatalf("got close %d, want a frame", code)
	}
	return f
}

func errorBody(t *testing.T, resp *http.Response) protocol.Error {
	t.Helper()
	var body struct {
		Error protocol.Error `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode error body: %v", err)
	}
	return body.Error
}

func TestUpgradeAuthentication(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Web.TrustedProxies = []string{"127.0.0.0/8"}
		c.Web.AllowedOrigins = []string{"https://app.example.com"}
	})
	good := mintToken(t, m, "alice", "phone-1", "phone")
	// A token of this server's key that expired an hour ago (beyond the leeway).
	secret, _, err := auth.LoadOrCreateSecret(m.Config.Data)
	if err != nil {
		t.Fatal(err)
	}
	past, err := auth.NewTokens(auth.TokenConfig{Secret: secret, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	expiredTok, _, err := past.Issue(auth.Claims{UserID: "alice", DeviceID: "p", Kind: "phone"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A token signed by another server's key.
	other := startServer(t, nil)
	foreign := mintToken(t, other, "alice", "phone-1", "phone")

	tests := []struct {
		name       string
		header     http.Header
		query      string
		protocols  []string
		wantStatus int // 0: upgraded
		wantCode   protocol.Code
	}{
		{name: "bearer header", header: bearer(good)},
		{name: "subprotocol", protocols: []string{"junction.v1", "junction.bearer." + good}},
		{name: "query token", query: "?token=" + good},
		{name: "missing credential", wantStatus: 401, wantCode: protocol.CodeUnauthorized},
		{name: "garbage token", header: bearer("not-a-token"), wantStatus: 401, wantCode: protocol.CodeUnauthorized},
		{name: "expired token", header: bearer(expiredTok), wantStatus: 401, wantCode: protocol.CodeUnauthorized},
		{name: "foreign signature", header: bearer(foreign), wantStatus: 401, wantCode: protocol.CodeUnauthorized},
		{name: "allowed origin", header: http.Header{"Authorization": {"Bearer " + good}, "Origin": {"https://app.example.com"}}},
		{name: "same origin", header: http.Header{"Authorization": {"Bearer " + good}, "Origin": {"http://" + m.Addr().String()}}},
		{name: "foreign origin", header: http.Header{"Authorization": {"Bearer " + good}, "Origin": {"https://evil.example"}}, wantStatus: 403, wantCode: protocol.CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, resp, err := dialRaw(t, m, tt.header, tt.query, tt.protocols...)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				f := rc.mustNext()
				if f.Event != protocol.EventWelcome {
					t.Fatalf("first frame: got %+v, want the welcome event", f)
				}
				return
			}
			if resp == nil {
				t.Fatalf("dial: got err %v, want http %d", err, tt.wantStatus)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if e := errorBody(t, resp); e.Code != tt.wantCode {
				t.Errorf("error code: got %q, want %q", e.Code, tt.wantCode)
			}
		})
	}
}

func TestSubprotocolAnswered(t *testing.T) {
	m := startServer(t, nil)
	tok := mintToken(t, m, "alice", "b1", "browser")
	d := ws.Dialer{Protocols: []string{"junction.v1", "junction.bearer." + tok}, Timeout: 5 * time.Second}
	nc, _, hs, err := d.Dial(context.Background(), m.WSURL()+"/ws")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer nc.Close()
	if hs.Protocol != protocol.Subprotocol {
		t.Errorf("subprotocol: got %q, want %q", hs.Protocol, protocol.Subprotocol)
	}
}

func TestLockdown(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Web.TrustedProxies = []string{"127.0.0.0/8"}
	})
	admin := mintToken(t, m, "root", "console", "browser", auth.ScopeAdmin)
	user := mintToken(t, m, "alice", "phone-1", "phone")
	setLockdown := func(tok string, on bool) int {
		body := `{"enabled":false}`
		if on {
			body = `{"enabled":true}`
		}
		req, _ := http.NewRequest("POST", m.URL()+"/api/v1/admin/lockdown", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := setLockdown(user, true); got != http.StatusForbidden {
		t.Fatalf("lockdown by a non-admin: got %d, want 403", got)
	}
	if got := setLockdown(admin, true); got != http.StatusOK {
		t.Fatalf("lockdown by an admin: got %d, want 200", got)
	}
	tests := []struct {
		name       string
		forwarded  string
		wantStatus int
	}{
		{"public address refused", "8.8.8.8", 503},
		{"public ipv6 refused", "2001:db8::1", 503},
		{"lan allowed", "192.168.1.20", 0},
		{"tailscale allowed", "100.100.1.2", 0},
		{"loopback allowed", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bearer(user)
			if tt.forwarded != "" {
				h.Set("X-Forwarded-For", tt.forwarded)
			}
			rc, resp, err := dialRaw(t, m, h, "")
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				rc.mustNext()
				return
			}
			if resp == nil || resp.StatusCode != tt.wantStatus {
				t.Fatalf("got %v %v, want http %d", resp, err, tt.wantStatus)
			}
			if e := errorBody(t, resp); e.Code != protocol.CodeUnavailable {
				t.Errorf("code: got %q, want unavailable", e.Code)
			}
		})
	}
	// Lockdown runs before authentication and applies to REST too.
	req, _ := http.NewRequest("GET", m.URL()+"/api/v1/info", nil)
	req.Header.Set("X-Forwarded-For", "8.8.8.8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("REST in lockdown from a public address: got %d, want 503", resp.StatusCode)
	}
	if got := setLockdown(admin, false); got != http.StatusOK {
		t.Fatalf("lifting lockdown: got %d, want 200", got)
	}
	h := bearer(user)
	h.Set("X-Forwarded-For", "8.8.8.8")
	if _, _, err := dialRaw(t, m, h, ""); err != nil {
		t.Errorf("after lifting lockdown: %v", err)
	}
}

func TestWelcomeAndBuiltins(t *testing.T) {
	m := startServer(t, nil)
	c := dialClient(t, m, "alice", "phone-1", "phone")
	w := c.Welcome()
	if w.Protocol != protocol.Version || w.ConnID == "" || w.NodeID != m.Hub.NodeID() {
		t.Errorf("welcome: got %+v", w)
	}
	if w.Principal.UserID != "alice" || w.Principal.DeviceID != "phone-1" || w.Principal.Kind != "phone" {
		t.Errorf("welcome principal: got %+v", w.Principal)
	}
	if w.HeartbeatMs != 30000 || w.HeartbeatTimeoutMs != 10000 || w.Limits.MaxFrameBytes != protocol.DefaultMaxFrameBytes {
		t.Errorf("welcome limits: got %+v", w)
	}
	ctx := context.Background()
	var pong protocol.PingResult
	if err := c.Call(ctx, "sys.ping", nil, &pong); err != nil || !pong.Pong {
		t.Errorf("sys.ping: got %+v, %v", pong, err)
	}
	var who protocol.WhoamiResult
	if err := c.Call(ctx, "conn.whoami", nil, &who); err != nil || who.ConnID != w.ConnID || who.Principal.UserID != "alice" {
		t.Errorf("conn.whoami: got %+v, %v", who, err)
	}
	var info protocol.InfoResult
	if err := c.Call(ctx, "sys.info", nil, &info); err != nil || info.Protocol != 1 || info.Connections != 1 {
		t.Errorf("sys.info: got %+v, %v", info, err)
	}
	err := c.Call(ctx, "no.such", nil, nil)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeUnknownMethod {
		t.Errorf("unknown method: got %v, want unknown_method", err)
	}
}

func TestBadInputIsContained(t *testing.T) {
	m := startServer(t, nil)
	tok := mintToken(t, m, "alice", "", "browser")
	bystander := dialClient(t, m, "bob", "b-1", "phone")

	tests := []struct {
		name      string
		send      func(rc *rawConn)
		wantCode  protocol.Code // an error response or event with this code
		wantID    string        // the response id, "" for an error event
		wantClose int           // a close code instead
	}{
		{name: "malformed json", send: func(rc *rawConn) { rc.send(`{"type":"req","id":"1"`) }, wantCode: protocol.CodeInvalidFrame},
		{name: "not an object", send: func(rc *rawConn) { rc.send(`[1,2,3]`) }, wantCode: protocol.CodeInvalidFrame},
		{name: "wrong shape keeps id", send: func(rc *rawConn) { rc.send(`{"type":"req","id":"7"}`) }, wantCode: protocol.CodeInvalidFrame, wantID: "7"},
		{name: "unknown type", send: func(rc *rawConn) { rc.send(`{"type":"bogus","id":"8"}`) }, wantCode: protocol.CodeInvalidFrame, wantID: "8"},
		{name: "unknown method", send: func(rc *rawConn) { rc.send(`{"type":"req","id":"9","method":"x.y"}`) }, wantCode: protocol.CodeUnknownMethod, wantID: "9"},
		{name: "bad params type", send: func(rc *rawConn) { rc.send(`{"type":"req","id":"10","method":"auth.refresh","params":{"token":5}}`) }, wantCode: protocol.CodeBadRequest, wantID: "10"},
		{name: "unknown param", send: func(rc *rawConn) { rc.send(`{"type":"req","id":"11","method":"auth.refresh","params":{"tokn":"x"}}`) }, wantCode: protocol.CodeBadRequest, wantID: "11"},
		{name: "unexpected event", send: func(rc *rawConn) { rc.send(`{"type":"event","event":"what.ever"}`) }, wantCode: protocol.CodeBadRequest},
		{name: "invalid utf-8", send: func(rc *rawConn) {
			rc.send("{\"type\":\"req\",\"id\":\"12\",\"method\":\"sys.ping\",\"params\":{\"a\":\"\xff\"}}")
		}, wantCode: protocol.CodeInvalidFrame, wantID: "12"},
		{name: "binary frame", send: func(rc *rawConn) {
			_ = wsutil.WriteClientBinary(rc.nc, []byte{1, 2, 3})
		}, wantClose: protocol.CloseUnsupportedData},
		{name: "frame over the limit", send: func(rc *rawConn) {
			rc.send(`{"type":"req","id":"1","method":"sys.ping","params":{"pad":"` + strings.Repeat("x", protocol.DefaultMaxFrameBytes) + `"}}`)
		}, wantClose: protocol.CloseTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, _, err := dialRaw(t, m, bearer(tok), "")
			if err != nil {
				t.Fatal(err)
			}
			rc.mustNext() // welcome
			tt.send(rc)
			f, code := rc.next()
			if tt.wantClose != 0 {
				if code != tt.wantClose {
					t.Fatalf("got frame %+v / close %d, want close %d", f, code, tt.wantClose)
				}
			} else {
				if f == nil {
					t.Fatalf("got close %d, want an error", code)
				}
				var e *protocol.Error
				switch {
				case f.Type == protocol.TypeResponse:
					e = f.Error
					if f.ID != tt.wantID {
						t.Errorf("response id: got %q, want %q", f.ID, tt.wantID)
					}
				case f.Type == protocol.TypeEvent && f.Event == "error":
					e = &protocol.Error{}
					_ = json.Unmarshal(f.Data, e)
					if tt.wantID != "" {
						t.Errorf("got an error event, want a response with id %q", tt.wantID)
					}
				}
				if e == nil || e.Code != tt.wantCode {
					t.Fatalf("got %+v, want error code %s", f, tt.wantCode)
				}
				// The connection survives a bad frame.
				rc.send(`{"type":"req","id":"after","method":"sys.ping"}`)
				if f := rc.mustNext(); f.ID != "after" || !f.OK {
					t.Errorf("ping after a bad frame: got %+v", f)
				}
			}
			// Other connections are untouched.
			if err := bystander.Call(context.Background(), "sys.ping", nil, nil); err != nil {
				t.Errorf("bystander ping: %v", err)
			}
		})
	}
}

func TestBatchedFrames(t *testing.T) {
	m := startServer(t, nil)
	rc, _, err := dialRaw(t, m, bearer(mintToken(t, m, "alice", "", "browser")), "")
	if err != nil {
		t.Fatal(err)
	}
	rc.mustNext()
	var b strings.Builder
	for i := range 20 {
		b.WriteString(`{"type":"req","id":"` + string(rune('a'+i)) + `","method":"sys.ping"}` + "\n")
	}
	rc.send(b.String())
	seen := map[string]bool{}
	for len(seen) < 20 {
		// a message may carry several responses
		rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		msg, err := wsutil.ReadServerText(struct {
			io.Reader
			io.Writer
		}{rc.r, rc.nc})
		if err != nil {
			t.Fatalf("read: %v (seen %d)", err, len(seen))
		}
		rc.cc.message(false, msg)
		protocol.Split(msg, func(raw []byte) {
			f, err := protocol.Decode(raw)
			if err != nil || !f.OK {
				t.Fatalf("bad response %s: %v", raw, err)
			}
			seen[f.ID] = true
		})
	}
}

func TestDeviceReplacement(t *testing.T) {
	m := startServer(t, nil)
	first := dialClient(t, m, "alice", "phone-1", "phone")
	second := dialClient(t, m, "alice", "phone-1", "phone")
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the older connection of the device was not closed")
	}
	if got := first.CloseCode(); got != protocol.CloseReplaced {
		t.Errorf("close code: got %d, want %d", got, protocol.CloseReplaced)
	}
	if err := second.Call(context.Background(), "sys.ping", nil, nil); err != nil {
		t.Errorf("newer connection: %v", err)
	}
	eventually(t, "one registered connection", func() bool { return m.Hub.Len() == 1 })
	if m.Hub.ConnOfDevice("phone-1") == nil {
		t.Error("the device has no registered connection")
	}
}

func TestLastSeenRecorded(t *testing.T) {
	m := startServer(t, nil)
	c := dialClient(t, m, "alice", "tv-1", "tv")
	before := time.Now()
	c.Close()
	eventually(t, "last seen", func() bool {
		at, ok := m.Hub.LastSeen("tv-1")
		return ok && !at.Before(before.Add(-time.Second))
	})
	eventually(t, "unregistered", func() bool { return m.Hub.Len() == 0 })
}

func TestIdempotentRequests(t *testing.T) {
	var runs atomic.Int32
	release := make(chan struct{})
	m := startServer(t, nil, func(m *Main) {
		m.ConfigureHub = func(h *hub.Hub) {
			h.Register(hub.Method{Name: "test.slow", Scope: auth.ScopeWrite, Mode: hub.Async, Idempotent: true,
				Handler: func(ctx context.Context, call *hub.Call) (any, error) {
					n := runs.Add(1)
					<-release
					return map[string]int32{"run": n}, nil
				}})
		}
	})
	a := dialClient(t, m, "alice", "phone-1", "phone")
	b := dialClient(t, m, "alice", "phone-2", "phone")
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]map[string]int32, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = a.CallIdem(ctx, "test.slow", nil, "key-1", &results[i])
		}()
	}
	eventually(t, "first run started", func() bool { return runs.Load() >= 1 })
	// Release the first only once both duplicates wait for it in flight.
	eventually(t, "the duplicates to wait", func() bool { return idemCount(t, m, "waited") == 2 })
	close(release)
	wg.Wait()
	for i := range 3 {
		if errs[i] != nil || results[i]["run"] != 1 {
			t.Errorf("call %d: got %v, %v; want the first run's result", i, results[i], errs[i])
		}
	}
	if got := runs.Load(); got != 1 {
		t.Errorf("handler runs: got %d, want 1", got)
	}
	if first, waited, replayed := idemCount(t, m, "first"), idemCount(t, m, "waited"), idemCount(t, m, "replayed"); first != 1 || waited != 2 || replayed != 2 {
		t.Errorf("idempotency outcomes: first %v, waited %v, replayed %v; want 1, 2, 2", first, waited, replayed)
	}
	// Another principal (device) with the same key runs its own request.
	var r map[string]int32
	if err := b.CallIdem(ctx, "test.slow", nil, "key-1", &r); err != nil || r["run"] != 2 {
		t.Errorf("other principal: got %v, %v; want run 2", r, err)
	}
}

func TestRateLimit(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.Hub.RequestsPerSecond = 1
		c.Hub.RequestBurst = 5
	})
	c := dialClient(t, m, "alice", "phone-1", "phone")
	var limited *protocol.Error
	for i := 0; i < 20 && limited == nil; i++ {
		err := c.Call(context.Background(), "sys.ping", nil, nil)
		var pe *protocol.Error
		if errors.As(err, &pe) && pe.Code == protocol.CodeRateLimited {
			limited = pe
		}
	}
	if limited == nil {
		t.Fatal("no rate_limited error after 20 rapid requests with burst 5")
	}
	if limited.RetryAfterMs <= 0 || !limited.Retryable {
		t.Errorf("rate_limited error: got %+v, want retryable with retryAfterMs", limited)
	}
}

// TestTokenExpiryAndRefresh runs the server on a clock the test moves
// (Main.Now): tokens live a minute of it, and the hub's expiry check, which
// runs every second, sees the jumps. No outcome depends on how long the
// machine takes.
func TestTokenExpiryAndRefresh(t *testing.T) {
	var skew atomic.Int64 // nanoseconds added to the real time
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	advance := func(d time.Duration) { skew.Add(int64(d)) }
	m := startServer(t, func(c *Config) { c.Hub.TokenExpiryWarning = 10 * time.Second },
		func(m *Main) { m.Now = now })
	const ttl = time.Minute
	short := func(device string) string {
		tok, _, err := m.Tokens.Issue(auth.Claims{UserID: "alice", DeviceID: device, Kind: "phone", Scopes: []string{"read"}}, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	connect := func(device string) (*client.Client, <-chan struct{}) {
		c := client.New(checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", Token: short(device)}))
		warned := make(chan struct{}, 1)
		c.OnEvent(protocol.EventTokenExpiring, func(*protocol.Frame) {
			select {
			case warned <- struct{}{}:
			default:
			}
		})
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, warned
	}
	closedExpired := func(c *client.Client, what string) {
		t.Helper()
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the connection outlived its token", what)
		}
		if got := c.CloseCode(); got != protocol.CloseTokenExpired {
			t.Errorf("%s: close code: got %d, want %d", what, got, protocol.CloseTokenExpired)
		}
	}

	// Without a refresh, the connection is warned (within the 10s
	// warning), then closed with 4001 (past the expiry).
	c, warned := connect("phone-1")
	select {
	case <-warned:
		t.Fatal("token.expiring a minute before the expiry, want it within 10s of it")
	default:
	}
	advance(ttl - 5*time.Second)
	select {
	case <-warned:
	case <-time.After(10 * time.Second):
		t.Fatal("no token.expiring event")
	}
	advance(10 * time.Second)
	closedExpired(c, "without a refresh")

	// With an in-band refresh, it stays open past the first token's expiry:
	// a canary connected after it, whose token expires no sooner, is closed
	// by the same expiry pass.
	rc, _, err := dialRaw(t, m, bearer(short("phone-1")), "")
	if err != nil {
		t.Fatal(err)
	}
	rc.mustNext()
	canary, _ := connect("phone-2") // another device: phone-1 would replace it
	fresh, _ := json.Marshal(map[string]string{"token": mintToken(t, m, "alice", "phone-1", "phone")})
	rc.send(`{"type":"req","id":"r","method":"auth.refresh","params":` + string(fresh) + `}`)
	for {
		f := rc.mustNext()
		if f.ID == "r" {
			if !f.OK {
				t.Fatalf("auth.refresh: %+v", f.Error)
			}
			break
		}
	}
	advance(ttl + 5*time.Second)
	closedExpired(canary, "the canary")
	rc.send(`{"type":"req","id":"p","method":"sys.ping"}`)
	for {
		f, code := rc.next()
		if f == nil {
			t.Fatalf("closed with %d after an in-band refresh", code)
		}
		if f.ID == "p" {
			break
		}
	}
	// A token for another principal is refused.
	otherTok, _ := json.Marshal(map[string]string{"token": mintToken(t, m, "mallory", "phone-1", "phone")})
	rc.send(`{"type":"req","id":"x","method":"auth.refresh","params":` + string(otherTok) + `}`)
	for {
		f := rc.mustNext()
		if f.ID == "x" {
			if f.OK || f.Error.Code != protocol.CodeForbidden {
				t.Errorf("refresh with another user's token: got %+v, want forbidden", f)
			}
			break
		}
	}
}

func TestGracefulShutdown(t *testing.T) {
	started := make(chan struct{})
	m := startServer(t, nil, func(m *Main) {
		m.ConfigureHub = func(h *hub.Hub) {
			h.Register(hub.Method{Name: "test.work", Scope: auth.ScopeRead, Mode: hub.Serial,
				Handler: func(ctx context.Context, call *hub.Call) (any, error) {
					close(started)
					// In flight until the shutdown has begun: the drain
					// must wait for this answer.
					for !h.Draining() {
						time.Sleep(5 * time.Millisecond)
					}
					return map[string]bool{"done": true}, nil
				}})
		}
	})
	rc, _, err := dialRaw(t, m, bearer(mintToken(t, m, "alice", "p", "phone")), "")
	if err != nil {
		t.Fatal(err)
	}
	rc.mustNext()
	rc.send(`{"type":"req","id":"w","method":"test.work"}`)
	<-started
	closed := make(chan error, 1)
	go func() { closed <- m.Close(context.Background()) }()

	var gotShutdown, gotResult bool
	closeCode := 0
	for closeCode == 0 {
		f, code := rc.next()
		if f == nil {
			closeCode = code
			break
		}
		switch {
		case f.Event == protocol.EventShutdown:
			gotShutdown = true
			var s protocol.Shutdown
			_ = json.Unmarshal(f.Data, &s)
			if s.ReconnectAfterMs <= 0 {
				t.Errorf("server.shutdown: got %+v, want a reconnect hint", s)
			}
		case f.ID == "w":
			gotResult = f.OK
		}
	}
	if !gotShutdown || !gotResult {
		t.Errorf("got shutdown event %v, in-flight result %v; want both", gotShutdown, gotResult)
	}
	if closeCode != protocol.CloseRestart {
		t.Errorf("close code: got %d, want %d", closeCode, protocol.CloseRestart)
	}
	if err := <-closed; err != nil {
		t.Errorf("close: %v", err)
	}
	// New connections are refused once closed.
	if _, _, err := dialRaw(t, m, bearer(mintToken(t, m, "alice", "p", "phone")), ""); err == nil {
		t.Error("dial after shutdown succeeded")
	}
}

func TestHTTPRoutes(t *testing.T) {
	m := startServer(t, nil)
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		{"/healthz", 200, `"ok"`},
		{"/readyz", 200, `"ready"`},
		{"/api/v1/info", 200, `"protocol":1`},
		{"/metrics", 200, "junction_connections"},
		{"/metrics", 200, "junction_method_duration_seconds"},
		{"/", 200, "<title>Junction</title>"},
		{"/some/console/route", 200, "<title>Junction</title>"},
		{"/api/v1/nope", 404, `"not_found"`},
		{"/api/v1/admin/lockdown", 401, `"unauthorized"`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			// Generate some method traffic so the histogram has a series.
			c := dialClient(t, m, "alice", "", "browser")
			_ = c.Call(context.Background(), "sys.ping", nil, nil)
			resp, err := http.Get(m.URL() + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body: got %.300s, want it to contain %q", body, tt.wantBody)
			}
		})
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := numGoroutinesSettled()
	m := startServer(t, nil)
	for i := range 20 {
		c := dialClient(t, m, "alice", "d"+string(rune('a'+i)), "phone")
		_ = c.Call(context.Background(), "sys.ping", nil, nil)
		c.Close()
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	checkGoroutines(t, before)
}

func TestHeartbeatClosesSilentClients(t *testing.T) {
	m := startServer(t, func(c *Config) {
		// Short, but generous enough for an answering client on a loaded
		// machine under -race.
		c.Hub.HeartbeatInterval = 200 * time.Millisecond
		c.Hub.HeartbeatTimeout = time.Second
	})
	tok := mintToken(t, m, "alice", "", "browser")
	// A client that answers pings stays connected well past several intervals.
	alive := dialClient(t, m, "alice", "phone-1", "phone")
	// A client that reads nothing and never answers is closed.
	silent, _, err := dialRaw(t, m, bearer(tok), "")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "both clients registered", func() bool { return m.Hub.Len() == 2 })
	eventually(t, "the silent client to be dropped", func() bool { return m.Hub.Len() == 1 })
	if err := alive.Call(context.Background(), "sys.ping", nil, nil); err != nil {
		t.Errorf("answering client: %v", err)
	}
	// The silent client's socket holds the welcome, unanswered pings, then
	// the close frame (read without answering anything).
	silent.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, err := ws.ReadHeader(silent.r)
		if err != nil {
			t.Fatalf("read: %v (want a close frame first)", err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(silent.r, payload); err != nil {
			t.Fatalf("read payload: %v", err)
		}
		if h.OpCode == ws.OpClose {
			if code, _ := ws.ParseCloseFrameData(payload); int(code) != protocol.CloseHeartbeatTimeout {
				t.Errorf("close code: got %d, want %d", code, protocol.CloseHeartbeatTimeout)
			}
			break
		}
	}
}
