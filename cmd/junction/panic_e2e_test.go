package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestPanicsLoggedRateLimited: a WebSocket method and an HTTP route that
// panic, each hit 20 times: every call answers (internal) or drops its
// connection, the server goes on, and the log has one line for each kind,
// not one per panic.
func TestPanicsLoggedRateLimited(t *testing.T) {
	var logs syncBuffer
	m := startServer(t, nil, func(m *Main) {
		m.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))
		m.ConfigureHub = func(h *hub.Hub) {
			h.Register(hub.Method{Name: "test.panic", Scope: auth.ScopeRead,
				Handler: func(context.Context, *hub.Call) (any, error) { panic("method boom") }})
		}
	})
	m.Web.Handle("GET /api/v1/test/panic", func(http.ResponseWriter, *http.Request) { panic("route boom") })

	c := dialClient(t, m, "alice", "phone-1", "phone")
	for i := range 20 {
		err := c.Call(context.Background(), "test.panic", nil, nil)
		if pe := asProtocolError(err); pe == nil || pe.Code != protocol.CodeInternal {
			t.Fatalf("call %d: got %v, want internal", i, err)
		}
	}
	// Its own client: a dropped connection is not something the wire
	// check's transport should see.
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	for i := range 20 {
		resp, err := hc.Get(m.URL() + "/api/v1/test/panic")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("request %d: got %s, want the connection dropped", i, resp.Status)
		}
	}
	if err := c.Call(context.Background(), "sys.ping", nil, nil); err != nil {
		t.Fatalf("after the panics: sys.ping: %v", err)
	}
	out := logs.String()
	if n := strings.Count(out, "method panicked"); n != 1 {
		t.Errorf("method panics: %d log lines for 20, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "panic serving a request"); n != 1 {
		t.Errorf("route panics: %d log lines for 20, want 1:\n%s", n, out)
	}
}
