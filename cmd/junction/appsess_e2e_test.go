package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/apps"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// Issue 13, items 3 and 4, end to end: a real app backend (an HTTP server
// on loopback that verifies each webhook with the public webhook package
// and connects with its API key and the start ticket) and a simulated
// device on a real WebSocket.

// appBackend is an app's server: it verifies webhooks and answers them
// with the statuses it is told.
type appBackend struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	secrets  []webhook.Secret
	statuses []int            // answers to give, in order; then 200
	hooks    []map[string]any // verified bodies, in arrival order
	ids      []string         // their webhook-ids
	refused  int              // requests whose signature did not verify
	requests int
	arrived  chan map[string]any // every verified body, also
}

func newAppBackend(t *testing.T) *appBackend {
	b := &appBackend{t: t, arrived: make(chan map[string]any, 64)}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *appBackend) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.requests++
	v := &webhook.Verifier{Secrets: append([]webhook.Secret(nil), b.secrets...)}
	b.mu.Unlock()
	body, msg, err := v.VerifyRequest(r, 1<<20)
	if err != nil {
		b.mu.Lock()
		b.refused++
		b.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var hook map[string]any
	if err := json.Unmarshal(body, &hook); err != nil || hook["type"] != r.Header.Get("Junction-Event") {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	status := http.StatusOK
	if len(b.statuses) > 0 {
		status, b.statuses = b.statuses[0], b.statuses[1:]
	}
	if status == http.StatusOK {
		b.hooks = append(b.hooks, hook)
		b.ids = append(b.ids, msg.ID)
	}
	b.mu.Unlock()
	if status == http.StatusOK {
		b.arrived <- hook
	}
	w.WriteHeader(status)
}

func (b *appBackend) setSecrets(s ...string) {
	b.t.Helper()
	var out []webhook.Secret
	for _, x := range s {
		sec, err := webhook.ParseSecret(x)
		if err != nil {
			b.t.Fatal(err)
		}
		out = append(out, sec)
	}
	b.mu.Lock()
	b.secrets = out
	b.mu.Unlock()
}

func (b *appBackend) answer(statuses ...int) {
	b.mu.Lock()
	b.statuses = append(b.statuses, statuses...)
	b.mu.Unlock()
}

func (b *appBackend) counts() (requests, refused, accepted int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests, b.refused, len(b.hooks)
}

// next waits for the next accepted webhook of type typ.
func (b *appBackend) next(typ string) map[string]any {
	b.t.Helper()
	select {
	case h := <-b.arrived:
		if h["type"] != typ {
			b.t.Fatalf("webhook %v, want %s", h, typ)
		}
		return h
	case <-time.After(10 * time.Second):
		b.t.Fatalf("no %s webhook", typ)
	}
	return nil
}

// nextEach returns the next len(types) webhooks by type, in whatever order
// they arrive: webhooks go out through a pool of workers (and may be
// retried), so two of them, even to one app, are not ordered.
func (b *appBackend) nextEach(types ...string) map[string]map[string]any {
	b.t.Helper()
	want := map[string]bool{}
	for _, typ := range types {
		want[typ] = true
	}
	got := map[string]map[string]any{}
	for range types {
		select {
		case h := <-b.arrived:
			typ, _ := h["type"].(string)
			if !want[typ] || got[typ] != nil {
				b.t.Fatalf("webhook %v, want one each of %v", h, types)
			}
			got[typ] = h
		case <-time.After(10 * time.Second):
			b.t.Fatalf("webhooks %v: got only %d", types, len(got))
		}
	}
	return got
}

// appsServerWith is appsServer with configure applied to the config and
// hooks run on the Main before it opens.
func appsServerWith(t *testing.T, configure func(*Config), hooks ...func(*Main)) (m *Main, advance func(time.Duration), logs *syncBuffer) {
	t.Helper()
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	logs = &syncBuffer{}
	m = startServer(t, configure, append([]func(*Main){func(m *Main) {
		m.Now = now
		m.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}}, hooks...)...)
	// The log says why a connection closed or a grant failed to apply,
	// which a failure under load otherwise hides.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return m, func(d time.Duration) { skew.Add(int64(d)) }, logs
}

// sessionServer starts a server whose apps retry fast, open their breaker
// after three failed attempts and wait connectTimeout for the app.
func sessionServer(t *testing.T, connectTimeout time.Duration) (*Main, func(time.Duration)) {
	var m *Main
	var advance func(time.Duration)
	m, advance, _ = appsServerWith(t, func(c *Config) {
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		c.Apps.WebhookTimeout = 2 * time.Second
		c.Apps.BreakerThreshold = 3
		c.Apps.BreakerOpen = time.Hour
		c.Apps.ConnectTimeout = connectTimeout
	})
	return m, advance
}

// registerApp registers an app whose webhooks go to b, installs it for
// user granting read, and gives b the webhook secret.
func registerApp(t *testing.T, m *Main, b *appBackend, id, kind string, internal bool, user string) protocol.AppCreated {
	t.Helper()
	created := createApp(t, m, map[string]any{"id": id, "name": id, "kind": kind, "scopes": []string{"read", "write"},
		"webhookUrl": b.srv.URL + "/hooks", "capabilities": []string{"display"}, "internal": internal,
		"settingsSchema": map[string]any{"type": "object", "properties": map[string]any{"lang": map[string]any{"type": "string"}}}})
	if created.WebhookSecret == nil || !strings.HasPrefix(created.WebhookSecret.Secret, "whsec_") || created.WebhookSecret.Internal != internal {
		t.Fatalf("created %+v: want a whsec_ webhook secret, internal %v", created.WebhookSecret, internal)
	}
	b.setSecrets(created.WebhookSecret.Secret)
	apiJSON(t, m, mintToken(t, m, user, user+"-phone", "phone"), "PUT", "/api/v1/apps/"+id+"/install", map[string]any{"scopes": []string{"read"}}, 200, nil)
	return created
}

// device is a simulated device: a WebSocket client recording app.session
// events.
type device struct {
	c      *client.Client
	events chan protocol.AppSession
}

func dialDevice(t *testing.T, m *Main, user, id string) *device {
	d := &device{events: make(chan protocol.AppSession, 64)}
	d.c = dialClient(t, m, user, id, "glasses")
	d.c.OnEvent(protocol.EventAppSession, func(f *protocol.Frame) {
		var s protocol.AppSession
		if err := json.Unmarshal(f.Data, &s); err != nil {
			t.Errorf("app.session data %s: %v", f.Data, err)
		}
		d.events <- s
	})
	return d
}

func (d *device) start(t *testing.T, appID string, caps ...string) protocol.AppSessionStarted {
	t.Helper()
	var res protocol.AppSessionStarted
	if err := d.c.Call(context.Background(), "apps.startSession", protocol.AppSessionStartParams{AppID: appID, Capabilities: caps}, &res); err != nil {
		t.Fatalf("apps.startSession %s: %v", appID, err)
	}
	return res
}

// wait returns the next app.session event of session id in state.
func (d *device) wait(t *testing.T, id, state string) protocol.AppSession {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-d.events:
			if s.ID == id && s.State == state {
				return s
			}
		case <-timeout:
			t.Fatalf("device: no app.session %s for %s", state, id)
		}
	}
}

