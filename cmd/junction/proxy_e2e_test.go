package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/proxy"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// testBackend is a real backend on loopback: it verifies the Standard
// Webhooks signature of every request (401 otherwise, as a real backend
// would), decodes it and answers with its current handler.
type testBackend struct {
	*httptest.Server
	secret  webhook.Secret
	handler atomic.Pointer[func(w http.ResponseWriter, r *proxy.Request)]

	mu   sync.Mutex
	reqs []proxy.Request // guarded by mu
}

func newTestBackend(t *testing.T, h func(w http.ResponseWriter, r *proxy.Request)) *testBackend {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{secret: s}
	b.set(h)
	v := &webhook.Verifier{Secrets: []webhook.Secret{s}}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _, err := v.VerifyRequest(r, 1<<20)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req proxy.Request
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.reqs = append(b.reqs, req)
		b.mu.Unlock()
		(*b.handler.Load())(w, &req)
	}))
	// Close after the server (cleanups run last first): a request the
	// server still has in flight is answered, not cut.
	t.Cleanup(func() { b.CloseClientConnections(); b.Close() })
	return b
}

func (b *testBackend) set(h func(w http.ResponseWriter, r *proxy.Request)) { b.handler.Store(&h) }

func (b *testBackend) requests() []proxy.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]proxy.Request(nil), b.reqs...)
}

func (b *testBackend) backend(name string) proxy.BackendConfig {
	return proxy.BackendConfig{Name: name, URL: b.URL + "/junction", Secret: b.secret.Encode(), Timeout: 2 * time.Second}
}

