package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/appsdk"
	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/apps"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// Issue 13 item 9 end to end: app backends built on the Go apps SDK
// (appsdk), served on loopback, against the real server and a simulated
// device: start → webhook → the SDK connects → hello; the handler's
// refusals; reattach after the SDK's connection is cut; an app-server
// restart that pulls its sessions and reattaches; stop.

// sdkHost serves the app's webhook URL and hands each request to the
// current backend instance: a restarted backend keeps its URL.
type sdkHost struct {
	srv *httptest.Server
	cur atomic.Pointer[appsdk.App]
}

func newSDKHost(t *testing.T) *sdkHost {
	h := &sdkHost{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := h.cur.Load(); a != nil && r.URL.Path == "/junction" {
			a.ServeHTTP(w, r)
			return
		}
		http.Error(w, "no backend running", http.StatusServiceUnavailable)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// sdkApp is one instance of an app backend on the SDK.
type sdkApp struct {
	app      *appsdk.App
	sessions chan *appsdk.Session
	stops    chan protocol.AppSessionStopHook
}

// registerSDKApp registers a foreground app whose webhooks go to h and
// installs it for u1 granting read.
func registerSDKApp(t *testing.T, m *Main, h *sdkHost, id string) protocol.AppCreated {
	t.Helper()
	created := createApp(t, m, map[string]any{"id": id, "name": id, "scopes": []string{"read", "write"},
		"webhookUrl": h.srv.URL + "/junction", "capabilities": []string{"display"}, "internal": true})
	apiJSON(t, m, mintToken(t, m, "u1", "u1-phone", "phone"), "PUT", "/api/v1/apps/"+id+"/install", map[string]any{"scopes": []string{"read"}}, 200, nil)
	return created
}

// startSDKApp starts a backend instance for created with store and makes
// it h's current one; it is closed at the end of the test.
func startSDKApp(t *testing.T, m *Main, h *sdkHost, created protocol.AppCreated, store appsdk.ResumeStore) *sdkApp {
	t.Helper()
	secret, err := webhook.ParseSecret(created.WebhookSecret.Secret)
	if err != nil {
		t.Fatal(err)
	}
	b := &sdkApp{sessions: make(chan *appsdk.Session, 8), stops: make(chan protocol.AppSessionStopHook, 8)}
	b.app, err = appsdk.New(appsdk.Options{
		AppID: created.App.ID, APIKey: created.Key.Key, WebhookSecrets: []webhook.Secret{secret},
		URL: m.URL(), Resume: store,
		Client:    checkedOptions(m, client.Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}),
		OnSession: func(_ context.Context, s *appsdk.Session) { b.sessions <- s },
		OnStop:    func(_ context.Context, st protocol.AppSessionStopHook) { b.stops <- st },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.app.Close() })
	h.cur.Store(b.app)
	return b
}

func (b *sdkApp) nextSession(t *testing.T) *appsdk.Session {
	t.Helper()
	select {
	case s := <-b.sessions:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the SDK connected no session")
	}
	return nil
}

func waitDone(t *testing.T, s *appsdk.Session) error {
	t.Helper()
	select {
	case <-s.Done():
		return s.Err()
	case <-time.After(10 * time.Second):
		t.Fatalf("session %s: the handle did not end", s.ID())
	}
	return nil
}

// cutProxy forwards TCP connections to a target set after it listens (the
// server's address is known only once it runs, and its apps.public_url
// must name the proxy before), and cuts them all on demand.
type cutProxy struct {
	ln     net.Listener
	target atomic.Pointer[string]
	mu     sync.Mutex
	conns  []net.Conn // guarded by mu: both ends of every live connection
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			target := p.target.Load()
			if target == nil {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", *target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(out, in); out.Close() })
			p.wg.Go(func() { _, _ = io.Copy(in, out); in.Close() })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) url() string { return "ws://" + p.ln.Addr().String() + "/ws" }

// cut closes every proxied connection, both ends, without a close frame.
func (p *cutProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	n := len(p.conns) / 2
	p.conns = nil
	return n
}

// TestAppSDKSession: a device starts the app → signed session.start → the
// SDK's handler answers 202 and connects with key + ticket → hello, its
// resume token saved; the handler refuses a bad signature and a stale
// timestamp; the SDK's connection is cut and it reattaches with the resume
// token (transport_down, then running; the old token is superseded); the
// device stops the session: app.stopped and 1000 end the handle with the
// reason, session.stop reaches OnStop, the token is forgotten. Last, the
// webhook secret is rotated without telling the backend: the handler
// refuses Junction's own signature and the next start fails at stage
// webhook.
func TestAppSDKSession(t *testing.T) {
	proxy := newCutProxy(t)
	m, _, _ := appsServerWith(t, func(c *Config) {
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		c.Apps.ConnectTimeout = 10 * time.Second
		c.Apps.PublicURL = proxy.url()
	})
	addr := strings.TrimPrefix(m.URL(), "http://")
	proxy.target.Store(&addr)
	host := newSDKHost(t)
	const id = "com.example.captions"
	created := registerSDKApp(t, m, host, id)
	store := appsdk.NewMemoryResumeStore()
	b := startSDKApp(t, m, host, created, store)
	welcomes := make(chan string, 4) // the session id of each connection's welcome, through the App's typed handler
	appsdk.OnEventData(b.app, protocol.EventWelcome, func(s *appsdk.Session, w protocol.Welcome) {
		if w.Principal.AppID == id {
			welcomes <- s.ID()
		}
	})
	nextWelcome := func() string {
		t.Helper()
		select {
		case sid := <-welcomes:
			return sid
		case <-time.After(10 * time.Second):
			t.Fatal("no welcome reached the App's event handler")
		}
		return ""
	}
	dev := dialDevice(t, m, "u1", "u1-glasses")

	st := dev.start(t, id, "display", "microphone")
	s := b.nextSession(t)
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	h := s.Hello()
	if s.ID() != st.Session.ID || h.SessionID != s.ID() || h.AppID != id || strings.Join(h.Scopes, ",") != "read" ||
		strings.Join(h.Capabilities, ",") != "display,microphone" || h.Device.Kind != "glasses" || h.Priority != "foreground" ||
		!strings.HasPrefix(h.UserID, "pu_") || s.UserID() != h.UserID || !strings.HasPrefix(h.ResumeToken, "jr_") {
		t.Fatalf("session %s hello %+v", s.ID(), h)
	}
	if rec, ok, _ := store.Load(context.Background(), s.ID()); !ok || rec.Token != h.ResumeToken || rec.URL != proxy.url() {
		t.Fatalf("stored resume record %+v (%v), want the hello's token and the proxy's URL", rec, ok)
	}
	if sid := nextWelcome(); sid != s.ID() {
		t.Fatalf("welcome dispatched for session %q, want %q", sid, s.ID())
	}
	if app := b.app.Session(s.ID()); app != s {
		t.Fatal("App.Session does not return the live handle")
	}
	pong, err := appsdk.Call[protocol.PingResult](context.Background(), s, "sys.ping", nil)
	if err != nil || !pong.Pong {
		t.Fatalf("sys.ping through the session: %+v, %v", pong, err)
	}

	// The handler, as deployed, refuses what does not verify.
	other, _ := webhook.NewSecret()
	secret, _ := webhook.ParseSecret(created.WebhookSecret.Secret)
	body := []byte(`{"type":"session.stop","sessionId":"` + s.ID() + `","appId":"` + id + `","reason":"admin"}`)
	for _, tc := range []struct {
		name   string
		secret webhook.Secret
		at     time.Time
	}{{"another secret", other, time.Now()}, {"a stale timestamp", secret, time.Now().Add(-10 * time.Minute)}} {
		req, _ := http.NewRequest(http.MethodPost, host.srv.URL+"/junction", bytes.NewReader(body))
		if err := webhook.SignHeaders(req.Header, webhook.NewID(), tc.at, body, tc.secret); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %d, want 401", tc.name, resp.StatusCode)
		}
	}
	select {
	case <-s.Done():
		t.Fatalf("a refused session.stop ended the session: %v", s.Err())
	default:
	}

	// The SDK's connection is lost: it reattaches with its resume token.
	if n := proxy.cut(); n != 1 {
		t.Fatalf("cut %d connections, want the app's one", n)
	}
	dev.wait(t, s.ID(), protocol.AppStateTransportDown)
	dev.wait(t, s.ID(), protocol.AppStateRunning)
	eventually(t, "the SDK said hello again", func() bool { return s.Reattaches() == 1 })
	if sid := nextWelcome(); sid != s.ID() {
		t.Fatalf("the reattached connection's welcome went to %q", sid)
	}
	h2 := s.Hello()
	if h2.ResumeToken == h.ResumeToken || h2.SessionID != s.ID() {
		t.Fatalf("hello after the reattach %+v, want a new resume token", h2)
	}
	if rec, _, _ := store.Load(context.Background(), s.ID()); rec.Token != h2.ResumeToken {
		t.Fatalf("stored token %q, want the new one", rec.Token)
	}
	if code, e := wsHandshake(t, m, created.Key.Key, apps.ResumeHeader, h.ResumeToken); code != 401 || e.Error.Details["reason"] != "resume_invalid" {
		t.Fatalf("the superseded token: %d %+v, want 401 resume_invalid", code, e.Error)
	}
	if _, err := appsdk.Call[protocol.PingResult](context.Background(), s, "sys.ping", nil); err != nil {
		t.Fatalf("sys.ping after the reattach: %v", err)
	}

	// The device stops it.
	if err := dev.c.Call(context.Background(), "apps.stopSession", protocol.AppSessionRef{AppID: id, SessionID: s.ID()}, nil); err != nil {
		t.Fatal(err)
	}
	var stopped *appsdk.StoppedError
	if err := waitDone(t, s); !errors.As(err, &stopped) || stopped.Reason != protocol.StopUserStopped {
		t.Fatalf("handle ended with %v, want stopped: user_stopped", err)
	}
	select {
	case hook := <-b.stops:
		if hook.SessionID != s.ID() || hook.Reason != protocol.StopUserStopped || hook.UserID != h.UserID {
			t.Fatalf("session.stop %+v", hook)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnStop saw no session.stop")
	}
	if _, ok, _ := store.Load(context.Background(), s.ID()); ok {
		t.Fatal("the stopped session's resume token is still stored")
	}
	if b.app.Session(s.ID()) != nil {
		t.Fatal("the stopped session is still listed")
	}
	var pe *protocol.Error
	if err := s.Call(context.Background(), "sys.ping", nil, nil); !errors.As(err, &stopped) {
		t.Fatalf("a call on the stopped session: %v (%v), want its StoppedError", err, errors.As(err, &pe))
	}

	// Junction signs with a secret the backend does not hold: refused, and
	// the start fails at stage webhook.
	apiJSON(t, m, adminTok(t, m), "POST", "/api/v1/admin/apps/"+id+"/webhook-secret", map[string]any{"overlapMs": 0}, 201, nil)
	st2 := dev.start(t, id, "display")
	if failed := dev.wait(t, st2.Session.ID, protocol.AppStateStopped); failed.Stage != protocol.StageWebhook {
		t.Fatalf("start signed with an unknown secret: %+v, want stage webhook", failed)
	}
	var log protocol.AppDeliveryList
	apiJSON(t, m, created.Key.Key, "GET", "/api/v1/apps/"+id+"/deliveries", nil, 200, &log)
	if len(log.Deliveries) == 0 || log.Deliveries[0].Status != http.StatusUnauthorized {
		t.Fatalf("deliveries %+v, want the refused attempt first", log.Deliveries)
	}
}

// TestAppSDKRestart: the app's server restarts. A new instance sharing the
// resume tokens' storage pulls the app's sessions and reattaches: first
// while the old instance still holds the connection (a crash Junction has
// not noticed: the old handle ends with 4009), then after a clean
// shutdown (the session went transport_down). The app stops its own
// session (app_error); a later instance finds nothing to reattach.
func TestAppSDKRestart(t *testing.T) {
	m, _, _ := appsServerWith(t, func(c *Config) {
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		c.Apps.ConnectTimeout = 10 * time.Second
	})
	host := newSDKHost(t)
	const id = "com.example.restart"
	created := registerSDKApp(t, m, host, id)
	store, err := appsdk.NewDirResumeStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first := startSDKApp(t, m, host, created, store)
	dev := dialDevice(t, m, "u1", "u1-glasses")
	st := dev.start(t, id, "display")
	s1 := first.nextSession(t)
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A second instance takes over while the first still holds it.
	second := startSDKApp(t, m, host, created, store)
	got, err := second.app.Reattach(ctx)
	if err != nil || len(got) != 1 || got[0].ID() != st.Session.ID {
		t.Fatalf("Reattach: %v, %v; want the running session", got, err)
	}
	if err := waitDone(t, s1); !errors.Is(err, appsdk.ErrSuperseded) {
		t.Fatalf("the first instance's handle ended with %v, want ErrSuperseded", err)
	}
	s2 := second.nextSession(t)
	if s2 != got[0] || s2.Hello().ResumeToken == s1.Hello().ResumeToken {
		t.Fatalf("second instance's session %p (hello %+v), want the reattached one with a new token", s2, s2.Hello())
	}

	// A clean shutdown detaches: the session waits transport_down.
	if err := second.app.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Err(); !errors.Is(err, appsdk.ErrDetached) {
		t.Fatalf("after Close: %v, want ErrDetached", err)
	}
	dev.wait(t, st.Session.ID, protocol.AppStateTransportDown)
	sessions, err := first.app.Sessions(ctx, protocol.AppStateTransportDown)
	if err != nil || len(sessions) != 1 || sessions[0].ID != st.Session.ID {
		t.Fatalf("Sessions(transport_down): %+v, %v", sessions, err)
	}
	// A store that kept only the token reattaches to Options.URL's /ws.
	rec, ok, err := store.Load(ctx, st.Session.ID)
	if err != nil || !ok {
		t.Fatalf("stored record: %v %v", ok, err)
	}
	rec.URL = ""
	if err := store.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	third := startSDKApp(t, m, host, created, store)
	got, err = third.app.Reattach(ctx)
	if err != nil || len(got) != 1 {
		t.Fatalf("Reattach after the restart: %v, %v", got, err)
	}
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	s3 := third.nextSession(t)

	// The app stops its own session.
	res, err := s3.Stop(ctx)
	if err != nil || res.Session.StopReason != protocol.StopAppError || res.AlreadyStopped {
		t.Fatalf("Stop: %+v, %v; want stopped with app_error", res, err)
	}
	var stopped *appsdk.StoppedError
	if err := waitDone(t, s3); !errors.As(err, &stopped) || stopped.Reason != protocol.StopAppError {
		t.Fatalf("after Stop: %v", err)
	}
	dev.wait(t, st.Session.ID, protocol.AppStateStopped)
	if _, ok, _ := store.Load(ctx, st.Session.ID); ok {
		t.Fatal("the stopped session's token is still stored")
	}

	fourth := startSDKApp(t, m, host, created, store)
	if got, err := fourth.app.Reattach(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Reattach with nothing to reattach: %v, %v", got, err)
	}
	if _, err := fourth.app.Attach(ctx, st.Session.ID); !errors.Is(err, appsdk.ErrNoResumeToken) {
		t.Fatalf("Attach without a token: %v, want ErrNoResumeToken", err)
	}
}

// TestAppSDKKeyRevoked: the operator revokes the key a session connected
// with: Junction closes the connection with 4003, and the handle ends
// without reconnecting (the code advises against it), with the code in its
// error.
func TestAppSDKKeyRevoked(t *testing.T) {
	m, _, _ := appsServerWith(t, func(c *Config) {
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		c.Apps.ConnectTimeout = 10 * time.Second
	})
	host := newSDKHost(t)
	const id = "com.example.revoked"
	created := registerSDKApp(t, m, host, id)
	b := startSDKApp(t, m, host, created, appsdk.NewMemoryResumeStore())
	dev := dialDevice(t, m, "u1", "u1-glasses")
	st := dev.start(t, id, "display")
	s := b.nextSession(t)
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)

	apiJSON(t, m, adminTok(t, m), "DELETE", "/api/v1/admin/apps/"+id+"/keys/"+created.Key.AppKey.ID, nil, 200, nil)
	var ce *client.CloseError
	if err := waitDone(t, s); !errors.As(err, &ce) || ce.Code != protocol.CloseForbidden {
		t.Fatalf("handle ended with %v, want the 4003 close", err)
	}
	if s.Reattaches() != 0 {
		t.Fatalf("%d reattaches after a 4003, want none", s.Reattaches())
	}
	if b.app.Session(st.Session.ID) != nil {
		t.Fatal("the ended handle is still listed")
	}
}
