package appsdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

const testKey = "jk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// hookServer is an App served on a real loopback HTTP server, with a
// settable clock for its verifier.
type hookServer struct {
	app    *App
	srv    *httptest.Server
	secret webhook.Secret

	mu    sync.Mutex
	now   time.Time                     // guarded by mu: the verifier's clock
	stops []protocol.AppSessionStopHook // guarded by mu
}

func newHookServer(t *testing.T, configure func(*Options)) *hookServer {
	t.Helper()
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	h := &hookServer{secret: secret, now: time.Now()}
	opts := Options{
		AppID: "com.example.captions", APIKey: testKey, WebhookSecrets: []webhook.Secret{secret},
		Now: func() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.now },
		OnStop: func(_ context.Context, stop protocol.AppSessionStopHook) {
			h.mu.Lock()
			h.stops = append(h.stops, stop)
			h.mu.Unlock()
		},
	}
	if configure != nil {
		configure(&opts)
	}
	h.app, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(h.app)
	t.Cleanup(func() {
		h.srv.Close()
		h.app.Close()
	})
	return h
}

// post sends body signed with secret at ts (the zero secret: unsigned) and
// returns the status and answer.
func (h *hookServer) post(t *testing.T, id string, ts time.Time, secret webhook.Secret, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if !secret.IsZero() {
		if err := webhook.SignHeaders(req.Header, id, ts, body, secret); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewRefuses(t *testing.T) {
	secret, _ := webhook.NewSecret()
	tests := []struct {
		name string
		opts Options
	}{
		{"no app id", Options{APIKey: testKey, WebhookSecrets: []webhook.Secret{secret}}},
		{"not a key", Options{AppID: "com.example.a", APIKey: "Bearer x", WebhookSecrets: []webhook.Secret{secret}}},
		{"no secret", Options{AppID: "com.example.a", APIKey: testKey}},
		{"zero secret", Options{AppID: "com.example.a", APIKey: testKey, WebhookSecrets: []webhook.Secret{{}}}},
		{"bad url", Options{AppID: "com.example.a", APIKey: testKey, WebhookSecrets: []webhook.Secret{secret}, URL: "ws://x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a, err := New(tt.opts); err == nil {
				a.Close()
				t.Fatalf("New: got nil error, want one")
			}
		})
	}
}

// TestWebhookVerification: every request that does not verify is refused
// before its body is looked at, and a verified one is handled.
func TestWebhookVerification(t *testing.T) {
	h := newHookServer(t, func(o *Options) { o.MaxWebhookBytes = 1024 })
	stop := mustJSON(t, protocol.AppSessionStopHook{Type: "session.stop", SessionID: "s1", AppID: "com.example.captions", Reason: "user_stopped"})
	other, _ := webhook.NewSecret()
	now := time.Now()
	tests := []struct {
		name   string
		id     string
		ts     time.Time
		secret webhook.Secret
		body   []byte
		want   int
	}{
		{"unsigned", "msg_1", now, webhook.Secret{}, stop, 401},
		{"another secret", "msg_2", now, other, stop, 401},
		{"stale timestamp", "msg_3", now.Add(-6 * time.Minute), h.secret, stop, 401},
		{"timestamp from the future", "msg_4", now.Add(6 * time.Minute), h.secret, stop, 401},
		{"too large", "msg_5", now, h.secret, bytes.Repeat([]byte("x"), 2000), 413},
		{"not json", "msg_6", now, h.secret, []byte("hello"), 400},
		{"no type", "msg_7", now, h.secret, []byte(`{"sessionId":"s1"}`), 400},
		{"stop without session", "msg_8", now, h.secret, []byte(`{"type":"session.stop"}`), 400},
		{"start for another app", "msg_9", now, h.secret, mustJSON(t, protocol.AppSessionStartHook{Type: "session.start", SessionID: "s2", AppID: "com.example.other", Ticket: "jt_x", WebSocketURL: "ws://127.0.0.1:1/ws"}), 400},
		{"start without ticket", "msg_10", now, h.secret, mustJSON(t, protocol.AppSessionStartHook{Type: "session.start", SessionID: "s2", AppID: "com.example.captions", WebSocketURL: "ws://127.0.0.1:1/ws"}), 400},
		{"verified stop", "msg_11", now, h.secret, stop, 200},
		{"verified, within the tolerance", "msg_12", now.Add(-4 * time.Minute), h.secret, stop, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, body := h.post(t, tt.id, tt.ts, tt.secret, tt.body); got != tt.want {
				t.Fatalf("status %d (%s), want %d", got, body, tt.want)
			}
		})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.stops) != 2 || h.stops[0].SessionID != "s1" || h.stops[0].Reason != "user_stopped" {
		t.Fatalf("OnStop got %+v, want the two verified stops", h.stops)
	}

	resp, err := http.Get(h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET: %d, want 405", resp.StatusCode)
	}
}