func reply(status int, body string) func(http.ResponseWriter, *proxy.Request) {
	return func(w http.ResponseWriter, _ *proxy.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func protoErr(t *testing.T, err error) *protocol.Error {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a protocol error", err)
	}
	return pe
}

// chatBackend answers chat.* as a chat service would: chat.send echoes
// who sent what; chat.secret refuses.
func chatBackend(w http.ResponseWriter, r *proxy.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.Method {
	case "chat.send":
		out, _ := json.Marshal(map[string]any{"result": map[string]any{"from": r.Principal.UserID, "device": r.Principal.DeviceID, "params": r.Params}})
		w.Write(out)
	case "chat.secret":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"code":"forbidden","message":"not a member of this room","details":{"room":"r1"}}}`)
	default:
		io.WriteString(w, `{"error":{"code":"not_found","message":"no such chat method"}}`)
	}
}

func TestProxyMethodsE2E(t *testing.T) {
	chat := newTestBackend(t, chatBackend)
	m := startServer(t, func(c *Config) {
		c.Proxy = proxy.Config{Backends: []proxy.BackendConfig{chat.backend("chat")}, Methods: []proxy.MethodRoute{
			{Method: "chat.*", Backend: "chat"}, {Method: "moderation.ban", Backend: "chat", Scope: "admin"},
		}}
	})
	c := dialClient(t, m, "alice", "laptop", "browser")
	ctx := t.Context()

	var got struct {
		From, Device string
		Params       json.RawMessage
	}
	if err := c.Call(ctx, "chat.send", map[string]string{"text": "hi"}, &got); err != nil {
		t.Fatalf("chat.send: %v", err)
	}
	if got.From != "alice" || got.Device != "laptop" || string(got.Params) != `{"text":"hi"}` {
		t.Errorf("chat.send: got %+v, want alice/laptop and the params", got)
	}
	reqs := chat.requests()
	if len(reqs) != 1 || reqs[0].Kind != proxy.KindMethod || reqs[0].Principal.Kind != "browser" || reqs[0].ConnID == "" ||
		strings.Join(reqs[0].Principal.Scopes, ",") != "read,write" {
		t.Errorf("backend request: got %+v, want the principal (user, device, kind, scopes) and the connection", reqs)
	}

	// The backend's refusal reaches the client as the documented error.
	pe := protoErr(t, c.Call(ctx, "chat.secret", nil, nil))
	if pe.Code != protocol.CodeForbidden || pe.Message != "not a member of this room" || pe.Details["room"] != "r1" {
		t.Errorf("chat.secret: got %+v, want forbidden with the backend's message and details", pe)
	}
	// A route's scope is checked before the backend is asked.
	n := len(chat.requests())
	if pe := protoErr(t, c.Call(ctx, "moderation.ban", nil, nil)); pe.Code != protocol.CodeForbidden {
		t.Errorf("moderation.ban without admin: got %+v, want forbidden", pe)
	}
	if len(chat.requests()) != n {
		t.Errorf("a call refused for its scope reached the backend")
	}
	// Methods no route covers stay unknown.
	if pe := protoErr(t, c.Call(ctx, "chatx.send", nil, nil)); pe.Code != protocol.CodeUnknownMethod {
		t.Errorf("chatx.send: got %+v, want unknown_method", pe)
	}
	// The AsyncAPI document lists the routes.
	var doc struct {
		Operations map[string]struct {
			Routes []map[string]string `json:"x-junction-routes"`
		} `json:"operations"`
	}
	if err := json.Unmarshal(fetchDoc(t, m, "/api/v1/asyncapi.json"), &doc); err != nil {
		t.Fatal(err)
	}
	if r := doc.Operations["proxy"].Routes; len(r) != 2 || r[0]["method"] != "chat.*" || r[1]["scope"] != "admin" {
		t.Errorf("asyncapi proxy routes: got %v", r)
	}
	// The wire check accepts a successful answer to a routed method and
	// still reports one to a method neither the table nor a route has.
	w := &wireCheck{checked: map[string]int{}}
	w.docs.Store(wireCheckOf(m).docs.Load())
	cc := w.conn(true)
	cc.frame(true, []byte(`{"type":"req","id":"1","method":"chat.anything","params":{"a":1}}`))
	cc.frame(false, []byte(`{"type":"res","id":"1","ok":true,"result":[1,2]}`))
	cc.frame(true, []byte(`{"type":"req","id":"2","method":"other.thing","params":{}}`))
	cc.frame(false, []byte(`{"type":"res","id":"2","ok":true,"result":{}}`))
	if len(w.problems) != 1 || !strings.Contains(w.problems[0], "other.thing") {
		t.Errorf("wire check problems: got %q, want one, about other.thing", w.problems)
	}
	if w.checked[protocol.MessageProxiedResult] != 1 {
		t.Errorf("wire check: the routed method's answer was not checked against %s", protocol.MessageProxiedResult)
	}
}

// TestProxyOutageE2E: a slow backend answers unavailable after its timeout;
// a failing one opens its breaker (unavailable at once, the backend not
// asked), and after the open period a probe finds it recovered.
func TestProxyOutageE2E(t *testing.T) {
	release := make(chan struct{})
	slow := newTestBackend(t, func(w http.ResponseWriter, r *proxy.Request) { <-release })
	t.Cleanup(func() { close(release) })
	failing := newTestBackend(t, reply(http.StatusInternalServerError, `boom`))
	slowCfg := slow.backend("slow")
	slowCfg.Timeout = 300 * time.Millisecond
	failCfg := failing.backend("flaky")
	failCfg.BreakerThreshold, failCfg.BreakerOpen = 2, 300*time.Millisecond
	m := startServer(t, func(c *Config) {
		c.Proxy = proxy.Config{Backends: []proxy.BackendConfig{slowCfg, failCfg}, Methods: []proxy.MethodRoute{
			{Method: "slow.*", Backend: "slow"}, {Method: "flaky.*", Backend: "flaky"},
		}}
	})
	c := dialClient(t, m, "alice", "laptop", "browser")
	ctx := t.Context()

	start := time.Now()
	pe := protoErr(t, c.Call(ctx, "slow.op", nil, nil))
	if pe.Code != protocol.CodeUnavailable || pe.RetryAfterMs <= 0 {
		t.Errorf("slow.op: got %+v, want unavailable with retryAfterMs", pe)
	}
	if took := time.Since(start); took < slowCfg.Timeout {
		t.Errorf("slow.op answered after %v, before the timeout %v", took, slowCfg.Timeout)
	}

	for i := range 2 {
		if pe := protoErr(t, c.Call(ctx, "flaky.op", nil, nil)); pe.Code != protocol.CodeUnavailable || pe.RetryAfterMs <= 0 {
			t.Fatalf("flaky.op %d: got %+v, want unavailable with retryAfterMs", i, pe)
		}
	}
	pe = protoErr(t, c.Call(ctx, "flaky.op", nil, nil))
	if pe.Code != protocol.CodeUnavailable || pe.RetryAfterMs <= 0 || pe.RetryAfterMs > 300 || !strings.Contains(pe.Message, "circuit open") {
		t.Errorf("flaky.op with the breaker open: got %+v, want unavailable, retryAfterMs within the open period", pe)
	}
	if n := len(failing.requests()); n != 2 {
		t.Errorf("the failing backend got %d requests, want 2 (none while the breaker is open)", n)
	}
	// Recovered: once the open period is over a probe goes and succeeds.
	failing.set(reply(http.StatusOK, `{"result":"back"}`))
	var res string
	eventually(t, "the breaker to let a probe through", func() bool {
		return c.Call(ctx, "flaky.op", nil, &res) == nil
	})
	if res != "back" {
		t.Errorf("after recovery: got %q, want back", res)
	}
	metrics := fetchDoc(t, m, "/metrics")
	for _, want := range []string{
		`junction_proxy_requests_total{backend="slow",kind="method",outcome="timeout"} 1`,
		`junction_proxy_requests_total{backend="flaky",kind="method",outcome="failed"} 2`,
		`junction_proxy_requests_total{backend="flaky",kind="method",outcome="ok"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics: no %s", want)
		}
	}
	if !strings.Contains(string(metrics), `junction_proxy_requests_total{backend="flaky",kind="method",outcome="breaker"}`) {
		t.Errorf("metrics: no breaker outcome for flaky")
	}
}

