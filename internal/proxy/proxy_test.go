package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/delivery"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// backendServer is a real HTTP backend on loopback that verifies every
// request's Standard Webhooks signature (401 if it does not verify, as a
// real backend would) and answers with answer.
type backendServer struct {
	*httptest.Server
	secret webhook.Secret
	answer atomic.Pointer[func(w http.ResponseWriter, req *Request)]

	mu   sync.Mutex
	reqs []Request // guarded by mu: the verified requests
}

func newBackendServer(t *testing.T, answer func(w http.ResponseWriter, req *Request)) *backendServer {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b := &backendServer{secret: s}
	b.answer.Store(&answer)
	v := &webhook.Verifier{Secrets: []webhook.Secret{s}}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _, err := v.VerifyRequest(r, 1<<20)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req Request
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.reqs = append(b.reqs, req)
		b.mu.Unlock()
		(*b.answer.Load())(w, &req)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backendServer) requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.reqs...)
}

func (b *backendServer) config(name string) BackendConfig {
	return BackendConfig{Name: name, URL: b.URL + "/junction", Secret: b.secret.Encode(), Timeout: 2 * time.Second}
}

func answerJSON(status int, body string) func(http.ResponseWriter, *Request) {
	return func(w http.ResponseWriter, _ *Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// manualClock is the breaker's time: it moves only when a test says so.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Sleep moves the clock instead of waiting (backoff between retries).
func (c *manualClock) Sleep(ctx context.Context, d time.Duration, _ <-chan struct{}) error {
	c.Advance(d)
	return ctx.Err()
}

type env struct {
	p     *Proxy
	reg   *prometheus.Registry
	clock *manualClock
}

func newEnv(t *testing.T, cfg Config, reserved ...string) *env {
	t.Helper()
	e := &env{reg: prometheus.NewPedanticRegistry(), clock: &manualClock{now: time.Now()}}
	e.p = New(Options{Registerer: e.reg, NodeID: "n1", Clock: e.clock})
	t.Cleanup(e.p.Close)
	e.install(t, cfg, reserved...)
	return e
}

func (e *env) install(t *testing.T, cfg Config, reserved ...string) {
	t.Helper()
	plan, err := e.p.Compile(cfg, func() []string { return reserved })
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	e.p.Install(plan)
}

func (e *env) count(t *testing.T, backend, kind, outcome string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "junction_proxy_requests_total" {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			want := map[string]string{"backend": backend, "kind": kind, "outcome": outcome}
			for _, l := range m.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

var alice = &auth.Principal{UserID: "alice", DeviceID: "laptop", Kind: "browser", Scopes: []string{"read", "write"}}

// callMethod calls method through the route the proxy serves it with.
func (e *env) callMethod(t *testing.T, method, params string) (json.RawMessage, *protocol.Error) {
	t.Helper()
	m := e.p.Method(method)
	if m == nil {
		t.Fatalf("no route for %s", method)
	}
	res, err := m.Handler(context.Background(), &hub.Call{Principal: alice, ID: "1", Method: method, Params: json.RawMessage(params), Idem: "k1"})
	if err != nil {
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			t.Fatalf("%s: error %v is not a protocol error", method, err)
		}
		return nil, pe
	}
	return res.(json.RawMessage), nil
}

func TestConfigValidate(t *testing.T) {
	secret, _ := webhook.NewSecret()
	good := BackendConfig{Name: "chat", URL: "http://127.0.0.1:9/x", Secret: secret.Encode()}
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"empty", Config{}, ""},
		{"good", Config{Backends: []BackendConfig{good}, Methods: []MethodRoute{{Method: "chat.*", Backend: "chat"}, {Method: "billing.refund", Backend: "chat", Scope: "admin"}},
			Namespaces: []NamespaceHook{{Namespace: "room", Subscribe: "chat", Publish: "chat"}}, Connect: "chat"}, ""},
		{"bad name", Config{Backends: []BackendConfig{{Name: "a b", URL: good.URL, Secret: good.Secret}}}, "name"},
		{"duplicate backend", Config{Backends: []BackendConfig{good, good}}, "declared twice"},
		{"bad url", Config{Backends: []BackendConfig{{Name: "x", URL: "ftp://h/", Secret: good.Secret}}}, "url"},
		{"no secret", Config{Backends: []BackendConfig{{Name: "x", URL: good.URL}}}, "secret"},
		{"negative timeout", Config{Backends: []BackendConfig{{Name: "x", URL: good.URL, Secret: good.Secret, Timeout: -1}}}, "timeout"},
		{"unknown backend", Config{Backends: []BackendConfig{good}, Methods: []MethodRoute{{Method: "chat.*", Backend: "nope"}}}, `no backend "nope"`},
		{"bad prefix", Config{Backends: []BackendConfig{good}, Methods: []MethodRoute{{Method: "chat*", Backend: "chat"}}}, "prefix"},
		{"bad method", Config{Backends: []BackendConfig{good}, Methods: []MethodRoute{{Method: "chat..x", Backend: "chat"}}}, "method name"},
		{"duplicate route", Config{Backends: []BackendConfig{good}, Methods: []MethodRoute{{Method: "chat.*", Backend: "chat"}, {Method: "chat.*", Backend: "chat"}}}, "twice"},
		{"hook without backend", Config{Backends: []BackendConfig{good}, Namespaces: []NamespaceHook{{Namespace: "room"}}}, "names no backend"},
		{"connect unknown", Config{Backends: []BackendConfig{good}, Connect: "x"}, "proxy.connect"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: got %v, want no error", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.wantErr)
		}
	}
	// A route may not cover a method of the hub's table.
	p := New(Options{})
	_, err := p.Compile(Config{Backends: []BackendConfig{good}, Methods: []MethodRoute{{Method: "channel.*", Backend: "chat"}}},
		func() []string { return []string{"channel.subscribe"} })
	if err == nil || !strings.Contains(err.Error(), `"channel.subscribe"`) {
		t.Errorf("route over channel.*: got %v, want it refused naming channel.subscribe", err)
	}
}

func TestMethodRouting(t *testing.T) {
	a := newBackendServer(t, answerJSON(200, `{"result":"a"}`))
	b := newBackendServer(t, answerJSON(200, `{"result":"b"}`))
	e := newEnv(t, Config{Backends: []BackendConfig{a.config("a"), b.config("b")}, Methods: []MethodRoute{
		{Method: "chat.*", Backend: "a"}, {Method: "chat.admin.*", Backend: "b", Scope: "admin"}, {Method: "chat.send", Backend: "b"},
	}})
	for _, c := range []struct{ method, want, scope string }{
		{"chat.history", `"a"`, hub.ScopeAuthenticated},
		{"chat.admin.kick", `"b"`, "admin"},
		{"chat.send", `"b"`, hub.ScopeAuthenticated},
	} {
		m := e.p.Method(c.method)
		if m == nil || m.Scope != c.scope || m.Mode != hub.Async {
			t.Fatalf("%s: got %+v, want an Async method with scope %s", c.method, m, c.scope)
		}
		res, pe := e.callMethod(t, c.method, `{"x":1}`)
		if pe != nil || string(res) != c.want {
			t.Errorf("%s: got %s %v, want %s", c.method, res, pe, c.want)
		}
	}
	for _, name := range []string{"chat.", "chats.x", "other.x", "chat"} {
		if m := e.p.Method(name); m != nil {
			t.Errorf("%s: got route %s, want none", name, m.Name)
		}
	}
	// The request carries the principal, the method, the params and idem.
	reqs := a.requests()
	if len(reqs) != 1 {
		t.Fatalf("backend a got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Kind != KindMethod || r.Method != "chat.history" || string(r.Params) != `{"x":1}` || r.Idem != "k1" || r.NodeID != "n1" ||
		r.Principal.UserID != "alice" || r.Principal.DeviceID != "laptop" || r.Principal.Kind != "browser" || strings.Join(r.Principal.Scopes, ",") != "read,write" {
		t.Errorf("request: got %+v", r)
	}
	if got := e.p.Routes(); len(got) != 3 {
		t.Errorf("routes: got %v, want 3", got)
	}
}

func TestAnswers(t *testing.T) {
	be := newBackendServer(t, nil)
	e := newEnv(t, Config{Backends: []BackendConfig{be.config("x")}, Methods: []MethodRoute{{Method: "x.*", Backend: "x"}}})
	cases := []struct {
		name    string
		answer  func(http.ResponseWriter, *Request)
		want    string
		code    protocol.Code
		retry   int64
		msg     string
		outcome string
	}{
		{"result", answerJSON(200, `{"result":{"n":1}}`), `{"n":1}`, "", 0, "", outcomeOK},
		{"refused 200", answerJSON(200, `{"error":{"code":"forbidden","message":"not in this room","details":{"room":"r1"}}}`), "", protocol.CodeForbidden, 0, "not in this room", outcomeRefused},
		{"refused 403", answerJSON(403, `{"error":{"code":"forbidden","message":"no"}}`), "", protocol.CodeForbidden, 0, "no", outcomeRefused},
		{"refused with retry", answerJSON(200, `{"error":{"code":"rate_limited","message":"slow down","retryAfterMs":1500}}`), "", protocol.CodeRateLimited, 1500, "slow down", outcomeRefused},
		{"unknown code", answerJSON(200, `{"error":{"code":"teapot","message":"secret detail"}}`), "", protocol.CodeInternal, 0, "internal error", outcomeRefused},
		{"no result", answerJSON(200, `{"result":null}`), "", protocol.CodeInternal, 0, "internal error", outcomeInvalid},
		{"not json", answerJSON(200, `<html>`), "", protocol.CodeInternal, 0, "internal error", outcomeInvalid},
		{"404 without body", answerJSON(404, ``), "", protocol.CodeInternal, 0, "internal error", outcomeInvalid},
		{"429", func(w http.ResponseWriter, _ *Request) { w.Header().Set("Retry-After", "3"); w.WriteHeader(429) }, "", protocol.CodeRateLimited, 3000, "", outcomeFailed},
		{"503", answerJSON(503, `oops`), "", protocol.CodeUnavailable, FailureRetryAfter.Milliseconds(), "", outcomeFailed},
		{"503 with error", answerJSON(503, `{"error":{"code":"unavailable","message":"maintenance","retryAfterMs":60000}}`), "", protocol.CodeUnavailable, 60000, "maintenance", outcomeRefused},
		{"too large", answerJSON(200, `{"result":"`+strings.Repeat("x", DefaultMaxResponseBytes)+`"}`), "", protocol.CodeInternal, 0, "", outcomeTooLarge},
	}
	for _, c := range cases {
		be.answer.Store(&c.answer)
		before := e.count(t, "x", KindMethod, c.outcome)
		res, pe := e.callMethod(t, "x.do", `{}`)
		switch {
		case c.code == "" && (pe != nil || string(res) != c.want):
			t.Errorf("%s: got %s %v, want %s", c.name, res, pe, c.want)
		case c.code != "" && (pe == nil || pe.Code != c.code || pe.RetryAfterMs != c.retry || (c.msg != "" && pe.Message != c.msg)):
			t.Errorf("%s: got %s %+v, want %s retryAfterMs %d message %q", c.name, res, pe, c.code, c.retry, c.msg)
		}
		if got := e.count(t, "x", KindMethod, c.outcome); got != before+1 {
			t.Errorf("%s: outcome %s counted %v times, want %v", c.name, c.outcome, got, before+1)
		}
	}
}

// TestSlowBackend: a backend that does not answer within its timeout gives
// unavailable with retryAfterMs, after the timeout and not much later.
func TestSlowBackend(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	be := newBackendServer(t, func(w http.ResponseWriter, r *Request) { <-release })
	cfg := be.config("slow")
	cfg.Timeout = 200 * time.Millisecond
	e := newEnv(t, Config{Backends: []BackendConfig{cfg}, Methods: []MethodRoute{{Method: "slow.*", Backend: "slow"}}})
	start := time.Now()
	_, pe := e.callMethod(t, "slow.op", `{}`)
	took := time.Since(start)
	if pe == nil || pe.Code != protocol.CodeUnavailable || pe.RetryAfterMs <= 0 || !strings.Contains(pe.Message, "did not answer") {
		t.Fatalf("got %+v, want unavailable with retryAfterMs naming the timeout", pe)
	}
	if took < cfg.Timeout || took > cfg.Timeout+5*time.Second {
		t.Errorf("answered after %v, want about the timeout %v", took, cfg.Timeout)
	}
	if got := e.count(t, "slow", KindMethod, outcomeTimeout); got != 1 {
		t.Errorf("timeouts counted: got %v, want 1", got)
	}
}

// TestDownBackend: a backend nobody listens for answers unavailable.
func TestDownBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	secret, _ := webhook.NewSecret()
	e := newEnv(t, Config{Backends: []BackendConfig{{Name: "down", URL: "http://" + addr + "/", Secret: secret.Encode()}},
		Methods: []MethodRoute{{Method: "down.*", Backend: "down"}}})
	_, pe := e.callMethod(t, "down.op", `{}`)
	if pe == nil || pe.Code != protocol.CodeUnavailable || pe.RetryAfterMs != FailureRetryAfter.Milliseconds() {
		t.Fatalf("got %+v, want unavailable with retryAfterMs %d", pe, FailureRetryAfter.Milliseconds())
	}
}

// TestBreaker: a failing backend opens its breaker after the threshold;
// while open requests answer unavailable without reaching it, with the
// time left as retryAfterMs; after the open period one probe goes and its
// success closes the breaker.
func TestBreaker(t *testing.T) {
	be := newBackendServer(t, answerJSON(500, `down`))
	cfg := be.config("flaky")
	cfg.BreakerThreshold, cfg.BreakerOpen = 3, 10*time.Second
	e := newEnv(t, Config{Backends: []BackendConfig{cfg}, Methods: []MethodRoute{{Method: "f.*", Backend: "flaky"}}})
	for i := range 3 {
		if _, pe := e.callMethod(t, "f.op", `{}`); pe == nil || pe.Code != protocol.CodeUnavailable {
			t.Fatalf("call %d: got %+v, want unavailable", i, pe)
		}
	}
	if st := e.p.Breaker("flaky"); st.State != delivery.Open {
		t.Fatalf("breaker: got %s, want open after 3 failures", st.State)
	}
	e.clock.Advance(4 * time.Second)
	_, pe := e.callMethod(t, "f.op", `{}`)
	if pe == nil || pe.Code != protocol.CodeUnavailable || pe.RetryAfterMs != 6000 {
		t.Fatalf("while open: got %+v, want unavailable with retryAfterMs 6000", pe)
	}
	if n := len(be.requests()); n != 3 {
		t.Fatalf("backend got %d requests, want 3 (none while open)", n)
	}
	if got := e.count(t, "flaky", KindMethod, outcomeBreaker); got != 1 {
		t.Errorf("breaker outcomes: got %v, want 1", got)
	}
	// Recovered: the probe after the open period succeeds and closes it.
	ok := answerJSON(200, `{"result":"up"}`)
	be.answer.Store(&ok)
	e.clock.Advance(6 * time.Second)
	if res, pe := e.callMethod(t, "f.op", `{}`); pe != nil || string(res) != `"up"` {
		t.Fatalf("probe: got %s %+v, want the result", res, pe)
	}
	if st := e.p.Breaker("flaky"); st.State != delivery.Closed {
		t.Fatalf("breaker after a good probe: got %s, want closed", st.State)
	}
}

// TestConcurrencyLimit: beyond max_concurrency (and an empty queue) a
// request answers unavailable at once; with a queue it waits for a slot.
func TestConcurrencyLimit(t *testing.T) {
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	be := newBackendServer(t, func(w http.ResponseWriter, r *Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, `{"result":true}`)
	})
	cfg := be.config("one")
	cfg.MaxConcurrency = 1
	e := newEnv(t, Config{Backends: []BackendConfig{cfg}, Methods: []MethodRoute{{Method: "one.*", Backend: "one"}}})
	first := make(chan *protocol.Error, 1)
	go func() { _, pe := e.callMethod(t, "one.op", `{}`); first <- pe }()
	<-entered
	_, pe := e.callMethod(t, "one.op", `{}`)
	if pe == nil || pe.Code != protocol.CodeUnavailable || pe.RetryAfterMs != BusyRetryAfter.Milliseconds() {
		t.Fatalf("over the limit: got %+v, want unavailable with retryAfterMs %d", pe, BusyRetryAfter.Milliseconds())
	}
	if got := e.count(t, "one", KindMethod, outcomeBusy); got != 1 {
		t.Errorf("busy outcomes: got %v, want 1", got)
	}
	// With a queue of one: the next request waits and goes once the first ends.
	cfg.MaxQueue = 1
	e.install(t, Config{Backends: []BackendConfig{cfg}, Methods: []MethodRoute{{Method: "one.*", Backend: "one"}}})
	second := make(chan *protocol.Error, 1)
	go func() { _, pe := e.callMethod(t, "one.op", `{}`); second <- pe }()
	close(release)
	if pe := <-first; pe != nil {
		t.Fatalf("first: %+v", pe)
	}
	if pe := <-second; pe != nil {
		t.Fatalf("queued: got %+v, want the result", pe)
	}
}

// TestHooks: subscribe refuses or allows, publish refuses, rewrites or
// keeps the data, connect refuses or attaches info.
func TestHooks(t *testing.T) {
	be := newBackendServer(t, func(w http.ResponseWriter, r *Request) {
		switch {
		case r.Kind == KindConnect && r.Principal.UserID == "mallory":
			io.WriteString(w, `{"error":{"code":"forbidden","message":"banned"}}`)
		case r.Kind == KindConnect:
			io.WriteString(w, `{"result":{"info":{"plan": "pro"}}}`)
		case r.Kind == KindSubscribe && r.Bound["room"] == "secret":
			w.WriteHeader(403)
			io.WriteString(w, `{"error":{"code":"forbidden","message":"members only"}}`)
		case r.Kind == KindSubscribe:
			io.WriteString(w, `{}`)
		case r.Kind == KindPublish && strings.Contains(string(r.Data), "spam"):
			io.WriteString(w, `{"error":{"code":"bad_request","message":"no spam"}}`)
		case r.Kind == KindPublish && strings.Contains(string(r.Data), "shout"):
			io.WriteString(w, `{"result":{"data":{"text": "SHOUT", "by":"`+r.Principal.UserID+`"}}}`)
		default:
			io.WriteString(w, `{"result":{}}`)
		}
	})
	e := newEnv(t, Config{Backends: []BackendConfig{be.config("hooks")}, Connect: "hooks",
		Namespaces: []NamespaceHook{{Namespace: "room", Subscribe: "hooks", Publish: "hooks"}}})
	ctx := context.Background()
	topic := func(room string) hub.Topic {
		tp, err := hub.MatchTopic("room:{room}", "room:"+room)
		if err != nil {
			t.Fatal(err)
		}
		return tp
	}
	if info, err := e.p.Connect(ctx, alice); err != nil || string(info) != `{"plan":"pro"}` {
		t.Errorf("connect: got %s %v, want the info", info, err)
	}
	if _, err := e.p.Connect(ctx, &auth.Principal{UserID: "mallory"}); protocol.AsError(err).Code != protocol.CodeForbidden {
		t.Errorf("connect mallory: got %v, want forbidden", err)
	}
	if err := e.p.Subscribe(ctx, alice, topic("lobby"), "c1"); err != nil {
		t.Errorf("subscribe lobby: %v", err)
	}
	if err := e.p.Subscribe(ctx, alice, topic("secret"), "c1"); protocol.AsError(err).Code != protocol.CodeForbidden || protocol.AsError(err).Message != "members only" {
		t.Errorf("subscribe secret: got %v, want forbidden members only", err)
	}
	for _, c := range []struct{ data, want string }{
		{`{"text":"hi"}`, `{"text":"hi"}`},
		{`{"text":"shout"}`, `{"text":"SHOUT","by":"alice"}`},
	} {
		got, err := e.p.Publish(ctx, alice, topic("lobby"), "", json.RawMessage(c.data), &hub.ClientInfo{ConnID: "c1"})
		if err != nil || string(got) != c.want {
			t.Errorf("publish %s: got %s %v, want %s", c.data, got, err, c.want)
		}
	}
	if _, err := e.p.Publish(ctx, alice, topic("lobby"), "", json.RawMessage(`{"text":"spam"}`), nil); protocol.AsError(err).Code != protocol.CodeBadRequest {
		t.Errorf("publish spam: got %v, want bad_request", err)
	}
	// Namespaces without a hook are not sent (and say so: the hub batches
	// their publications without calling Publish).
	if !e.p.PublishHooks("room") || e.p.PublishHooks("news") {
		t.Errorf("PublishHooks: got room %v, news %v; want true, false", e.p.PublishHooks("room"), e.p.PublishHooks("news"))
	}
	n := len(be.requests())
	other, _ := hub.MatchTopic("news:{id}", "news:1")
	if err := e.p.Subscribe(ctx, alice, other, "c1"); err != nil {
		t.Fatal(err)
	}
	if len(be.requests()) != n {
		t.Errorf("a namespace without hooks reached the backend")
	}
	// The subscribe request names the topic, its namespace and bound parameters.
	var sub *Request
	for _, r := range be.requests() {
		if r.Kind == KindSubscribe {
			sub = &r
			break
		}
	}
	if sub == nil || sub.Topic != "room:lobby" || sub.Namespace != "room" || sub.Bound["room"] != "lobby" || sub.ConnID != "c1" {
		t.Errorf("subscribe request: got %+v", sub)
	}
}

// TestReloadKeepsSlots: a backend whose settings did not change keeps its
// concurrency slots across Install; a changed one starts fresh; routes
// follow the new configuration.
func TestReloadKeepsSlots(t *testing.T) {
	be := newBackendServer(t, answerJSON(200, `{"result":1}`))
	cfg := Config{Backends: []BackendConfig{be.config("a")}, Methods: []MethodRoute{{Method: "a.*", Backend: "a"}}}
	e := newEnv(t, cfg)
	old := e.p.state.Load().backends["a"]
	cfg.Methods = append(cfg.Methods, MethodRoute{Method: "b.x", Backend: "a"})
	e.install(t, cfg)
	if e.p.state.Load().backends["a"] != old {
		t.Errorf("an unchanged backend was rebuilt")
	}
	if e.p.Method("b.x") == nil {
		t.Errorf("new route not served")
	}
	cfg.Backends[0].Timeout = time.Second
	e.install(t, cfg)
	if e.p.state.Load().backends["a"] == old {
		t.Errorf("a changed backend kept its old settings")
	}
	if _, err := e.p.Compile(Config{Methods: []MethodRoute{{Method: "z.*", Backend: "gone"}}}, nil); err == nil {
		t.Fatal("compile of a bad config: want an error")
	}
	if e.p.Method("b.x") == nil {
		t.Errorf("a refused config changed the running routes")
	}
}

// TestDocsExampleVerifies: the signed request of docs/proxy.md verifies
// with the secret of its configuration example, as a backend would check it.
func TestDocsExampleVerifies(t *testing.T) {
	raw, err := os.ReadFile("../../docs/proxy.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	field := func(prefix string) string {
		i := strings.Index(doc, prefix)
		if i < 0 {
			t.Fatalf("docs/proxy.md: no %q", prefix)
		}
		rest := doc[i+len(prefix):]
		return strings.TrimSpace(rest[:strings.IndexByte(rest, '\n')])
	}
	secret, err := webhook.ParseSecret(strings.Fields(field("secret: "))[0])
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", field("webhook-id: "))
	h.Set("webhook-timestamp", field("webhook-timestamp: "))
	h.Set("webhook-signature", field("webhook-signature: "))
	body := field("webhook-signature: " + h.Get("webhook-signature") + "\n\n")
	ts, _ := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	v := &webhook.Verifier{Secrets: []webhook.Secret{secret}, Now: func() time.Time { return time.Unix(ts, 0) }}
	if _, err := v.Verify(h, []byte(body)); err != nil {
		t.Fatalf("the docs' example does not verify: %v", err)
	}
	var req Request
	if err := json.Unmarshal([]byte(body), &req); err != nil || req.Kind != KindMethod || req.Principal.UserID != "alice" {
		t.Fatalf("the docs' example body: got %+v %v, want a method request of alice", req, err)
	}
}

// TestCallBackend: the scheduler's call, outside any route, is a signed
// method request with the caller, the job's name and the idempotency key;
// its result may be absent; it shares the backend's metrics and breaker
// with routed calls; an undeclared backend answers not_found.
func TestCallBackend(t *testing.T) {
	be := newBackendServer(t, answerJSON(200, `{"result": {"n": 1}}`))
	cfg := be.config("jobs")
	cfg.BreakerThreshold, cfg.BreakerOpen = 1, 10*time.Second
	e := newEnv(t, Config{Backends: []BackendConfig{cfg}, Methods: []MethodRoute{{Method: "jobs.*", Backend: "jobs"}}})
	if !e.p.HasBackend("jobs") || e.p.HasBackend("nope") {
		t.Fatal("HasBackend does not follow the configuration")
	}
	ctx := context.Background()
	res, err := e.p.CallBackend(ctx, "jobs", &auth.Principal{UserID: "u1"}, "jobs.run", json.RawMessage(`{"a":1}`), "nightly", "schedule:nightly:60")
	if err != nil || string(res) != `{"n":1}` {
		t.Fatalf("call: %s, %v", res, err)
	}
	r := be.requests()[0]
	if r.Kind != KindMethod || r.Principal.UserID != "u1" || r.Principal.DeviceID != "" || r.Method != "jobs.run" ||
		string(r.Params) != `{"a":1}` || r.Schedule != "nightly" || r.Idem != "schedule:nightly:60" || r.ConnID != "" || r.NodeID != "n1" {
		t.Fatalf("request %+v", r)
	}
	empty := answerJSON(200, `{}`)
	be.answer.Store(&empty)
	if res, err := e.p.CallBackend(ctx, "jobs", &auth.Principal{UserID: "u1"}, "jobs.run", nil, "nightly", ""); err != nil || res != nil {
		t.Fatalf("an answer without result: %s, %v; want no result, no error", res, err)
	}
	if got := e.count(t, "jobs", KindMethod, outcomeOK); got != 2 {
		t.Errorf("ok outcomes: %v, want 2", got)
	}
	// A failure opens the breaker for the routed calls too.
	down := answerJSON(500, `down`)
	be.answer.Store(&down)
	if _, err := e.p.CallBackend(ctx, "jobs", &auth.Principal{UserID: "u1"}, "jobs.run", nil, "nightly", ""); protocol.AsError(err).Code != protocol.CodeUnavailable {
		t.Fatalf("failing backend: %v, want unavailable", err)
	}
	if _, pe := e.callMethod(t, "jobs.list", `{}`); pe == nil || pe.Code != protocol.CodeUnavailable || e.count(t, "jobs", KindMethod, outcomeBreaker) != 1 {
		t.Fatalf("routed call after the scheduler's failure: %+v, want unavailable (circuit open)", pe)
	}
	e.install(t, Config{})
	if _, err := e.p.CallBackend(ctx, "jobs", &auth.Principal{UserID: "u1"}, "jobs.run", nil, "nightly", ""); protocol.AsError(err).Code != protocol.CodeNotFound ||
		!strings.Contains(err.Error(), `proxy backend "jobs" is not configured`) {
		t.Fatalf("removed backend: %v, want not_found", err)
	}
}
