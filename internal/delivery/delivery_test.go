package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/webhook"
)

// receiver is a real HTTP server on loopback that verifies every request's
// signature, answers 401 if it does not verify, else respond(n) for the n-th
// request (1-based).
type receiver struct {
	*httptest.Server
	t       *testing.T
	secret  webhook.Secret
	respond func(n int, w http.ResponseWriter, r *http.Request)

	mu   sync.Mutex
	reqs []received // guarded by mu
}

type received struct {
	id   string
	body string
	err  error // the signature check
}

func newReceiver(t *testing.T, clock *fakeClock, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, secret: s, respond: respond}
	v := &webhook.Verifier{Secrets: []webhook.Secret{s}, Now: clock.Now}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, m, err := v.VerifyRequest(r, 1<<20)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, received{id: m.ID, body: string(body), err: err})
		n := len(rc.reqs)
		rc.mu.Unlock()
		if err != nil { // as a real backend: refuse what does not verify
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		rc.respond(n, w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) received() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs)
}

func (rc *receiver) target(p Policy) Target {
	return Target{ID: "com.example.app", URL: rc.URL + "/hooks/junction", Secrets: []webhook.Secret{rc.secret}, Internal: true, Policy: p}
}

func statuses(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(codes[min(n, len(codes))-1])
	}
}

// capJitter makes the backoff deterministic: always the cap.
func capJitter(max time.Duration) time.Duration { return max }

type testEnv struct {
	d     *Deliverer
	clock *fakeClock
	log   *MemoryLog
	reg   *prometheus.Registry
}

func newEnv(auto bool) *testEnv {
	e := &testEnv{clock: newFakeClock(auto), log: &MemoryLog{}, reg: prometheus.NewPedanticRegistry()}
	e.d = New(Config{Registerer: e.reg, Log: e.log, Clock: e.clock, Jitter: capJitter})
	return e
}

// counter reads a counter from the registry by name and label values.
func (e *testEnv) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func stages(as []Attempt) string {
	var s []string
	for _, a := range slices.Backward(as) {
		if a.Stage == StageResponse {
			s = append(s, fmt.Sprint(a.Status))
		} else {
			s = append(s, string(a.Stage))
		}
	}
	return strings.Join(s, ",")
}

func TestDeliverSigned(t *testing.T) {
	e := newEnv(true)
	rc := newReceiver(t, e.clock, statuses(204))
	res, err := e.d.Deliver(t.Context(), rc.target(Policy{}), Message{ID: "msg_1", Body: []byte(`{"type":"session.start"}`)})
	if err != nil || res.Outcome != OutcomeDelivered || res.Attempts != 1 || res.Status != 204 {
		t.Fatalf("got %+v, %v; want delivered in 1 attempt", res, err)
	}
	got := rc.received()
	if len(got) != 1 || got[0].err != nil || got[0].id != "msg_1" || got[0].body != `{"type":"session.start"}` {
		t.Fatalf("receiver got %+v, want one verified request", got)
	}
	log := e.log.List("com.example.app", 0)
	if len(log) != 1 || log[0].Stage != StageResponse || log[0].Status != 204 || log[0].Delivery != "msg_1" || log[0].Attempt != 1 || log[0].Latency <= 0 {
		t.Fatalf("log: got %+v", log)
	}
	if n := e.counter(t, "junction_delivery_total", "outcome", "delivered", "purpose", "webhook"); n != 1 {
		t.Errorf("delivered counter: got %v, want 1", n)
	}
	if n := e.counter(t, "junction_delivery_attempts_total", "stage", "response", "result", "2xx"); n != 1 {
		t.Errorf("attempts counter: got %v, want 1", n)
	}
}

func TestNewIDWhenNoneGiven(t *testing.T) {
	e := newEnv(true)
	rc := newReceiver(t, e.clock, statuses(200))
	res, err := e.d.Deliver(t.Context(), rc.target(Policy{}), Message{Body: []byte(`{}`)})
	if err != nil || !strings.HasPrefix(res.ID, "msg_") || rc.received()[0].id != res.ID {
		t.Fatalf("got %+v, %v; receiver saw %q", res, err, rc.received()[0].id)
	}
}