// roomBackend hooks the room namespace: subscribe to room:vip is refused,
// a publication containing "spam" refused, one marked "shout" rewritten;
// connects are refused for mallory and described for everyone else.
func roomBackend(w http.ResponseWriter, r *proxy.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Kind == proxy.KindConnect && r.Principal.UserID == "mallory":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"code":"forbidden","message":"banned"}}`)
	case r.Kind == proxy.KindConnect:
		fmt.Fprintf(w, `{"result":{"info":{"name":%q}}}`, strings.ToUpper(r.Principal.UserID))
	case r.Kind == proxy.KindSubscribe && r.Bound["room"] == "vip":
		io.WriteString(w, `{"error":{"code":"forbidden","message":"members only"}}`)
	case r.Kind == proxy.KindPublish && strings.Contains(string(r.Data), "spam"):
		io.WriteString(w, `{"error":{"code":"bad_request","message":"no spam here"}}`)
	case r.Kind == proxy.KindPublish && strings.Contains(string(r.Data), "shout"):
		var d struct{ Text string }
		json.Unmarshal(r.Data, &d)
		out, _ := json.Marshal(map[string]any{"result": map[string]any{"data": map[string]any{"text": strings.ToUpper(d.Text), "moderated": true}}})
		w.Write(out)
	default:
		io.WriteString(w, `{}`)
	}
}

func TestProxyHooksE2E(t *testing.T) {
	rooms := newTestBackend(t, roomBackend)
	m := startServer(t, func(c *Config) {
		c.Hub.Namespaces = []hub.NamespaceConfig{{Pattern: "room:{room}", Subscribe: []string{"any"}, Publish: []string{"any"}, Presence: true}}
		c.Proxy = proxy.Config{Backends: []proxy.BackendConfig{rooms.backend("rooms")}, Connect: "rooms",
			Namespaces: []proxy.NamespaceHook{{Namespace: "room", Subscribe: "rooms", Publish: "rooms"}}}
	})
	ctx := t.Context()
	alice := dialClient(t, m, "alice", "laptop", "browser")
	bob := dialClient(t, m, "bob", "phone", "phone")

	got := make(chan client.Publication, 4)
	if _, err := bob.Subscribe(ctx, "room:lobby", func(p client.Publication) { got <- p }); err != nil {
		t.Fatalf("subscribe room:lobby: %v", err)
	}
	_, err := bob.Subscribe(ctx, "room:vip", func(client.Publication) {})
	if pe := protoErr(t, err); pe.Code != protocol.CodeForbidden || pe.Message != "members only" {
		t.Errorf("subscribe room:vip: got %+v, want forbidden members only", pe)
	}

	// Rewritten: the subscriber gets what the backend made of the data.
	if _, _, err := alice.Publish(ctx, "room:lobby", map[string]string{"text": "shout hello"}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	select {
	case p := <-got:
		if string(p.Data) != `{"moderated":true,"text":"SHOUT HELLO"}` {
			t.Errorf("subscriber got %s, want the rewritten data", p.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no publication")
	}
	// Refused: nothing is published.
	_, _, err = alice.Publish(ctx, "room:lobby", map[string]string{"text": "buy spam"})
	if pe := protoErr(t, err); pe.Code != protocol.CodeBadRequest || pe.Message != "no spam here" {
		t.Errorf("publish spam: got %+v, want bad_request no spam here", pe)
	}
	// Kept: the data goes out unchanged, with its event name, which the
	// hook saw.
	if _, _, err := alice.PublishEvent(ctx, "room:lobby", "note", map[string]string{"text": "plain"}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if string(p.Data) != `{"text":"plain"}` || p.Event != "note" {
			t.Errorf("subscriber got %s (event %q), want the data unchanged with event note (the spam never published)", p.Data, p.Event)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no publication")
	}
	events := map[string]string{}
	for _, r := range rooms.requests() {
		if r.Kind == proxy.KindPublish {
			events[string(r.Data)] = r.Event
		}
	}
	if e, ok := events[`{"text":"plain"}`]; !ok || e != "note" {
		t.Errorf("the publish hook saw event %q (seen: %v), want note", e, ok)
	}
	if e := events[`{"text":"shout hello"}`]; e != "" {
		t.Errorf("the publish hook saw event %q for a default publication, want it absent", e)
	}
	// REST publications go through the hook too: refused, then rewritten.
	tok := mintToken(t, m, "carol", "cli", "browser")
	status, raw := apiCall(t, m, tok, "POST", "/api/v1/channels/room:lobby/publish", map[string]any{"data": map[string]string{"text": "spam again"}})
	if e := decodeAPIError(t, raw); status != http.StatusBadRequest || e.Error.Code != "bad_request" || e.Error.Message != "no spam here" {
		t.Errorf("REST publish of spam: got %d %s, want 400 bad_request no spam here", status, raw)
	}
	apiJSON(t, m, tok, "POST", "/api/v1/channels/room:lobby/publish", map[string]any{"data": map[string]string{"text": "shout rest"}}, http.StatusOK, nil)
	select {
	case p := <-got:
		if string(p.Data) != `{"moderated":true,"text":"SHOUT REST"}` {
			t.Errorf("subscriber got %s from REST, want the rewritten data", p.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no publication from REST")
	}
	// The connect hook's info describes the connection in presence.
	var pres protocol.PresenceResult
	if err := bob.Call(ctx, "channel.presence", map[string]string{"topic": "room:lobby"}, &pres); err != nil {
		t.Fatal(err)
	}
	var info json.RawMessage
	for _, ci := range pres.Clients {
		if ci.UserID == "bob" {
			info = ci.Info
		}
	}
	if string(info) != `{"name":"BOB"}` {
		t.Errorf("presence info of bob: got %s, want the connect hook's info", info)
	}
	// The connect hook refuses before the upgrade, with the documented body.
	_, resp, err := dialRaw(t, m, bearer(mintToken(t, m, "mallory", "pc", "browser")), "")
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("mallory's upgrade: got %v %v, want 403", resp, err)
	}
	if e := errorBody(t, resp); e.Code != protocol.CodeForbidden || e.Message != "banned" {
		t.Errorf("mallory's refusal: got %+v, want forbidden banned", e)
	}
}

// TestProxyReloadE2E: a reload adds a route, a backend and a namespace
// while a connection stays open; an invalid configuration is refused and
// the running one kept; a change of the file reloads it too.
func TestProxyReloadE2E(t *testing.T) {
	chat := newTestBackend(t, chatBackend)
	dir := t.TempDir()
	file := filepath.Join(dir, "junction.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("log_level: error\n")
	// The watcher is off: this test reloads explicitly (Main.Reload, what
	// SIGHUP calls); TestProxyReloadOnFileChange covers the watcher.
	m := startServer(t, func(c *Config) {
		c.file = file
		c.ConfigPoll = -1
	}, func(mm *Main) {
		mm.ConfigSource = func() (*Config, error) {
			return loadConfig("serve", []string{"--config", file, "--addr", "127.0.0.1:0", "--data", mm.Config.Data}, nil, io.Discard)
		}
	})
	c := dialClient(t, m, "alice", "laptop", "browser")
	ctx := t.Context()
	connID := c.Welcome().ConnID
	if pe := protoErr(t, c.Call(ctx, "chat.send", nil, nil)); pe.Code != protocol.CodeUnknownMethod {
		t.Fatalf("chat.send before the reload: got %+v, want unknown_method", pe)
	}
	withChat := fmt.Sprintf(`log_level: error
