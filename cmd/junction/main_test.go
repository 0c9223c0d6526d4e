package main

import (
	"context"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
)

// startServer runs the whole server in-process on 127.0.0.1:0 with a fresh
// data directory. configure, when non-nil, adjusts the configuration before
// defaults apply; hooks, when non-nil, adjust Main before Open. The
// WebSocket transport is the one JUNCTION_HUB_TRANSPORT names, as for the
// binary (scripts/test.sh runs the end-to-end tests once per transport).
func startServer(t *testing.T, configure func(*Config), hooks ...func(*Main)) *Main {
	t.Helper()
	cfg := &Config{Addr: "127.0.0.1:0", Data: t.TempDir(), LogLevel: "error"}
	cfg.Hub.Transport = os.Getenv("JUNCTION_HUB_TRANSPORT")
	if configure != nil {
		configure(cfg)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	m := NewMain(cfg, io.Discard, io.Discard)
	for _, h := range hooks {
		h(m)
	}
	if err := m.Open(context.Background()); err != nil {
		t.Fatalf("open server: %v", err)
	}
	// Checked after the server closed (cleanups run last first).
	checkWire(t, m)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// mintToken issues an access token signed by the server's key.
func mintToken(t *testing.T, m *Main, user, device, kind string, scopes ...string) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{auth.ScopeRead, auth.ScopeWrite}
	}
	tok, _, err := m.Tokens.Issue(auth.Claims{UserID: user, DeviceID: device, Kind: kind, Scopes: scopes}, time.Hour)
	if err != nil {
		t.Fatalf("issue token: %v", err)
	}
	return tok
}

// dialClient connects the Go SDK to the server as user/device.
func dialClient(t *testing.T, m *Main, user, device, kind string, scopes ...string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", Token: mintToken(t, m, user, device, kind, scopes...)}))
	if err != nil {
		t.Fatalf("dial %s/%s: %v", user, device, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eventually retries cond until it holds or the (generous) deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkGoroutines fails when goroutines started by the test outlive it.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: got %d, want at most %d\n%s", n, before, strings.TrimSpace(string(buf)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// numGoroutinesSettled returns the goroutine count once it stops falling.
func numGoroutinesSettled() int {
	n := runtime.NumGoroutine()
	for range 20 {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}