// TestRetryBackoff: 5xx are retried with exponential backoff (full jitter,
// here at its cap), the same webhook-id every time.
func TestRetryBackoff(t *testing.T) {
	e := newEnv(true)
	rc := newReceiver(t, e.clock, statuses(503, 500, 502, 200))
	res, err := e.d.Deliver(t.Context(), rc.target(Policy{BaseDelay: time.Second, BreakerThreshold: 100}), Message{ID: "msg_r", Body: []byte(`{}`)})
	if err != nil || res.Attempts != 4 || res.Outcome != OutcomeDelivered {
		t.Fatalf("got %+v, %v; want delivered at the 4th attempt", res, err)
	}
	if got, want := e.clock.sleeps(), []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("backoff: got %v, want %v", got, want)
	}
	for i, r := range rc.received() {
		if r.id != "msg_r" || r.err != nil {
			t.Errorf("request %d: id %q, signature %v", i+1, r.id, r.err)
		}
	}
	if got := stages(e.log.List("com.example.app", 0)); got != "503,500,502,200" {
		t.Errorf("log: got %s", got)
	}
	if got := e.log.List("com.example.app", 0)[1].Retry; got != 4*time.Second {
		t.Errorf("log of attempt 3: retry %v, want 4s", got)
	}
}

// TestFullJitter: the wait is drawn in [0, cap] by the jitter, and the cap
// doubles up to MaxDelay.
func TestFullJitter(t *testing.T) {
	clock := newFakeClock(true)
	var caps []time.Duration
	d := New(Config{Clock: clock, Jitter: func(max time.Duration) time.Duration { caps = append(caps, max); return max / 3 }})
	rc := newReceiver(t, clock, statuses(500))
	_, err := d.Deliver(t.Context(), rc.target(Policy{BaseDelay: time.Second, MaxDelay: 5 * time.Second, MaxAttempts: 6, Budget: time.Hour, BreakerThreshold: 100}), Message{Body: []byte(`{}`)})
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("got %v, want ErrExhausted", err)
	}
	s := time.Second
	if want := []time.Duration{s, 2 * s, 4 * s, 5 * s, 5 * s}; !slices.Equal(caps, want) {
		t.Errorf("caps: got %v, want %v", caps, want)
	}
	if got, want := clock.sleeps(), []time.Duration{s / 3, 2 * s / 3, 4 * s / 3, 5 * s / 3, 5 * s / 3}; !slices.Equal(got, want) {
		t.Errorf("waits: got %v, want %v", got, want)
	}
	// The default jitter stays within [0, cap].
	def := New(Config{})
	for range 1000 {
		if j := def.jitter(time.Second); j < 0 || j > time.Second {
			t.Fatalf("default jitter gave %v for a 1s cap", j)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header func(now time.Time) string
		want   time.Duration
	}{
		{"429 seconds", 429, func(time.Time) string { return "7" }, 7 * time.Second},
		{"503 HTTP date", 503, func(now time.Time) string { return now.Add(12 * time.Second).UTC().Format(http.TimeFormat) }, 12 * time.Second},
		{"date in the past", 503, func(now time.Time) string { return now.Add(-time.Minute).UTC().Format(http.TimeFormat) }, 0},
		{"garbage falls back to backoff", 503, func(time.Time) string { return "soon" }, DefaultBaseDelay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(true)
			rc := newReceiver(t, e.clock, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", tt.header(e.clock.Now()))
					w.WriteHeader(tt.status)
					return
				}
				w.WriteHeader(200)
			})
			res, err := e.d.Deliver(t.Context(), rc.target(Policy{}), Message{Body: []byte(`{}`)})
			if err != nil || res.Attempts != 2 {
				t.Fatalf("got %+v, %v", res, err)
			}
			if got := e.clock.sleeps(); !slices.Equal(got, []time.Duration{tt.want}) {
				t.Errorf("waited %v, want [%v]", got, tt.want)
			}
		})
	}
}

