package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// testServer is a hub behind an httptest server on 127.0.0.1. Its handler
// takes the bearer credential "user/device/scope,scope" as the principal.
type testServer struct {
	hub *hub.Hub
	srv *httptest.Server
	reg *prometheus.Registry
}

func startHub(t testing.TB, cfg hub.Config, configure func(*hub.Hub)) *testServer {
	t.Helper()
	return startHubDeps(t, cfg, hub.Deps{}, configure)
}

// startHubDeps is startHub with deps (their Registerer is the server's).
func startHubDeps(t testing.TB, cfg hub.Config, deps hub.Deps, configure func(*hub.Hub)) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	deps.Registerer = reg
	h, err := hub.New(cfg, deps)
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	if configure != nil {
		configure(h)
	}
	if err := h.Start(); err != nil {
		t.Fatalf("hub.Start: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		p, ok := testPrincipal(cred)
		if !ok {
			http.Error(w, `{"error":{"code":"unauthorized"}}`, http.StatusUnauthorized)
			return
		}
		sub := ""
		if strings.Contains(r.Header.Get("Sec-WebSocket-Protocol"), protocol.Subprotocol) {
			sub = protocol.Subprotocol
		}
		if _, err := h.Upgrade(w, r, p, sub); err != nil {
			t.Logf("upgrade: %v", err)
		}
	}))
	ts := &testServer{hub: h, srv: srv, reg: reg}
	t.Cleanup(func() {
		srv.Close()
		_ = h.Close()
	})
	return ts
}

// testPrincipal parses "user/device/scope,scope".
func testPrincipal(cred string) (*auth.Principal, bool) {
	parts := strings.Split(cred, "/")
	if len(parts) != 3 || parts[0] == "" {
		return nil, false
	}
	var scopes []string
	if parts[2] != "" {
		scopes = strings.Split(parts[2], ",")
	}
	return &auth.Principal{UserID: parts[0], DeviceID: parts[1], Kind: "phone", Scopes: scopes}, true
}

func (ts *testServer) url() string { return "ws" + strings.TrimPrefix(ts.srv.URL, "http") + "/ws" }

// dial connects the Go SDK as cred ("user/device/scopes").
func (ts *testServer) dial(t testing.TB, cred string, opts ...func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{URL: ts.url(), Token: cred}
	for _, fn := range opts {
		fn(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.New(o)
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("dial %s: %v", cred, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// counter returns the value of a counter (with label code, when given) in
// the server's registry.
func (ts *testServer) counter(t testing.TB, name, code string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if code == "" {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func call(t testing.TB, c *client.Client, method string, params, result any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Call(ctx, method, params, result)
}

func mustCall(t testing.TB, c *client.Client, method string, params, result any) {
	t.Helper()
	if err := call(t, c, method, params, result); err != nil {
		t.Fatalf("%s %v: %v", method, params, err)
	}
}

func errCode(err error) protocol.Code {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// recorder collects channel.message events per topic.
type recorder struct {
	// lite drops each message's data as it is recorded, for tests that
	// publish a lot and check only offsets (set before messages flow).
	lite  bool
	mu    sync.Mutex
	msgs  map[string][]*protocol.Frame
	other []*protocol.Frame
	cond  *sync.Cond
}

func newRecorder(c *client.Client) *recorder {
	r := &recorder{msgs: map[string][]*protocol.Frame{}}
	r.cond = sync.NewCond(&r.mu)
	c.OnEvent(hub.EventChannelMessage, func(f *protocol.Frame) {
		r.mu.Lock()
		if r.lite {
			f = &protocol.Frame{Type: f.Type, Event: f.Event, Topic: f.Topic, Epoch: f.Epoch, Offset: f.Offset}
		}
		r.msgs[f.Topic] = append(r.msgs[f.Topic], f)
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	for _, ev := range []string{hub.EventChannelJoin, hub.EventChannelLeave, hub.EventChannelUnsubscribed} {
		c.OnEvent(ev, func(f *protocol.Frame) {
			r.mu.Lock()
			r.other = append(r.other, f)
			r.cond.Broadcast()
			r.mu.Unlock()
		})
	}
	return r
}

// waitFor waits until cond holds under r.mu (no timing assertion: the
// deadline only turns a hang into a failure).
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(20*time.Second, func() {
		r.mu.Lock()
		close(done)
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer timer.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for !cond() {
		select {
		case <-done:
			t.Fatalf("timed out waiting for %s", what)
		default:
		}
		r.cond.Wait()
	}
}

func (r *recorder) count(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs[topic])
}

func raw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// eventually polls cond; the deadline only turns a hang into a failure.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stalledConn is a raw WebSocket client that subscribed and then stopped
// reading, with a small socket receive buffer.
type stalledConn struct{ nc net.Conn }

func (s *stalledConn) Close() { _ = s.nc.Close() }

func dialStalled(t testing.TB, ts *testServer, cred string) *stalledConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := gws.Dialer{
		Header: gws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + cred}}),
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := nc.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			return nc, err
		},
	}
	nc, br, _, err := d.Dial(ctx, ts.url())
	if err != nil {
		t.Fatalf("dial stalled: %v", err)
	}
	s := &stalledConn{nc: nc}
	t.Cleanup(s.Close)
	req := []byte(`{"type":"req","id":"1","method":"channel.subscribe","params":{"topic":"public:firehose"}}`)
	if err := wsutil.WriteClientText(nc, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	var r io.Reader = nc
	if br != nil {
		r = io.MultiReader(br, nc)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, nc}
	for {
		msg, err := wsutil.ReadServerText(rw)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if strings.Contains(string(msg), `"type":"res"`) {
			if !strings.Contains(string(msg), `"ok":true`) {
				t.Fatalf("stalled subscribe failed: %s", msg)
			}
			return s
		}
	}
}