// appConn is the app's session connection.
type appConn struct {
	c       *client.Client
	stopped chan protocol.AppStopped
}

// connectApp dials as the app with its key and the ticket of hook.
func connectApp(t *testing.T, m *Main, key string, hook map[string]any) *appConn {
	t.Helper()
	a := &appConn{stopped: make(chan protocol.AppStopped, 4)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url, _ := hook["websocketUrl"].(string)
	ticket, _ := hook["ticket"].(string)
	c, err := client.Dial(ctx, checkedOptions(m, client.Options{URL: url, Token: key, Header: http.Header{apps.TicketHeader: {ticket}}}))
	if err != nil {
		t.Fatalf("app dial with ticket: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	c.OnEvent(protocol.EventAppStopped, func(f *protocol.Frame) {
		var s protocol.AppStopped
		_ = json.Unmarshal(f.Data, &s)
		a.stopped <- s
	})
	a.c = c
	return a
}

// TestAppSessionLifecycle: start from the device over the socket → signed
// session.start with a ticket → the app connects with key + ticket → hello
// → running; the ticket is single use; the delivery log shows the attempt;
// stop → session.stop, app.stopped then 1000 on the app's socket, stopped
// on the device; a second stop changes nothing; REST start and a foreign
// user's stop.
func TestAppSessionLifecycle(t *testing.T) {
	m, _ := sessionServer(t, 10*time.Second)
	b := newAppBackend(t)
	created := registerApp(t, m, b, "com.example.captions", "foreground", true, "u1")
	key := created.Key.Key
	dev := dialDevice(t, m, "u1", "u1-glasses")

	st := dev.start(t, "com.example.captions", "display", "microphone")
	if st.Session.State != protocol.AppStateStarting || st.Existing || st.Session.DeviceID != "u1-glasses" {
		t.Fatalf("started %+v", st)
	}
	hook := b.next("session.start")
	for _, f := range []string{"sessionId", "appId", "userId", "deviceKind", "websocketUrl", "ticket", "ticketExpiresAt"} {
		if hook[f] == nil || hook[f] == "" {
			t.Errorf("session.start lacks %s: %v", f, hook)
		}
	}
	if hook["sessionId"] != st.Session.ID || hook["deviceKind"] != "glasses" || hook["resumed"] != false ||
		!strings.HasPrefix(hook["userId"].(string), "pu_") || strings.Contains(hook["userId"].(string), "u1") {
		t.Fatalf("session.start %v", hook)
	}
	// A second start while it starts answers the same session, no webhook.
	if again := dev.start(t, "com.example.captions", "display"); !again.Existing || again.Session.ID != st.Session.ID {
		t.Fatalf("second start %+v, want the existing session", again)
	}

	app := connectApp(t, m, key, hook)
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	if p := app.c.Welcome().Principal; p.AppID != "com.example.captions" || p.UserID != "u1" || strings.Join(p.Scopes, ",") != "read" {
		t.Fatalf("app principal %+v, want the app acting for u1 with read", p)
	}
	var hello protocol.AppHello
	if err := app.c.Call(context.Background(), "apps.hello", protocol.AppSessionRef{AppID: "com.example.captions", SessionID: st.Session.ID}, &hello); err != nil {
		t.Fatal(err)
	}
	if hello.SessionID != st.Session.ID || hello.UserID != hook["userId"] || strings.Join(hello.Scopes, ",") != "read" ||
		len(hello.Subscriptions) != 0 || strings.Join(hello.Capabilities, ",") != "display,microphone" ||
		!hello.Device.Online || hello.Device.Kind != "glasses" || hello.Priority != "foreground" ||
		!strings.Contains(string(hello.Settings.Schema), `"lang"`) || hello.Settings.Values != nil || hello.Settings.Version != 0 {
		t.Fatalf("hello %+v", hello)
	}

	// The ticket is single use; a made-up one is unknown.
	ticket := hook["ticket"].(string)
	if code, e := wsHandshake(t, m, key, apps.TicketHeader, ticket); code != 401 || e.Error.Details["reason"] != "ticket_used" {
		t.Fatalf("reused ticket: %d %+v, want 401 ticket_used", code, e.Error)
	}
	if code, e := wsHandshake(t, m, key, apps.TicketHeader, ticket[:len(ticket)-4]+"AAAA"); code != 401 || e.Error.Details["reason"] != "ticket_invalid" {
		t.Fatalf("forged ticket: %d %+v, want 401 ticket_invalid", code, e.Error)
	}
	// A device token with a ticket is refused too.
	if code, e := wsHandshake(t, m, mintToken(t, m, "u1", "u1-glasses", "glasses"), apps.TicketHeader, ticket); code != 401 || e.Error.Details["reason"] != "ticket_invalid" {
		t.Fatalf("ticket without an app key: %d %+v", code, e.Error)
	}

	// The owner (the admin who registered it) reads the delivery log.
	var log protocol.AppDeliveryList
	apiJSON(t, m, adminTok(t, m), "GET", "/api/v1/apps/com.example.captions/deliveries", nil, 200, &log)
	if len(log.Deliveries) != 1 || log.Deliveries[0].Status != 200 || log.Deliveries[0].Stage != "response" || log.Deliveries[0].Delivery != b.ids[0] {
		t.Fatalf("deliveries %+v", log)
	}
	if code, raw := apiCall(t, m, mintToken(t, m, "u1", "u1-phone", "phone"), "GET", "/api/v1/apps/com.example.captions/deliveries", nil); code != 403 {
		t.Fatalf("a user reading another's app deliveries: %d %s", code, raw)
	}
	// The app lists its sessions.
	var list protocol.AppSessionList
	apiJSON(t, m, key, "GET", "/api/v1/apps/com.example.captions/sessions?state=running", nil, 200, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != st.Session.ID {
		t.Fatalf("running sessions %+v", list)
	}

	// Stop from the device.
	var stopped protocol.AppSessionStopped
	if err := dev.c.Call(context.Background(), "apps.stopSession", protocol.AppSessionRef{AppID: "com.example.captions", SessionID: st.Session.ID}, &stopped); err != nil {
		t.Fatal(err)
	}
	if stopped.AlreadyStopped || stopped.Session.State != protocol.AppStateStopped || stopped.Session.StopReason != protocol.StopUserStopped {
		t.Fatalf("stopped %+v", stopped)
	}
	select {
	case s := <-app.stopped:
		if s.SessionID != st.Session.ID || s.Reason != protocol.StopUserStopped || s.Reconnect {
			t.Fatalf("app.stopped %+v", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the app got no app.stopped")
	}
	<-app.c.Done()
	if code := app.c.CloseCode(); code != protocol.CloseNormal {
		t.Fatalf("app socket closed with %d, want 1000", code)
	}
	if h := b.next("session.stop"); h["sessionId"] != st.Session.ID || h["reason"] != protocol.StopUserStopped || h["userId"] != hook["userId"] {
		t.Fatalf("session.stop %v", h)
	}
	dev.wait(t, st.Session.ID, protocol.AppStateStopped)

	// Idempotent: a second stop answers alreadyStopped and sends nothing.
	_, _, before := b.counts()
	apiJSON(t, m, mintToken(t, m, "u1", "u1-glasses", "glasses"), "POST", "/api/v1/apps/com.example.captions/sessions/"+st.Session.ID+"/stop", nil, 200, &stopped)
	if !stopped.AlreadyStopped || stopped.Session.StopReason != protocol.StopUserStopped {
		t.Fatalf("second stop %+v", stopped)
	}

	// REST start; another user cannot see or stop it.
	var rs protocol.AppSessionStarted
	apiJSON(t, m, mintToken(t, m, "u1", "u1-glasses", "glasses"), "POST", "/api/v1/apps/com.example.captions/sessions", map[string]any{"capabilities": []string{"display"}}, 200, &rs)
	if rs.Existing || rs.Session.State != protocol.AppStateStarting {
		t.Fatalf("REST start %+v", rs)
	}
	b.next("session.start")
	if _, _, after := b.counts(); after != before+1 {
		t.Fatalf("webhooks accepted: %d, want %d (the second stop sends none)", after, before+1)
	}
	code, raw := apiCall(t, m, mintToken(t, m, "u2", "u2-glasses", "glasses"), "POST", "/api/v1/apps/com.example.captions/sessions/"+rs.Session.ID+"/stop", nil)
	if e := decodeAPIError(t, raw); code != 404 || e.Error.Code != "not_found" {
		t.Fatalf("another user's stop: %d %s, want 404", code, raw)
	}
}

// TestAppSessionWebhookFailures: 5xx is retried (and the delivery log shows
// each attempt with its wait); an accepted start the app never follows
// fails at stage timeout with session.stop; a 4xx is not retried and fails
// the start at stage webhook; a backend refusing the signature (a secret
// rotated without overlap) is such a 4xx; repeated failures open the
// breaker, and the next start fails at once without a request.
func TestAppSessionWebhookFailures(t *testing.T) {
	m, _ := sessionServer(t, 300*time.Millisecond)
	b := newAppBackend(t)
	registerApp(t, m, b, "com.example.flaky", "background", true, "u1")
	dev := dialDevice(t, m, "u1", "u1-glasses")
	admin := adminTok(t, m)

	// 503, 503, then 200: one delivery, three attempts.
	b.answer(503, 503)
	st := dev.start(t, "com.example.flaky", "display")
	b.next("session.start")
	// Nobody connects: timeout, and session.stop tells the backend.
	failed := dev.wait(t, st.Session.ID, protocol.AppStateStopped)
	if failed.Stage != protocol.StageTimeout || failed.StopReason != protocol.StopAppError {
		t.Fatalf("unconnected session %+v, want stage timeout", failed)
	}
	if h := b.next("session.stop"); h["stage"] != protocol.StageTimeout {
		t.Fatalf("session.stop %v", h)
	}
	// The log records an attempt once its response is in: session.stop's
	// may follow the backend's receipt by a moment.
	var log protocol.AppDeliveryList
	eventually(t, "four attempts in the delivery log", func() bool {
		apiJSON(t, m, admin, "GET", "/api/v1/apps/com.example.flaky/deliveries?limit=10", nil, 200, &log)
		return len(log.Deliveries) >= 4
	})
	var statuses []int
	for i := len(log.Deliveries) - 1; i >= 0; i-- {
		statuses = append(statuses, log.Deliveries[i].Status)
	}
	d := log.Deliveries // newest first: session.stop, then session.start's attempts 3, 2, 1
	if len(statuses) != 4 || statuses[0] != 503 || statuses[1] != 503 || statuses[2] != 200 || statuses[3] != 200 ||
		d[3].Attempt != 1 || d[2].Attempt != 2 || d[1].Attempt != 3 || d[0].Attempt != 1 ||
		d[3].Delivery != d[1].Delivery || d[0].Delivery == d[1].Delivery || !strings.Contains(d[2].Error, "503") {
		t.Fatalf("attempts (oldest first) %v: %+v", statuses, log.Deliveries)
	}

	// 400: not retried, stage webhook.
	reqs, _, _ := b.counts()
	b.answer(400)
	st = dev.start(t, "com.example.flaky", "display")
	failed = dev.wait(t, st.Session.ID, protocol.AppStateStopped)
	if failed.Stage != protocol.StageWebhook || !strings.Contains(failed.Error, "400") {
		t.Fatalf("4xx start %+v", failed)
	}
	if n, _, _ := b.counts(); n != reqs+1 {
		t.Fatalf("requests for a 400: %d, want 1", n-reqs)
	}

	// Rotated without overlap: the backend still holds the old secret and
	// refuses the signature (401, not retried).
	var rot protocol.AppWebhookSecret
	apiJSON(t, m, admin, "POST", "/api/v1/admin/apps/com.example.flaky/webhook-secret", map[string]any{"overlapMs": 0}, 201, &rot)
	if !strings.HasPrefix(rot.Secret, "whsec_") || rot.PreviousValidUntil != nil || !rot.Internal {
		t.Fatalf("rotated %+v", rot)
	}
	st = dev.start(t, "com.example.flaky", "display")
	failed = dev.wait(t, st.Session.ID, protocol.AppStateStopped)
	if _, refused, _ := b.counts(); refused != 1 || failed.Stage != protocol.StageWebhook || !strings.Contains(failed.Error, "401") {
		t.Fatalf("bad signature: refused %d, session %+v", refused, failed)
	}
	// With an overlap both secrets sign: a backend on the old one still verifies.
	old := rot.Secret
	apiJSON(t, m, admin, "POST", "/api/v1/admin/apps/com.example.flaky/webhook-secret", map[string]any{"overlapMs": 60000}, 201, &rot)
	if rot.PreviousValidUntil == nil {
		t.Fatalf("rotated with overlap %+v", rot)
	}
	b.setSecrets(old)
	st = dev.start(t, "com.example.flaky", "display")
	b.next("session.start")
	dev.wait(t, st.Session.ID, protocol.AppStateStopped) // timeout again; the signature verified
	b.next("session.stop")
	b.setSecrets(rot.Secret)

	// 500s: three failed attempts open the breaker mid-delivery.
	b.answer(500, 500, 500, 500, 500)
	st = dev.start(t, "com.example.flaky", "display")
	failed = dev.wait(t, st.Session.ID, protocol.AppStateStopped)
	if failed.Stage != protocol.StageWebhook || !strings.Contains(failed.Error, "breaker") {
		t.Fatalf("failing backend %+v, want the breaker named", failed)
	}
	reqs, _, _ = b.counts()
	st = dev.start(t, "com.example.flaky", "display")
	failed = dev.wait(t, st.Session.ID, protocol.AppStateStopped)
	if n, _, _ := b.counts(); n != reqs || failed.Stage != protocol.StageWebhook || !strings.Contains(failed.Error, "breaker") {
		t.Fatalf("with the breaker open: %d requests, session %+v", n-reqs, failed)
	}
	apiJSON(t, m, admin, "GET", "/api/v1/apps/com.example.flaky/deliveries?limit=1", nil, 200, &log)
	if len(log.Deliveries) != 1 || log.Deliveries[0].Stage != "breaker" {
		t.Fatalf("last attempt %+v, want stage breaker", log.Deliveries)
	}
}

// TestAppSessionGuards: an app not marked internal may not target
// loopback (the SSRF guard; nothing is sent); a device lacking a required
// capability is refused at stage capability; a ticket presented with
// another app's key is forbidden and another app cannot see the session;
// a ticket used after it expired fails the session at stage connect.
func TestAppSessionGuards(t *testing.T) {
	m, advance := sessionServer(t, 10*time.Second)
	b := newAppBackend(t)
	registerApp(t, m, b, "com.example.public", "background", false, "u1")
	dev := dialDevice(t, m, "u1", "u1-glasses")

	st := dev.start(t, "com.example.public", "display")
	failed := dev.wait(t, st.Session.ID, protocol.AppStateStopped)
	if n, _, _ := b.counts(); n != 0 || failed.Stage != protocol.StageWebhook || !strings.Contains(failed.Error, "guard") {
		t.Fatalf("loopback target of a public app: %d requests, session %+v", n, failed)
	}

	var res protocol.AppSessionStarted
	err := dev.c.Call(context.Background(), "apps.startSession", protocol.AppSessionStartParams{AppID: "com.example.public"}, &res)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden || pe.Details["stage"] != protocol.StageCapability {
		t.Fatalf("start without the display capability: %v", err)
	}

	a := registerApp(t, m, b, "com.example.a", "background", true, "u1")
	other := registerApp(t, m, b, "com.example.b", "background", true, "u1")
	b.setSecrets(a.WebhookSecret.Secret, other.WebhookSecret.Secret)
	st = dev.start(t, "com.example.a", "display")
	hook := b.next("session.start")
	ticket := hook["ticket"].(string)
	if code, e := wsHandshake(t, m, other.Key.Key, apps.TicketHeader, ticket); code != 403 || e.Error.Details["reason"] != "foreign_session" {
		t.Fatalf("another app's ticket: %d %+v, want 403 foreign_session", code, e.Error)
	}
	for _, path := range []string{"/api/v1/apps/com.example.b/sessions/" + st.Session.ID + "/stop", "/api/v1/apps/com.example.a/sessions/" + st.Session.ID + "/stop"} {
		if code, raw := apiCall(t, m, other.Key.Key, "POST", path, nil); code != 404 {
			t.Fatalf("another app stopping the session via %s: %d %s, want 404", path, code, raw)
		}
	}
	// Expired: the app comes after the ticket's minute.
	advance(2 * time.Minute)
	if code, e := wsHandshake(t, m, a.Key.Key, apps.TicketHeader, ticket); code != 401 || e.Error.Details["reason"] != "ticket_expired" {
		t.Fatalf("expired ticket: %d %+v", code, e.Error)
	}
	if failed := dev.wait(t, st.Session.ID, protocol.AppStateStopped); failed.Stage != protocol.StageConnect {
		t.Fatalf("late app %+v, want stage connect", failed)
	}
}

// TestAppSessionForeground: one foreground app per device; starting
// another stops the first with replaced_by_foreground, its app told.
func TestAppSessionForeground(t *testing.T) {
	m, _ := sessionServer(t, 10*time.Second)
	b := newAppBackend(t)
	first := registerApp(t, m, b, "com.example.one", "foreground", true, "u1")
	second := registerApp(t, m, b, "com.example.two", "foreground", true, "u1")
	bg := registerApp(t, m, b, "com.example.bg", "background", true, "u1")
	b.setSecrets(first.WebhookSecret.Secret, second.WebhookSecret.Secret, bg.WebhookSecret.Secret)
	dev := dialDevice(t, m, "u1", "u1-glasses")

	one := dev.start(t, "com.example.one", "display")
	app1 := connectApp(t, m, first.Key.Key, b.next("session.start"))
	dev.wait(t, one.Session.ID, protocol.AppStateRunning)
	back := dev.start(t, "com.example.bg", "display")
	b.next("session.start")

	two := dev.start(t, "com.example.two", "display")
	if len(two.Replaced) != 1 || two.Replaced[0] != one.Session.ID {
		t.Fatalf("second foreground start %+v, want %s replaced", two, one.Session.ID)
	}
	select {
	case s := <-app1.stopped:
		if s.Reason != protocol.StopReplacedByForeground {
			t.Fatalf("app.stopped %+v", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced app got no app.stopped")
	}
	if s := dev.wait(t, one.Session.ID, protocol.AppStateStopped); s.StopReason != protocol.StopReplacedByForeground {
		t.Fatalf("replaced session %+v", s)
	}
	// The first app's session.stop and the second app's session.start.
	if h := b.nextEach("session.stop", "session.start")["session.stop"]; h["reason"] != protocol.StopReplacedByForeground {
		t.Fatalf("session.stop %v", h)
	}
	var list protocol.AppSessionList
	apiJSON(t, m, bg.Key.Key, "GET", "/api/v1/apps/com.example.bg/sessions", nil, 200, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != back.Session.ID || list.Sessions[0].State != protocol.AppStateStarting {
		t.Fatalf("the background app's sessions %+v, want it untouched", list)
	}
}

// TestAppWebhookCLI: "junction app create --internal" prints the webhook
// secret, rotate-webhook-secret replaces it (the new one verifies the next
// webhook), and deliveries lists the attempts.
func TestAppWebhookCLI(t *testing.T) {
	m, _ := sessionServer(t, 10*time.Second)
	b := newAppBackend(t)
	app := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args = append([]string{"app"}, args...)
		args = append(args, "--url", m.URL(), "--data", m.Config.Data)
		if code := run(t.Context(), args, nil, &out, &errb); code != 0 {
			t.Fatalf("junction %v: exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	secretOf := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "whsec_") {
				return l
			}
		}
		t.Fatalf("no whsec_ line in %q", out)
		return ""
	}
	out := app("create", "--id", "com.example.cli", "--name", "CLI", "--kind", "background", "--scopes", "read",
		"--webhook", b.srv.URL+"/hooks", "--internal")
	if !strings.Contains(out, "internal true") {
		t.Fatalf("create printed %q", out)
	}
	first := secretOf(out)
	out = app("rotate-webhook-secret", "com.example.cli", "--overlap", "0s")
	second := secretOf(out)
	if second == first || !strings.Contains(out, "signs until now") || !strings.Contains(out, "internal true") {
		t.Fatalf("rotate-webhook-secret printed %q", out)
	}
	b.setSecrets(second)
	apiJSON(t, m, mintToken(t, m, "u1", "u1-phone", "phone"), "PUT", "/api/v1/apps/com.example.cli/install", nil, 200, nil)
	dev := dialDevice(t, m, "u1", "u1-glasses")
	st := dev.start(t, "com.example.cli")
	if h := b.next("session.start"); h["sessionId"] != st.Session.ID {
		t.Fatalf("session.start %v", h)
	}
	// The attempt is logged once its response is in, a moment after the
	// backend saw it.
	eventually(t, "the attempt in the CLI's deliveries", func() bool {
		out = app("deliveries", "com.example.cli")
		return strings.Contains(out, "response\t200")
	})
	// installs: u1's grant and its session (starting, so active).
	if out = app("installs", "com.example.cli"); !strings.HasPrefix(out, "u1\t") || !strings.Contains(out, "1 active session(s)") || !strings.Contains(out, "last session ") {
		t.Fatalf("installs printed %q, want u1 with one active session", out)
	}
	// outputs: the glasses have declared nothing, requested nothing.
	if out = app("outputs", "u1-glasses"); !strings.Contains(out, "device u1-glasses on node ") || !strings.Contains(out, "no output outcomes") {
		t.Fatalf("outputs printed %q", out)
	}
	var errb bytes.Buffer
	if code := run(t.Context(), []string{"app", "installs", "com.example.none", "--url", m.URL(), "--data", m.Config.Data}, nil, io.Discard, &errb); code == 0 || !strings.Contains(errb.String(), "not_found") {
		t.Fatalf("installs of an unknown app: exit %d, %q; want not_found", code, errb.String())
	}
}

// TestAppSessionTransportAndUninstall: the app's connection lost without a
// stop moves the session to transport_down (the device is told); starting
// the app again replaces it; an uninstall stops the user's sessions with
// permission_revoked, and a ticket of a session stopped so is refused
// (session_stopped).
func TestAppSessionTransportAndUninstall(t *testing.T) {
	m, _ := sessionServer(t, 10*time.Second)
	b := newAppBackend(t)
	created := registerApp(t, m, b, "com.example.bg", "background", true, "u1")
	dev := dialDevice(t, m, "u1", "u1-glasses")

	st := dev.start(t, "com.example.bg", "display")
	app := connectApp(t, m, created.Key.Key, b.next("session.start"))
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	_ = app.c.Close()
	dev.wait(t, st.Session.ID, protocol.AppStateTransportDown)
	var list protocol.AppSessionList
	apiJSON(t, m, created.Key.Key, "GET", "/api/v1/apps/com.example.bg/sessions?state=transport_down", nil, 200, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != st.Session.ID {
		t.Fatalf("transport_down sessions %+v", list)
	}
	again := dev.start(t, "com.example.bg", "display")
	if again.Existing || len(again.Replaced) != 1 || again.Replaced[0] != st.Session.ID {
		t.Fatalf("start after a lost connection %+v, want the old session replaced", again)
	}
	hooks := b.nextEach("session.stop", "session.start")
	if h := hooks["session.stop"]; h["sessionId"] != st.Session.ID {
		t.Fatalf("session.stop %v", h)
	}
	app = connectApp(t, m, created.Key.Key, hooks["session.start"])
	dev.wait(t, again.Session.ID, protocol.AppStateRunning)

	// Uninstalled: the running session stops with permission_revoked.
	user := mintToken(t, m, "u1", "u1-phone", "phone")
	apiJSON(t, m, user, "DELETE", "/api/v1/apps/com.example.bg/install", nil, 200, nil)
	select {
	case s := <-app.stopped:
		if s.Reason != protocol.StopPermissionRevoked {
			t.Fatalf("app.stopped %+v", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no app.stopped after the uninstall")
	}
	if s := dev.wait(t, again.Session.ID, protocol.AppStateStopped); s.StopReason != protocol.StopPermissionRevoked {
		t.Fatalf("session after the uninstall %+v", s)
	}
	if h := b.next("session.stop"); h["reason"] != protocol.StopPermissionRevoked {
		t.Fatalf("session.stop %v", h)
	}

	// Uninstalled between session.start and the connection: stage auth.
	apiJSON(t, m, user, "PUT", "/api/v1/apps/com.example.bg/install", map[string]any{"scopes": []string{"read"}}, 200, nil)
	third := dev.start(t, "com.example.bg", "display")
	hook := b.next("session.start")
	if err := dev.c.Call(context.Background(), "apps.uninstall", map[string]any{"appId": "com.example.bg"}, nil); err != nil {
		t.Fatal(err)
	}
	dev.wait(t, third.Session.ID, protocol.AppStateStopped) // permission_revoked, before the app came
	if code, e := wsHandshake(t, m, created.Key.Key, apps.TicketHeader, hook["ticket"].(string)); code != 409 || e.Error.Details["reason"] != "session_stopped" {
		t.Fatalf("connect to a session stopped by an uninstall: %d %+v", code, e.Error)
	}
	// And the device can no longer start it.
	var res protocol.AppSessionStarted
	err := dev.c.Call(context.Background(), "apps.startSession", protocol.AppSessionStartParams{AppID: "com.example.bg", Capabilities: []string{"display"}}, &res)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden || pe.Details["reason"] != "not_installed" {
		t.Fatalf("start of an uninstalled app: %v", err)
	}
}

// TestAppSessionResume: the app's server restarts mid-session: it pulls
// its sessions and reattaches with the resume token from hello (the device
// sees transport_down, then running); each hello supersedes the previous
// token. Then the gateway restarts on the same data directory: the session
// is in the store, the app reattaches to the new process with its token,
// and the stop that follows is signed with the app's secret, which the
// restart kept sealed in the database.
func TestAppSessionResume(t *testing.T) {
	dir := t.TempDir()
	configure := func(c *Config) {
		c.Data = dir
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		c.Apps.ConnectTimeout = 10 * time.Second
	}
	m, _, _ := appsServerWith(t, configure)
	b := newAppBackend(t)
	created := registerApp(t, m, b, "com.example.resume", "foreground", true, "u1")
	key := created.Key.Key
	dev := dialDevice(t, m, "u1", "u1-glasses")
	st := dev.start(t, "com.example.resume", "display")
	app := connectApp(t, m, key, b.next("session.start"))
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	ref := protocol.AppSessionRef{AppID: "com.example.resume", SessionID: st.Session.ID}
	var hello protocol.AppHello
	if err := app.c.Call(context.Background(), "apps.hello", ref, &hello); err != nil || !strings.HasPrefix(hello.ResumeToken, "jr_"+st.Session.ID+"_") {
		t.Fatalf("hello %+v, %v: want a resume token", hello, err)
	}

	resume := func(m *Main, token string) *client.Client {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", Token: key, Header: http.Header{apps.ResumeHeader: {token}}}))
		if err != nil {
			t.Fatalf("resume: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	// The app's server restarts: its connection drops, it pulls its
	// sessions and reattaches.
	_ = app.c.Close()
	dev.wait(t, st.Session.ID, protocol.AppStateTransportDown)
	var list protocol.AppSessionList
	apiJSON(t, m, key, "GET", "/api/v1/apps/com.example.resume/sessions?state=transport_down", nil, 200, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != st.Session.ID {
		t.Fatalf("sessions to reattach %+v", list)
	}
	c := resume(m, hello.ResumeToken)
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	if p := c.Welcome().Principal; p.AppID != "com.example.resume" || p.UserID != "u1" {
		t.Fatalf("resumed principal %+v", p)
	}
	old := hello.ResumeToken
	if err := c.Call(context.Background(), "apps.hello", ref, &hello); err != nil || hello.ResumeToken == old {
		t.Fatalf("second hello %+v, %v: want a new token", hello, err)
	}
	if code, e := wsHandshake(t, m, key, apps.ResumeHeader, old); code != 401 || e.Error.Details["reason"] != "resume_invalid" {
		t.Fatalf("superseded resume token: %d %+v", code, e.Error)
	}

	// The gateway restarts.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	m2, _, _ := appsServerWith(t, configure)
	dev2 := dialDevice(t, m2, "u1", "u1-glasses")
	c2 := resume(m2, hello.ResumeToken)
	dev2.wait(t, st.Session.ID, protocol.AppStateRunning)
	if err := c2.Call(context.Background(), "apps.hello", ref, &hello); err != nil || hello.SessionID != st.Session.ID {
		t.Fatalf("hello after the gateway's restart %+v, %v", hello, err)
	}
	var stopped protocol.AppSessionStopped
	if err := dev2.c.Call(context.Background(), "apps.stopSession", ref, &stopped); err != nil || stopped.Session.StopReason != protocol.StopUserStopped {
		t.Fatalf("stop after the restart %+v, %v", stopped, err)
	}
	if h := b.next("session.stop"); h["sessionId"] != st.Session.ID {
		t.Fatalf("session.stop %v", h)
	}
	// A stopped session cannot be resumed.
	if code, e := wsHandshake(t, m2, key, apps.ResumeHeader, hello.ResumeToken); code != 409 || e.Error.Details["reason"] != "session_stopped" {
		t.Fatalf("resume of a stopped session: %d %+v", code, e.Error)
	}
}