func TestRetryAfterBeyondBudget(t *testing.T) {
	e := newEnv(true)
	rc := newReceiver(t, e.clock, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(429)
	})
	res, err := e.d.Deliver(t.Context(), rc.target(Policy{Budget: time.Minute}), Message{Body: []byte(`{}`)})
	var de *Error
	if !errors.Is(err, ErrExhausted) || !errors.As(err, &de) || de.Status != 429 || res.Attempts != 1 || len(e.clock.sleeps()) != 0 {
		t.Fatalf("got %+v, %v, slept %v; want exhausted at once", res, err, e.clock.sleeps())
	}
}

func TestNoRetryOnOther4xx(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 409, 410, 413, 422} {
		e := newEnv(true)
		rc := newReceiver(t, e.clock, statuses(code, 200))
		res, err := e.d.Deliver(t.Context(), rc.target(Policy{}), Message{Body: []byte(`{}`)})
		if !errors.Is(err, ErrRejected) || res.Attempts != 1 || res.Outcome != OutcomeRejected || len(rc.received()) != 1 {
			t.Errorf("%d: got %+v, %v, %d requests; want rejected after one", code, res, err, len(rc.received()))
		}
		if e.d.Breaker("com.example.app").State != Closed {
			t.Errorf("%d: a 4xx opened the breaker", code)
		}
	}
}

// TestRedirectNotFollowed: a 3xx is the answer, not retried, and its
// Location is never requested (it could point past the guard).
func TestRedirectNotFollowed(t *testing.T) {
	var hits int
	var mu sync.Mutex
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
	}))
	defer elsewhere.Close()
	e := newEnv(true)
	rc := newReceiver(t, e.clock, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
	})
	res, err := e.d.Deliver(t.Context(), rc.target(Policy{}), Message{Body: []byte(`{}`)})
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(err, ErrRejected) || res.Status != 307 || res.Attempts != 1 || hits != 0 {
		t.Fatalf("got %+v, %v, %d requests to the Location; want rejected, none", res, err, hits)
	}
}

func TestBudgetAndAttemptLimit(t *testing.T) {
	e := newEnv(true)
	rc := newReceiver(t, e.clock, statuses(503))
	// Waits 1 s and 2 s; the next, 4 s, would end past the 5 s budget.
	res, err := e.d.Deliver(t.Context(), rc.target(Policy{Budget: 5 * time.Second, BaseDelay: time.Second, BreakerThreshold: 100}), Message{Body: []byte(`{}`)})
	if !errors.Is(err, ErrExhausted) || res.Attempts != 3 || res.Outcome != OutcomeExhausted || !strings.Contains(err.Error(), "budget") {
		t.Fatalf("budget: got %+v, %v; want exhausted after 3 attempts", res, err)
	}
	e = newEnv(true)
	rc = newReceiver(t, e.clock, statuses(500))
	res, err = e.d.Deliver(t.Context(), rc.target(Policy{MaxAttempts: 2, BreakerThreshold: 100}), Message{Body: []byte(`{}`)})
	if !errors.Is(err, ErrExhausted) || res.Attempts != 2 || len(rc.received()) != 2 {
		t.Fatalf("attempt limit: got %+v, %v; want exhausted after 2", res, err)
	}
	if n := e.counter(t, "junction_delivery_total", "outcome", "exhausted"); n != 1 {
		t.Errorf("exhausted counter: got %v, want 1", n)
	}
}

// TestTimeout: the per-attempt HTTP timeout is separate from the budget;
// a timed-out attempt is retried.
func TestTimeout(t *testing.T) {
	e := newEnv(true)
	rc := newReceiver(t, e.clock, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-r.Context().Done() // hang until the client gives up
			return
		}
		w.WriteHeader(200)
	})
	res, err := e.d.Deliver(t.Context(), rc.target(Policy{Timeout: 100 * time.Millisecond}), Message{Body: []byte(`{}`)})
	if err != nil || res.Attempts != 2 {
		t.Fatalf("got %+v, %v; want delivered at the 2nd attempt", res, err)
	}
	log := e.log.List("com.example.app", 0)
	if got := stages(log); got != "timeout,200" {
		t.Fatalf("log: got %s, want timeout,200", got)
	}
	if log[1].Latency < 100*time.Millisecond {
		t.Errorf("timed-out attempt latency %v, want at least the timeout", log[1].Latency)
	}
}

func TestConnectErrorRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	e := newEnv(true)
	s, _ := webhook.NewSecret()
	res, err := e.d.Deliver(t.Context(), Target{ID: "dead", URL: "http://" + addr + "/", Secrets: []webhook.Secret{s}, Internal: true,
		Policy: Policy{MaxAttempts: 3, BreakerThreshold: 100}}, Message{Body: []byte(`{}`)})
	var de *Error
	if !errors.Is(err, ErrExhausted) || !errors.As(err, &de) || de.Stage != StageConnect || res.Attempts != 3 {
		t.Fatalf("got %+v, %v; want 3 connect failures", res, err)
	}
	if got := stages(e.log.List("dead", 0)); got != "connect,connect,connect" {
		t.Errorf("log: got %s", got)
	}
}

func TestCancelledWhileWaiting(t *testing.T) {
	e := newEnv(false)
	rc := newReceiver(t, e.clock, statuses(503))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := e.d.Deliver(ctx, rc.target(Policy{}), Message{Body: []byte(`{}`)})
		done <- err
	}()
	eventually(t, "the delivery to wait for its retry", func() bool { return e.clock.sleeping() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n := e.counter(t, "junction_delivery_total", "outcome", "cancelled"); n != 1 {
		t.Errorf("cancelled counter: got %v, want 1", n)
	}
}

func TestPublicAddr(t *testing.T) {
	for _, c := range []struct {
		ip     string
		public bool
	}{
		{"8.8.8.8", true}, {"1.1.1.1", true}, {"2606:4700:4700::1111", true}, {"93.184.215.14", true},
		{"127.0.0.1", false}, {"127.8.9.10", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"100.64.0.1", false}, {"100.100.100.100", false}, {"0.0.0.0", false}, {"0.1.2.3", false},
		{"224.0.0.1", false}, {"239.255.255.250", false}, {"255.255.255.255", false}, {"198.18.0.1", false},
		{"::1", false}, {"::", false}, {"fe80::1", false}, {"fc00::1", false}, {"fd12:3456::1", false}, {"ff02::1", false},
		{"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false}, {"::ffff:8.8.8.8", true}, {"64:ff9b::a00:1", false},
		{"2002:7f00:1::", false}, {"2001:db8::1", false},
	} {
		if got := PublicAddr(netip.MustParseAddr(c.ip)); got != c.public {
			t.Errorf("PublicAddr(%s): got %v, want %v", c.ip, got, c.public)
		}
	}
}

// TestGuardRefusesBeforeConnecting: without Internal, targets that are or
// resolve to loopback, private or link-local addresses are refused at dial
// time, and no connection reaches the listener.
func TestGuardRefusesBeforeConnecting(t *testing.T) {
	listen := func(network, addr string) net.Listener {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	v4 := listen("tcp4", "127.0.0.1:0")
	if v4 == nil {
		t.Fatal("no IPv4 loopback")
	}
	v6 := listen("tcp6", "[::1]:0")
	port := v4.Addr().(*net.TCPAddr).Port
	targets := []string{
		"http://" + v4.Addr().String() + "/hook",
		fmt.Sprintf("http://localhost:%d/hook", port), // a name that resolves to loopback
		"http://10.0.0.1:9/hook",
		"http://169.254.169.254/latest/meta-data/",
		"http://0.0.0.0:" + fmt.Sprint(port) + "/",
		"http://[::ffff:127.0.0.1]:" + fmt.Sprint(port) + "/",
	}
	if v6 != nil {
		targets = append(targets, "http://"+v6.Addr().String()+"/hook")
	}
	e := newEnv(true)
	s, _ := webhook.NewSecret()
	for _, u := range targets {
		res, err := e.d.Deliver(t.Context(), Target{ID: "ext", URL: u, Secrets: []webhook.Secret{s}, Policy: Policy{BreakerThreshold: 1}}, Message{Body: []byte(`{}`)})
		var de *Error
		if !errors.Is(err, ErrRefused) || !errors.As(err, &de) || de.Stage != StageGuard || res.Outcome != OutcomeRefused || res.Attempts != 1 {
			t.Errorf("%s: got %+v, %v; want refused by the guard, no retry", u, res, err)
		}
	}
	for _, ln := range []net.Listener{v4, v6} {
		if ln == nil {
			continue
		}
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(50 * time.Millisecond))
		if c, err := ln.Accept(); err == nil {
			c.Close()
			t.Errorf("%s accepted a connection: the guard let a dial through", ln.Addr())
		}
	}
	if st := e.d.Breaker("ext").State; st != Closed {
		t.Errorf("refusals opened the breaker: %v", st)
	}
	if n := e.counter(t, "junction_delivery_total", "outcome", "refused"); n != float64(len(targets)) {
		t.Errorf("refused counter: got %v, want %d", n, len(targets))
	}
	// The same loopback target, marked internal, is delivered.
	rc := newReceiver(t, e.clock, statuses(200))
	tg := rc.target(Policy{})
	if _, err := e.d.Deliver(t.Context(), tg, Message{Body: []byte(`{}`)}); err != nil {
		t.Fatalf("internal loopback target: %v", err)
	}
	tg.Internal = false
	if _, err := e.d.Deliver(t.Context(), tg, Message{Body: []byte(`{}`)}); !errors.Is(err, ErrRefused) {
		t.Fatalf("the same target not internal: got %v, want ErrRefused", err)
	}
}

func TestBadURLsRefused(t *testing.T) {
	e := newEnv(true)
	s, _ := webhook.NewSecret()
	for _, u := range []string{"ftp://example.com/x", "/relative", "http://user:pw@example.com/", "http:///nohost", "::"} {
		_, err := e.d.Deliver(t.Context(), Target{ID: "x", URL: u, Secrets: []webhook.Secret{s}}, Message{Body: []byte(`{}`)})
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%q: got %v, want ErrRefused", u, err)
		}
	}
	if _, err := e.d.Deliver(t.Context(), Target{URL: "https://example.com/", Secrets: []webhook.Secret{s}}, Message{Body: []byte(`{}`)}); !errors.Is(err, ErrRefused) {
		t.Errorf("no target id: got %v, want ErrRefused", err)
	}
	if _, err := e.d.Deliver(t.Context(), Target{ID: "x", URL: "https://example.com/"}, Message{Body: []byte(`{}`)}); !errors.Is(err, ErrRefused) || !errors.Is(err, webhook.ErrBadSecret) {
		t.Errorf("no secret: got %v, want ErrRefused wrapping webhook.ErrBadSecret", err)
	}
}

func TestMemoryLogBounds(t *testing.T) {
	l := &MemoryLog{PerTarget: 3, MaxTargets: 2}
	for i := 1; i <= 5; i++ {
		l.Record(Attempt{Target: "a", Attempt: i})
	}
	got := l.List("a", 0)
	if len(got) != 3 || got[0].Attempt != 5 || got[2].Attempt != 3 {
		t.Fatalf("a: got %+v, want attempts 5,4,3", got)
	}
	if got := l.List("a", 2); len(got) != 2 || got[1].Attempt != 4 {
		t.Fatalf("a, limit 2: got %+v", got)
	}
	l.Record(Attempt{Target: "b", Attempt: 1})
	l.Record(Attempt{Target: "a", Attempt: 6}) // a is now the most recently written
	l.Record(Attempt{Target: "c", Attempt: 1}) // evicts b
	if l.List("b", 0) != nil || len(l.List("a", 0)) != 3 || len(l.List("c", 0)) != 1 {
		t.Fatalf("eviction: b %v, a %d, c %d", l.List("b", 0), len(l.List("a", 0)), len(l.List("c", 0)))
	}
}

// The body the receiver sees is exactly the one signed; extra headers go
// through; Content-Type defaults to JSON.
func TestHeaders(t *testing.T) {
	e := newEnv(true)
	var got http.Header
	var body []byte
	rc := newReceiver(t, e.clock, func(_ int, w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		body, _ = io.ReadAll(r.Body)
	})
	h := http.Header{}
	h.Set("X-Junction-Event", "session.start")
	if _, err := e.d.Deliver(t.Context(), rc.target(Policy{}), Message{Body: []byte(`{"a":1}`), Header: h}); err != nil {
		t.Fatal(err)
	}
	if got.Get("Content-Type") != "application/json" || got.Get("X-Junction-Event") != "session.start" || got.Get("User-Agent") != "junction-webhook" {
		t.Errorf("headers: %v", got)
	}
	if rc.received()[0].body != `{"a":1}` || len(body) != 0 {
		t.Errorf("body: verified %q", rc.received()[0].body)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true}, {"120", 2 * time.Minute, true},
		{"Mon, 07 Dec 2026 06:00:30 GMT", 30 * time.Second, true},
		{"Monday, 07-Dec-26 06:01:00 GMT", time.Minute, true}, // RFC 850, which HTTP dates allow
		{"Mon, 07 Dec 2026 05:00:00 GMT", 0, true},            // past: now
		{"", 0, false}, {"-1", 0, false}, {"1.5", 0, false}, {"99999999999", 0, false}, {"in a bit", 0, false},
	} {
		got, ok := parseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("%q: got %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"7", "0", "Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1.5", "99999999999", "Monday, 07-Dec-26 06:01:00 GMT"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("%q: got %v, %v", s, d, ok)
		}
		// A far-future date is a valid answer (the budget check ends the
		// delivery); seconds are whole and bounded.
		if _, err := strconv.ParseUint(s, 10, 32); err == nil && (d%time.Second != 0 || d > time.Duration(1<<32)*time.Second) {
			t.Fatalf("%q: got %v", s, d)
		}
	})
}

