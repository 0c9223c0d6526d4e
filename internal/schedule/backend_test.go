package schedule

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/proxy"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// backendServer is a real HTTP backend on loopback: it verifies every
// request's Standard Webhooks signature (401 otherwise), keeps the verified
// requests and answers with the current answer.
type backendServer struct {
	*httptest.Server
	secret webhook.Secret
	answer atomic.Pointer[string] // the JSON body answered with 200

	mu   sync.Mutex
	reqs []proxy.Request // guarded by mu
}

func newBackendServer(t *testing.T, answer string) *backendServer {
	t.Helper()
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b := &backendServer{secret: secret}
	b.answer.Store(&answer)
	v := &webhook.Verifier{Secrets: []webhook.Secret{secret}}
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
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, *b.answer.Load())
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backendServer) requests() []proxy.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]proxy.Request(nil), b.reqs...)
}

// install makes cfg the proxy's running configuration, as a reload does.
func install(t *testing.T, p *proxy.Proxy, cfg proxy.Config) {
	t.Helper()
	plan, err := p.Compile(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Install(plan)
}

// TestBackendAction: a job created through the API calls a configured
// backend as its user with a signed request; the result, the backend's
// refusal, a failing backend and a backend a reload removed are each
// recorded as the run's result or error; an unknown backend is refused at
// creation; a scheduled tick carries the tick's idempotency key.
func TestBackendAction(t *testing.T) {
	db := openStore(t)
	defer db.Close()
	be := newBackendServer(t, `{"result":{"archived":3}}`)
	p := proxy.New(proxy.Options{NodeID: "n-a"})
	defer p.Close()
	bcfg := proxy.BackendConfig{Name: "reports", URL: be.URL + "/junction", Secret: be.secret.Encode(), Timeout: 2 * time.Second}
	install(t, p, proxy.Config{Backends: []proxy.BackendConfig{bcfg}})
	n := startNodeWith(t, "n-a", db, &MemoryLeases{}, Config{}, p)
	defer n.stop()
	ctx := context.Background()

	spec := protocol.ScheduleSpec{Name: "nightly", Cron: "0 3 * * *", Action: protocol.ScheduleAction{
		Backend: &protocol.ScheduleBackend{Backend: "reports", User: "u1", Method: "reports.archive", Params: json.RawMessage(`{ "days": 30 }`)}}}
	job, err := n.sched.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if job.Action.Backend == nil || string(job.Action.Backend.Params) != `{"days":30}` {
		t.Fatalf("created %+v", job.Action)
	}
	run, err := n.sched.RunNow(ctx, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if !run.OK || string(run.Result) != `{"archived":3}` || run.Error != nil {
		t.Fatalf("run %+v (error %+v), want ok with the backend's result", run, run.Error)
	}
	reqs := be.requests()
	if len(reqs) != 1 {
		t.Fatalf("backend got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Kind != proxy.KindMethod || r.Principal.UserID != "u1" || r.Method != "reports.archive" ||
		string(r.Params) != `{"days":30}` || r.Schedule != "nightly" || r.Idem != "" || r.ConnID != "" || r.NodeID != "n-a" {
		t.Fatalf("backend request %+v", r)
	}

	// The backend's refusal is the run's structured error.
	be.answer.Store(ptr(`{"error":{"code":"forbidden","message":"u1 may not archive","details":{"quota":0}}}`))
	run, err = n.sched.RunNow(ctx, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if run.OK || run.Error == nil || run.Error.Code != protocol.CodeForbidden || run.Error.Message != "u1 may not archive" ||
		run.Error.Details["quota"] != float64(0) || run.Result != nil {
		t.Fatalf("refused run %+v (error %+v)", run, run.Error)
	}

	// A backend that fails (5xx) is unavailable with retryAfterMs.
	fail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer fail.Close()
	failing := proxy.BackendConfig{Name: "flaky", URL: fail.URL, Secret: be.secret.Encode(), Timeout: 2 * time.Second}
	install(t, p, proxy.Config{Backends: []proxy.BackendConfig{bcfg, failing}})
	if _, err := n.sched.Create(ctx, protocol.ScheduleSpec{Name: "flaky", Cron: "0 3 * * *", Action: protocol.ScheduleAction{
		Backend: &protocol.ScheduleBackend{Backend: "flaky", User: "u1", Method: "x.y"}}}); err != nil {
		t.Fatal(err)
	}
	run, err = n.sched.RunNow(ctx, "flaky")
	if err != nil {
		t.Fatal(err)
	}
	if run.OK || run.Error == nil || run.Error.Code != protocol.CodeUnavailable || run.Error.RetryAfterMs <= 0 {
		t.Fatalf("failed run %+v (error %+v), want unavailable with retryAfterMs", run, run.Error)
	}

	// An unknown backend is refused when the job is created.
	_, err = n.sched.Create(ctx, protocol.ScheduleSpec{Name: "ghost", Cron: "@daily", Action: protocol.ScheduleAction{
		Backend: &protocol.ScheduleBackend{Backend: "nope", User: "u1", Method: "x.y"}}})
	if pe := protocol.AsError(err); pe.Code != protocol.CodeBadRequest || pe.Details["field"] != "action.backend.backend" ||
		!strings.Contains(pe.Message, `"nope"`) {
		t.Fatalf("create with an unknown backend: %v", err)
	}
	for _, tc := range []struct {
		field string
		b     protocol.ScheduleBackend
	}{
		{"action.backend.user", protocol.ScheduleBackend{Backend: "reports", Method: "x.y"}},
		{"action.backend.method", protocol.ScheduleBackend{Backend: "reports", User: "u1"}},
		{"action.backend.params", protocol.ScheduleBackend{Backend: "reports", User: "u1", Method: "x.y", Params: json.RawMessage(`[1]`)}},
	} {
		_, err := n.sched.Create(ctx, protocol.ScheduleSpec{Name: "bad", Cron: "@daily", Action: protocol.ScheduleAction{Backend: &tc.b}})
		if pe := protocol.AsError(err); pe.Code != protocol.CodeBadRequest || pe.Details["field"] != tc.field {
			t.Errorf("create %+v: %v, want bad_request on %s", tc.b, err, tc.field)
		}
	}

	// A reload that removes the backend: the job stays, its run fails
	// with a clear error.
	install(t, p, proxy.Config{})
	run, err = n.sched.RunNow(ctx, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if run.OK || run.Error == nil || run.Error.Code != protocol.CodeNotFound || !strings.Contains(run.Error.Message, `proxy backend "reports" is not configured`) {
		t.Fatalf("run after the backend's removal %+v (error %+v)", run, run.Error)
	}
	runs, err := n.sched.Runs(ctx, "nightly", 10)
	if err != nil || len(runs) != 3 || runs[0].ID != run.ID || runs[2].OK != true {
		t.Fatalf("history %+v, %v: want the 3 runs, newest first", runs, err)
	}

	// A scheduled tick: the request's idempotency key is the tick's.
	install(t, p, proxy.Config{Backends: []proxy.BackendConfig{bcfg}})
	be.answer.Store(ptr(`{"result":{"ok":true}}`))
	if _, err := n.sched.Create(ctx, protocol.ScheduleSpec{Name: "every-second", Cron: "* * * * * *", Action: protocol.ScheduleAction{
		Backend: &protocol.ScheduleBackend{Backend: "reports", User: "u2", Method: "reports.tick"}}}); err != nil {
		t.Fatal(err)
	}
	var tick proxy.Request
	deadline := time.Now().Add(10 * time.Second)
	for tick.Method == "" {
		for _, r := range be.requests() {
			if r.Method == "reports.tick" {
				tick = r
			}
		}
		if tick.Method == "" && time.Now().After(deadline) {
			t.Fatal("no scheduled backend call within 10s of a job ticking every second")
		}
		time.Sleep(20 * time.Millisecond) // polls an observable condition
	}
	ticked, err := n.sched.Runs(ctx, "every-second", 10)
	if err != nil || len(ticked) == 0 {
		t.Fatalf("runs %+v, %v", ticked, err)
	}
	if tick.Principal.UserID != "u2" || tick.Schedule != "every-second" || !strings.HasPrefix(tick.Idem, "schedule:every-second:") {
		t.Fatalf("scheduled request %+v", tick)
	}
}

// TestBackendActionNeedsProxy: a configured job naming a backend is
// refused at start when the proxy does not declare it (or there is no
// proxy).
func TestBackendActionNeedsProxy(t *testing.T) {
	db := openStore(t)
	defer db.Close()
	h, err := hub.New(hub.Config{NodeID: "n-a", Transport: "portable"}, hub.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	cfg := Config{Jobs: []JobConfig{{Name: "nightly", Cron: "@daily",
		Backend: &BackendCall{Backend: "reports", User: "u1", Method: "reports.archive", Params: map[string]any{"days": 30}}}}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate (no proxy to check against): %v", err)
	}
	p := proxy.New(proxy.Options{})
	defer p.Close()
	for name, backends := range map[string]Backends{"no proxy": nil, "undeclared": p} {
		_, err := New(cfg, Deps{Hub: h, Store: db, Backends: backends})
		if err == nil || !strings.Contains(err.Error(), `jobs[0] (nightly): backend.backend: no backend named "reports" in proxy.backends`) {
			t.Errorf("%s: New: %v", name, err)
		}
	}
	secret, _ := webhook.NewSecret()
	install(t, p, proxy.Config{Backends: []proxy.BackendConfig{{Name: "reports", URL: "http://127.0.0.1:1/", Secret: secret.Encode()}}})
	s, err := New(cfg, Deps{Hub: h, Store: db, Backends: p})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(context.Background(), "nightly")
	if err != nil || got.Action.Backend == nil || string(got.Action.Backend.Params) != `{"days":30}` {
		t.Fatalf("configured job %+v, %v", got, err)
	}
	missing := Config{Jobs: []JobConfig{{Name: "x", Cron: "@daily", Backend: &BackendCall{Backend: "reports", User: "u1"}}}}
	if err := missing.Validate(); err == nil || !strings.Contains(err.Error(), "backend.method: required") {
		t.Errorf("Validate without a method: %v", err)
	}
}

func ptr(s string) *string { return &s }