// TestWebhookDedupe: a webhook-id seen is answered 200 without a second
// dispatch; one whose handler failed goes through again; unknown types are
// answered 200 and ignored.
func TestWebhookDedupe(t *testing.T) {
	h := newHookServer(t, nil)
	var mu sync.Mutex
	var got []string
	fail := true
	h.app.HandleWebhook("tool.call", func(w http.ResponseWriter, _ *http.Request, hook Webhook) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, hook.ID)
		if fail {
			fail = false
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"ok":true}`)
	})
	body := []byte(`{"type":"tool.call","name":"x"}`)
	now := time.Now()
	for i, want := range []int{503, 200, 200} {
		code, answer := h.post(t, "msg_tool", now, h.secret, body)
		if code != want {
			t.Fatalf("attempt %d: %d %s, want %d", i+1, code, answer, want)
		}
	}
	mu.Lock()
	if len(got) != 2 {
		t.Fatalf("handler ran %d times, want 2 (the failed attempt and its retry; the third is a duplicate)", len(got))
	}
	mu.Unlock()

	if code, _ := h.post(t, "msg_future", now, h.secret, []byte(`{"type":"settings.changed"}`)); code != 200 {
		t.Fatalf("unknown type: %d, want 200", code)
	}
	for _, typ := range []string{"session.start", "session.stop"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("HandleWebhook(%s): no panic", typ)
				}
			}()
			h.app.HandleWebhook(typ, nil)
		}()
	}
}

func TestDedupeBounded(t *testing.T) {
	d := newDedupe(3)
	for _, id := range []string{"a", "b", "c"} {
		if !d.add(id) {
			t.Fatalf("add %s: duplicate, want new", id)
		}
	}
	if d.add("a") {
		t.Fatal("add a again: new, want duplicate")
	}
	d.add("d") // evicts a
	if !d.add("a") {
		t.Fatal("a after eviction: duplicate, want new")
	}
	d.remove("c")
	if !d.add("c") {
		t.Fatal("c after remove: duplicate, want new")
	}
	if len(d.ids) > 3 {
		t.Fatalf("%d ids kept, want at most 3", len(d.ids))
	}
}

// TestStartAcceptedFirst: session.start is answered 202 before the
// connection exists (here it never will: nothing listens), and the handle
// ends once the ticket's life is over; Close is prompt.
func TestStartAcceptedFirst(t *testing.T) {
	ln := httptest.NewServer(http.NotFoundHandler())
	dead := "ws" + strings.TrimPrefix(ln.URL, "http") + "/ws"
	ln.Close()
	h := newHookServer(t, func(o *Options) {
		o.Client.MinBackoff = 5 * time.Millisecond
		o.Client.MaxBackoff = 20 * time.Millisecond
	})
	start := protocol.AppSessionStartHook{Type: "session.start", SessionID: "s1", AppID: "com.example.captions",
		WebSocketURL: dead, Ticket: "jt_x", TicketExpiresAt: time.Now().Add(300 * time.Millisecond)}
	if code, body := h.post(t, "msg_s", time.Now(), h.secret, mustJSON(t, start)); code != 202 {
		t.Fatalf("session.start: %d %s, want 202", code, body)
	}
	s := h.app.Session("s1")
	if s == nil {
		t.Fatal("no handle for the accepted session")
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the handle did not end after the ticket expired")
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "gave up connecting") {
		t.Fatalf("Err %v, want gave up connecting", err)
	}
	if h.app.Session("s1") != nil {
		t.Fatal("the ended handle is still listed")
	}
	h.app.Close()
	if code, _ := h.post(t, "msg_s2", time.Now(), h.secret, mustJSON(t, start)); code != 503 {
		t.Fatalf("session.start after Close: %d, want 503", code)
	}
}