// TestSecretRotation: a target with the new and the old secret is signed
// with both, so a backend that still holds only the old one accepts it.
func TestSecretRotation(t *testing.T) {
	e := newEnv(true)
	rc := newReceiver(t, e.clock, statuses(200)) // verifies with rc.secret only: the old one
	newSecret, _ := webhook.NewSecret()
	tg := rc.target(Policy{})
	tg.Secrets = []webhook.Secret{newSecret, rc.secret}
	if _, err := e.d.Deliver(t.Context(), tg, Message{Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	tg.Secrets = []webhook.Secret{newSecret}
	if _, err := e.d.Deliver(t.Context(), tg, Message{Body: []byte(`{}`)}); !errors.Is(err, ErrRejected) {
		t.Fatalf("signed with the new secret only: got %v, want the receiver's refusal", err)
	}
	got := rc.received()
	if got[0].err != nil || !errors.Is(got[1].err, webhook.ErrSignatureMismatch) {
		t.Fatalf("receiver: %v, %v", got[0].err, got[1].err)
	}
}

// TestReadBody: with Message.ReadBody the answer's body comes back in the
// result, cut at the limit; without it bodies are discarded.
func TestReadBody(t *testing.T) {
	e := newEnv(true)
	rc := newReceiver(t, e.clock, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 1, 2:
			io.WriteString(w, `{"result":{"ok":true}}`)
		case 3:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"busy"}}`)
		default:
			io.WriteString(w, strings.Repeat("x", 100))
		}
	})
	tg := rc.target(Policy{MaxAttempts: 1})
	cases := []struct {
		name      string
		readBody  int
		wantBody  string
		wantTrunc bool
		wantRA    time.Duration
		wantErr   bool
	}{
		{"read", 1024, `{"result":{"ok":true}}`, false, 0, false},
		{"discard", 0, "", false, 0, false},
		{"error body and Retry-After", 1024, `{"error":{"code":"unavailable","message":"busy"}}`, false, 7 * time.Second, true},
		{"truncated", 10, strings.Repeat("x", 10), true, 0, false},
	}
	for _, c := range cases {
		res, err := e.d.Deliver(context.Background(), tg, Message{Body: []byte(`{}`), ReadBody: c.readBody})
		if (err != nil) != c.wantErr {
			t.Fatalf("%s: err %v, want error %v", c.name, err, c.wantErr)
		}
		if string(res.Body) != c.wantBody || res.BodyTruncated != c.wantTrunc || res.RetryAfter != c.wantRA {
			t.Errorf("%s: got body %q truncated %v retry-after %v, want %q %v %v", c.name, res.Body, res.BodyTruncated, res.RetryAfter, c.wantBody, c.wantTrunc, c.wantRA)
		}
	}
}