config_poll: -1s
hub:
  max_connections_per_user: 1
  namespaces:
    - pattern: "team:{team}"
      subscribe: [any]
      publish: [any]
proxy:
  backends:
    - name: chat
      url: %s/junction
      secret: %s
      timeout: 2s
  methods:
    - method: chat.*
      backend: chat
`, chat.URL, chat.secret.Encode())
	write(withChat)
	if err := m.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	refreshWire(t, m)
	var got struct{ From string }
	if err := c.Call(ctx, "chat.send", map[string]int{"n": 1}, &got); err != nil || got.From != "alice" {
		t.Fatalf("chat.send after the reload: got %+v %v, want the backend's answer", got, err)
	}
	if _, err := c.Subscribe(ctx, "team:red", func(client.Publication) {}); err != nil {
		t.Errorf("subscribe to the reloaded namespace: %v", err)
	}
	// The reloaded limit: alice's second connection is refused, her first stays.
	_, resp, err := dialRaw(t, m, bearer(mintToken(t, m, "alice", "phone", "phone")), "")
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a second connection over the reloaded max_connections_per_user: got %v %v, want 429", resp, err)
	}

	// Invalid: a route to a backend nobody declared. Refused, the old kept.
	write(strings.Replace(withChat, "backend: chat", "backend: nope", 1))
	err = m.Reload()
	if err == nil || !strings.Contains(err.Error(), `no backend "nope"`) {
		t.Fatalf("reload of an invalid config: got %v, want it refused naming the backend", err)
	}
	if err := c.Call(ctx, "chat.send", nil, &got); err != nil {
		t.Errorf("chat.send after a refused reload: %v, want the running route kept", err)
	}
	// A namespace that does not compile is refused too, with nothing applied.
	write(strings.Replace(withChat, `"team:{team}"`, `"team:{team"`, 1) + "    - method: extra.*\n      backend: chat\n")
	if err := m.Reload(); err == nil {
		t.Fatal("reload with a bad namespace pattern: want an error")
	}
	if pe := protoErr(t, c.Call(ctx, "extra.op", nil, nil)); pe.Code != protocol.CodeUnknownMethod {
		t.Errorf("extra.op after a refused reload: got %+v, want unknown_method (nothing applied)", pe)
	}
	if c.State() != client.StateConnected || c.Welcome().ConnID != connID {
		t.Errorf("the connection did not stay open across the reloads")
	}
}

// TestProxyReloadOnFileChange: the supervised watcher reloads when the
// configuration file changes.
func TestProxyReloadOnFileChange(t *testing.T) {
	chat := newTestBackend(t, chatBackend)
	file := filepath.Join(t.TempDir(), "junction.yaml")
	if err := os.WriteFile(file, []byte("log_level: error\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startServer(t, func(c *Config) {
		c.file = file
		c.ConfigPoll = 20 * time.Millisecond
	}, func(mm *Main) {
		mm.ConfigSource = func() (*Config, error) {
			return loadConfig("serve", []string{"--config", file, "--addr", "127.0.0.1:0", "--data", mm.Config.Data}, nil, io.Discard)
		}
	})
	c := dialClient(t, m, "alice", "laptop", "browser")
	cfg := fmt.Sprintf("log_level: error\nproxy:\n  backends:\n    - {name: chat, url: %q, secret: %q}\n  methods:\n    - {method: chat.send, backend: chat}\n",
		chat.URL+"/junction", chat.secret.Encode())
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watcher to reload the file", func() bool { return m.Proxy.Method("chat.send") != nil })
	refreshWire(t, m)
	var got struct{ From string }
	if err := c.Call(context.Background(), "chat.send", nil, &got); err != nil || got.From != "alice" {
		t.Fatalf("chat.send after the file changed: got %+v %v", got, err)
	}
}
